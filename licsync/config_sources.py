"""Where each configuration value came from, and the raw-data checks made before validation.

``licsync.config`` validates the merged data with pydantic; this module prepares that data and keeps
the trail an admin needs when something is wrong: the file and key, or the ``LICSYNC_…`` variable.

- Relative paths in the file (a SQLite database, ``certificate``, ``ca_bundle``, ``file:`` secret
  references) are relative to the file's directory, not to the working directory. Values from the
  environment are taken as given (relative to the working directory).
- The example configuration's placeholders (``REPLACE-WITH-…``, all-zero GUIDs) are refused.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from licsync.errors import ConfigError

ENV_PREFIX = "LICSYNC_"
SECTIONS = ("database", "vendor", "seats", "notifications", "api", "schedule", "roles", "authority", "retention",
            "imports")

# A key's path in the data, e.g. ("seats", "grace_days") or ("tenant", 0, "client_id").
Loc = tuple[str | int, ...]

_SECRET_KEYS = ("client_secret", "certificate_password", "lms_api_key")
_PATH_KEYS = ("certificate", "ca_bundle")
_PLACEHOLDER_GUID = re.compile(r"^0{8}-0{4}-0{4}-0{4}-[0-9a-fA-F]{12}$")


def _absolute(base: Path, value: str) -> str:
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else base / path)


def _sqlite_url(base: Path, url: str) -> str:
    """``sqlite:///x.db`` in /srv/licsync/licsync.toml is /srv/licsync/x.db (``sqlite:////abs`` stays)."""
    prefix = next((p for p in ("sqlite+pysqlite:///", "sqlite:///") if url.startswith(p)), None)
    if prefix is None:
        return url
    path, sep, query = url[len(prefix) :].partition("?")
    if not path or path == ":memory:" or path.startswith("file:"):
        return url
    return prefix + _absolute(base, path) + sep + query


def _secret_ref(base: Path, value: Any) -> Any:
    if isinstance(value, str) and value.startswith("file:") and value[5:].strip():
        return "file:" + _absolute(base, value[5:])
    return value


def resolve_relative(data: dict[str, Any], base: Path) -> dict[str, Any]:
    """Make the file's relative paths absolute against ``base`` (the file's directory), in place."""
    database = data.get("database")
    if isinstance(database, dict) and isinstance(database.get("url"), str):
        database["url"] = _sqlite_url(base, database["url"])
    tenants = data.get("tenant")
    for tenant in tenants if isinstance(tenants, list) else []:
        if not isinstance(tenant, dict):
            continue
        for key in _PATH_KEYS:
            if isinstance(tenant.get(key), str) and tenant[key]:
                tenant[key] = _absolute(base, tenant[key])
        for key in _SECRET_KEYS:
            if key in tenant:
                tenant[key] = _secret_ref(base, tenant[key])
    notifications = data.get("notifications")
    if isinstance(notifications, dict) and "smtp_password" in notifications:
        notifications["smtp_password"] = _secret_ref(base, notifications["smtp_password"])
    return data


def env_overrides(data: dict[str, Any], environ: dict[str, str]) -> dict[Loc, str]:
    """Lay ``LICSYNC_SECTION__KEY`` and ``LICSYNC_TENANT__NAME__KEY`` over the file's values, in place.

    Returns which variable set which key, so that a problem with the value names the variable.
    """
    sources: dict[Loc, str] = {}
    tenants = data.get("tenant")
    tenants_by_name = {
        str(t.get("name", "")).lower(): (i, t)
        for i, t in enumerate(tenants if isinstance(tenants, list) else [])
        if isinstance(t, dict)
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
            found = tenants_by_name.get(parts[1])
            if found is None:
                raise ConfigError(f"{key}: no [[tenant]] named {parts[1]!r} in the configuration")
            found[1][parts[2]] = _env_value(value)
            sources[("tenant", found[0], parts[2])] = key
        elif parts[0] in SECTIONS and len(parts) == 2:
            section_data = data.setdefault(parts[0], {})
            if not isinstance(section_data, dict):
                raise ConfigError(f"{key}: {parts[0]} in the configuration file is not a [{parts[0]}] table")
            section_data[parts[1]] = _env_value(value)
            sources[(parts[0], parts[1])] = key
    return sources


def _env_value(value: str) -> Any:
    """Environment values are strings; lists and numbers may be given in TOML syntax."""
    if value[:1] in "[{":
        try:
            return tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            return value
    return value


def location(loc: Loc, data: dict[str, Any]) -> str:
    """``tenant[0:contoso].client_id``: a key's path as an admin reads it."""
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


def origin(loc: Loc, data: dict[str, Any], sources: dict[Loc, str], file: str) -> str:
    """Where the value at ``loc`` came from: its ``LICSYNC_…`` variable, or the file and key."""
    for n in range(len(loc), 0, -1):
        if loc[:n] in sources:
            return f"{sources[loc[:n]]} (environment)"
    return f"{file}: {location(loc, data) or 'configuration'}"


def placeholders(data: dict[str, Any]) -> list[tuple[Loc, str]]:
    """Values left as the example configuration has them: refused before they reach Graph or a key check."""
    found: list[tuple[Loc, str]] = []

    def walk(node: Any, loc: Loc) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, (*loc, str(k)))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, (*loc, i))
        elif isinstance(node, str) and "REPLACE-WITH" in node.upper():
            found.append((loc, "still the example's placeholder: put the real value here"))
        elif isinstance(node, str) and loc[-1:] in (("tenant_id",), ("client_id",)) and _PLACEHOLDER_GUID.match(
            node.strip()
        ):
            what = "Directory (tenant) ID" if loc[-1] == "tenant_id" else "Application (client) ID"
            found.append((loc, f"still the example's all-zero GUID: use the {what} from the app registration's "
                               "Overview page in the Entra admin center"))

    walk(data, ())
    return found
