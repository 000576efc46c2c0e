"""The merge fields' values for one candidate, and the template variant they get.

Recruitmail's own facts (the candidate, the company, the sender) come first; what the platform
passes in `data` fills the rest (`job.title`, or any field of its own) and stands in for a fact
Recruitmail does not have (a candidate stored without a name)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_time, get_timezone_name


def split_name(name: str) -> tuple[str, str]:
    """First and last name from one name field ("Ada King Lovelace": "Ada", "King Lovelace");
    a single word is a first name only."""
    words = name.split()
    if not words:
        return "", ""
    return words[0], " ".join(words[1:])


def _merge(ours: Mapping[str, Any], theirs: Mapping[str, Any]) -> dict[str, Any]:
    merged: dict[str, Any] = dict(theirs)
    for key, value in ours.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(value, merged[key])
        elif value not in (None, "") or key not in merged:
            merged[key] = value
    return merged


def locale_for(language: str | None) -> Locale:
    if language:
        try:
            return Locale.parse(language.replace("-", "_"))
        except (UnknownLocaleError, ValueError):
            pass
    return Locale.parse("en")


def zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def format_when(when: datetime, language: str | None, timezone: str | None) -> str:
    """An interview's start in the candidate's language and time zone: "Tuesday, 8 December
    2026, 14:00 (Central European Time)" / "Dienstag, 8. Dezember 2026, 14:00 (…)"."""
    tz = zone(timezone)
    locale = locale_for(language)
    local = when.astimezone(tz)
    day = format_date(local.date(), "full", locale=locale)
    time = format_time(local, "short", tzinfo=tz, locale=locale)
    return f"{day}, {time} ({get_timezone_name(local, locale=locale)})"


def values_for(
    *,
    candidate_name: str,
    company_name: str,
    sender_name: str,
    sender_title: str | None = None,
    language: str | None = None,
    timezone: str | None = None,
    interview: Mapping[str, Any] | None = None,
    data: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    first, last = split_name(candidate_name)
    ours: dict[str, Any] = {
        "candidate": {"name": candidate_name.strip(), "first_name": first, "last_name": last},
        "company": {"name": company_name},
        "sender": {"name": sender_name, "title": sender_title or ""},
    }
    if interview:
        start = interview.get("start")
        zone_name = timezone or interview.get("timezone")
        ours["interview"] = {
            "start": format_when(start, language, zone_name) if isinstance(start, datetime) else "",
            "location": interview.get("location") or interview.get("online_url") or "",
        }
    return _merge(ours, data or {})


def choose_variant(
    variants: Sequence[Mapping[str, Any]], language: str | None, default: str | None
) -> Mapping[str, Any]:
    """The candidate's language, then the company's default language, then the first variant.
    A language matches exactly (case aside), else by its primary subtag ("de-AT" takes "de",
    "de" takes "de-DE")."""
    for wanted in (language, default):
        if not wanted:
            continue
        wanted = wanted.lower()
        for variant in variants:
            if str(variant["language"]).lower() == wanted:
                return variant
        primary = wanted.split("-")[0]
        for variant in variants:
            if str(variant["language"]).lower().split("-")[0] == primary:
                return variant
    return variants[0]
