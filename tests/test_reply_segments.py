"""A reply as segments (core/inbound/segments.py): bottom-posted, quote-first and interleaved
answers kept apart from the history, measured on the development set and on held-out mail the
rules never saw (tests/replies/heldout/README.md), and by hand on the shapes clients write."""

from __future__ import annotations

import itertools

import pytest

from core.inbound import parse
from core.inbound.segments import line_kinds, segments, split_reply
from tests.replies import segments as labelled


def _kinds(text: str) -> list[tuple[str, str]]:
    """(kind, line) for each line of text that is not blank."""
    pairs = zip(line_kinds(text), text.splitlines(), strict=True)
    return [(k, line) for k, line in pairs if line.strip()]


def _history(text: str) -> list[str]:
    return [line for kind, line in _kinds(text) if kind in ("quoted", "forwarded")]


# -- measured ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["development", "heldout"])
def test_the_rules_meet_their_targets(name):
    cases = labelled.development() if name == "development" else labelled.heldout()
    by_source = labelled.measure(cases, line_kinds, lambda c: c.source)
    by_style = labelled.measure(cases, line_kinds, lambda c: c.style)
    print("\n" + labelled.table(name, by_source) + "\n" + labelled.table(name, by_style))
    total = by_source["all"]
    assert total.messages >= (280 if name == "development" else 100)
    assert total.lost_messages == [], "a line the sender wrote was called history"
    assert total.precision >= 0.98 and total.recall >= 0.95
    for style in ("bottom", "interleaved"):
        assert by_style[style].messages >= 8 and by_style[style].recall >= 0.95


@pytest.mark.parametrize("name", ["development", "heldout"])
def test_the_committed_output_is_the_rules_output(name):
    cases = labelled.development() if name == "development" else labelled.heldout()
    committed = labelled.OUTPUTS[name].read_text(encoding="utf-8")
    assert committed == labelled.outputs(cases, line_kinds), (
        "run python -m tests.replies.segments to write the rules' output beside the labels"
    )


def test_segments_hold_every_line_in_order():
    for case in labelled.development() + labelled.heldout():
        found = segments(case.text)
        assert "\n".join(s.text for s in found) == "\n".join(case.text.splitlines())
        assert all(a.kind != b.kind for a, b in itertools.pairwise(found))


# -- by hand: the shapes clients write ---------------------------------------------------------


def test_bottom_posting_with_an_attribution():
    text = (
        "On Mon, 30 Nov 2026 at 10:00, Acme Jobs <jobs@acme.example> wrote:\n"
        "> Could you come in on Tuesday at 10?\n>\n> Best, Ana\n\n"
        "Yes, Tuesday at 10 works for me.\n\nMaria\n"
    )
    split = split_reply(text)
    assert split.reply_text == "Yes, Tuesday at 10 works for me.\n\nMaria"
    assert split.quoted_text.startswith("On Mon, 30 Nov 2026") and "Best, Ana" in split.quoted_text
    assert [s.kind for s in split.segments] == ["quoted", "new"]


def test_a_quote_first_without_an_attribution():
    text = "> Could you come in on Tuesday at 10?\n\nYes, that works.\n"
    split = split_reply(text)
    assert split.reply_text == "Yes, that works."
    assert split.quoted_text == "> Could you come in on Tuesday at 10?"


@pytest.mark.parametrize("mark", [">", "> ", ">>", "> > ", ">>> ", "  > "])
def test_interleaved_answers_at_any_depth(mark):
    text = (
        f"{mark}Can you start in January?\nYes, from the 4th.\n\n"
        f"{mark}Do you need a visa?\n{mark}We can sponsor one.\n\nNo, I am an EU citizen.\n"
    )
    split = split_reply(text)
    assert split.reply_text == "Yes, from the 4th.\n\nNo, I am an EU citizen."
    assert "January" in split.quoted_text and "sponsor" in split.quoted_text
    assert [s.kind for s in split.segments] == ["quoted", "new", "quoted", "new"]


def test_a_greater_than_sign_in_text_is_not_a_mark():
    text = "Salary expectations:\n  >= 60k\n  > 55k is fine too\n>= 2 years of Go\n"
    assert _history(text) == ["  > 55k is fine too"]


def test_a_python_session_is_the_senders_own_but_a_deep_quote_stays_a_quote():
    session = (
        "Run python on the radio:\n\n>>> import sys\n\n>>> sys.path\n['', '/usr/lib']\n"
        ">>> quit()\n\nThen look for gnuradio there.\n"
    )
    assert _history(session) == []
    # Three deep under shallower quotes, or prose after the marks: a quote.
    nested = "On Mon, Ana wrote:\n> Yes\n>> Can you start?\n>>> import sys\n\nSure.\n"
    assert ">>> import sys" in _history(nested)
    prose = ">>> Can you start in January?\nYes.\n"
    assert _history(prose) == [">>> Can you start in January?"]


def test_a_wrapped_links_closing_bracket_is_not_a_mark():
    text = (
        "You can follow the guide here <\nhttps://wiki.example.org/Install#Ubuntu\n"
        ">. It went smoothly for me.\n\nOn Fri, Ana wrote:\n> Which guide?\n"
    )
    assert _history(text) == ["On Fri, Ana wrote:", "> Which guide?"]
    # A quote under a line that closes its own brackets stays a quote.
    closed = "See <https://example.org>\n>Which guide?\n"
    assert _history(closed) == [">Which guide?"]


def test_a_list_footer_or_a_notice_after_the_history_is_not_history():
    outlook = (
        "Thanks, that helps.\n\n________________________________\nFrom: Ana <ana@acme.example>\n"
        "Sent: Monday, 7 December 2026 10:00\nSubject: Start date\n\nCan you start in January?\n"
    )
    footer = (
        "\n_______________________________________________\nJobs mailing list -- "
        "jobs@lists.example.org\nTo unsubscribe send an email to jobs-leave@lists.example.org\n"
    )
    notice = (
        "\nCONFIDENTIALITY NOTICE: This e-mail message, including any attachments, is for the "
        "sole use of the intended recipient(s).\n"
    )
    for trailer, first in ((footer, "_" * 47), (notice, "CONFIDENTIALITY NOTICE")):
        kinds = _kinds(outlook + trailer)
        assert [k for k, line in kinds if line.startswith(first)] == ["signature"]
        assert ("quoted", "Can you start in January?") in kinds
    # A notice inside the history, with the history going on after it, stays history.
    inside = outlook + notice + "\nMore of the old message.\n"
    assert all(k == "quoted" for k, line in _kinds(inside) if "CONFIDENTIALITY" in line)


def test_answers_written_into_an_unmarked_history_are_the_senders():
    """Outlook's comments marked with the sender's name, and Outlook for Mac's history indented
    four spaces with the answers not indented, are the sender's lines inside the history."""
    outlook = (
        "See below.\n\n-----Original Message-----\nFrom: Ana <ana@acme.example>\n"
        "Sent: Monday, 7 December 2026 10:00\nSubject: Offer\n\nCan you start in January?\n\n"
        "[Grace Hopper]  Yes, from the 4th.\nIn the morning.\n\nWhich office?\n"
    )
    kinds = _kinds(outlook)
    assert ("new", "[Grace Hopper]  Yes, from the 4th.") in kinds and (
        "new",
        "In the morning.",
    ) in kinds
    assert ("quoted", "Can you start in January?") in kinds and ("quoted", "Which office?") in kinds
    # A name-like bracket only: a reference or an image placeholder is history as it was.
    refs = outlook.replace("[Grace Hopper]  Yes", "[1] Yes").replace("\nIn the morning.", "")
    assert ("quoted", "[1] Yes, from the 4th.") in _kinds(refs)
    mac = (
        '\nOn 10/21/19, 4:04 PM, "Ana" <ana@acme.example> wrote:\n\n    Can you start?\n'
        "    In January, ideally.\n    We need an answer soon.\n\nYes, I can.\n\n"
        "    Thanks, Ana\n"
    )
    kinds = _kinds(mac)
    assert ("new", "Yes, I can.") in kinds and ("quoted", "    Can you start?") in kinds
    assert ("quoted", "    Thanks, Ana") in kinds


def test_what_follows_a_quote_is_not_taken_for_what_follows_its_introduction():
    """A mobile signature or an attribution, then a `>` quote (a greeting between them), then
    the answer: the answer is the sender's."""
    mobile = (
        "\nSent from my iPhone\n\n> On 11 May 2021, Ana <ana@acme.example> wrote:\n"
        "> Can you start?\n\nYes, from the 4th.\n\nGrace\n"
    )
    assert _history(mobile) == [
        "> On 11 May 2021, Ana <ana@acme.example> wrote:",
        "> Can you start?",
    ]
    greeting = (
        "On Wed, Nov 18, 2020 at 01:11:42PM -0800, Ana wrote:\n\nHi Ana.\n\n"
        "> Can you start?\n\nYes, from the 4th.\n"
    )
    kinds = _kinds(greeting)
    assert ("new", "Yes, from the 4th.") in kinds and ("new", "Hi Ana.") in kinds
    assert ("quoted", "> Can you start?") in kinds


def test_a_disclaimer_block_after_the_history_is_not_history():
    history = (
        "Thanks.\n\n-----Original Message-----\nFrom: Ana <ana@acme.example>\nSent: Monday\n"
        "Subject: Offer\n\nCan you start?\n\n"
    )
    for notice in (
        "::DISCLAIMER::\n________________________________\nThe contents of this e-mail and any "
        "attachment(s) are confidential and intended for the named recipient(s) only.\n",
        "________________________________\nThe privileged confidential information contained in "
        "this email is intended for use only by the addressees as indicated.\n",
    ):
        kinds = _kinds(history + notice)
        assert ("quoted", "Can you start?") in kinds
        assert all(k == "signature" for k, line in kinds if "confidential" in line)


@pytest.mark.parametrize(
    "attribution",
    [
        "On Mon, 30 Nov 2026 at 10:00, Acme Jobs <jobs@acme.example>\nwrote:",
        "On Mon, Nov 30, 2026 at 10:00 AM Acme Jobs <\njobs@acme.example> wrote:",
        "On Mon, 30 Nov 2026 at 10:00, Acme Jobs <jobs@acme.example> w=\nrote:",
        "Am Mo., 30. Nov. 2026 um 10:00 Uhr schrieb Acme Jobs\n<jobs@acme.example>:",
        "Le lun. 30 nov. 2026 à 10:00, Acme Jobs <jobs@acme.example> a\nécrit :",
        "El lun, 30 nov 2026 a las 10:00, Acme Jobs (<jobs@acme.example>)\nescribió:",
        "Il giorno lun 30 nov 2026 alle ore 10:00 Acme Jobs <jobs@acme.example>\nha scritto:",
        "Op ma 30 nov. 2026 om 10:00 schreef Acme Jobs\n<jobs@acme.example>:",
        "Acme Jobs schrieb:",
        "Le 30/11/2026 10:00, Acme Jobs a écrit :",
    ],
)
def test_wrapped_and_translated_attributions_go_with_their_quote(attribution):
    text = f"Thanks, see below.\n\n{attribution}\n> Are you free on Tuesday?\n\nI am.\n"
    split = split_reply(text)
    assert split.reply_text == "Thanks, see below.\n\nI am."
    assert split.quoted_text.startswith(attribution.split("\n")[0])
    assert "Tuesday" in split.quoted_text


@pytest.mark.parametrize(
    "headers",
    [
        "From: Acme Jobs <jobs@acme.example>\nSent: Monday, November 30, 2026 10:00 AM\n"
        "To: Maria <maria@example.com>\nSubject: Interview",
        "Von: Acme Jobs <jobs@acme.example>\nGesendet: Montag, 30. November 2026 10:00\n"
        "An: Maria <maria@example.com>\nBetreff: Interview",
        "De : Acme Jobs <jobs@acme.example>\nEnvoyé : lundi 30 novembre 2026 10:00\n"
        "À : Maria <maria@example.com>\nObjet : Entretien",
        "*From:* Acme Jobs <jobs@acme.example>\n*Date:* Monday, 30 November 2026\n"
        "*Subject:* Interview",
    ],
)
def test_a_quoted_header_block_below_the_answer(headers):
    text = f"Tuesday works.\n\nMaria\n\n{headers}\n\nCould you come in on Tuesday?\n\nAna\n"
    split = split_reply(text)
    assert split.reply_text == "Tuesday works.\n\nMaria"
    assert split.quoted_text.startswith(headers.split("\n")[0])
    assert split.quoted_text.endswith("Ana")


def test_a_header_block_introducing_marked_quotes_leaves_the_answers_after_them():
    text = (
        "-----Original Message-----\nFrom: Acme Jobs <jobs@acme.example>\n"
        "Sent: Monday, November 30, 2026 10:00 AM\nSubject: Interview\n\n"
        "> Could you come on Tuesday?\n\nYes.\n\n> Do you drive?\n\nNo.\n"
    )
    split = split_reply(text)
    assert split.reply_text == "Yes.\n\nNo."
    assert split.quoted_text.startswith("-----Original Message-----")


def test_a_sign_off_is_its_own_segment():
    text = "> Tuesday?\n\nTuesday works.\n\n-- \nMaria Lopez\n+34 600 000 000\n"
    split = split_reply(text)
    assert split.reply_text == "Tuesday works."
    assert split.signature == "-- \nMaria Lopez\n+34 600 000 000"
    assert [s.kind for s in split.segments] == ["quoted", "new", "signature"]


def test_supercite_marks_are_quotes():
    text = (
        "At 14:00 30.11.2026, ana@acme.example wrote:\n\n AJ> Could you come on Tuesday?\n"
        " AJ> At 10?\n\nYes, at 10.\n\nmysql> select 1;\n"
    )
    assert _history(text)[1:] == [" AJ> Could you come on Tuesday?", " AJ> At 10?"]
    assert split_reply(text).reply_text == "Yes, at 10.\n\nmysql> select 1;"


def test_another_quote_mark_quotes_when_it_carries_an_attribution_or_a_quote():
    """mutt's indent_string set to "% ": the attribution and the quote behind the mark are
    history, the answers between them are not, and "...and then Ana said..." introduces them."""
    text = (
        "Ana, et al --\n\n...and then Ana Jones said...\n"
        "% On 21/01/2026 16:48, Li Wei wrote:\n% > Who fixes disks here?\n% \n"
        "% Try the firm I used.\n\nThanks, I will.\n\n% Cheers,\n% Ana\n\nLi\n"
    )
    assert _history(text) == [
        "...and then Ana Jones said...",
        "% On 21/01/2026 16:48, Li Wei wrote:",
        "% > Who fixes disks here?",
        "% ",
        "% Try the firm I used.",
        "% Cheers,",
        "% Ana",
    ]
    assert split_reply(text).reply_text == "Ana, et al --\n\nThanks, I will.\n\nLi"


@pytest.mark.parametrize(
    "text",
    [
        # a table: the mark never carries an attribution or a quote
        "Here are the sizes:\n| disk | size |\n| sda | 4 TB |\n| sdb | 4 TB |\nUse sdb.\n",
        # comments in a config file the sender pasted
        "My mdadm.conf:\n% generated by mdadm\n% on 21/01/2026 at 10:30\nARRAY /dev/md0\n",
        # one line only, even a quote's look
        "The load:\n% > 90 on md0\nthat is high.\n",
    ],
)
def test_another_mark_that_never_quotes_marks_nothing(text):
    assert _history(text) == []


def test_said_without_a_quote_below_introduces_nothing():
    text = "Yesterday the vendor said...\n\nthat the disks are fine. I doubt it.\n"
    assert _history(text) == []


def test_a_forward_is_forwarded():
    text = (
        "Please have a look at this candidate.\n\n---------- Forwarded message ---------\n"
        "From: Maria <maria@example.com>\nDate: Mon, 30 Nov 2026 at 10:00\n"
        "Subject: Application\n\n> Dear Acme,\n> I apply for the role.\n\nMy CV is attached.\n"
    )
    found = segments(text)
    assert [s.kind for s in found] == ["new", "forwarded"]
    assert "My CV is attached." in found[1].text  # all under the marker is the forward


def test_reply_text_never_empties_a_message_with_new_text():
    for case in labelled.development() + labelled.heldout():
        kinds = line_kinds(case.text)
        if any(line.strip() and k == "new" for line, k in zip(case.lines, kinds, strict=True)):
            assert split_reply(case.text).reply_text.strip(), case.name


def test_only_a_quote_keeps_it_all():
    text = "On Mon, 30 Nov 2026 at 10:00, Acme <jobs@acme.example> wrote:\n> Any news?\n"
    split = split_reply(text)
    assert split.reply_text == text and split.quoted_text.endswith("> Any news?")


# -- format=flowed and quoted-printable, through the parser ------------------------------------


def _mail(body: bytes, content_type: str, encoding: str = "7bit") -> bytes:
    return (
        b"From: Maria <maria@example.com>\r\nTo: jobs@acme.example\r\nSubject: Re: Interview\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: " + content_type.encode() + b"\r\n"
        b"Content-Transfer-Encoding: " + encoding.encode() + b"\r\n\r\n" + body
    )


def test_format_flowed_quotes_and_attribution():
    # RFC 3676: a soft line break is a space before the line end; quote marks are `>` with no
    # space between levels; the attribution is flowed over two lines.
    body = (
        b"On 30/11/2026 10:00, Acme Jobs wrote: \r\n"
        b">> Could you come in on Tuesday at 10, or would Wednesday suit you \r\n"
        b">> better?\r\n>\r\n> Wednesday, please.\r\n\r\n"
        b"Wednesday at 10 it is. See you \r\nthen.\r\n"
    )
    parsed = parse(_mail(body, "text/plain; charset=utf-8; format=flowed; delsp=no"))
    assert parsed.reply_text.replace(" \n", " ") == "Wednesday at 10 it is. See you then."
    assert "better?" in parsed.quoted_text and parsed.quoted_text.startswith("On 30/11/2026")
    assert [s.kind for s in parsed.segments] == ["quoted", "new"]


def test_quoted_printable_soft_breaks_inside_the_attribution():
    body = (
        b"Yes, Tuesday works.\r\n\r\nOn Mon, 30 Nov 2026 at 10:00, Acme Jobs <jobs@acme.exa=\r\n"
        b"mple> wrote:\r\n> Could you come in on Tuesday?\r\n"
    )
    parsed = parse(_mail(body, "text/plain; charset=utf-8", "quoted-printable"))
    assert parsed.reply_text == "Yes, Tuesday works."
    assert parsed.quoted_text.startswith("On Mon, 30 Nov 2026 at 10:00, Acme Jobs <jobs@acme.")
    # Left in the stored text by a client that encoded twice: still one attribution.
    text = "Yes.\n\nOn Mon, 30 Nov 2026 at 10:00, Acme Jobs <jobs@acme.example> w=\nrote:\n> Hi\n"
    assert split_reply(text).reply_text == "Yes."


def test_a_message_stored_before_segments_gets_them_when_read():
    import uuid

    from api.services.messages import public
    from core.models import Direction, Message

    text = "> Tuesday?\n\nTuesday works.\n"
    stored = Message(
        company_id=uuid.uuid4(),
        direction=Direction.INBOUND,
        status="received",
        text=text,
        reply_text=text,  # what the rules of the time kept: the whole text
        message_id_header="<old@example.com>",
    )
    shown = public(stored, [], "https://api.example", remote_images=False)
    assert [s.kind for s in shown.segments] == ["quoted", "new"]
    assert shown.reply_text == "Tuesday works." and shown.quoted_text == "> Tuesday?"
