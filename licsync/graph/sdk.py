"""Build the msgraph-sdk pieces licsync uses; imported lazily because msgraph loads ~1 s of modules.

The SDK is kept for what it does well — request builders, URL templates, auth, telemetry
headers — and is told to hand back raw ``httpx.Response`` objects. Its RetryHandler is left out
of the middleware on purpose: GraphClient owns the retry policy, and two layers retrying the
same 429 would multiply waits (the SDK also treats ``Retry-After: 0`` as unset).
"""

from __future__ import annotations

from typing import Any

import httpx
from kiota_abstractions.authentication import AccessTokenProvider


def build_service_client(graph_url: str, token_provider: AccessTokenProvider, http_client: httpx.AsyncClient) -> Any:
    """A ``GraphServiceClient`` on ``http_client`` with the default middleware minus RetryHandler."""
    from kiota_abstractions.authentication import BaseBearerTokenAuthenticationProvider
    from kiota_http.middleware import ParametersNameDecodingHandler, RedirectHandler, UserAgentHandler
    from kiota_http.middleware.options import UserAgentHandlerOption
    from msgraph import GraphRequestAdapter, GraphServiceClient
    from msgraph_core import GraphClientFactory
    from msgraph_core.middleware import GraphTelemetryHandler

    from licsync import __version__ as licsync_version

    middleware = [
        RedirectHandler(),  # drops Authorization if a redirect leaves the host
        ParametersNameDecodingHandler(),  # %24select -> $select, as Graph documents it
        UserAgentHandler(UserAgentHandlerOption(product_name="licsync", product_version=licsync_version)),
        GraphTelemetryHandler(),  # client-request-id and SdkVersion headers, for Microsoft support
    ]
    client = GraphClientFactory.create_with_custom_middleware(middleware, client=http_client)
    adapter = GraphRequestAdapter(BaseBearerTokenAuthenticationProvider(token_provider), client)
    adapter.base_url = graph_url  # applied on every request; also what serves sovereign clouds
    return GraphServiceClient(request_adapter=adapter)


def raw_config(query: Any = None, headers: dict[str, str] | None = None) -> Any:
    """A RequestConfiguration asking for the native httpx response instead of typed models.

    ``query`` is one of the SDK's generated ``...GetQueryParameters`` dataclasses; kiota maps
    their fields to the ``$select``/``$top`` template names.
    """
    from kiota_abstractions.base_request_configuration import RequestConfiguration
    from kiota_abstractions.native_response_handler import NativeResponseHandler
    from kiota_http.middleware.options.response_handler_option import ResponseHandlerOption

    config: Any = RequestConfiguration(options=[ResponseHandlerOption(NativeResponseHandler())])
    config.query_parameters = query
    for name, value in (headers or {}).items():
        config.headers.add(name, value)
    return config
