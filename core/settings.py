"""One settings class for every process, read from `RECRUITMAIL_*` environment variables."""

from __future__ import annotations

import base64
import ipaddress
import secrets
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode, urlsplit

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from core.resolver import Resolver, parse_nameservers
from core.webhooks import RETRY_SCHEDULE


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RECRUITMAIL_", env_file=".env", extra="ignore")

    environment: str = "development"
    state_dir: Path = Path(".recruitmail")
    database_url: str = ""  # empty means SQLite in state_dir

    # Temporal
    temporal_address: str = "localhost:7233"
    temporal_namespace: str = "default"
    # A Temporal cluster or Temporal Cloud (core/temporal.py): the server's CA, a client
    # certificate and key for mutual TLS (each a path, or the PEM itself), the name the server's
    # certificate carries if not the address's host, and a Temporal Cloud API key.
    temporal_tls_ca: str = ""
    temporal_tls_cert: str = ""
    temporal_tls_key: str = ""
    temporal_tls_server_name: str = ""
    temporal_api_key: str = ""
    # `recruitmail worker` runs this many worker processes under one parent (about one per
    # core; each uses one at most).
    worker_processes: int = Field(default=1, ge=1, le=64)
    # The worker's Temporal SDK metrics in Prometheus format on this port (0: off); with
    # several worker processes, the k-th (from 0) on this port + k.
    worker_metrics_port: int = 0
    worker_metrics_host: str = "127.0.0.1"
    # Traces over OTLP/HTTP (e.g. http://collector:4318/v1/traces); none are exported if empty.
    otlp_endpoint: str = ""
    task_queue: str = "recruitmail"
    temporal_ui_port: int = 8233

    # HTTP API
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    public_url: str = "http://localhost:8000"
    # The recruiting product's own page for a connection. "Return to Recruitmail" on every
    # page an admin sees in a browser links here, with ?connection_id=<id>. Empty: the API's
    # own status page for the connection (/setup/<id>).
    app_url: str = ""

    # The hosted address is {slug}-jobs@{platform_mail_domain}.
    platform_mail_domain: str = "jobs.recruitmail.localhost"
    # DKIM signing of the platform's mail on the SMTP relay transport (d= the platform domain):
    # the selector, and the PEM private key whose public half is published at
    # {selector}._domainkey.{platform_mail_domain}. Both empty: no signing.
    dkim_selector: str = ""
    dkim_private_key_file: Path | None = None

    # Platform transport: the dev outbox, an SMTP relay URL, or Mailjet.
    # A platform provider's kind (see providers/): dev_outbox, smtp (a relay) or mailjet.
    platform_transport: str = "dev_outbox"
    # smtp://user:pass@host:587 (STARTTLS when offered, required with credentials),
    # smtp+starttls://… (STARTTLS required), smtps://…:465 (implicit TLS).
    smtp_relay_url: str = ""
    mailjet_api_url: str = "https://api.mailjet.com"
    mailjet_api_key: str = ""
    mailjet_api_secret: str = ""
    # Extra CAs (PEM) trusted on top of the system store, for every outbound TLS connection.
    ca_bundle: Path | None = None
    smtp_timeout_seconds: float = 30.0
    # The name every outbound SMTP connection gives in EHLO. Empty: the host of public_url,
    # or, where that is not a fully qualified name, the platform mail domain. Never localhost
    # outside development: receivers refuse it (reject_non_fqdn_helo_hostname) or score it.
    smtp_helo_name: str = ""

    # Dev outbox: an SMTP sink that keeps what it receives in state_dir/outbox.
    dev_outbox_host: str = "127.0.0.1"
    dev_outbox_port: int = 1025

    # Inbound mail: the SMTP receiver for the hosted domain, and the HTTP webhooks.
    inbound_smtp_host: str = "127.0.0.1"
    inbound_smtp_port: int = 2525
    # The name the receiver gives in its greeting and EHLO answer.
    inbound_smtp_hostname: str = "mx.recruitmail.localhost"
    # Larger messages get 552; candidates' CVs fit well within 25 MB.
    inbound_max_message_bytes: int = 25 * 1024 * 1024
    # Request bodies, bounded before they are read (413 beyond): the JSON API, and the Mailjet
    # webhook, whose JSON carries the mail in base64 (so about 4/3 of the message limit).
    max_request_bytes: int = 4 * 1024 * 1024
    # POST /v1/attachments: one file (a multipart upload); and all of one message's files.
    max_attachment_bytes: int = Field(default=25 * 1024 * 1024, ge=1)
    max_message_bytes: int = Field(default=30 * 1024 * 1024, ge=1)
    max_webhook_bytes: int = 36 * 1024 * 1024
    # Offer STARTTLS when both are set (PEM files). Production should: senders then encrypt.
    inbound_tls_cert: Path | None = None
    inbound_tls_key: Path | None = None
    # The receiver holds its ground (as Postfix's smtpd_client_connection_count_limit,
    # smtpd_timeout, smtpd_junk_command_limit and smtpd_soft/hard_error_limit do). Over a
    # connection limit a client gets 421 and is closed.
    inbound_max_connections: int = 500
    inbound_max_connections_per_client: int = 50  # Postfix's smtpd_client_connection_count_limit
    # One network (an IPv4 /24, an IPv6 /64) cannot take every place either.
    inbound_max_connections_per_network: int = 100
    # Past 80% of inbound_max_connections, an idle connection is closed after this (and no
    # junk command keeps it open): idle connections cannot lock every sender out.
    inbound_stress_timeout: timedelta = timedelta(seconds=10)
    # Unknown recipients a client may try per minute, over all its connections (guessing
    # companies' addresses); beyond, 450 for every recipient until its budget refills.
    inbound_unknown_recipients_per_minute: float = 30.0
    # Idle time allowed per command (and per line inside DATA), and for a whole DATA phase.
    inbound_command_timeout: timedelta = timedelta(minutes=5)
    inbound_data_timeout: timedelta = timedelta(minutes=10)
    # NOOP, RSET, VRFY, HELP and repeated EHLO/HELO without a message accepted in between.
    inbound_junk_command_limit: int = 100
    # Refused commands per connection (an unknown recipient, a bad command): past the soft
    # limit each answer waits `inbound_error_delay`; past the hard limit, 421 and close. This
    # keeps anyone from listing companies' addresses by trying thousands of recipients.
    inbound_soft_error_limit: int = 10
    inbound_hard_error_limit: int = 20
    inbound_error_delay: timedelta = timedelta(seconds=1)
    # A message being received is kept in memory up to this size, then in a temporary file.
    inbound_spool_memory_bytes: int = 1024 * 1024
    # Shared secret of POST /inbound/raw and /inbound/mailjet (Basic auth password or Bearer).
    # Development generates one in state_dir.
    inbound_secret: str = ""
    # A closed application still receives replies by sender address for this long.
    closed_application_grace: timedelta = timedelta(days=14)
    # Check who really sent received mail (SPF, DKIM, DMARC): a From domain that asks receivers
    # to distrust failing mail gets no routing by its sender alone (core/inbound/auth.py).
    inbound_sender_auth: bool = True
    # Stored mail whose routing workflow did not start (Temporal was down) is retried this often.
    inbound_sweep_interval: timedelta = timedelta(seconds=60)

    # Sending retries: exponential backoff from the initial interval, capped per attempt,
    # given up after the total cap. A recruiter sees "failed" once the cap is reached.
    send_retry_initial_interval: timedelta = timedelta(seconds=2)
    send_retry_max_interval: timedelta = timedelta(minutes=5)
    send_retry_total: timedelta = timedelta(hours=6)
    # The undo window: every single send waits this long before its first attempt (`scheduled`)
    # and POST /v1/messages/{id}/cancel takes it back meanwhile. A company may set 5 to 30.
    undo_seconds: int = Field(default=0, ge=0, le=30)

    # Bulk sends. A batch is one activity over one reused connection; a run handles
    # `bulk_batches_per_run` batches, then continues as new to keep its history short.
    bulk_batch_size: int = 100
    bulk_batches_per_run: int = 40
    # Batches sent at once, each over its own connection (Exchange allows 4 per mailbox).
    bulk_parallel_batches: int = 4
    bulk_max_recipients: int = 5000
    # A batch whose worker stops heartbeating for this long is retried on another worker.
    bulk_heartbeat_timeout: timedelta = timedelta(seconds=30)
    # Per-mailbox throttles, shared by every job sending through the mailbox. 0 = unlimited.
    # Exchange Online suspends mailboxes sending more than 30 messages a minute.
    bulk_rate_microsoft_per_minute: float = 30
    # Soft bounces (a delivery given up after retrying) to one address within 7 days that put
    # it on the company's suppression list (core/deliverability/suppression.py).
    soft_bounce_limit: int = Field(default=3, ge=1)
    bulk_rate_google_per_minute: float = 0
    # Per rolling 24 hours (docs/deliverability.md: Google Workspace 2,000 messages and 10,000
    # recipients; Exchange Online 10,000 recipients). 0 = none.
    bulk_daily_cap_google: int = 2000
    bulk_daily_recipients_google: int = 10_000
    bulk_daily_recipients_microsoft: int = 10_000
    bulk_daily_cap_smtp: int = 0
    bulk_daily_recipients_smtp: int = 0
    bulk_daily_cap_platform: int = 0
    bulk_daily_recipients_platform: int = 0
    bulk_rate_smtp_per_minute: float = 0
    bulk_rate_platform_per_minute: float = 0

    # Custom SMTP connections. Unencrypted SMTP (security "none") only if an operator allows it.
    allow_insecure_smtp: bool = False
    # Companies' SMTP hosts must be on the internet (core/netguard.py); an operator may allow
    # loopback and private addresses, e.g. for development.
    allow_private_hosts: bool = False
    # A worker or receiver told to stop (SIGINT, SIGTERM) exits after this long at the latest,
    # even while Temporal is unreachable.
    shutdown_grace_seconds: float = 20.0
    # Workers start the runs of single sends left `queued` this long without one.
    send_sweep_interval: timedelta = timedelta(minutes=1)
    # A decode-only token for the Temporal UI's codec endpoint (`/codec/t/<token>/decode`).
    # `recruitmail dev` makes one per run; operators may use their own operator token instead.
    ui_codec_token: str = ""
    # A setup not activated in this time expires; a test answers within the bounded wait.
    connection_setup_expiry: timedelta = timedelta(days=7)
    connection_test_wait: timedelta = timedelta(seconds=90)
    # How long a connection test waits for its message to come back through the company's
    # redirect to the hosted address (ISO 8601 or seconds).
    redirect_check_wait: timedelta = timedelta(minutes=15)
    # The round trip's check message goes to the custom address's mail exchanger, found in DNS
    # (MX records). Development and tests name a domain's exchanger instead, as
    # "domain=host:port,other.example=host:port"; check messages for those domains are then
    # delivered there directly, whatever the platform transport.
    mx_overrides: str = ""
    # The host names of this platform's own inbound receivers, as a domain's MX names them
    # (comma-separated; empty: inbound_smtp_hostname). A custom address whose domain's mail
    # comes here directly is proven by a DNS record instead of a check message.
    inbound_mx_hosts: str = ""
    # How long a DNS lookup may take.
    dns_timeout_seconds: float = 5.0
    # The DNS servers every lookup asks (core/resolver.py), as "host:port,…"; empty: the
    # system's. Development and tests point it at a DNS server on loopback.
    dns_nameservers: str = ""

    # Mailbox sync (core/inbound_paths/sync.py): reading a connected Microsoft or Google mailbox for
    # replies. Each connection's run reads when the provider notifies it, and at least this
    # often (a lost notification delays a message by one poll at most).
    sync_poll_interval: timedelta = timedelta(minutes=5)
    # A sync with no success for this long is `failing` (the admins are told once).
    sync_stale_after: timedelta = timedelta(hours=1)
    # When the provider's cursor has expired (Graph 410, Gmail 404), or on a first read, read
    # the inbox of the last this many days again (imports are never duplicated).
    sync_resync_days: int = Field(default=7, ge=1, le=30)
    # Graph change notifications to {public_url}/inbound/graph/notifications (Graph needs a
    # public HTTPS URL; off: polling only).
    graph_notifications: bool = True
    # Gmail push: the Pub/Sub topic users.watch publishes to ("projects/P/topics/T"; empty:
    # polling only), the push subscription's OIDC audience (empty: the push URL,
    # {public_url}/inbound/gmail/push) and the service account that signs its tokens.
    gmail_pubsub_topic: str = ""
    gmail_push_audience: str = ""
    gmail_push_service_account: str = ""
    google_certs_url: str = "https://www.googleapis.com/oauth2/v1/certs"

    # Events: kept this long for the feed (GET /v1/events) and redelivery.
    event_retention: timedelta = timedelta(days=30)
    # Webhooks: an answer must come within this; failed deliveries are retried on this
    # schedule (comma-separated durations; the default spans over a day), and an endpoint
    # failing for `webhook_disable_after` is disabled.
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    webhook_retry_schedule: Annotated[list[timedelta], NoDecode] = Field(
        default_factory=lambda: list(RETRY_SCHEDULE)
    )
    webhook_disable_after: timedelta = timedelta(days=5)
    # Endpoints per company; delivery rounds under way at once per worker, and per company (one
    # company's dead endpoints never hold every slot: docs/hardening.md).
    webhook_max_endpoints: int = Field(default=10, ge=1, le=1000)
    webhook_concurrency: int = Field(default=16, ge=2, le=256)
    webhook_company_concurrency: int = Field(default=4, ge=1, le=256)
    # How often each worker numbers new events and wakes the runs that deliver them.
    relay_interval: timedelta = timedelta(milliseconds=500)
    # Recruiters (or admins) get an email when a candidate replies; at most one per candidate
    # in `notify_coalesce`. An operator may turn the emails off for every company.
    reply_notifications: bool = True
    notify_coalesce: timedelta = timedelta(minutes=10)

    # Privacy (docs/privacy.md): an erasure erases this many messages per step (one
    # transaction each); the retention sweep deletes as many old Unassigned messages per step.
    erase_batch_size: int = Field(default=500, ge=1, le=10_000)

    # Browser origins allowed to call the codec endpoints (the Temporal UI). Empty means the
    # local dev UI, http://localhost:{temporal_ui_port}.
    codec_cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Log format: "json" (one object per line, for production) or "text". Default: json outside
    # development.
    log_format: str = ""

    # OAuth connections. Every endpoint is a setting, so tests and on-premise proxies can point
    # them elsewhere. Redirect URIs are {public_url}/oauth/{provider}/callback and
    # {public_url}/oauth/microsoft/admin-consent.
    microsoft_client_id: str = ""
    microsoft_client_secret: str = ""
    microsoft_authority_host: str = "https://login.microsoftonline.com"
    microsoft_tenant: str = "organizations"
    microsoft_graph_url: str = "https://graph.microsoft.com"
    google_client_id: str = ""
    google_client_secret: str = ""
    google_auth_uri: str = "https://accounts.google.com/o/oauth2/auth"
    google_token_uri: str = "https://oauth2.googleapis.com/token"
    google_gmail_url: str = "https://gmail.googleapis.com"
    # Accept a Google sign-in whose mailbox may send as the custom address (a verified Gmail
    # send-as alias). Reading send-as aliases needs the gmail.settings.basic scope, which
    # Google classifies as restricted, so it is asked for only when this is on.
    google_send_as_aliases: bool = False
    # How long a setup waits for the person to sign in, and for an administrator's consent.
    oauth_signin_wait: timedelta = timedelta(hours=1)
    oauth_admin_consent_wait: timedelta = timedelta(days=30)
    oauth_http_timeout_seconds: float = 30.0

    # Secret keys as "kid:base64key" pairs, newest first. Development generates one.
    secret_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _split_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        # Durations are ISO 8601 (PT15M) or a number of seconds, "900" from the environment too.
        for name, field in cls.model_fields.items():
            value = data.get(name)
            if field.annotation is timedelta and isinstance(value, str):
                try:
                    data[name] = float(value)
                except ValueError:
                    pass
        for name in ("secret_keys", "codec_cors_origins", "webhook_retry_schedule"):
            value = data.get(name)
            if isinstance(value, str):
                data[name] = [k.strip() for k in value.split(",") if k.strip()]
        schedule = data.get("webhook_retry_schedule")
        if isinstance(schedule, list):
            data["webhook_retry_schedule"] = [_seconds_or_iso(v) for v in schedule]
        return data

    @model_validator(mode="after")
    def _check_mx_overrides(self) -> Settings:
        self.exchanger_overrides()  # a malformed value fails at start, in one sentence
        self.resolver()
        return self

    def resolver(self) -> Resolver:
        """The one resolver every lookup goes through."""
        return Resolver(tuple(parse_nameservers(self.dns_nameservers)), self.dns_timeout_seconds)

    @model_validator(mode="after")
    def _refuse_placeholders_outside_development(self) -> Settings:
        if self.is_development:
            return self
        if not _fully_qualified(self.helo_name):
            raise ValueError(
                f"The EHLO name {self.helo_name!r} is not a fully qualified host name: set "
                "RECRUITMAIL_SMTP_HELO_NAME (e.g. mail.example.com), or a RECRUITMAIL_PUBLIC_URL "
                "whose host is one"
            )
        if not self.secret_keys:
            raise ValueError("RECRUITMAIL_SECRET_KEYS must be set outside development")
        if not self.inbound_secret or len(self.inbound_secret) < 16:
            raise ValueError(
                "RECRUITMAIL_INBOUND_SECRET must be set outside development (16+ characters)"
            )
        if self.platform_transport == "dev_outbox":
            raise ValueError(
                "RECRUITMAIL_PLATFORM_TRANSPORT=dev_outbox is for development only; "
                "set smtp (with RECRUITMAIL_SMTP_RELAY_URL) or mailjet"
            )
        return self

    @property
    def helo_name(self) -> str:
        if self.smtp_helo_name:
            return self.smtp_helo_name.strip().lower()
        host = (urlsplit(self.public_url).hostname or "").lower()
        return host if _fully_qualified(host) else self.platform_mail_domain.lower()

    @property
    def is_development(self) -> bool:
        return self.environment in {"development", "test"}

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.state_dir / 'recruitmail.db'}"

    @property
    def outbox_dir(self) -> Path:
        return self.state_dir / "outbox"

    def graph_notification_url(self) -> str:
        return f"{self.public_url.rstrip('/')}/inbound/graph/notifications"

    def gmail_push_url(self) -> str:
        return f"{self.public_url.rstrip('/')}/inbound/gmail/push"

    def oauth_redirect_uri(self, provider: str) -> str:
        return f"{self.public_url.rstrip('/')}/oauth/{provider}/callback"

    def allowed_codec_origins(self) -> list[str]:
        if self.codec_cors_origins:
            return self.codec_cors_origins
        port = self.temporal_ui_port
        return [f"http://localhost:{port}", f"http://127.0.0.1:{port}"]

    def app_page(self, **query: str) -> str | None:
        """The recruiting product's page for something (RECRUITMAIL_APP_URL with `query`)."""
        if not self.app_url:
            return None
        separator = "&" if "?" in self.app_url else "?"
        return f"{self.app_url}{separator}{urlencode(query)}"

    def app_link(self, connection_id: str) -> str | None:
        """Where "Return to Recruitmail" leads for this connection, when the product is set."""
        if not self.app_url:
            return None
        separator = "&" if "?" in self.app_url else "?"
        return f"{self.app_url}{separator}{urlencode({'connection_id': connection_id})}"

    def admin_consent_redirect_uri(self) -> str:
        return f"{self.public_url.rstrip('/')}/oauth/microsoft/admin-consent"

    def oauth_configured(self, provider: str) -> bool:
        if provider == "microsoft":
            return bool(self.microsoft_client_id and self.microsoft_client_secret)
        return bool(self.google_client_id and self.google_client_secret)

    def own_exchangers(self) -> set[str]:
        names = self.inbound_mx_hosts or self.inbound_smtp_hostname
        return {n.strip().lower().rstrip(".") for n in names.split(",") if n.strip()}

    def hosted_address(self, slug: str) -> str:
        return f"{slug}-jobs@{self.platform_mail_domain}"

    @property
    def platform_sender(self) -> str:
        """The platform's own sender, for mail that is nobody's company mail (check messages)."""
        return f"no-reply@{self.platform_mail_domain}"

    def exchanger_overrides(self) -> dict[str, tuple[str, int]]:
        """RECRUITMAIL_MX_OVERRIDES as {domain: (host, port)}."""
        overrides: dict[str, tuple[str, int]] = {}
        for item in self.mx_overrides.split(","):
            if not item.strip():
                continue
            domain, _, target = item.strip().partition("=")
            host, _, port = target.rpartition(":")
            if not (domain and host and port.isdigit()):
                raise ValueError(
                    "RECRUITMAIL_MX_OVERRIDES must look like example.com=127.0.0.1:2526,"
                    f"other.example=host:25 (got {item.strip()!r})"
                )
            overrides[domain.lower()] = (host, int(port))
        return overrides

    def secret_key_ring(self) -> list[tuple[str, bytes]]:
        """The configured keys, newest first. Development keeps a generated key in state_dir."""
        raw = list(self.secret_keys)
        if not raw:
            raw = [_development_key(self.state_dir)]
        ring = []
        for item in raw:
            kid, _, b64 = item.partition(":")
            key = base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4))
            if len(key) != 32:
                raise ValueError(f"secret key {kid!r} must be 32 bytes (base64url)")
            ring.append((kid, key))
        return ring

    def effective_inbound_secret(self) -> str:
        """The webhook secret; development keeps a generated one in state_dir."""
        if self.inbound_secret:
            return self.inbound_secret
        if not self.is_development:
            raise ValueError("RECRUITMAIL_INBOUND_SECRET is not set")
        return _development_file(self.state_dir / "inbound-secret", secrets.token_urlsafe(24))


def _fully_qualified(name: str) -> bool:
    """A host name with a dot, not an address literal, not localhost."""
    if "." not in name or name == "localhost" or name.endswith(".localhost"):
        return False
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return True
    return False


def _seconds_or_iso(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value  # ISO 8601, for pydantic
    return value


def _development_file(path: Path, value: str) -> str:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(value + "\n")
        path.chmod(0o600)
    return path.read_text().strip()


def _development_key(state_dir: Path) -> str:
    key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    return _development_file(state_dir / "dev-secret-key", f"dev1:{key}")


@lru_cache
def get_settings() -> Settings:
    return Settings()
