"""Mail providers: one module each, behind one interface (`providers.base`), found by kind.

Every module in this package that defines a `MailProvider` subclass with a `kind` registers
it by being here: adding a provider is adding one module. Only activities use providers.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from functools import cache

from core.errors import ConfigurationError
from core.settings import Settings
from providers.base import MailProvider, OAuthProvider


@cache
def registry() -> dict[str, type[MailProvider]]:
    """Every provider class of this package, by kind."""
    found: dict[str, type[MailProvider]] = {}
    for module_info in pkgutil.iter_modules(__path__):
        if module_info.name.startswith("_") or module_info.name == "base":
            continue
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if (
                issubclass(cls, MailProvider)
                and cls.__module__ == module.__name__
                and not inspect.isabstract(cls)
                and getattr(cls, "kind", None)
            ):
                if cls.kind in found and found[cls.kind] is not cls:
                    raise RuntimeError(f"two providers claim the kind {cls.kind!r}")
                found[cls.kind] = cls
    return found


def provider(kind: str, settings: Settings) -> MailProvider:
    cls = registry().get(kind)
    if cls is None:
        known = ", ".join(sorted(registry()))
        raise ConfigurationError(f"No mail provider of kind {kind!r} (known: {known}).")
    return cls(settings)


def oauth_provider(kind: str, settings: Settings) -> OAuthProvider:
    found = provider(kind, settings)
    if not isinstance(found, OAuthProvider):
        raise ConfigurationError(f"{found.label} is not connected by signing in.")
    return found


def platform_provider(settings: Settings) -> MailProvider:
    """The transport hosted mail goes through: RECRUITMAIL_PLATFORM_TRANSPORT."""
    # The setting says "smtp" for a relay; the kind "smtp" is a company's own SMTP connection.
    kind = "smtp_relay" if settings.platform_transport == "smtp" else settings.platform_transport
    found = provider(kind, settings)
    if not found.platform:
        raise ConfigurationError(
            f"RECRUITMAIL_PLATFORM_TRANSPORT={settings.platform_transport!r} is not a platform "
            "transport."
        )
    return found
