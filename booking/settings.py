"""Every environment read in one place."""

from __future__ import annotations

from enum import Enum
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseSettings, conint, root_validator, validator

PROJECT_ROOT = Path(__file__).resolve().parent.parent

DEVELOPMENT_PLACEHOLDER = "dev-only-change-me"
# Seals dates of birth and emails in development and tests only: production refuses it.
DEVELOPMENT_FIELD_KEYS = "dev:ZGV2LW9ubHktZmllbGQta2V5LWNoYW5nZS1tZS0wMDA="

# Secrets we choose ourselves (Twilio issues its own token): production wants them long enough
# that guessing is hopeless.
OUR_SECRETS = ("session_secret", "rasa_token", "action_server_token")
MIN_SECRET_LENGTH = 32
# Addresses that carry a credential or a patient's data across a network.
PUBLIC_URLS = ("gateway_public_url", "console_public_url", "twilio_api_base_url")
LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1"}


def _https_or_loopback(url: str) -> bool:
    """https, or http to this machine itself (nothing crosses a network: a production-mode
    run on one machine, as the test of the production configuration does)."""
    parts = urlsplit(url)
    return parts.scheme == "https" or (parts.scheme == "http"
                                       and parts.hostname in LOOPBACK_HOSTS)


class Environment(str, Enum):
    development = "development"
    production = "production"


class Settings(BaseSettings):
    environment: Environment = Environment.development

    database_url: str = f"sqlite:///{PROJECT_ROOT / 'var' / 'ringback.db'}"
    clinics_file: Path = PROJECT_ROOT / "clinics" / "example.yml"

    twilio_api_base_url: str = "https://api.twilio.com"
    twilio_account_sid: str = "AC00000000000000000000000000000000"
    twilio_auth_token: str = DEVELOPMENT_PLACEHOLDER
    twilio_timeout_seconds: float = 5.0

    # Outbox retries: exponential backoff with jitter from the first delay up to the ceiling.
    # Tests shorten the first delay here instead of patching code.
    outbox_first_retry_seconds: float = 2.0
    outbox_max_retry_seconds: float = 300.0
    outbox_max_attempts: int = 15
    outbox_sweep_interval_seconds: float = 1.0

    # Twilio signs the exact URL it called, so behind a proxy we must know the public one.
    gateway_public_url: str = "http://127.0.0.1:8000"

    # Rasa's SQL tracker store, where the retention purge and a patient's export and erasure
    # reach it. Unset: the booking database itself on PostgreSQL, and on SQLite the file
    # rasa_tracker.db beside the booking database (where `ringback run` puts it).
    tracker_store_url: str | None = None
    # How long a Rasa process waits for its tracker store at start before it refuses to start
    # (connectors.tracker_store): never a conversation kept in memory instead.
    tracker_store_start_timeout_seconds: float = 60.0
    # How often a gateway removes message bodies and transcripts past their clinic's retention.
    retention_purge_interval_seconds: float = 3600.0

    # Rasa's lock store; needed once several Rasa processes share one tracker store.
    redis_url: str | None = None

    rasa_url: str = "http://127.0.0.1:5005"
    # Rasa processes on this node, one core each: on RASA_URL's port and the ports after it.
    # A patient's conversation always goes to the same one (booking.messaging.rasa_client).
    rasa_processes: conint(ge=1) = 1
    # Rasa servers anywhere (comma-separated base URLs, e.g. on other hosts): when set, the
    # gateway talks to these instead of RASA_URL and the ports after it.
    rasa_servers: str | None = None
    # Where Rasa calls actions: one action server, or a balancer in front of several.
    action_server_url: str = "http://127.0.0.1:5055/webhook"
    # Action servers on this node (`make cluster`): on ACTION_SERVER_PORT and the ports after it.
    action_server_processes: conint(ge=1) = 1
    # `make cluster`'s nginx: Twilio's webhooks and the console on BALANCER_PORT (in front of
    # the gateways on GATEWAY_PORT and after), the action servers on ACTION_BALANCER_PORT.
    balancer_host: str = "127.0.0.1"
    balancer_port: int = 8080
    action_balancer_port: int = 5054
    gateway_host: str = "127.0.0.1"
    gateway_port: int = 8000
    # Gateway processes on this node (uvicorn workers on one port); their inbox, outbox and
    # outreach workers share the work through the database.
    gateway_processes: conint(ge=1) = 1
    # Rasa and the action server are private: loopback unless a private network is named.
    rasa_host: str = "127.0.0.1"
    rasa_port: int = 5005
    action_server_host: str = "127.0.0.1"
    action_server_port: int = 5055
    twilio_fake_port: int = 8020
    # Shared secrets: the gateway's credential for Rasa's API, Rasa's for the action server.
    # Unset in development, `ringback run` makes a fresh pair for each run.
    rasa_token: str | None = None
    action_server_token: str | None = None

    # The durable inbox: how long a patient message may wait for the dialogue before its
    # thread is handed to staff, and how the gateway retries delivering it meanwhile.
    inbox_max_wait_seconds: float = 60.0
    inbox_first_retry_seconds: float = 0.5
    inbox_max_retry_seconds: float = 10.0
    inbox_sweep_interval_seconds: float = 0.5
    rasa_timeout_seconds: float = 30.0

    # Follow-ups, reminders and rebooking offers (booking.outreach): how often a gateway looks
    # for due jobs, and for new ones to plan.
    outreach_interval_seconds: float = 5.0
    outreach_plan_interval_seconds: float = 30.0
    # The compliance gate's rules (quiet hours, caps, state laws); see the file's header.
    outreach_rules_file: Path = PROJECT_ROOT / "data" / "outreach_rules.yml"

    # The JSON missed-call hook (/hooks/missed-call) checks each request with the secret of
    # the clinic it names, so one clinic's secret cannot report calls for another:
    # {"<clinic slug>": "<secret>"} as JSON.
    missed_call_hook_secrets: dict[str, str] = {}
    # The one shared secret of earlier versions: still accepted for clinics that have no
    # secret of their own above, so a deployment moves clinic by clinic, then unsets it.
    # Unset in development, the placeholder stands in (see `hook_secret_for`).
    missed_call_hmac_secret: str | None = None
    missed_call_max_skew_seconds: int = 300

    # Fraud limits on text-backs (booking.calls.fraud_limits): at most this many per clock hour
    # for one clinic (a clinic's settings.text_back.hourly_cap overrides it), and for all
    # clinics of this deployment together.
    text_back_clinic_hourly_cap: conint(ge=0) = 100
    text_back_global_hourly_cap: conint(ge=0) = 1000
    session_secret: str = DEVELOPMENT_PLACEHOLDER
    # Keys for dates of birth and emails at rest, "id:key,..." (booking.field_encryption); the
    # first seals, all open. Make a key with `ringback new-field-key`.
    field_encryption_keys: str = DEVELOPMENT_FIELD_KEYS

    # The public address clinics' staff open links to (alerts carry a link to the thread).
    console_public_url: str = "http://127.0.0.1:8000"
    # A console session ends after this long without a real action (the pages' background
    # polls do not count), and after CONSOLE_SESSION_HOURS in any case.
    console_idle_minutes: int = 30
    console_session_hours: int = 12
    # Failed sign-ins per username (and five times as many per client address) before each
    # further attempt must wait a growing delay; see booking/console/throttle.py.
    console_login_attempts: int = 5

    # Email alerts to staff; leaving SMTP_HOST unset turns email off.
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = True
    # SMTPS (TLS from the start, port 465) instead of STARTTLS. Production needs one of them.
    smtp_ssl: bool = False
    smtp_from: str = "Ringback alerts <alerts@localhost>"
    smtp_timeout_seconds: float = 10.0
    # How often the gateway sends due re-alerts and pending email/webhook alerts.
    escalation_sweep_interval_seconds: float = 2.0

    class Config:
        env_file = PROJECT_ROOT / ".env"
        env_file_encoding = "utf-8"

    @validator("missed_call_hmac_secret")
    def _empty_shared_secret_is_unset(cls, value: str | None) -> str | None:
        return value if value and value.strip() else None

    @validator("missed_call_hook_secrets")
    def _every_clinic_secret_is_given(cls, value: dict[str, str]) -> dict[str, str]:
        # An empty secret would quietly fall back to the shared one.
        empty = sorted(slug for slug, secret in value.items() if not secret.strip())
        if empty:
            raise ValueError(f"MISSED_CALL_HOOK_SECRETS: no secret for {', '.join(empty)}")
        return value

    @root_validator(skip_on_failure=True)
    def _refuse_weak_production_settings(cls, values: dict) -> dict:
        """Every problem at once, one a line, so a deployment is fixed in one go."""
        if values.get("environment") != Environment.production:
            return values
        problems = []
        for field in ("twilio_auth_token", *OUR_SECRETS):
            if values.get(field) in (None, "", DEVELOPMENT_PLACEHOLDER):
                problems.append(f"{field.upper()} must be set in production")
            elif field in OUR_SECRETS and len(values[field]) < MIN_SECRET_LENGTH:
                problems.append(f"{field.upper()} must be at least {MIN_SECRET_LENGTH} "
                                "characters in production (e.g. `openssl rand -hex 32`)")
        # The hook's secrets are optional (no secret, no hook), but never weak.
        hook_secrets = {"MISSED_CALL_HMAC_SECRET": values.get("missed_call_hmac_secret"),
                        **{f"MISSED_CALL_HOOK_SECRETS[{slug}]": secret for slug, secret
                           in (values.get("missed_call_hook_secrets") or {}).items()}}
        for name, secret in hook_secrets.items():
            if secret is None:
                continue
            if secret == DEVELOPMENT_PLACEHOLDER:
                problems.append(f"{name} must be a real secret in production")
            elif len(secret) < MIN_SECRET_LENGTH:
                problems.append(f"{name} must be at least {MIN_SECRET_LENGTH} characters in "
                                "production (e.g. `openssl rand -hex 32`)")
        for field in PUBLIC_URLS:
            if not _https_or_loopback(values[field]):
                problems.append(f"{field.upper()} must be an https:// URL in production, "
                                f"not {values[field]!r}")
        if values.get("database_url", "").startswith("sqlite"):
            problems.append("DATABASE_URL must point to PostgreSQL in production")
        if DEVELOPMENT_FIELD_KEYS.split(":", 1)[1] in values.get("field_encryption_keys", ""):
            problems.append("FIELD_ENCRYPTION_KEYS must hold the clinic's own keys in "
                            "production, not the development key")
        # Alerts name patients: never across the network in plain text.
        if values.get("smtp_host") and not (values.get("smtp_starttls")
                                             or values.get("smtp_ssl")):
            problems.append("SMTP_STARTTLS or SMTP_SSL must be on in production")
        if problems:
            raise ValueError("\n".join(problems))
        return values

    @property
    def rasa_urls(self) -> list[str]:
        """Where each Rasa process answers: RASA_SERVERS, or RASA_URL and the next ports."""
        if self.rasa_servers:
            return [url.strip().rstrip("/") for url in self.rasa_servers.split(",")
                    if url.strip()]
        parts = urlsplit(self.rasa_url.rstrip("/"))
        host, port = parts.hostname, parts.port or 5005
        return [parts._replace(netloc=f"{host}:{port + index}").geturl()
                for index in range(self.rasa_processes)]

    @property
    def rasa_tracker_store_url(self) -> str:
        if self.tracker_store_url:
            return self.tracker_store_url
        if self.database_url.startswith("sqlite"):
            booking_file = Path(self.database_url.split("///", 1)[-1])
            return f"sqlite:///{booking_file.parent / 'rasa_tracker.db'}"
        return self.database_url

    @property
    def is_production(self) -> bool:
        return self.environment == Environment.production

    def hook_secret_for(self, clinic_slug: str) -> str | None:
        """The secret that signs this clinic's missed-call hook requests: its own, else the
        shared one (a deployment from before per-clinic secrets), else None (no hook)."""
        own = self.missed_call_hook_secrets.get(clinic_slug)
        if own:
            return own
        if self.missed_call_hmac_secret:
            return self.missed_call_hmac_secret
        return None if self.is_production else DEVELOPMENT_PLACEHOLDER


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
