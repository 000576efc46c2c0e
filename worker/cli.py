"""The `recruitmail` command line."""

from __future__ import annotations

import json
import logging
import signal
import threading
from collections.abc import Callable
from typing import Annotated

import typer
from pydantic import ValidationError
from sqlmodel import Session

from core.settings import Settings, get_settings

app = typer.Typer(
    help="Recruitmail: the email layer of a recruiting platform.", no_args_is_help=True
)
db_app = typer.Typer(help="Database migrations.", no_args_is_help=True)
company_app = typer.Typer(help="Companies and their admins.", no_args_is_help=True)
keys_app = typer.Typer(help="Encryption keys.", no_args_is_help=True)
operator_app = typer.Typer(help="Platform operators.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(company_app, name="company")
app.add_typer(keys_app, name="keys")
app.add_typer(operator_app, name="operator")


def _logging() -> None:
    from core.logs import configure_logging

    configure_logging(_settings())


def _settings() -> Settings:
    """The settings, or one sentence per wrong one and exit code 2 (never a stack trace)."""
    try:
        return get_settings()
    except ValidationError as exc:
        for error in exc.errors():
            field = ".".join(str(p) for p in error["loc"]) or "settings"
            typer.echo(f"recruitmail: RECRUITMAIL_{field.upper()}: {error['msg']}", err=True)
        raise typer.Exit(2) from None


def _serve(run: Callable[[Settings], None], process: str) -> None:
    """Run a long-lived process; a Temporal connection that cannot work is one sentence."""
    from core.temporal import (
        TemporalSettingsError,
        TemporalTlsRefused,
        TemporalUnreachable,
        tls_config,
    )
    from core.tracing import configure_tracing

    settings = _settings()
    _logging()
    configure_tracing(settings, process)
    try:
        tls_config(settings)  # a wrong TLS setting fails now, not at the first request
        run(settings)
    except (TemporalSettingsError, TemporalTlsRefused, TemporalUnreachable) as exc:
        typer.echo(f"recruitmail: {exc}", err=True)
        raise typer.Exit(2) from None


@app.command()
def dev() -> None:
    """Start the whole stack (Temporal, worker, API, dev outbox) with SQLite."""
    from worker.dev import main

    raise typer.Exit(main(_settings()))


@app.command()
def api() -> None:
    """Run the HTTP API under uvicorn."""
    import uvicorn

    def run(settings: Settings) -> None:
        uvicorn.run(
            "api.app:create_app",
            factory=True,
            host=settings.api_host,
            port=settings.api_port,
            log_config=None,  # our handlers: JSON in production, redacted, with request ids
        )

    _serve(run, "api")


@app.command()
def worker(
    processes: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=64,
            help="worker processes under one parent that restarts a crashed one "
            "(default: RECRUITMAIL_WORKER_PROCESSES, 1); about one per core",
        ),
    ] = None,
) -> None:
    """Run a Temporal worker on the task queue (or several, with --processes)."""
    count = processes or _settings().worker_processes
    if count > 1:
        from worker.processes import run_processes

        _logging()
        raise typer.Exit(run_processes(_settings(), count))
    from worker.main import main

    _serve(main, "worker")


@app.command("inbound-smtp")
def inbound_smtp() -> None:
    """Run the inbound SMTP receiver for the hosted domain."""
    from worker.inbound_smtp import main

    _serve(main, "inbound-smtp")


@app.command("dev-outbox", hidden=True)
def dev_outbox() -> None:
    """Run the development SMTP sink that captures platform mail."""
    from worker.outbox import start_outbox

    _logging()
    settings = _settings()
    controller = start_outbox(
        settings.outbox_dir, settings.dev_outbox_host, settings.dev_outbox_port
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    logging.getLogger("recruitmail.outbox").info(
        "dev outbox on %s:%s", settings.dev_outbox_host, settings.dev_outbox_port
    )
    stop.wait()
    controller.stop()


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply the migrations to RECRUITMAIL_DATABASE_URL."""
    from core.migrate import upgrade

    settings = _settings()
    upgrade(settings.effective_database_url)
    typer.echo("database is up to date")


@company_app.command("create")
def company_create(
    name: str,
    slug: Annotated[str, typer.Option(help="account slug: the hosted address is SLUG-jobs@…")],
    admin_email: Annotated[str, typer.Option(help="the first admin's email address")],
    admin_name: Annotated[str, typer.Option(help="the first admin's name")] = "Admin",
) -> None:
    """Create a company with an admin; prints JSON with the ids and the admin's token."""
    from core.bootstrap import create_company
    from core.db import make_engine

    settings = _settings()
    engine = make_engine(settings.effective_database_url)
    try:
        # The rows are read after the commit, to print them: keep them loaded.
        with Session(engine, expire_on_commit=False) as session:
            created = create_company(
                session, name=name, slug=slug, admin_email=admin_email, admin_name=admin_name
            )
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(
        json.dumps(
            {
                "company_id": str(created.company.id),
                "slug": created.company.slug,
                "hosted_address": settings.hosted_address(created.company.slug),
                "admin_user_id": str(created.admin.id),
                "admin_token": created.token,
            },
            indent=2,
        )
    )


@keys_app.command("rotate")
def keys_rotate() -> None:
    """Re-encrypt every stored secret under the newest key of RECRUITMAIL_SECRET_KEYS."""
    from core.db import make_engine
    from core.keys import rotate_secrets
    from core.security import secret_box

    settings = _settings()
    box = secret_box(settings)
    report = rotate_secrets(make_engine(settings.effective_database_url), box)
    typer.echo(
        f"re-encrypted {report.rotated} secrets under key {box.current_kid!r}; "
        f"{report.current} were already under it"
    )


@operator_app.command("create")
def operator_create(
    email: str, name: Annotated[str, typer.Option(help="display name")] = "Operator"
) -> None:
    """Create an operator (codec endpoints, operations); prints the token once."""
    from core.bootstrap import create_operator
    from core.db import make_engine

    settings = _settings()
    with Session(make_engine(settings.effective_database_url), expire_on_commit=False) as session:
        try:
            user, token = create_operator(session, email=email, name=name)
        except ValueError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from exc
    typer.echo(json.dumps({"operator_user_id": str(user.id), "operator_token": token}, indent=2))


if __name__ == "__main__":
    app()
