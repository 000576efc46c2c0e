"""The structure the design promises, checked: imports go one way, activities and workflows
meet only in the contracts, workflows stay light and call activities by typed reference, every
activity a workflow calls is registered under its contract's name, and every activity takes
one dataclass input."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import re
import sys
import typing
from pathlib import Path

import pytest
from temporalio import activity

import providers
from core.settings import Settings
from tests.helpers import test_settings as settings_for
from worker.main import WORKFLOWS, activities

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("api", "contracts", "workflows", "activities", "providers", "worker", "core")

# What each package may import from the others (its own modules always).
ALLOWED = {
    # The API starts, updates and queries runs through the Temporal client: it uses the
    # contracts (inputs, names), the workflow classes for their typed handlers, and
    # api/runs.py; never an activity or provider.
    "api": {"core", "contracts", "workflows"},
    # The worker's processes (the receiver, the sweeper) start runs through api/runs.py too,
    # and nothing else of the API (EXCEPT below).
    "worker": {"core", "contracts", "workflows", "activities"},
    # Activities implement the contracts; they never import a workflow module.
    "activities": {"core", "contracts", "providers"},
    "providers": {"core"},
    "core": set(),
    "contracts": set(),
    "workflows": {"core", "contracts"},
}
# Workflow modules run in Temporal's sandbox: only these light core modules, and nothing of
# the heavy libraries.
WORKFLOW_CORE_MODULES = {"core.statuses", "core.search_attributes", "core.run_ids"}
HEAVY = {"sqlmodel", "sqlalchemy", "fastapi", "aiosmtplib", "aiosmtpd", "httpx", "msal", "google"}


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def _module_name(path: Path) -> str:
    """workflows/connections/oauth.py → workflows.connections.oauth"""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside functions."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


# Single modules allowed beyond ALLOWED: starting runs is the API's (api/runs.py), and the
# receiver and the sweeper start runs the same way.
EXCEPT = {"worker": {"api.runs"}}


def _violations(package: str) -> list[str]:
    wrong = []
    for path in _modules(package):
        for name in _imports(path):
            top = name.split(".")[0]
            if name in EXCEPT.get(package, ()):
                continue
            if top in PACKAGES and top != package and top not in ALLOWED[package]:
                wrong.append(f"{path.relative_to(ROOT)} imports {name}")
    return wrong


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_go_one_way(package):
    assert _violations(package) == []


def test_the_rule_catches_a_wrong_import(tmp_path, monkeypatch):
    """The check above would fail: an API module importing an activity is reported."""
    fake_root = tmp_path
    (fake_root / "api").mkdir()
    (fake_root / "api" / "bad.py").write_text("from activities.send import SendActivities\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", fake_root)
    assert _violations("api") == ["api/bad.py imports activities.send"]


def test_workflow_modules_import_only_temporalio_and_light_modules():
    for path in _modules("workflows"):
        for name in _imports(path):
            top = name.split(".")[0]
            assert top not in HEAVY, f"{path.name} imports {name}"
            if top == "core":
                assert any(name.startswith(m) for m in WORKFLOW_CORE_MODULES), (
                    f"{path.name} imports {name}"
                )
            if top in PACKAGES:
                assert top in {"core", "contracts", "workflows"}, f"{path.name} imports {name}"


def test_contracts_import_only_the_standard_library_and_temporalio():
    for path in _modules("contracts"):
        for name in _imports(path):
            top = name.split(".")[0]
            assert top in sys.stdlib_module_names or top in {"temporalio", "contracts"}, (
                f"{path.name} imports {name}"
            )


def test_core_starts_no_workflow():
    for path in _modules("core"):
        tree = ast.parse(path.read_text())
        calls = [
            node.attr
            for node in ast.walk(tree)
            if isinstance(node, ast.Attribute)
            and node.attr in {"start_workflow", "execute_workflow", "signal_with_start_workflow"}
        ]
        assert calls == [], f"{path.name} starts a workflow"


def test_api_never_calls_a_provider_library():
    libraries = ("msal", "google.auth", "google_auth_oauthlib", "google.oauth2", "aiosmtplib")
    for path in _modules("api"):
        used = [n for n in _imports(path) if n.startswith(libraries)]
        assert used == [], path.name


# -- workflow wiring ---------------------------------------------------------------------

_CALLS = {
    "execute_activity_method",
    "execute_local_activity_method",
    "start_activity_method",
    "db_step",  # workflows/policies.py
    "_provider_call",  # workflows/connections/oauth.py
}
_BY_NAME = {"execute_activity", "execute_local_activity", "start_activity"}


def _called_activities() -> dict[str, str]:
    """Activity name → the workflow module that calls it, read from the calls' first argument,
    which must be a contract's method (`SendContract.deliver_message`): a string name would
    leave the argument and result unchecked."""
    called: dict[str, str] = {}
    for path in _modules("workflows"):
        module = importlib.import_module(_module_name(path))
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            assert name not in _BY_NAME, f"{path.name}:{node.lineno}: {name} by name"
            if name not in _CALLS:
                continue
            first = node.args[0]
            if isinstance(first, ast.Name) and not hasattr(module, first.id):
                continue  # a helper (db_step, _provider_call) passing its caller's reference on
            assert isinstance(first, ast.Attribute) and isinstance(first.value, ast.Name), (
                f"{path.name}:{node.lineno}: activities are called by a contract's method"
            )
            contract = getattr(module, first.value.id)
            assert contract.__module__.startswith("contracts."), f"{path.name}:{node.lineno}"
            stub = getattr(contract, first.attr)
            called[activity._Definition.must_from_callable(stub).name] = path.name
    return called


def _registered(settings: Settings, engine) -> dict[str, typing.Callable]:
    return {
        activity._Definition.must_from_callable(fn).name: fn for fn in activities(settings, engine)
    }


def test_every_called_activity_is_registered(tmp_path, engine):
    called = _called_activities()
    registered = _registered(settings_for(tmp_path), engine)
    assert len(called) >= 12
    missing = {name: where for name, where in called.items() if name not in registered}
    assert missing == {}


def test_every_activity_implements_its_contract_under_the_same_name(tmp_path, engine):
    registered = _registered(settings_for(tmp_path), engine)
    stubs = {}
    for path in _modules("contracts"):
        module = importlib.import_module(_module_name(path))
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != module.__name__:
                continue
            for attr, fn in vars(cls).items():
                if callable(fn) and hasattr(fn, "__temporal_activity_definition"):
                    stubs[activity._Definition.must_from_callable(fn).name] = (cls, attr)
    assert set(stubs) == set(registered)
    for name, (contract, attr) in stubs.items():
        implementation = registered[name]
        owner = type(getattr(implementation, "__self__", None))
        assert issubclass(owner, contract), f"{name}: {owner.__name__} is not a {contract.__name__}"
        assert implementation.__name__ == attr, f"{name}: {implementation.__name__} != {attr}"


def test_every_activity_takes_one_dataclass(tmp_path, engine):
    for name, fn in _registered(settings_for(tmp_path), engine).items():
        parameters = list(inspect.signature(fn).parameters.values())
        assert len(parameters) == 1, f"{name} takes {len(parameters)} arguments"
        hint = typing.get_type_hints(fn)[parameters[0].name]
        assert dataclasses.is_dataclass(hint), f"{name} takes {hint}, not a dataclass"


def test_every_workflow_module_is_on_the_worker():
    defined = set()
    for path in _modules("workflows"):
        module = importlib.import_module(_module_name(path))
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == module.__name__ and hasattr(cls, "__temporal_workflow_definition"):
                defined.add(cls)
    assert defined == set(WORKFLOWS)


# -- providers ---------------------------------------------------------------------------


def test_every_provider_is_found_by_its_kind():
    found = providers.registry()
    assert set(found) == {"smtp", "google", "microsoft", "dev_outbox", "smtp_relay", "mailjet"}
    for kind, cls in found.items():
        assert cls.kind == kind and cls.label
    assert {k for k, cls in found.items() if cls.platform} == {
        "dev_outbox",
        "smtp_relay",
        "mailjet",
    }


def test_an_unknown_kind_is_a_configuration_error(tmp_path):
    from core.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="known: dev_outbox"):
        providers.provider("sendgrid", settings_for(tmp_path))


def test_the_documented_provider_example_is_one_module_away(tmp_path, monkeypatch):
    """The "Adding a mail provider" block of docs/development.md, saved as a module beside the
    others, is found by kind and chosen as the platform transport, with nothing else changed."""
    from core.errors import ConfigurationError

    guide = (ROOT / "docs" / "development.md").read_text()
    block = guide.split("# providers/sendgrid.py\n", 1)[1].split("```", 1)[0]
    (tmp_path / "sendgrid.py").write_text(block)
    monkeypatch.setattr(providers, "__path__", [*providers.__path__, str(tmp_path)])
    providers.registry.cache_clear()
    try:
        settings = settings_for(tmp_path, platform_transport="sendgrid")
        with pytest.raises(ConfigurationError, match="SENDGRID_API_KEY"):
            providers.platform_provider(settings).platform_account()
        monkeypatch.setenv("RECRUITMAIL_SENDGRID_API_KEY", "sg-test")
        found = providers.platform_provider(settings)
        assert (found.kind, found.label) == ("sendgrid", "SendGrid")
        assert found.platform_account().address == ""
    finally:
        sys.modules.pop("providers.sendgrid", None)
        providers.registry.cache_clear()


# -- the README --------------------------------------------------------------------------


def test_the_readme_is_short_lists_every_setting_and_links_what_exists():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 300  # a page: the settings table is most of it
    table = readme.split("## Settings", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", table))
    missing = [name.upper() for name in Settings.model_fields if name.upper() not in listed]
    assert missing == [], f"settings missing from the README's table: {missing}"
    for link in re.findall(r"\]\((docs/[^)#]+)\)", readme):
        assert (ROOT / link).exists(), link
