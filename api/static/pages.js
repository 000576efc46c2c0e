// Copy buttons: <button data-copy="ID"> copies the text of the element with that id, and
// says so in the live region named by its aria-describedby. Works without a clipboard API
// (older phones): the text is then selected for the person to copy by hand.
(function () {
  "use strict";
  function say(button, text) {
    var id = button.getAttribute("aria-describedby");
    var region = id && document.getElementById(id);
    if (region) { region.textContent = text; }
  }
  function select(field) {
    field.focus();
    field.select();
    field.setSelectionRange(0, field.value.length);
  }
  document.addEventListener("click", function (event) {
    var button = event.target.closest("button[data-copy]");
    if (!button) { return; }
    var field = document.getElementById(button.getAttribute("data-copy"));
    if (!field) { return; }
    var text = field.value || field.textContent;
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(
        function () { say(button, "Copied."); },
        function () { select(field); say(button, "Selected: copy it with your device's copy command."); }
      );
    } else {
      select(field);
      var copied = false;
      try { copied = document.execCommand("copy"); } catch (e) { copied = false; }
      say(button, copied ? "Copied." : "Selected: copy it with your device's copy command.");
    }
  });
})();
