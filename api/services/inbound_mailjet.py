"""Mailjet's Parse API posts (`POST /inbound/mailjet`) rebuilt into RFC 5322 bytes, so they take
the same path as mail received over SMTP: stored raw, then parsed and routed."""

from __future__ import annotations

import base64
from email.message import EmailMessage
from email.parser import HeaderParser
from typing import Any

_SKIPPED_MAILJET_HEADERS = {"content-type", "content-transfer-encoding", "mime-version"}


def mailjet_to_mime(post: dict[str, Any]) -> bytes:
    """Rebuild a Mailjet Parse API post into RFC 5322 bytes, so it takes the same path as SMTP.

    Raises ValueError naming the problem when the post is not a Parse API payload.
    """
    if not isinstance(post, dict) or not isinstance(post.get("Headers"), dict):
        raise ValueError("not a Mailjet Parse API post: the Headers object is missing")
    msg = EmailMessage()
    for name, value in post["Headers"].items():
        if name.lower() in _SKIPPED_MAILJET_HEADERS:
            continue
        for item in value if isinstance(value, list) else [value]:
            text = " ".join(str(item).split())  # no header injection through folded values
            if text:
                msg[name] = text
    if "From" not in msg and post.get("From"):
        msg["From"] = " ".join(str(post["From"]).split())
    if "Subject" not in msg and post.get("Subject"):
        msg["Subject"] = " ".join(str(post["Subject"]).split())
    msg.set_content(str(post.get("Text-part") or ""))
    if post.get("Html-part"):
        msg.add_alternative(str(post["Html-part"]), subtype="html")
    types = _mailjet_part_types(post.get("Parts"))
    index = 1
    while f"Attachment{index}" in post:
        key = f"Attachment{index}"
        try:
            content = base64.b64decode(str(post[key]), validate=False)
        except ValueError as exc:
            raise ValueError(f"{key} is not base64") from exc
        content_type, filename = types.get(key, ("application/octet-stream", key))
        maintype, _, subtype = content_type.partition("/")
        msg.add_attachment(
            content, maintype=maintype, subtype=subtype or "octet-stream", filename=filename
        )
        index += 1
    return msg.as_bytes()


def _mailjet_part_types(parts: object) -> dict[str, tuple[str, str]]:
    found: dict[str, tuple[str, str]] = {}
    for part in parts if isinstance(parts, list) else []:
        if not isinstance(part, dict) or not isinstance(part.get("Headers"), dict):
            continue
        ref = str(part.get("ContentRef", ""))
        headers = {k.lower(): str(v) for k, v in part["Headers"].items()}
        content_type = headers.get("content-type", "application/octet-stream")
        parser = HeaderParser().parsestr(
            f"Content-Type: {content_type}\nContent-Disposition: "
            f"{headers.get('content-disposition', 'attachment')}\n\n"
        )
        filename = parser.get_filename() or parser.get_param("name") or ref
        found[ref] = (parser.get_content_type(), str(filename))
    return found
