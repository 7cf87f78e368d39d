"""The value types of the configuration: durations, sizes, secret references, networks, and the
frozen section base. ``licsync.config`` builds the sections from them."""

from __future__ import annotations

import ipaddress
import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
)

from licsync.errors import ConfigError

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


_SIZE = re.compile(r"^\s*(\d+)\s*([kmg]i?b?|b)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def parse_size(value: Any) -> int:
    """``"8KiB"``, ``"5MB"``, ``"1m"`` or a number of bytes (binary units: 1 KB = 1024 bytes)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and (m := _SIZE.match(value)):
        return int(m.group(1)) * _SIZE_UNITS[(m.group(2) or "")[:1].lower()]
    raise ValueError(f"not a size: {value!r} (use e.g. 8KiB, 5MiB, or a number of bytes)")


Size = Annotated[int, BeforeValidator(parse_size), Field(ge=0)]


def _network(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("must be an IP address or network, e.g. 10.0.0.0/8")
    try:
        return str(ipaddress.ip_network(value.strip(), strict=False))
    except ValueError:
        raise ValueError(f"not an IP address or network: {value!r}") from None
