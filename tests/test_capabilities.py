"""One word per capability, the same in every layer, and the layering rules inside them:
activities that do not borrow from each other, routers that run no SQL, services that never
speak HTTP, and a message's status that moves in one module (docs/architecture.md).

Each rule is read from the source with `ast`, so it holds for code that is never run by a
test; each has a counter-case below showing it would fail."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Each capability's word, and the layers it has. The API's layers only where people reach the
# capability through the API (notify has no routes: it only mails recruiters).
WORKFLOW_LAYERS = ("contracts", "workflows", "activities", "core")
API_LAYERS = ("api/services", "api/routers")
CAPABILITIES: dict[str, tuple[str, ...]] = {
    "send": WORKFLOW_LAYERS + API_LAYERS,
    "bulk": WORKFLOW_LAYERS + API_LAYERS,
    "inbound": WORKFLOW_LAYERS + API_LAYERS,
    "inbound_paths": WORKFLOW_LAYERS + API_LAYERS,
    "connections": WORKFLOW_LAYERS + API_LAYERS,
    "privacy": WORKFLOW_LAYERS + API_LAYERS,
    "webhooks": WORKFLOW_LAYERS + API_LAYERS,
    "deliverability": WORKFLOW_LAYERS + API_LAYERS,
    "notify": WORKFLOW_LAYERS,
    "templates": ("core", *API_LAYERS),
    "attachments": ("core", *API_LAYERS),
}
# Modules in a workflow layer that are no capability: shared by all of them.
SHARED = {
    "workflows": {"policies"},
    "activities": {"common", "accounts"},
}


def _has(root: Path, layer: str, word: str) -> bool:
    """`layer/word.py`, or a package `layer/word/`."""
    return (root / layer / f"{word}.py").is_file() or (
        root / layer / word / "__init__.py"
    ).is_file()


def _names(root: Path, layer: str) -> set[str]:
    """The capability words a workflow layer holds: its modules and packages."""
    found = set()
    for path in (root / layer).iterdir():
        if path.name.startswith("_"):
            continue
        if path.suffix == ".py" or (path / "__init__.py").is_file():
            found.add(path.stem)
    return found - SHARED.get(layer, set())


def _naming_problems(root: Path) -> list[str]:
    problems = [
        f"{word}: no {layer}/{word}"
        for word, layers in CAPABILITIES.items()
        for layer in layers
        if not _has(root, layer, word)
    ]
    # Every contract has its workflow, activities and domain module under the same word, and
    # no workflow or activity module goes by a word that has no contract.
    for layer in ("workflows", "activities"):
        for word in sorted(_names(root, layer) - _names(root, "contracts")):
            problems.append(f"{layer}/{word}: no contract of that name")
    for word in sorted(_names(root, "contracts")):
        problems += [
            f"contracts/{word}: no {layer}/{word}"
            for layer in ("workflows", "activities", "core")
            if not _has(root, layer, word)
        ]
    return problems


def test_every_capability_has_one_word_in_every_layer():
    assert _naming_problems(ROOT) == []


def test_the_naming_rule_catches_a_second_word(tmp_path):
    for layer in ("contracts", "workflows", "activities", "core", "api/services", "api/routers"):
        (tmp_path / layer).mkdir(parents=True)
        for word, layers in CAPABILITIES.items():
            if layer in layers:
                (tmp_path / layer / f"{word}.py").write_text("")
    assert _naming_problems(tmp_path) == []
    (tmp_path / "workflows" / "receive_message.py").write_text("")  # the old second name
    (tmp_path / "contracts" / "send.py").unlink()
    assert _naming_problems(tmp_path) == [
        "send: no contracts/send",
        "workflows/receive_message: no contract of that name",
        "workflows/send: no contract of that name",
        "activities/send: no contract of that name",
    ]


# -- the layers inside a capability ----------------------------------------------------------


def _modules(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def _imports(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
            found += [f"{node.module}.{alias.name}" for alias in node.names]
    return found


def _borrowed_activities(path: Path, source: str) -> list[str]:
    """The other activity modules (by capability) that an activity module imports."""
    own = path.relative_to(ROOT).parts[1].removesuffix(".py")  # its capability's word
    borrowed = {
        name.split(".")[1] for name in _imports(ast.parse(source)) if name.startswith("activities.")
    }
    return sorted(borrowed - {"common", "accounts", own})


def test_no_activity_imports_another():
    """An activity loads, calls core or a provider, and records; what two capabilities share
    is in core/ (or the shared activities/common.py and activities/accounts.py)."""
    wrong = {
        str(path.relative_to(ROOT)): borrowed
        for path in _modules("activities")
        if (borrowed := _borrowed_activities(path, path.read_text()))
    }
    assert wrong == {}


def test_the_activity_rule_catches_a_borrowed_class():
    bulk = ROOT / "activities" / "bulk.py"
    oauth = ROOT / "activities" / "connections" / "oauth.py"
    assert _borrowed_activities(bulk, "from activities.send import SendActivities\n") == ["send"]
    assert _borrowed_activities(bulk, "from activities.common import heartbeating\n") == []
    assert _borrowed_activities(oauth, "from activities.connections.setup import X\n") == []


_SQL_CALLS = {"exec", "execute", "commit", "add", "refresh", "flush", "scalar", "scalars"}
_SQL_MODULES = ("sqlalchemy", "sqlmodel", "core.db")


def _sql_in(source: str) -> list[str]:
    """SQL run by the module itself: the database libraries imported, a Session opened, or a
    session's methods called."""
    tree = ast.parse(source)
    found = [name for name in _imports(tree) if name.startswith(_SQL_MODULES)]
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id in {"Session", "session_scope"}:
            found.append(f"{func.id}() at line {node.lineno}")
        if isinstance(func, ast.Attribute) and func.attr in _SQL_CALLS:
            owner = func.value
            name = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", "")
            if name in {"session", "engine", "connection"}:
                found.append(f"{name}.{func.attr}() at line {node.lineno}")
    return found


def test_no_router_runs_sql():
    """Routers parse, call a service, answer; the services hold the queries."""
    wrong = {
        path.name: found for path in _modules("api/routers") if (found := _sql_in(path.read_text()))
    }
    assert wrong == {}


def test_the_sql_rule_catches_a_query_in_a_router():
    assert _sql_in("def f(session):\n    return session.exec(query).all()\n") == [
        "session.exec() at line 2"
    ]
    assert _sql_in("from sqlmodel import select\n") == ["sqlmodel", "sqlmodel.select"]
    assert _sql_in("def f(user):\n    return service.read(session, user)\n") == []


def _speaks_http(source: str) -> list[str]:
    """A service that raises (or builds) HTTPException, or imports a router."""
    tree = ast.parse(source)
    found = [
        name
        for name in _imports(tree)
        if name.startswith("api.routers") or name.endswith("HTTPException")
    ]
    found += [
        f"HTTPException at line {node.lineno}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Name) and node.id == "HTTPException"
    ]
    return found


def test_services_never_speak_http():
    """Services raise the domain's errors (core/errors.py: Refused, NotFound, Conflict,
    TooLarge, StillRunning); api/errors.py maps each to its status once."""
    wrong = {
        path.name: found
        for path in _modules("api/services")
        if (found := _speaks_http(path.read_text()))
    }
    assert wrong == {}


def test_the_http_rule_catches_a_service_that_raises_http():
    source = "from fastapi import HTTPException\nraise HTTPException(409, 'no')\n"
    assert _speaks_http(source) == ["fastapi.HTTPException", "HTTPException at line 2"]
    assert _speaks_http("from api.routers.common import get_owned\n") == [
        "api.routers.common",
        "api.routers.common.get_owned",
    ]
    assert _speaks_http("from core.errors import Conflict\nraise Conflict('no')\n") == []


# -- one place moves a message's status -------------------------------------------------------

# A message is created with one of these; every other status is set by the lifecycle.
_INITIAL = {"QUEUED", "SCHEDULED", "RECEIVED"}
LIFECYCLE = ROOT / "core" / "send" / "lifecycle.py"


def _status_of(node: ast.AST) -> str | None:
    """`MessageStatus.X` or `MessageStatus.X.value` → "X"."""
    if isinstance(node, ast.Attribute) and node.attr == "value":
        node = node.value
    if (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "MessageStatus"
    ):
        return node.attr
    return None


def _status_moves(source: str) -> list[str]:
    """Where a module sets a message's status: `x.status = MessageStatus.X`, `.values(status=
    MessageStatus.X)`, or `{"status": MessageStatus.X}`; creating one queued, scheduled or
    received is not a move."""
    moves = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                status = _status_of(node.value)
                if isinstance(target, ast.Attribute) and target.attr == "status" and status:
                    moves.append(f"line {node.lineno}: .status = {status}")
        elif isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else ""
            for keyword in node.keywords:
                status = _status_of(keyword.value)
                if keyword.arg == "status" and status and name == "values":
                    moves.append(f"line {node.lineno}: values(status={status})")
        elif isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                status = _status_of(value)
                if isinstance(key, ast.Constant) and key.value == "status" and status:
                    if status not in _INITIAL:
                        moves.append(f"line {node.lineno}: status {status}")
    return moves


def test_a_message_status_moves_only_in_the_lifecycle():
    """core/send/lifecycle.py is the one place that moves a message between statuses and
    writes its event; everything else asks it."""
    wrong = {
        str(path.relative_to(ROOT)): moves
        for path in _modules("api", "activities", "core", "providers", "worker", "workflows")
        if path != LIFECYCLE and (moves := _status_moves(path.read_text()))
    }
    assert wrong == {}
    assert _status_moves(LIFECYCLE.read_text())  # and it does move them


@pytest.mark.parametrize(
    ("source", "found"),
    [
        ("message.status = MessageStatus.SENT\n", ["line 1: .status = SENT"]),
        (
            "update(Message).values(status=MessageStatus.CANCELLED)\n",
            ["line 1: values(status=CANCELLED)"],
        ),
        ('rows = [{"status": MessageStatus.SKIPPED.value}]\n', ["line 1: status SKIPPED"]),
        ('rows = [{"status": MessageStatus.QUEUED.value}]\n', []),  # created queued
        ("Message(status=MessageStatus.RECEIVED)\n", []),  # created received
    ],
)
def test_the_lifecycle_rule_catches_a_status_set_elsewhere(source, found):
    assert _status_moves(source) == found


# -- the docs name files that exist -------------------------------------------------------------

# Paths the docs show as examples of what a reader would write.
EXAMPLES = {"providers/sendgrid.py", "tests/test_x.py"}
_PATH = (
    r"(?<![\w/.-])((?:api|core|workflows|activities|contracts|providers|worker|tests|bench|docs)"
    r"/[\w/.-]*\.(?:py|md|json|csv))"
)


def _missing_paths(root: Path) -> list[str]:
    import re

    missing = []
    for doc in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
        for path in re.findall(_PATH, doc.read_text()):
            if path not in EXAMPLES and not (root / path).exists():
                missing.append(f"{doc.relative_to(root)}: {path}")
    return missing


def test_the_docs_name_only_files_that_exist():
    assert _missing_paths(ROOT) == []


def test_the_docs_rule_catches_a_moved_file(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text("See `workflows/client.py` and docs/x.md.\n")
    (tmp_path / "docs" / "x.md").write_text("`core/intake.py` stores mail.\n")
    assert _missing_paths(tmp_path) == [
        "README.md: workflows/client.py",
        "docs/x.md: core/intake.py",
    ]
