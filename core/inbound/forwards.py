"""Forwarded mail: where a client starts the forwarded message in the text, and its author."""

from __future__ import annotations

import re

from core.inbound.headers import ADDRESS_IN_TEXT_RE, lower_domain
from core.inbound.model import ParsedMail

# Where a mail client starts a forwarded message in the text, in the common languages:
# Gmail's, Outlook's and Apple Mail's forward and original-message blocks.
FORWARD_MARKER_RE = re.compile(
    r"^[ \t>*]*(-{2,}\s*(forwarded message|original message|weitergeleitete nachricht|"
    r"urspr[üu]ngliche nachricht|message transf[ée]r[ée]|message d'origine|mensaje reenviado|"
    r"mensaje original|messaggio inoltrato|messaggio originale|doorgestuurd bericht|"
    r"oorspronkelijk bericht|vidarebefordrat meddelande|ursprungligt meddelande|"
    r"videresendt (melding|meddelelse)|opprinnelig melding|oprindelig meddelelse|"
    r"mensagem encaminhada|mensagem original|message transmis|пересылаемое сообщение)"
    r"\s*-{2,}|_{20,}|"
    r"begin forwarded message:|anfang der weitergeleiteten nachricht:|"
    r"d[ée]but du message r[ée]exp[ée]di[ée]\s*:|inicio del mensaje reenviado:|"
    r"inizio messaggio inoltrato:|begin doorgestuurd bericht:|forwarded message:[ \t]*$)",
    re.IGNORECASE | re.MULTILINE,
)
FORWARD_FROM_RE = re.compile(
    r"^[ \t>*]*(from|von|de|da|van|fr[åa]n|fra|od|de la|lähettäjä|feladó|от)[ \t]*\*?[ \t]*:"
    r"[ \t]*\*?[ \t]*(?P<value>.+)$",
    re.IGNORECASE | re.MULTILINE,
)


def forwarded_sender(parsed: ParsedMail) -> tuple[str, str]:
    """(name, address) of the message this one forwards: an attached message's author, else
    the From line of the first forward block in the text."""
    for attachment in parsed.attachments:
        if attachment.original_sender:
            return "", attachment.original_sender
    marker = FORWARD_MARKER_RE.search(parsed.text[:200_000])
    if marker is None:
        return "", ""
    block = parsed.text[marker.end() : marker.end() + 2000]
    line = FORWARD_FROM_RE.search(block)
    if line is None:
        return "", ""
    value = line.group("value").strip().replace("[mailto:", "<").replace("]", ">")
    address = ADDRESS_IN_TEXT_RE.search(value)
    if address is None:
        return "", ""
    name = value[: value.find(address.group(0))].strip(" \t<\"'*")
    return name[:200], lower_domain(address.group(0))
