"""The merge fields' grammar, in stored templates and in sends: `{{ candidate.first_name }}`,
with a fallback `{{ candidate.first_name | default("there") }}`.

The grammar is deliberately small, so an admin can read every template and nothing in one can
reach Python: text, `{# comments #}` and `{{ … }}` holding one field (a dotted name), optionally
followed by filters from a short list (`default("…")`, `upper`, `lower`, `title`, `capitalize`,
`trim`). Statements (`{% … %}`), calls, indexing, operators and any other expression are refused
when the template is saved, with the place named. The parsed template is then rendered by
Jinja2's immutable sandbox as well (defence in depth), with autoescape for HTML and line breaks
folded in a subject.

A field without a fallback that is missing or empty refuses the send (`MissingFields`, naming
each): nothing ever goes out as "Dear ,".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jinja2 import TemplateSyntaxError, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

# The documented fields; the platform may pass others in `data` (a send's or a preview's).
FIELDS = (
    "candidate.first_name",
    "candidate.last_name",
    "candidate.name",
    "job.title",
    "company.name",
    "sender.name",
    "sender.title",
    "interview.start",
    "interview.location",
)
# Recruitmail's own namespaces: only the documented fields. Any other (job, offer, …) is the
# platform's, filled from `data`.
RESERVED = ("candidate", "company", "sender", "interview")
FILTERS = ("default", "upper", "lower", "title", "capitalize", "trim")
# A template's text is bounded by the request limits; a field's value is bounded here.
MAX_VALUE_CHARS = 2_000


class TemplateError(ValueError):
    """A template outside the grammar: the message names where and what to write instead."""


class MissingFields(ValueError):
    """Fields a template needs that are missing or empty, and have no fallback."""

    def __init__(self, fields: list[str]) -> None:
        self.fields = fields
        names = ", ".join("{{ " + f + " }}" for f in fields)
        super().__init__(
            f"empty for this candidate, with no fallback: {names}. Fill it in, pass it in "
            f'"data", or give the template a fallback: {{{{ {fields[0]} | default("…") }}}}'
        )


@dataclass(frozen=True)
class _Use:
    path: str
    has_default: bool


class _Env(ImmutableSandboxedEnvironment):
    """No attribute of any Python object is reachable: values are plain dicts of strings, and
    a dotted name reads dict keys only (the grammar check already refused anything else)."""

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        return False

    def is_safe_callable(self, obj: Any) -> bool:
        return False

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, Mapping):
            return obj.get(attribute, self.undefined(name=attribute))
        return self.undefined(name=attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        return self.getattr(obj, str(argument))


def _default(value: Any, fallback: str = "") -> Any:
    """An empty value takes the fallback as a missing one does."""
    from jinja2 import Undefined

    if isinstance(value, Undefined) or value is None or not str(value).strip():
        return fallback
    return value


def _text(change: Any) -> Any:
    """A text filter that lets a missing value through as missing, so a fallback after it
    (`{{ job.title | upper | default("x") }}`) still applies."""
    from jinja2 import Undefined

    def apply(value: Any) -> Any:
        return value if isinstance(value, Undefined) or value is None else change(str(value))

    return apply


def _env(autoescape: bool) -> _Env:
    env = _Env(autoescape=autoescape, keep_trailing_newline=True)
    env.globals.clear()
    env.tests.clear()
    env.filters = {
        "default": _default,
        "upper": _text(str.upper),
        "lower": _text(str.lower),
        "title": _text(str.title),
        "capitalize": _text(str.capitalize),
        "trim": _text(str.strip),
    }
    return env


_TEXT = _env(autoescape=False)
_HTML = _env(autoescape=True)


def _path(node: nodes.Node) -> str | None:
    if isinstance(node, nodes.Name):
        return node.name
    if isinstance(node, nodes.Getattr):
        head = _path(node.node)
        return f"{head}.{node.attr}" if head else None
    return None


def _expression(node: nodes.Expr, where: str) -> _Use:
    has_default = False
    while isinstance(node, nodes.Filter):
        if node.name not in FILTERS:
            raise TemplateError(
                f"{where}: the filter '{node.name}' is not available; use " + ", ".join(FILTERS)
            )
        if node.kwargs or node.dyn_args or node.dyn_kwargs:
            raise TemplateError(f'{where}: write a fallback as default("text")')
        if node.name == "default":
            if (
                len(node.args) != 1
                or not isinstance(node.args[0], nodes.Const)
                or not isinstance(node.args[0].value, str)
            ):
                raise TemplateError(f'{where}: a fallback is a quoted text: default("there")')
            has_default = True
        elif node.args:
            raise TemplateError(f"{where}: the filter '{node.name}' takes no arguments")
        assert node.node is not None
        node = node.node
    path = _path(node)
    if path is None or "." not in path or any(p.startswith("_") for p in path.split(".")):
        raise TemplateError(
            f"{where}: only a field such as {{{{ candidate.first_name }}}} can go between "
            "{{ and }} (no calls, indexes or operators)"
        )
    head = path.split(".")[0]
    if head in RESERVED and path not in FIELDS:
        known = ", ".join(f.split(".", 1)[1] for f in FIELDS if f.startswith(head + "."))
        raise TemplateError(f"{where}: {{{{ {path} }}}} is not a field; {head} has {known}")
    return _Use(path, has_default)


@lru_cache(maxsize=512)
def _compile(source: str, field: str) -> tuple[tuple[_Use, ...], Any, Any]:
    try:
        tree = _TEXT.parse(source)
    except TemplateSyntaxError as exc:
        raise TemplateError(f"{field}: line {exc.lineno}: {exc.message}") from None
    uses: list[_Use] = []
    for child in tree.body:
        if not isinstance(child, nodes.Output):
            raise TemplateError(
                f"{field}: line {child.lineno}: only {{{{ field }}}} and "
                '{{ field | default("…") }} are supported (no {% … %} statements)'
            )
        for part in child.nodes:
            if isinstance(part, nodes.TemplateData):
                continue
            uses.append(_expression(part, f"{field}: line {part.lineno}"))
    return tuple(uses), _TEXT.from_string(tree), _HTML.from_string(tree)


def check(field: str, source: str) -> list[str]:
    """The fields `source` uses; TemplateError names the first thing outside the grammar."""
    uses, _, _ = _compile(source, field)
    return [u.path for u in uses]


def _lookup(values: Mapping[str, Any], path: str) -> Any:
    node: Any = values
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def missing(sources: Iterable[tuple[str, str | None]], values: Mapping[str, Any]) -> list[str]:
    """The fields without a fallback that are missing or empty, in the order first used."""
    gaps: dict[str, None] = {}
    for field, source in sources:
        if source is None:
            continue
        uses, _, _ = _compile(source, field)
        for use in uses:
            if use.has_default:
                continue
            value = _lookup(values, use.path)
            if value is None or isinstance(value, Mapping) or not str(value).strip():
                gaps[use.path] = None
    return list(gaps)


def _flat(values: Mapping[str, Any], header: bool) -> dict[str, Any]:
    """Values as dicts of strings, bounded; in a header, no line breaks (no header injection)."""

    def clean(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {str(k): clean(v) for k, v in value.items()}
        if value is None:
            return None
        text = str(value)[:MAX_VALUE_CHARS]
        return " ".join(text.split()) if header else text

    return {str(k): clean(v) for k, v in values.items()}


@dataclass(frozen=True)
class Rendered:
    subject: str | None
    text: str | None
    html: str | None


def render(
    subject: str | None, text: str | None, html: str | None, values: Mapping[str, Any]
) -> Rendered:
    """The parts given, rendered (None stays None); MissingFields names every field without a
    fallback that is empty, in any part, before anything is rendered."""
    gaps = missing((("subject", subject), ("text", text), ("html", html)), values)
    if gaps:
        raise MissingFields(gaps)
    body_values = _flat(values, header=False)
    out: dict[str, str | None] = {"subject": None, "text": None, "html": None}
    if subject is not None:
        _, subject_t, _ = _compile(subject, "subject")
        out["subject"] = " ".join(subject_t.render(_flat(values, header=True)).split())
    if text is not None:
        out["text"] = _compile(text, "text")[1].render(body_values)
    if html is not None:
        out["html"] = _compile(html, "html")[2].render(body_values)
    return Rendered(**out)
