"""One typed configuration, loaded once and validated at start.

Precedence: command line > environment (``LICSYNC_…``) > TOML file > defaults.

Environment names follow the TOML layout with ``__`` between levels, e.g.
``LICSYNC_DATABASE__URL`` or ``LICSYNC_SEATS__GRACE_DAYS``. A tenant is addressed by its
name: ``LICSYNC_TENANT__CONTOSO__CLIENT_SECRET=env:OTHER_VAR``.

Secrets never sit in the file: ``client_secret`` and ``smtp_password`` take only ``env:NAME``
or ``file:/path`` references, resolved when used and never printed.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlparse

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from licsync.errors import ConfigError

ENV_PREFIX = "LICSYNC_"
SECTIONS = ("database", "vendor", "seats", "notifications", "api", "schedule", "roles")

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}


def parse_duration(value: Any) -> timedelta:
    """``"15m"``, ``"24h"``, ``"90s"``, ``"1d"`` or a number of seconds."""
    if isinstance(value, timedelta):
        return value
    seconds: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = value
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    if seconds is None:
        raise ValueError(f"not a duration: {value!r} (use e.g. 30s, 15m, 24h, 7d)")
    try:
        return timedelta(seconds=seconds)
    except OverflowError:  # beyond what a timedelta holds (~2.7 million years), or infinite
        raise ValueError(f"duration out of range: {value!r}") from None


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("must be a positive duration (e.g. 30s, 15m)")
    return value


PositiveDuration = Annotated[timedelta, BeforeValidator(parse_duration), AfterValidator(_positive)]


class SecretRef(str):
    """A reference to a secret (``env:NAME`` or ``file:/path``), never the secret itself."""

    __slots__ = ()

    def resolve(self) -> str:
        kind, _, where = self.partition(":")
        if kind == "env":
            value = os.environ.get(where)
            if value is None:
                raise ConfigError(f"secret reference {self}: environment variable {where} is not set")
            return value
        try:
            return Path(where).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"secret reference {self}: cannot read file ({exc.strerror})") from None


def _secret_ref(value: Any) -> SecretRef:
    if not isinstance(value, str):
        raise ValueError("must be a reference string: env:NAME or file:/path")
    kind, sep, where = value.partition(":")
    if not sep or kind not in ("env", "file") or not where.strip():
        # Never echo the value: it may be the secret itself.
        raise ValueError("secrets must be given by reference (env:NAME or file:/path), not in clear")
    return SecretRef(value)


SecretReference = Annotated[str, AfterValidator(_secret_ref)]


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatabaseConfig(_Section):
    url: str = "sqlite:///licsync.db"

    @field_validator("url")
    @classmethod
    def _known_driver(cls, v: str) -> str:
        if not (v.startswith("sqlite") or v.startswith("postgresql")):
            raise ValueError("must be sqlite:///PATH or postgresql+psycopg://user@host/db")
        if v.startswith("postgresql://") or v.startswith("postgres://"):
            v = "postgresql+psycopg://" + v.split("://", 1)[1]
        return v


class VendorConfig(_Section):
    public_key: str | None = None


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
    api_audience: str | None = None
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
    grace_days: int = Field(default=14, ge=0, le=365)
    mass_free_threshold: int = Field(default=500, ge=0)
    mass_free_fraction: float = Field(default=0.10, ge=0, le=1)
    holidays: list[date] = Field(default_factory=list)  # UTC days that are not business days (tiered overage)
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
    graph_tenant: str | None = None
    graph_rate_per_minute: int = Field(default=30, ge=1)
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
    listen: str = "127.0.0.1:8080"

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


class ScheduleConfig(_Section):
    sync_interval: PositiveDuration = timedelta(minutes=15)
    full_resync_interval: PositiveDuration = timedelta(hours=24)


class Settings(_Section):
    database: DatabaseConfig = DatabaseConfig()
    vendor: VendorConfig = VendorConfig()
    tenant: list[TenantConfig] = Field(default_factory=list)
    seats: SeatsConfig = SeatsConfig()
    notifications: NotificationsConfig = NotificationsConfig()
    api: ApiConfig = ApiConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    roles: dict[str, list[str]] = Field(default_factory=dict)

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
        known = ", ".join(t.name for t in self.tenant) or "none configured"
        raise ConfigError(f"unknown tenant {name!r} (known: {known})")


def _env_overrides(data: dict[str, Any], environ: dict[str, str]) -> dict[str, Any]:
    """Lay ``LICSYNC_SECTION__KEY`` and ``LICSYNC_TENANT__NAME__KEY`` over the file's values."""
    tenants = data.get("tenant")
    tenants_by_name = {
        str(t.get("name", "")).lower(): t for t in (tenants if isinstance(tenants, list) else []) if isinstance(t, dict)
    }
    for key, value in sorted(environ.items()):
        if not key.startswith(ENV_PREFIX) or key == "LICSYNC_CONFIG" or key.startswith("LICSYNC_TEST"):
            continue
        parts = [p.lower() for p in key[len(ENV_PREFIX) :].split("__")]
        if len(parts) == 1:
            # LICSYNC_DATABASE_URL is accepted as a shorthand of LICSYNC_DATABASE__URL.
            section = next((s for s in SECTIONS if parts[0].startswith(s + "_")), None)
            if section is None:
                continue
            parts = [section, parts[0][len(section) + 1 :]]
        if parts[0] == "tenant" and len(parts) == 3:
            tenant = tenants_by_name.get(parts[1])
            if tenant is None:
                raise ConfigError(f"{key}: no [[tenant]] named {parts[1]!r} in the configuration")
            tenant[parts[2]] = _env_value(value)
        elif parts[0] in SECTIONS and len(parts) == 2:
            section_data = data.setdefault(parts[0], {})
            if not isinstance(section_data, dict):
                raise ConfigError(f"{key}: {parts[0]} in the configuration file is not a [{parts[0]}] table")
            section_data[parts[1]] = _env_value(value)
    return data


def _env_value(value: str) -> Any:
    """Environment values are strings; lists and numbers may be given in TOML syntax."""
    if value[:1] in "[{":
        try:
            return tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            return value
    return value


def _location(loc: tuple[Any, ...], data: dict[str, Any]) -> str:
    out = ""
    node: Any = data
    for part in loc:
        if isinstance(part, int):
            item = node[part] if isinstance(node, list) and part < len(node) else None
            name = item.get("name") if isinstance(item, dict) else None  # a list of tables, or of anything
            out += f"[{part}]" if not name else f"[{part}:{name}]"
        else:
            shown = str(part) if str(part).isprintable() else repr(part)  # a key is input: never raw control chars
            out += f".{shown}" if out else shown
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            node = None
    return out


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
    """Read, merge and validate the configuration; any problem is a ConfigError naming the key."""
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
    elif required and path is not None:
        raise ConfigError(f"{file}: configuration file not found")
    data = _env_overrides(data, environ)
    for section, values in (overrides or {}).items():
        data.setdefault(section, {}).update(values)
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = _location(tuple(err["loc"]), data) or "configuration"
        msg = err["msg"].removeprefix("Value error, ")
        more = f" (and {len(exc.errors()) - 1} more problem(s))" if len(exc.errors()) > 1 else ""
        raise ConfigError(f"{file}: {where}: {msg}{more}") from None
    for t in settings.tenant:
        for ref in (t.client_secret, t.certificate_password, t.lms_api_key):
            if ref is not None:
                ref.resolve()  # fail at start, not at 3 a.m.
        if t.certificate is not None and not t.certificate.is_file():
            raise ConfigError(f"{file}: tenant[{t.name}].certificate: no such file {t.certificate}")
        if t.ca_bundle is not None and not t.ca_bundle.is_file():
            raise ConfigError(f"{file}: tenant[{t.name}].ca_bundle: no such file {t.ca_bundle}")
    if settings.notifications.smtp_password is not None:
        settings.notifications.smtp_password.resolve()
    return settings
