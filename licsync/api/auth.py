"""Who is calling: API tokens or Entra ID bearer tokens, and a brake on guessing.

The rules the HTTP layer applies (SPEC §5):

* no credential, or one that does not verify → 401 with ``WWW-Authenticate: Bearer``;
* a valid credential outside its scope → 403 — including a tenant the caller does not belong to,
  whether or not that tenant exists, so the API never tells a stranger which tenants it serves;
* more than ``limit`` failed credentials from one client address within ``window`` seconds → 429
  with ``Retry-After`` until the window drains, for *failed* credentials only: a valid credential
  is never refused for others' failures from the same address (an ingress, a NAT); a token has 256
  bits of secret, so the brake is against noise, not a guess that could succeed;
* the client address is the socket's peer; ``X-Forwarded-For`` / ``Forwarded`` count only when
  that peer is one of ``[api] trusted_proxies`` (then the right-most address not itself trusted);
* a token of a tenant no longer in the configuration is invalid (401), like a revoked one;
* a licsync API token that verified is trusted for ``TOKEN_CACHE_TTL`` (2 s) without reading its
  row again, so a revocation takes effect within 2 s; failures are never cached.
"""

from __future__ import annotations

import ipaddress
import math
import re
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from sqlmodel import Session
from starlette.requests import Request

from licsync import tokens
from licsync.tokens import Principal

COOKIE = "licsync_token"
TOUCH_EVERY = 300.0  # seconds between last_used_at writes per token: a write is kept off the hot path
# Seconds a verified licsync API token is trusted without reading its row again. The launch-time
# check is asked hundreds of times a second with the same platform token; the read was a third of its
# database work. The price: `licsync token revoke` (another process) takes effect within this many
# seconds, not at once. Only successes are kept: a bad or revoked token is never served from here.
TOKEN_CACHE_TTL = 2.0
TOKEN_CACHE_MAX = 10_000


class ApiError(Exception):
    """An error response: status, a message fit for the caller, and headers."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def unauthorized(message: str = "missing or invalid token", *, invalid: bool = False) -> ApiError:
    challenge = 'Bearer realm="licsync"' + (', error="invalid_token"' if invalid else "")
    return ApiError(401, message, {"WWW-Authenticate": challenge})


def forbidden(message: str = "this token does not grant access to this resource") -> ApiError:
    return ApiError(403, message)


class FailureLimiter:
    """Failed authentications per client address in a sliding window (memory-bounded, thread-safe)."""

    def __init__(
        self,
        limit: int = 20,
        window: float = 60.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_clients: int = 10_000,
    ) -> None:
        self.limit, self.window, self.clock, self.max_clients = limit, window, clock, max_clients
        self._fails: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def _prune(self, ip: str, now: float) -> deque[float] | None:
        q = self._fails.get(ip)
        if q is None:
            return None
        while q and q[0] <= now - self.window:
            q.popleft()
        if not q:
            del self._fails[ip]
            return None
        return q

    def retry_after(self, ip: str) -> int | None:
        """Seconds until this client may try again, or None when it is not blocked."""
        with self._lock:
            now = self.clock()
            q = self._prune(ip, now)
            if q is None or len(q) < self.limit:
                return None
            # Blocked until enough old failures leave the window to drop below the limit.
            return max(1, math.ceil(q[len(q) - self.limit] + self.window - now))

    def failed(self, ip: str) -> None:
        with self._lock:
            now = self.clock()
            q = self._prune(ip, now) or deque(maxlen=self.limit * 2)
            q.append(now)
            self._fails[ip] = q
            self._fails.move_to_end(ip)
            while len(self._fails) > self.max_clients:
                self._fails.popitem(last=False)


Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_FORWARDED_FOR = re.compile(r'for="?\[?([^\]";,]+)', re.IGNORECASE)


def _trusted(address: str, proxies: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return any(ip in net for net in proxies)


def forwarded_chain(request: Request) -> list[str]:
    """The addresses a request passed through, by the proxies' headers (oldest first)."""
    forwarded = request.headers.getlist("forwarded")
    if forwarded:
        return [m.group(1).strip() for h in forwarded for m in _FORWARDED_FOR.finditer(h)]
    return [a.strip() for h in request.headers.getlist("x-forwarded-for") for a in h.split(",") if a.strip()]


def client_ip(request: Request, proxies: tuple[Network, ...] = ()) -> str:
    """The caller's address: the socket's peer, or — when the peer is a trusted proxy — the right-most
    address of its forwarding headers that is not a trusted proxy itself."""
    peer = request.client.host if request.client else "unknown"
    if not proxies or not _trusted(peer, proxies):
        return peer
    for address in reversed(forwarded_chain(request)):
        if not _trusted(address, proxies):
            return address
    return peer


def credential_of(request: Request) -> str | None:
    """The bearer token of the Authorization header, else the dashboard's cookie."""
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        return ""  # present but not a bearer credential: a failure, not an absence
    return request.cookies.get(COOKIE) or None


class Authenticator:
    """Turns a request's credential into a Principal, or raises the ApiError to answer with."""

    def __init__(
        self,
        entra: Any = None,
        limiter: FailureLimiter | None = None,
        *,
        token_ttl: float = TOKEN_CACHE_TTL,
        clock: Callable[[], float] = time.monotonic,
        tenants: Iterable[str] | None = None,
        trusted_proxies: Iterable[str] = (),
    ) -> None:
        self.entra = entra
        self.tenants = None if tenants is None else frozenset(tenants)  # None: any (tests of the class alone)
        self.proxies = tuple(ipaddress.ip_network(n, strict=False) for n in trusted_proxies)
        self.limiter = limiter or FailureLimiter()
        self.token_ttl, self.clock = token_ttl, clock
        self._touched: dict[str, float] = {}
        self._touch_lock = threading.Lock()
        self._verified: dict[str, tuple[float, Principal]] = {}  # token hash → (trusted until, principal)
        self._verified_lock = threading.Lock()

    def client_ip(self, request: Request) -> str:
        return client_ip(request, self.proxies)

    def via_https(self, request: Request) -> bool:
        """Whether the browser reached us over HTTPS: our own TLS, or a trusted proxy's ``X-Forwarded-Proto``
        (uvicorn no longer rewrites the scheme from that header: it believed any loopback peer)."""
        if request.url.scheme == "https":
            return True
        peer = request.client.host if request.client else ""
        proto = request.headers.get("x-forwarded-proto", "").split(",")[-1].strip().lower()
        return proto == "https" and _trusted(peer, self.proxies)

    def refuse(self, request: Request) -> None:
        """A credential failed: count it against the caller's address; 429 when that address is over the
        limit, else nothing (the caller answers 401)."""
        ip = self.client_ip(request)
        wait = self.limiter.retry_after(ip)
        if wait is not None:
            raise ApiError(429, "too many failed authentications from this address; retry later",
                           {"Retry-After": str(wait)})
        self.limiter.failed(ip)

    def verify(self, session: Session, raw: str) -> Principal | None:
        """Check a raw credential: licsync tokens by prefix, anything JWT-shaped with Entra ID. A credential
        of a tenant that is no longer configured is no credential."""
        now = datetime.now(UTC)  # credentials live in real time, even when the API evaluates ``--now``
        principal: Principal | None = None
        if raw.startswith(tokens.PREFIX):
            principal = self._api_token(session, raw, now)
        elif self.entra is not None and raw.count(".") == 2:
            principal = self.entra.verify(raw)
        if principal is not None and self.tenants is not None and principal.tenant not in self.tenants:
            return None
        return principal

    def _api_token(self, session: Session, raw: str, now: datetime) -> Principal | None:
        """``tokens.authenticate``, its successes kept for ``token_ttl`` seconds (keyed by the token's
        SHA-256, the same digest the database holds, so no raw secret is kept in memory)."""
        key = tokens.hash_token(raw)
        hit = self._verified.get(key)
        t = self.clock()
        if hit is not None and hit[0] > t:
            return hit[1]
        principal = tokens.authenticate(session, raw, now)
        with self._verified_lock:
            if principal is None or self.token_ttl <= 0:
                self._verified.pop(key, None)
            else:
                if len(self._verified) >= TOKEN_CACHE_MAX:
                    self._verified = {k: v for k, v in self._verified.items() if v[0] > t}
                    if len(self._verified) >= TOKEN_CACHE_MAX:
                        self._verified.clear()
                self._verified[key] = (t + self.token_ttl, principal)
        return principal

    def principal(self, request: Request, session: Session) -> Principal:
        raw = credential_of(request)
        if raw is None:
            raise unauthorized()
        principal = self.verify(session, raw) if raw else None
        if principal is None:
            self.refuse(request)
            raise unauthorized("invalid or revoked token", invalid=True)
        return principal

    def due_touch(self, token_id: str | None) -> bool:
        """True at most once per TOUCH_EVERY seconds per token (then the caller records the use)."""
        if token_id is None:
            return False
        now = time.monotonic()
        with self._touch_lock:
            last = self._touched.get(token_id)
            if last is not None and now - last < TOUCH_EVERY:
                return False
            if len(self._touched) > 10_000:
                self._touched.clear()
            self._touched[token_id] = now
            return True


class LoginCodes:
    """One-time dashboard sign-in codes: ``/ui/login?code=…`` exchanges one for the cookie, once, within
    ``ttl`` seconds — a link never carries a token (browser history, proxy logs). Kept in this process's
    memory by their SHA-256; issued by whoever holds the app (``licsync demo`` prints one)."""

    def __init__(self, ttl: float = 300.0, max_codes: int = 1000, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl, self.max_codes, self.clock = ttl, max_codes, clock
        self._codes: dict[str, tuple[float, str]] = {}
        self._lock = threading.Lock()

    def issue(self, raw_token: str) -> str:
        code = secrets.token_urlsafe(24)
        with self._lock:
            now = self.clock()
            self._codes = {k: v for k, v in self._codes.items() if v[0] > now}
            if len(self._codes) >= self.max_codes:
                self._codes.pop(next(iter(self._codes)))
            self._codes[tokens.hash_token(code)] = (now + self.ttl, raw_token)
        return code

    def redeem(self, code: str) -> str | None:
        with self._lock:
            hit = self._codes.pop(tokens.hash_token(code), None)
        return hit[1] if hit is not None and hit[0] > self.clock() else None
