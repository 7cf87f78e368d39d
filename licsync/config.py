"""One typed configuration, loaded once and validated at start.

Precedence: command line > environment (``LICSYNC_…``) > TOML file > defaults.

Environment names follow the TOML layout with ``__`` between levels, e.g.
``LICSYNC_DATABASE__URL`` or ``LICSYNC_SEATS__GRACE_DAYS``. A tenant is addressed by its
name: ``LICSYNC_TENANT__CONTOSO__CLIENT_SECRET=env:OTHER_VAR``.

Secrets never sit in the file: ``client_secret`` and ``smtp_password`` take only ``env:NAME``
or ``file:/path`` references, resolved when used and never printed.
"""

from __future__ import annotations

import os
import tomllib
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlparse
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BeforeValidator,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from licsync.config_sources import ENV_PREFIX, SECTIONS, env_overrides, origin, placeholders, resolve_relative
from licsync.config_types import (
    Duration,
    PositiveDuration,
    SecretRef,
    SecretReference,
    Size,
    _is_loopback,
    _network,
    _Section,
    parse_duration,
    parse_size,
)
from licsync.errors import ConfigError

__all__ = ["ENV_PREFIX", "SECTIONS", "ConfigError", "SecretRef", "Settings", "TenantConfig", "load_settings",
           "parse_duration", "parse_size"]

class DatabaseConfig(_Section):
    url: str = "sqlite:///licsync.db"

    @field_validator("url")
    @classmethod
    def _known_driver(cls, v: str) -> str:
        usage = "sqlite:///PATH or postgresql+psycopg://user@host:5432/db"
        if not (v.startswith("sqlite") or v.startswith("postgresql")):
            raise ValueError(f"must be {usage}")
        if v.startswith("postgresql://") or v.startswith("postgres://"):
            v = "postgresql+psycopg://" + v.split("://", 1)[1]
        # The URL may carry a password: no message here repeats any part of it.
        try:
            url = make_url(v)
        except (ArgumentError, ValueError):
            raise ValueError(f"not a database URL (is the port a number?); use {usage}") from None
        try:
            url.get_dialect()
        except NoSuchModuleError:
            raise ValueError(f"unknown database driver {url.drivername!r}; use {usage}") from None
        return v


class VendorConfig(_Section):
    public_key: str | None = None


class AuthorityConfig(_Section):
    """The vendor's activation authority (SPEC §2). Without ``url``, keys are activated locally only."""

    url: str | None = None
    ca_bundle: Path | None = None  # extra trust for the authority's certificate (like a tenant's ca_bundle)
    timeout: PositiveDuration = timedelta(seconds=20)

    @field_validator("url")
    @classmethod
    def _https_url(cls, v: str | None) -> str | None:
        if v is None:
            return None
        u = urlparse(v)
        if not u.netloc or (u.scheme != "https" and not (u.scheme == "http" and _is_loopback(u.hostname))):
            raise ValueError("must be an https:// URL (plain http only on loopback)")
        return v.rstrip("/")


class TenantConfig(_Section):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
    tenant_id: str = Field(min_length=1)
    client_id: str = Field(min_length=1)
    client_secret: SecretReference | None = None
    certificate: Path | None = None
    certificate_password: SecretReference | None = None
    authority: str = "https://login.microsoftonline.com"
    graph_url: str = "https://graph.microsoft.com/v1.0"
    ca_bundle: Path | None = None
    admins: list[str] = Field(default_factory=list)
    catalog_admins: dict[str, list[str]] = Field(default_factory=dict)
    # Microsoft Entra ID bearer tokens for the API (optional; setting api_audience turns them on).
    api_audience: str | None = None  # the App ID URI (api://…): aud of v1 tokens
    api_client_id: str | None = None  # the API app's client id (GUID): aud of v2 tokens
    api_admin_role: str | None = None  # default LicSync.Admin
    api_platform_role: str | None = None  # default LicSync.Platform
    api_catalog_admin_roles: dict[str, list[str]] = Field(default_factory=dict)  # app role or group id → catalogs
    api_issuer: str | None = None
    lms_url: str | None = None  # LMS365-style OData API pulled each cycle (optional)
    lms_api_key: SecretReference | None = None
    page_size: int | None = Field(default=None, ge=1, le=999)
    timeout: PositiveDuration = timedelta(seconds=60)
    max_retries: int = Field(default=6, ge=0, le=50)
    max_retry_after: Duration = timedelta(minutes=5)
    # Full rounds: "delta" walks /users/delta page by page (~200 users, one at a time); "parallel"
    # reads /users in UPN-prefix shards side by side (SPEC §4, large tenants), falling back to the walk
    # when the shards do not add up to /users/$count.
    full_read: Literal["delta", "parallel"] = "delta"
    read_concurrency: int = Field(default=8, ge=1, le=64)  # shards in flight at most (it adapts downwards)
    sign_in_requests_per_minute: int = Field(default=10, ge=1, le=600)  # Graph's identity-reports limit
    timezone: str = "UTC"  # IANA: business days and "today" for this tenant (SPEC §5)
    holidays: list[date] = Field(default_factory=list)  # extra non-business days, in the tenant's time zone

    @field_validator("timezone")
    @classmethod
    def _iana(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{v!r} is not an IANA time zone (e.g. Europe/Amsterdam, America/New_York, UTC)") from None
        return v

    @field_validator("authority")
    @classmethod
    def _https_authority(cls, v: str) -> str:
        u = urlparse(v)
        if u.scheme != "https" or not u.netloc:
            raise ValueError("must be an https:// URL (MSAL refuses any other authority)")
        return v.rstrip("/")

    @field_validator("graph_url")
    @classmethod
    def _https_graph(cls, v: str) -> str:
        u = urlparse(v)
        if not u.netloc or (u.scheme != "https" and not (u.scheme == "http" and _is_loopback(u.hostname))):
            raise ValueError("must be an https:// URL (plain http only on loopback)")
        return v.rstrip("/")

    @field_validator("admins")
    @classmethod
    def _emails(cls, v: list[str]) -> list[str]:
        for a in v:
            if "@" not in a:
                raise ValueError(f"not an email address: {a!r}")
        return v

    @model_validator(mode="after")
    def _one_credential(self) -> TenantConfig:
        if self.client_secret is None and self.certificate is None:
            raise ValueError("needs client_secret (env:/file: reference) or certificate (path to PEM)")
        if self.client_secret is not None and self.certificate is not None:
            raise ValueError("give client_secret or certificate, not both")
        return self


class SeatsConfig(_Section):
    # may shorten the key's grace window, never lengthen it (SPEC §2); unset: the key's (default 14)
    grace_days: int | None = Field(default=None, ge=0, le=365)
    mass_free_threshold: int = Field(default=500, ge=0)
    mass_free_fraction: float = Field(default=0.10, ge=0, le=1)
    holidays: list[date] = Field(default_factory=list)  # non-business days of every tenant (tiered overage)
    inactive_days: int = Field(default=90, ge=1)  # role model: no sign-in for this long flags an assignment


class NotificationsConfig(_Section):
    transport: Literal["smtp", "graph", "none"] = "none"
    sender: str | None = None
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_tls: Literal["none", "starttls", "implicit"] = "none"
    smtp_user: str | None = None
    smtp_password: SecretReference | None = None
    thresholds: list[int] = Field(default_factory=lambda: [80, 90, 100])
    forecast_days: int = Field(default=30, ge=0, le=365)  # mail when seats are forecast to run out this soon
    graph_tenant: str | None = None
    graph_rate_per_minute: int = Field(default=30, ge=1)  # per sender mailbox, all replicas together
    graph_recipients_per_day: int = Field(default=10_000, ge=1)  # Exchange's rolling 24 h recipient limit
    max_attempts: int = Field(default=8, ge=1)

    @field_validator("thresholds")
    @classmethod
    def _pct(cls, v: list[int]) -> list[int]:
        if any(t <= 0 or t > 1000 for t in v):
            raise ValueError("thresholds are percentages between 1 and 1000")
        return sorted(set(v))

    @model_validator(mode="after")
    def _sender(self) -> NotificationsConfig:
        if self.transport != "none" and not self.sender:
            raise ValueError(f"transport {self.transport!r} needs a sender address")
        return self


class ApiConfig(_Section):
    """The HTTP API's listener and its limits (SECURITY.md, "Limits", lists each with its default)."""

    listen: str = "127.0.0.1:8080"
    access_log: bool = False  # one log line per request: method, path, status, duration (never a token or query)
    replica: str | None = None  # this process's `replica` label on /metrics (default: the host name)
    # Peers whose X-Forwarded-For / Forwarded headers are believed (the ingress, the TLS proxy). None
    # by default: the client address is the socket's peer, whatever a header says.
    trusted_proxies: list[Annotated[str, BeforeValidator(_network)]] = Field(default_factory=list)
    # The URL users reach the dashboard at (e.g. https://licsync.example.com). Redirects point there, and
    # requests whose Host header names another host are refused (400). Unset: relative redirects.
    public_url: str | None = None
    # /metrics: a bearer token of its own (env:/file: reference); unset, /metrics is open but names no tenant
    # unless metrics_tenant_labels = "name".
    metrics_token: SecretReference | None = None
    metrics_tenant_labels: Literal["auto", "name", "index"] = "auto"
    max_body_statements: Size = 8 * 1024**2  # POST …/statements
    max_body_form: Size = 8 * 1024  # POST /ui/login, /ui/logout
    max_body_other: Size = 1024  # any other request (none takes a body)
    max_header_bytes: Size = 16 * 1024  # request line and headers together
    header_timeout: PositiveDuration = timedelta(seconds=10)  # to send the request line and headers
    keepalive_timeout: PositiveDuration = timedelta(seconds=5)  # an idle keep-alive connection is closed after
    body_timeout: PositiveDuration = timedelta(seconds=30)  # to send a whole body once the headers are in
    max_connections: int = Field(default=800, ge=1)  # concurrent connections; beyond, 503 (keep below ulimit -n)
    failed_auth_limit: int = Field(default=20, ge=1)  # failed credentials per client address …
    failed_auth_window: PositiveDuration = timedelta(seconds=60)  # … within this window → 429

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, v: str | None) -> str | None:
        if v is None:
            return v
        u = urlparse(v)
        if u.scheme not in ("http", "https") or not u.hostname or u.path not in ("", "/") or u.query:
            raise ValueError("must be a base URL such as https://licsync.example.com (no path)")
        return v.rstrip("/")

    @field_validator("listen")
    @classmethod
    def _host_port(cls, v: str) -> str:
        host, sep, port = v.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("must be HOST:PORT, e.g. 127.0.0.1:8080")
        return v

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


class ImportsConfig(_Section):
    """Bounds of one enrollment import (``licsync import enrollments``): a file past them is refused whole."""

    max_catalogs: int = Field(default=10_000, ge=1)  # distinct catalog_id values in one file
    max_courses: int = Field(default=100_000, ge=1)  # distinct course_id values in one file


class ScheduleConfig(_Section):
    sync_interval: PositiveDuration = timedelta(minutes=15)
    full_resync_interval: PositiveDuration = timedelta(hours=24)


class RetentionConfig(_Section):
    """What ``licsync purge`` (and the daemon, daily) keeps: SPEC §5 ``[retention]``."""

    audit_days: int = Field(default=400, ge=1, le=36500)  # directory changes, audit and cycle history
    deleted_user_days: int = Field(default=30, ge=0, le=36500)  # personal data of permanently deleted users


class Settings(_Section):
    database: DatabaseConfig = DatabaseConfig()
    vendor: VendorConfig = VendorConfig()
    tenant: list[TenantConfig] = Field(default_factory=list)
    seats: SeatsConfig = SeatsConfig()
    notifications: NotificationsConfig = NotificationsConfig()
    api: ApiConfig = ApiConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    roles: dict[str, list[str]] = Field(default_factory=dict)
    authority: AuthorityConfig = AuthorityConfig()
    retention: RetentionConfig = RetentionConfig()
    imports: ImportsConfig = ImportsConfig()
    # Where the configuration came from ("" when built in code): the file, or where none was found.
    _source: str = PrivateAttr(default="")

    @model_validator(mode="after")
    def _unique_tenants(self) -> Settings:
        seen: set[str] = set()
        for t in self.tenant:
            if t.name in seen:
                raise ValueError(f"tenant name {t.name!r} is used twice")
            seen.add(t.name)
        return self

    def get_tenant(self, name: str) -> TenantConfig:
        for t in self.tenant:
            if t.name == name:
                return t
        if not self.tenant and self._source.startswith("no configuration file"):
            raise ConfigError(f"unknown tenant {name!r}: {self._source}")
        known = ", ".join(t.name for t in self.tenant) or "none configured"
        where = f" in {self._source}" if self._source else ""
        raise ConfigError(f"unknown tenant {name!r}{where} (known: {known})")


def default_config_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    if explicit:
        return Path(explicit)
    env = os.environ.get("LICSYNC_CONFIG")
    return Path(env) if env else Path("licsync.toml")


def load_settings(
    path: str | os.PathLike[str] | None = None,
    *,
    environ: dict[str, str] | None = None,
    required: bool = True,
    overrides: dict[str, Any] | None = None,
) -> Settings:
    """Read, merge and validate the configuration; every problem is listed, each with where it came from."""
    environ = dict(os.environ) if environ is None else environ
    file = default_config_path(path)
    data: dict[str, Any] = {}
    if file.exists():
        try:
            data = tomllib.loads(file.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{file}: not valid TOML: {exc}") from None
        except OSError as exc:
            raise ConfigError(f"{file}: cannot read: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{file}: not UTF-8 text") from None
        resolve_relative(data, file.resolve().parent)
        source = str(file)
    elif required and path is not None:
        raise ConfigError(f"{file}: configuration file not found")
    else:
        looked = f"LICSYNC_CONFIG={environ['LICSYNC_CONFIG']}" if environ.get("LICSYNC_CONFIG") else (
            f"{file.resolve()} (LICSYNC_CONFIG is not set)")
        source = f"no configuration file found (looked for {looked}); pass --config PATH"
    sources = env_overrides(data, environ)
    for section, values in (overrides or {}).items():
        data.setdefault(section, {}).update(values)
    where = str(file) if file.exists() else "configuration"
    problems = [f"{origin(loc, data, sources, where)}: {msg}" for loc, msg in placeholders(data)]
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        problems += [f"{origin(tuple(e['loc']), data, sources, where)}: {_message(e)}" for e in exc.errors()]
        settings = None
    if problems:
        raise _config_error(problems)
    assert settings is not None
    settings._source = source
    for t in settings.tenant:
        for ref in (t.client_secret, t.certificate_password, t.lms_api_key):
            if ref is not None:
                ref.resolve()  # fail at start, not at 3 a.m.
        if t.certificate is not None and not t.certificate.is_file():
            raise ConfigError(f"{file}: tenant[{t.name}].certificate: no such file {t.certificate}")
        if t.ca_bundle is not None and not t.ca_bundle.is_file():
            raise ConfigError(f"{file}: tenant[{t.name}].ca_bundle: no such file {t.ca_bundle}")
    ca = settings.authority.ca_bundle
    if ca is not None and not ca.is_file():
        raise ConfigError(f"{file}: authority.ca_bundle: no such file {ca}")
    if settings.notifications.smtp_password is not None:
        settings.notifications.smtp_password.resolve()
    return settings


def _message(error: Any) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown key (misspelled? see the configuration reference in docs/configuration.md)"
    return str(error["msg"]).removeprefix("Value error, ")


def _config_error(problems: list[str]) -> ConfigError:
    if len(problems) == 1:
        return ConfigError(problems[0])
    return ConfigError(f"{len(problems)} problems in the configuration:", problems)
