"""GraphClient: the Microsoft Graph reads and writes licsync needs, with one retry policy.

Requests go through the real msgraph-sdk (request builders, bearer auth, telemetry headers) but
come back raw and are parsed with orjson (see ``parse``). Retries live here only: the SDK's
RetryHandler is left out of the middleware (see ``sdk``), and every non-2xx answer is mapped by
``status.error_for_response``.
"""

from __future__ import annotations

import asyncio
import random
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import httpx
import orjson

from licsync import metrics
from licsync.config import TenantConfig
from licsync.errors import PermanentError, TransientError, truncate
from licsync.graph import tls
from licsync.graph.auth import GraphTokenProvider, TokenSource, token_tenant_id
from licsync.graph.pacing import MinutePacer
from licsync.graph.parse import (
    USER_SELECT,
    DeltaPage,
    UserRow,
    parse_delta_page,
    parse_id_page,
    parse_sign_in_page,
    parse_user,
    parse_user_page,
)
from licsync.graph.status import error_for_response
from licsync.log import get_logger

__all__ = ["USER_SELECT", "DeltaPage", "GraphClient", "GraphStats", "UserRow"]

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[Any]]

_READ = "User.Read.All"
# A Graph URL that has never answered this client (a typo, a firewall) is not retried for minutes:
# this many retries, a few seconds, then the error names the URL.
_NEVER_REACHED_RETRIES = 2


@dataclass
class GraphStats:
    """Counters for one cycle's summary line and metrics (token endpoint calls excluded)."""

    requests: int = 0
    retries: int = 0
    throttled: int = 0
    waited_seconds: float = 0.0
    pages: int = 0
    throttle_peak: float = 0.0  # highest x-ms-throttle-limit-percentage seen


def _tls_verify_failed(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    for _ in range(6):
        if seen is None:
            return False
        if isinstance(seen, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class GraphClient:
    """Async Graph access for one tenant. Create it, iterate, then ``await aclose()``.

    ``backoff_base``/``backoff_cap`` shape the exponential backoff (with jitter) used for 5xx
    and lost connections; tests lower the base to stay fast. A 429 waits exactly its
    ``Retry-After``; one longer than ``tenant.max_retry_after`` is not waited out but raised
    as TransientError(retry_after=…) so the scheduler comes back later.
    """

    backoff_base: float = 1.0
    backoff_cap: float = 60.0
    # The last x-ms-throttle-limit-percentage Graph sent (0 below 80%, where it sends none).
    throttle_percent: float = 0.0

    def __init__(
        self,
        tenant: TenantConfig,
        *,
        stats: GraphStats | None = None,
        sleep: Sleep = asyncio.sleep,
        token_source: TokenSource | None = None,
    ) -> None:
        from licsync.graph.sdk import build_service_client  # pulls in msgraph (~1 s) only when used

        self.tenant = tenant
        self.stats = stats if stats is not None else GraphStats()
        self._sleep = sleep
        self._own_tokens = token_source is None
        self._tokens = token_source if token_source is not None else TokenSource(tenant)
        self._sign_in_pace = MinutePacer(tenant.sign_in_requests_per_minute, self._sleep, self.stats)
        self._max_retries = tenant.max_retries
        self._reached = False  # has Graph answered this client at least once?
        self._max_retry_after = tenant.max_retry_after.total_seconds()
        seconds = tenant.timeout.total_seconds()
        timer = metrics.GraphTimer(httpx.URL(tenant.graph_url).path)
        # Our own transport, kept to close it: msgraph-core's AsyncGraphTransport wraps the
        # client's transport but has no aclose(), so closing the client alone leaks connections.
        self._transport = httpx.AsyncHTTPTransport(verify=tls.client_ssl_context(tenant.ca_bundle), trust_env=False)
        self._http = httpx.AsyncClient(
            transport=self._transport,
            timeout=httpx.Timeout(seconds, connect=min(seconds, 30.0)),
            trust_env=False,  # env vars must not decide trust (SPEC §5); MSAL's session does the same
            event_hooks={"request": [self._count_request, timer.on_request], "response": [timer.on_response]},
        )
        self._sdk = build_service_client(
            tenant.graph_url, GraphTokenProvider(self._tokens, tenant.graph_url), self._http
        )

    async def _count_request(self, _request: httpx.Request) -> None:
        self.stats.requests += 1

    async def aclose(self) -> None:
        await self._http.aclose()
        await self._transport.aclose()
        if self._own_tokens:
            self._tokens.close()

    async def token_tenant_id(self) -> str | None:
        """The ``tid`` of this tenant's current Graph token (from MSAL's cache when still valid)."""
        return token_tenant_id(await asyncio.to_thread(self._tokens.get_token))

    async def __aenter__(self) -> GraphClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    # -- the one retry loop ------------------------------------------------------------------

    def _backoff(self, attempt: int) -> float:
        return min(self.backoff_cap, self.backoff_base * 2**attempt) * random.uniform(0.5, 1.0)

    async def _send(
        self,
        call: Callable[[], Awaitable[Any]],
        *,
        what: str,
        permission: str = _READ,
        delta: bool = False,
        idempotent: bool = True,
        accept: tuple[int, ...] = (),
    ) -> httpx.Response:
        """Send with retries: 429 waits Retry-After; 5xx, lost connections and an unavailable token
        endpoint back off; a 401 gets one fresh token.

        A non-idempotent call (sendMail) is retried only when Graph surely did not act on it:
        429, 503, or a connection that was never established. A status in ``accept`` is returned,
        not raised (``GET /users/{id}``: 404 is an answer).
        """
        attempt = 0
        reauthenticated = False
        while True:
            status = "connection"  # the retry's reason on the metrics: an HTTP status, or this
            try:
                resp = await call()
            except TransientError as exc:  # the token endpoint, reached through the auth provider
                error, retryable = exc, True
            except httpx.TransportError as exc:
                if _tls_verify_failed(exc):
                    raise PermanentError(
                        f"Graph {what}: TLS verification of {self.tenant.graph_url} failed; set ca_bundle if "
                        "it uses a private CA"
                    ) from None
                error = TransientError(f"Graph {what}: connection failed ({type(exc).__name__}) "
                                       f"to {self.tenant.graph_url}")
                connect = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
                retryable = idempotent or connect
                if connect and not self._reached and attempt >= min(self._max_retries, _NEVER_REACHED_RETRIES):
                    raise TransientError(
                        f"Graph {what}: cannot connect to {self.tenant.graph_url} ({type(exc).__name__}); gave up "
                        f"after {attempt + 1} attempts in {self.stats.waited_seconds:.0f} s — check graph_url "
                        "and the network path (proxy, firewall)"
                    ) from None
            else:
                self._reached = True
                if not isinstance(resp, httpx.Response):  # pragma: no cover - NativeResponseHandler contract
                    raise PermanentError(f"Graph {what}: the SDK returned {type(resp).__name__}, not a response")
                self._observe(resp)
                if resp.is_success or resp.status_code in accept:
                    return resp
                if resp.status_code == 401 and not reauthenticated:
                    # An access token can be revoked or expire early; one fresh token settles it.
                    reauthenticated = True
                    await asyncio.to_thread(self._tokens.invalidate)
                    self.stats.retries += 1
                    metrics.GRAPH_RETRIES.labels(self.tenant.name, "401").inc()
                    continue
                status = str(resp.status_code)
                if resp.status_code == 429:
                    self.stats.throttled += 1
                    metrics.GRAPH_THROTTLED.labels(self.tenant.name).inc()
                error = error_for_response(
                    resp.status_code, resp.content, resp.headers, what=what, permission=permission, delta=delta
                )
                retryable = idempotent or resp.status_code in (429, 503)
            if not isinstance(error, TransientError) or not retryable or attempt >= self._max_retries:
                raise error
            if error.retry_after is not None and error.retry_after > self._max_retry_after:
                raise TransientError(
                    f"{error} — Graph asks to wait {error.retry_after:.0f} s, more than max_retry_after "
                    f"({self._max_retry_after:.0f} s); try again later",
                    retry_after=error.retry_after,
                )
            delay = error.retry_after if error.retry_after is not None else self._backoff(attempt)
            attempt += 1
            get_logger(tenant=self.tenant.name).warning(
                "graph_retry", error=str(error), attempt=attempt, of=self._max_retries, wait_seconds=round(delay, 1)
            )
            self.stats.retries += 1
            metrics.GRAPH_RETRIES.labels(self.tenant.name, status).inc()
            self.stats.waited_seconds += delay
            await self._sleep(delay)

    def _observe(self, resp: httpx.Response) -> None:
        """Note how close the app is to its resource-unit budget (Graph says so from 80% on)."""
        value = resp.headers.get("x-ms-throttle-limit-percentage")
        try:
            percent = float(value) if value else 0.0
        except ValueError:
            percent = 0.0
        self.throttle_percent = percent
        self.stats.throttle_peak = max(self.stats.throttle_peak, percent)

    async def _follow(
        self,
        builder: Any,
        config: Any,
        parse: Callable[[bytes], tuple[list[T], str | None]],
        *,
        what: str,
        permission: str = _READ,
        pace: Callable[[], Awaitable[None]] | None = None,
    ) -> AsyncIterator[tuple[list[T], str | None]]:
        """Yield each page's items and nextLink, following the links verbatim until there is none."""
        from licsync.graph.sdk import raw_config

        while True:
            if pace is not None:
                await pace()
            resp = await self._send(
                lambda b=builder, c=config: b.get(request_configuration=c), what=what, permission=permission
            )
            items, next_link = parse(resp.content)
            self.stats.pages += 1
            yield items, next_link
            if not next_link:
                return
            builder, config = builder.with_url(next_link), raw_config()

    # -- public API ----------------------------------------------------------------------------

    async def delta_pages(self, delta_link: str | None) -> AsyncIterator[DeltaPage]:
        """One delta round: the initial one (``delta_link=None``, with ``$select``) or from a deltaLink.

        Every nextLink is followed verbatim — empty pages included — until a page carries the
        deltaLink. Pages are yielded as they arrive; the caller stores the deltaLink only after
        applying the whole round.
        """
        from msgraph.generated.users.delta.delta_request_builder import DeltaRequestBuilder

        from licsync.graph.sdk import raw_config

        builder = self._sdk.users.delta
        if delta_link is None:
            query = DeltaRequestBuilder.DeltaRequestBuilderGetQueryParameters(select=USER_SELECT.split(","))
            headers = {"Prefer": f"odata.maxpagesize={self.tenant.page_size}"} if self.tenant.page_size else None
            config = raw_config(query, headers)
        else:
            builder, config = builder.with_url(delta_link), raw_config()
        while True:
            resp = await self._send(
                lambda b=builder, c=config: b.get(request_configuration=c), what="users/delta", delta=True
            )
            page = parse_delta_page(resp.content)
            self.stats.pages += 1
            yield page
            if page.delta_link is not None:
                return
            if not page.next_link:
                raise PermanentError("Graph users/delta: a page carried neither @odata.nextLink nor @odata.deltaLink")
            builder, config = builder.with_url(page.next_link), raw_config()

    # -- the parallel full read (licsync.graph.fullread) ----------------------------------------

    async def latest_delta_link(self) -> str:
        """``GET /users/delta?$deltatoken=latest``: a deltaLink "from now", with our ``$select``,
        without enumerating anything."""
        from licsync.graph.sdk import raw_config

        url = f"{self.tenant.graph_url}/users/delta?$deltatoken=latest&$select={USER_SELECT}"
        builder = self._sdk.users.delta.with_url(url)
        what = "users/delta?$deltatoken=latest"
        resp = await self._send(lambda: builder.get(request_configuration=raw_config()), what=what, delta=True)
        page = parse_delta_page(resp.content)
        if page.delta_link is None:
            raise PermanentError(f"Graph {what}: the answer carried no @odata.deltaLink")
        return page.delta_link

    async def user_pages(
        self, prefix: str | None = None, *, top: int = 999, resume: str | None = None
    ) -> AsyncIterator[tuple[list[UserRow], str | None]]:
        """``GET /users?$select=…&$top=…``, optionally one shard
        (``$filter=startsWith(userPrincipalName,'prefix')``): each page's rows and the nextLink to
        resume after it (None after the last). ``resume`` continues from such a link."""
        from msgraph.generated.users.users_request_builder import UsersRequestBuilder

        from licsync.graph.sdk import raw_config

        where = None if prefix is None else f"startsWith(userPrincipalName,'{prefix.replace(chr(39), chr(39) * 2)}')"
        query = UsersRequestBuilder.UsersRequestBuilderGetQueryParameters(
            select=USER_SELECT.split(","), top=top, filter=where
        )
        what = "users" + (f"?$filter={where}" if where else "")
        builder, config = self._sdk.users, raw_config(query)
        if resume is not None:
            builder, config = builder.with_url(resume), raw_config()
        async for page in self._follow(builder, config, parse_user_page, what=what):
            yield page

    async def user_count(self, prefix: str | None = None) -> int:
        """``GET /users/$count`` (``ConsistencyLevel: eventual``), optionally of one shard."""
        from msgraph.generated.users.count.count_request_builder import CountRequestBuilder

        from licsync.graph.sdk import raw_config

        where = None if prefix is None else f"startsWith(userPrincipalName,'{prefix.replace(chr(39), chr(39) * 2)}')"
        config = raw_config(
            CountRequestBuilder.CountRequestBuilderGetQueryParameters(filter=where), {"ConsistencyLevel": "eventual"}
        )
        resp = await self._send(lambda: self._sdk.users.count.get(request_configuration=config), what="users/$count")
        try:
            return int(resp.content.strip())
        except ValueError:
            raise PermanentError(f"Graph users/$count: not a number: {truncate(resp.text, 100)}") from None

    async def get_user(self, uid: str) -> UserRow | None:
        """``GET /users/{id}``: the user, or None when Graph answers 404 (deleted, softly or for good)."""
        from msgraph.generated.users.item.user_item_request_builder import UserItemRequestBuilder

        from licsync.graph.sdk import raw_config

        query = UserItemRequestBuilder.UserItemRequestBuilderGetQueryParameters(select=USER_SELECT.split(","))
        builder = self._sdk.users.by_user_id(uid)
        resp = await self._send(
            lambda: builder.get(request_configuration=raw_config(query)), what="users/{id}", accept=(404,)
        )
        return None if resp.status_code == 404 else parse_user(resp.content)

    async def deleted_user_ids(self) -> AsyncIterator[list[str]]:
        """Ids of soft-deleted (restorable) users, one list per page."""
        from msgraph.generated.directory.deleted_items.graph_user.graph_user_request_builder import (
            GraphUserRequestBuilder,
        )

        from licsync.graph.sdk import raw_config

        query = GraphUserRequestBuilder.GraphUserRequestBuilderGetQueryParameters(
            select=["id"], top=self.tenant.page_size or 999
        )
        async for ids, _next in self._follow(
            self._sdk.directory.deleted_items.graph_user,
            raw_config(query),
            parse_id_page,
            what="directory/deletedItems/microsoft.graph.user",
        ):
            yield ids

    async def users_sign_in_activity(self) -> AsyncIterator[list[tuple[str, datetime | None]]]:
        """``(id, last sign-in)`` per user: the later of ``lastSuccessfulSignInDateTime`` and
        ``lastNonInteractiveSignInDateTime`` (SSO into an LMS is non-interactive; a failed attempt
        is no activity). Needs AuditLog.Read.All and Entra ID P1. Requests are paced to
        ``sign_in_requests_per_minute`` (Graph allows 10 a minute for identity reports)."""
        from msgraph.generated.users.users_request_builder import UsersRequestBuilder

        from licsync.graph.sdk import raw_config

        query = UsersRequestBuilder.UsersRequestBuilderGetQueryParameters(
            select=["id", "signInActivity"], top=min(self.tenant.page_size or 500, 500)
        )
        async for pairs, _next in self._follow(
            self._sdk.users,
            raw_config(query),
            parse_sign_in_page,
            what="users?$select=signInActivity",
            permission="AuditLog.Read.All (and Entra ID P1)",
            pace=self._sign_in_pace.wait,
        ):
            yield pairs

    async def send_mail(self, sender: str, message: dict[str, Any], *, save_to_sent_items: bool = False) -> None:
        """``POST /users/{sender}/sendMail``; ``message`` is a Graph message resource.

        202 means accepted for delivery, not delivered.
        """
        from kiota_abstractions.method import Method
        from kiota_abstractions.request_information import RequestInformation

        from licsync.graph.sdk import raw_config

        builder = self._sdk.users.by_user_id(sender).send_mail
        body = orjson.dumps({"message": message, "saveToSentItems": save_to_sent_items})

        def call() -> Awaitable[Any]:
            info = RequestInformation(Method.POST, builder.url_template, builder.path_parameters)
            info.configure(raw_config())
            info.set_stream_content(body, "application/json")
            return self._sdk.request_adapter.send_primitive_async(info, "bytes", None)

        resp = await self._send(call, what="sendMail", permission="Mail.Send", idempotent=False)
        if resp.status_code != 202:
            raise PermanentError(f"Graph sendMail: expected HTTP 202, got {resp.status_code}")
