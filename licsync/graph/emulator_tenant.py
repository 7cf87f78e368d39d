"""One emulated tenant's Graph behaviour: delta rounds, list endpoints, sendMail, and fault knobs.

Kept free of Starlette: every handler takes plain values and returns a ``Reply`` (status, body,
headers), so the semantics can be read — and tested — without a server.
"""

from __future__ import annotations

import secrets
import threading
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson

from licsync.graph.emulator_auth import AuthError, SigningKey, TokenService
from licsync.graph.emulator_limits import COSTS, Meter, Realism
from licsync.graph.emulator_lists import ListEndpoints
from licsync.graph.emulator_state import Directory, Entry, Removed, project, render_entries
from licsync.graph.emulator_wire import Reply, TokenCodec, error_reply, graph_reply, select_fields

DELTA_TOKEN_MAX_AGE = timedelta(days=7)
_MAX_ROUNDS = 64  # in-flight delta rounds kept per tenant; older skiptokens ask for a resync


@dataclass(frozen=True, slots=True)
class _Round:
    version: int
    entries: list[Entry]
    fields: tuple[str, ...]
    page_size: int
    initial: bool


# How an expired delta token is refused, by ``expire_tokens(mode)``: (status, code).
EXPIRY_MODES = {
    "400": (400, "syncStateNotFound"),
    "410": (410, "resyncRequired"),
    "syncStateNotFound": (400, "syncStateNotFound"),
    "syncStateInvalid": (400, "syncStateInvalid"),
    "resyncRequired": (409, "resyncRequired"),
}


class EmulatedTenant(ListEndpoints):
    """Directory, apps, knobs and counters of one tenant. Knobs are plain attributes/methods and
    are safe to call from the test thread while the server thread serves requests.

    ``realism`` (a :class:`~licsync.graph.emulator_limits.Realism`, off by default) adds a real
    tenant's latency, page cap, resource-unit budget and sign-in rate."""

    def __init__(
        self,
        tenant_id: str,
        directory: Directory,
        clock: Callable[[], datetime],
        registry: dict[str, Any],
        signing_key: SigningKey,
    ) -> None:
        self.tenant_id = tenant_id
        self.directory = directory
        directory.clock = clock
        self.clock = clock
        self.auth = TokenService(tenant_id, clock, registry)
        self.signing_key = signing_key
        self.base_url = ""  # set by the server once it listens
        self.client_id = ""
        self.client_secret = ""
        # knobs
        self.page_size = 200
        self.empty_page_every = 0  # every N-th delta page is empty (N >= 2)
        self.replay_every = 0  # every N-th delta page repeats users of the page before
        self.removed_in_initial = False  # initial rounds also list soft-deleted users as removed
        self.premium = True  # Entra ID P1: signInActivity readable
        # state
        self.stats: Counter[str] = Counter()
        # Authenticated Graph requests (method, path?query, User-Agent); the bearer was valid for each.
        self.requests: deque[tuple[str, str, str]] = deque(maxlen=2000)
        self.outbox: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._codec = TokenCodec()
        self._rounds: OrderedDict[str, _Round] = OrderedDict()
        self._serial = 0
        self._meter: Meter | None = None
        self._init_lists()
        self.clear_faults()

    @property
    def realism(self) -> Realism | None:
        return self._meter.realism if self._meter is not None else None

    @realism.setter
    def realism(self, value: Realism | dict[str, Any] | None) -> None:
        """Switch real-tenant behaviour on (a profile, or its JSON form from the control API) or off."""
        if isinstance(value, dict):
            value = Realism.from_dict(value)
        self._meter = Meter(value, lambda: len(self.directory)) if value is not None else None

    # -- knobs -----------------------------------------------------------------------------

    def clear_faults(self) -> None:
        with self._lock:
            self._throttle = (0, 0.0)
            self._fail = (0, 503)
            self._fail_pages: dict[int, int] = {}
            self._malformed: set[int] = set()
            self._drop_id: set[int] = set()
            self._reset_pages: dict[int, int] = {}  # page -> answers still to cut off
            self._hang_pages: dict[int, tuple[int, float]] = {}  # page -> (answers still to stall, seconds)
            self._expired_before = 0
            self._expire_mode = "400"
        self.auth.token_endpoint_down(0)

    def throttle_next(self, n: int, retry_after: float = 1) -> None:
        """The next ``n`` Graph requests get 429 with ``Retry-After: retry_after``."""
        with self._lock:
            self._throttle = (int(n), float(retry_after))

    def fail_next(self, n: int, status: int = 503) -> None:
        """The next ``n`` Graph requests fail with ``status`` (503, 504, 500...)."""
        with self._lock:
            self._fail = (int(n), int(status))

    def fail_page(self, k: int, status: int = 500) -> None:
        """The k-th page (k >= 1) of every delta round always fails; ``status=0`` clears it."""
        if k < 1:
            raise ValueError("pages count from 1")
        with self._lock:
            if status:
                self._fail_pages[int(k)] = int(status)
            else:
                self._fail_pages.pop(int(k), None)

    def expire_tokens(self, mode: str = "400") -> None:
        """Every delta token issued so far is refused: ``"400"`` syncStateNotFound, ``"410"`` Gone with
        a ``Location`` (a sync reset), or a sync-state code: ``syncStateInvalid`` (400),
        ``resyncRequired`` (409)."""
        if mode not in EXPIRY_MODES:
            raise ValueError(f"mode is one of {sorted(EXPIRY_MODES)}")
        with self._lock:
            self._expired_before = self._serial + 1
            self._expire_mode = mode

    def malformed_page(self, k: int) -> None:
        """The k-th page of every delta round is cut in half: not valid JSON."""
        with self._lock:
            self._malformed.add(int(k))

    def drop_id_on_page(self, k: int) -> None:
        """The first user of the k-th page of every delta round comes without its ``id``."""
        with self._lock:
            self._drop_id.add(int(k))

    def reset_page(self, k: int, times: int = 1) -> None:
        """The next ``times`` answers for the k-th page of a delta round lose their connection
        mid-body: the headers and half of the page arrive, then the server closes the connection."""
        if k < 1:
            raise ValueError("pages count from 1")
        with self._lock:
            self._reset_pages[int(k)] = int(times)

    def hang_page(self, k: int, seconds: float, times: int = 1) -> None:
        """The next ``times`` answers for the k-th page of a delta round stall ``seconds`` first
        (longer than the client's timeout: a read timeout mid-round)."""
        if k < 1:
            raise ValueError("pages count from 1")
        with self._lock:
            self._hang_pages[int(k)] = (int(times), float(seconds))

    def token_endpoint_down(self, n: int | bool = True) -> None:
        """The next ``n`` token requests answer 503 (``True``: until ``token_endpoint_down(False)``)."""
        self.auth.token_endpoint_down(n)

    @property
    def token_lifetime(self) -> int:
        """Seconds an access token lives (emulator clock); below 300 MSAL never serves it from cache."""
        return self.auth.token_lifetime

    @token_lifetime.setter
    def token_lifetime(self, seconds: int) -> None:
        self.auth.token_lifetime = int(seconds)

    def revoke_secret(self, client_id: str | None = None) -> None:
        """Token requests answer invalid_client and tokens already issued get 401."""
        self.auth.revoke_secret(client_id)

    def add_app(
        self, client_id: str, secret: str | None = None, certificate_pem: str | bytes | None = None, roles: Any = None
    ) -> None:
        kwargs = {} if roles is None else {"roles": frozenset(roles)}
        self.auth.add_app(client_id, secret, certificate_pem, **kwargs)

    def issue_user_jwt(self, claims: dict[str, Any], lifetime: int = 3600) -> str:
        """An RS256 token signed with the key published at ``/{tenant}/discovery/v2.0/keys``."""
        now = int(self.clock().timestamp())
        full = {
            "iss": f"{self.base_url}/{self.tenant_id}/v2.0",
            "tid": self.tenant_id,
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
            **claims,
        }
        return self.signing_key.sign(full)

    # -- the gate every Graph request passes -------------------------------------------------

    def gate(self, authorization: str | None, role: str) -> Reply | None:
        """Auth first, then injected throttling and failures, as Graph's front door orders them."""
        try:
            self.auth.authenticate(authorization, role)
        except AuthError as err:
            return error_reply(err)
        with self._lock:
            n, retry_after = self._throttle
            if n > 0:
                self._throttle = (n - 1, retry_after)
                self.stats["throttled"] += 1
                reply = graph_reply(429, "TooManyRequests", "Too many requests.")
                return Reply(429, reply.body, {"Retry-After": f"{retry_after:g}"})
            n, status = self._fail
            if n > 0:
                self._fail = (n - 1, status)
                self.stats["failed"] += 1
                return graph_reply(status, "serviceNotAvailable", "Injected failure.")
        return None

    def meter(self, endpoint: str, client_id: str) -> tuple[Reply | None, dict[str, str], float]:
        """Real-tenant limits (when ``realism`` is on): (a 429 or None, headers for the answer, latency)."""
        meter = self._meter
        if meter is None:
            return None, {}, 0.0
        latency = meter.latency(endpoint)
        wait, headers = meter.charge(client_id, endpoint, COSTS.get(endpoint, 1))
        if wait is None:
            return None, headers, latency
        self.stats["throttled"] += 1
        self.stats[f"throttled_{endpoint}"] += 1
        body = graph_reply(429, "TooManyRequests", "Too many requests.").body
        return Reply(429, body, {**headers, "Retry-After": f"{wait:.2f}"}), headers, latency

    # -- users/delta ---------------------------------------------------------------------------

    def delta(self, query: Mapping[str, str], link_base: str, prefer: str | None = None) -> Reply:
        """``GET /users/delta``: initial round, ``$skiptoken`` continuation, or ``$deltatoken`` round."""
        self.stats["delta"] += 1
        if (skip := query.get("$skiptoken")) is not None:
            data = self._codec.decode("round", skip)
            rid = data.get("r") if data else None
            with self._lock:
                rnd = self._rounds.get(rid) if isinstance(rid, str) else None
            if rnd is None or data is None:
                return graph_reply(400, "syncStateNotFound", "The skip token is invalid or has expired.")
            return self._page(rid, rnd, int(data["o"]), int(data["k"]), link_base)
        token = query.get("$deltatoken")
        if token == "latest":  # noqa: S105 - a documented keyword, not a secret
            fields = select_fields(query.get("$select"))
            return self._body(
                link_base, fields, b"[]", delta_link=self._delta_link(link_base, self.directory.version, fields)
            )
        if token is not None:
            data = self._codec.decode("delta", token)
            if data is None or data.get("t") != self.tenant_id:
                return graph_reply(400, "syncStateNotFound", "The delta token is not valid for this tenant.")
            with self._lock:
                expired, mode = data["n"] < self._expired_before, self._expire_mode
            if expired and mode != "400":
                status, code = EXPIRY_MODES[mode]
                reply = graph_reply(status, code, "The delta token is no longer valid; resync required.")
                if status == 410:  # a sync reset: Location names a fresh initial round
                    fields = ",".join(data["s"])
                    reply = Reply(410, reply.body, {**reply.headers, "Location": f"{link_base}?$select={fields}"})
                return reply
            age = self.clock().timestamp() - data["iat"]
            if expired or age > DELTA_TOKEN_MAX_AGE.total_seconds():
                return graph_reply(400, "syncStateNotFound", "The sync state generation is not found.")
            fields = tuple(data["s"])
            version, entries = self.directory.changes_since(int(data["w"]), fields)
            return self._start_round(_Round(version, entries, fields, self._page_size(prefer), False), link_base)
        fields = select_fields(query.get("$select"))
        version, entries = self.directory.snapshot(include_removed=self.removed_in_initial)
        return self._start_round(_Round(version, entries, fields, self._page_size(prefer), True), link_base)

    def _page_size(self, prefer: str | None) -> int:
        size = self.page_size
        if self._meter is not None:  # real Graph: ~200 a page, whatever Prefer asks
            return min(size, self._meter.realism.delta_page_cap)
        for part in (prefer or "").split(","):
            name, _, value = part.strip().partition("=")
            if name.lower() == "odata.maxpagesize" and value.isdigit():
                size = min(size, max(1, int(value)))
        return size

    def _start_round(self, rnd: _Round, link_base: str) -> Reply:
        rid = secrets.token_urlsafe(9)
        with self._lock:
            self._rounds[rid] = rnd
            while len(self._rounds) > _MAX_ROUNDS:
                self._rounds.popitem(last=False)
        return self._page(rid, rnd, 0, 1, link_base)

    def _delta_link(self, link_base: str, version: int, fields: tuple[str, ...]) -> str:
        with self._lock:
            self._serial += 1
            serial = self._serial
        token = self._codec.encode(
            "delta",
            {"t": self.tenant_id, "w": version, "iat": self.clock().timestamp(), "n": serial, "s": list(fields)},
        )
        return f"{link_base}?$deltatoken={token}"

    def _page(self, rid: str, rnd: _Round, offset: int, k: int, link_base: str) -> Reply:
        with self._lock:
            fail = self._fail_pages.get(k)
            malformed, drop_id = k in self._malformed, k in self._drop_id
            cut = self._reset_pages.get(k, 0) > 0
            if cut:
                self._reset_pages[k] -= 1
                self.stats["reset"] += 1
            hang_times, hang = self._hang_pages.get(k, (0, 0.0))
            if hang_times > 0:
                self._hang_pages[k] = (hang_times - 1, hang)
                self.stats["hung"] += 1
            else:
                hang = 0.0
        if fail:
            return graph_reply(fail, "generalException", f"Injected failure of page {k}.")
        entries, size = rnd.entries, rnd.page_size
        empty = self.empty_page_every >= 2 and k % self.empty_page_every == 0
        value: bytes | None = b"[]" if empty else None
        next_offset = offset
        if not empty:
            replay: list[Entry] = []
            if self.replay_every and k % self.replay_every == 0 and offset > 0:
                replay = list({id(e): e for e in (entries[offset - 1], entries[max(0, offset - size)])}.values())
            chunk = entries[offset : offset + size - len(replay)]
            next_offset = offset + len(chunk)
            if rnd.initial and not replay and not drop_id:
                value = self.directory.prerendered(rnd.version, rnd.fields, size, offset)
            if value is None:
                if drop_id and (replay or chunk):
                    items = [self._item(e, rnd.fields) for e in replay + chunk]
                    items[0].pop("id", None)
                    value = orjson.dumps(items)
                else:
                    value = render_entries(replay + chunk, rnd.fields)
        if not empty and next_offset >= len(entries):
            body = self._body(
                link_base, rnd.fields, value, delta_link=self._delta_link(link_base, rnd.version, rnd.fields)
            )
        else:
            skip = self._codec.encode("round", {"r": rid, "o": next_offset, "k": k + 1})
            body = self._body(link_base, rnd.fields, value, next_link=f"{link_base}?$skiptoken={skip}")
        if malformed:
            return Reply(200, body.body[: len(body.body) // 2], body.headers)
        if cut or hang:
            return Reply(body.status, body.body, body.headers, delay=hang, cut=cut)
        return body

    @staticmethod
    def _item(entry: Entry, fields: tuple[str, ...]) -> dict[str, Any]:
        if isinstance(entry, Removed):
            return {"id": entry.id, "@removed": {"reason": entry.reason}}
        return project(entry, fields)

    def _body(
        self,
        link_base: str,
        fields: tuple[str, ...],
        value: bytes,
        *,
        next_link: str | None = None,
        delta_link: str | None = None,
    ) -> Reply:
        root = link_base.split("/v1.0/", 1)[0]
        context = orjson.dumps(f"{root}/v1.0/$metadata#users({','.join(fields)})")
        link = (
            (b',"@odata.nextLink":' + orjson.dumps(next_link))
            if next_link
            else (b',"@odata.deltaLink":' + orjson.dumps(delta_link))
        )
        body = b'{"@odata.context":' + context + b',"value":' + value + link + b"}"
        return Reply(200, body, {"Content-Type": "application/json"})
