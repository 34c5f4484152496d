"""One SDK client's POSTs without its per-call request building: what is the same for every
call to a (path, options) pair is built once, by the SDK itself, and each call only adds its body.

The SDK's `post()` rebuilds per attempt what never changes for a client (merged default and
auth headers, platform headers, the URL, the timeout) and copies its options model twice. Here
the first call to a (path, options) builds a request with the SDK's own `_prepare_options`,
`_build_request` and `_prepare_request` and keeps its URL, header list and extensions; later
calls send a copy of that request with this call's body (serialized by the SDK's own
`openapi_dumps`, so the bytes are the SDK's, NaN refused as it refuses it), Content-Length and
x-stainless-retry-count, through the client's own httpx2 client (its transport and pool).
When that client is plain (a LeanTransport for every URL, no auth, no event hooks: what
providers/ builds), the request goes straight to the transport, as httpx2's
`_send_single_request` hands it over, without the client's auth, redirect and hook layers
around it; a redirect goes on through the client's own redirect handling, as it would have.
Retries, their delays, and the errors raised are the SDK's: its `_should_retry`,
`_sleep_for_retry` (which honours Retry-After through `_calculate_retry_timeout`),
`_make_status_error_from_response`, APITimeoutError and APIConnectionError.

Private SDK members used (the SDK versions are pinned in constraints.txt, bounded in
pyproject.toml): `_prepare_options`, `_build_request`, `_prepare_request`, `_should_retry`,
`_sleep_for_retry`, `_make_status_error_from_response`, `_idempotency_header`,
`_idempotency_key`, `_platform`, `_client`; openai's `_provider_runtime`,
`_workload_identity_auth`, `_api_key_provider`; anthropic's `_copy_and_prepare`, `_middleware`,
`_tracer`, `_open_telemetry`, `_token_cache`. A client using any feature that hooks into
sending (custom auth, OpenAI workload identity or provider runtimes or key providers, Anthropic
middleware or credential tokens, or Anthropic's OpenTelemetry spans once a tracer provider is
set) gets the SDK's own `post()`: nothing here reproduces those paths.

Private httpx2 members used for the direct path (httpx2 pinned the same way): the client's
`_transport`, `_mounts`, `_auth`, `_event_hooks`, `_state`, `_default_encoding`,
`_build_redirect_request`, `_send_handling_redirects`, and `ClientState`, `request_context`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from typing import Any

import anthropic
import httpx2
import openai
from anthropic._base_client import get_platform as _anthropic_platform
from anthropic._models import FinalRequestOptions as _AnthropicOptions
from anthropic._utils import asyncify as _anthropic_asyncify
from anthropic._utils._json import openapi_dumps as _anthropic_dumps
from httpx2._client import ClientState as _ClientState
from httpx2._exceptions import request_context as _request_context
from openai._base_client import get_platform as _openai_platform
from openai._httpx2 import request_exceptions as _openai_request_exceptions
from openai._httpx2 import timeout_exceptions as _openai_timeout_exceptions
from openai._models import FinalRequestOptions as _OpenAIOptions
from openai._utils import asyncify as _openai_asyncify
from openai._utils._json import openapi_dumps as _openai_dumps
from opentelemetry import trace

from providers.transport import LeanTransport

Client = openai.AsyncOpenAI | anthropic.AsyncAnthropic

# OpenTelemetry's global tracer provider before an application sets one: its spans record nothing
_UNSET_PROVIDERS = (trace.ProxyTracerProvider, trace.NoOpTracerProvider)
_RETRY_COUNT = b"x-stainless-retry-count"
_CONTENT_LENGTH = b"content-length"
_httpx_log = logging.getLogger("httpx2")


class _Template:
    """A request the SDK built, less its body: the fixed parts and where the varying ones go.

    Its headers are parsed once: each request's Headers share the template's entries (an
    httpx2.Headers copied from another copies the list, not the entries) and replace only the
    length, the retry count and the idempotency key. A request built with `content=` would
    normalise every header twice, and a stream keeps its request as long as it is open."""

    __slots__ = ("url", "headers", "extensions", "length", "count", "key", "options")

    def __init__(self, request: httpx2.Request, options: Any, idempotency: bytes | None) -> None:
        self.url = request.url
        self.headers = httpx2.Headers(request.headers)
        self.extensions = dict(request.extensions)
        self.options = options  # the prepared options: the retry delay reads max_retries off them
        names = {name.lower(): name.decode("ascii") for name, _ in request.headers.raw}
        self.length = names[_CONTENT_LENGTH]
        self.count = names.get(_RETRY_COUNT)
        self.key = names.get(idempotency) if idempotency else None

    def request(self, content: bytes, retries_taken: int, key: bytes | None) -> httpx2.Request:
        headers = httpx2.Headers(self.headers)
        headers[self.length] = str(len(content))
        if self.count is not None:
            headers[self.count] = str(retries_taken)
        if self.key is not None and key is not None:
            headers[self.key] = key.decode("ascii")
        request = httpx2.Request(
            "POST",
            self.url,
            headers=headers,
            stream=httpx2.ByteStream(content),  # `content=` would add the headers we have
            extensions=dict(self.extensions),
        )
        request.read()  # as `content=` does: the body is there for a retry and for errors
        return request


class SdkCalls:
    """`post(path, body=..., options=..., stream=...)` as the client's `post(...,
    cast_to=httpx2.Response)` answers it: the httpx2.Response once its headers are in, or the
    SDK's exception."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._openai = isinstance(client, openai.AsyncOpenAI)
        self._templates: dict[tuple[str, str], _Template] = {}
        self._auth: tuple[Any, ...] = ()

    def _plain(self) -> bool:
        """True when nothing in the client hooks into building or sending a request."""
        client: Any = self._client
        if client.custom_auth is not None:
            return False
        if self._openai:
            return (
                client._provider_runtime is None
                and client._workload_identity_auth is None
                and client._api_key_provider is None
            )
        return not client._middleware and client._token_cache is None and self._untraced()

    def _untraced(self) -> bool:
        """True when the SDK's spans would go nowhere: no tracer, or OpenTelemetry's global
        provider still the placeholder nothing records (asked per call: it may be set later)."""
        client: Any = self._client
        if client._tracer is None:
            return True
        if client._open_telemetry.get("tracer_provider") is not None:
            return False
        return isinstance(trace.get_tracer_provider(), _UNSET_PROVIDERS)

    def _credentials(self) -> tuple[Any, ...]:
        client: Any = self._client
        if self._openai:
            return (client.api_key, client.admin_api_key, client.organization, client.project)
        return (client.api_key, client.auth_token)

    async def post(
        self,
        path: str,
        *,
        body: Mapping[str, Any],
        options: Mapping[str, Any] | None = None,
        stream: bool = False,
    ) -> httpx2.Response:
        client: Any = self._client
        if not self._plain():
            return await client.post(  # type: ignore[no-any-return]
                path, cast_to=httpx2.Response, body=body, options=options or {}, stream=stream
            )
        credentials = self._credentials()
        if credentials != self._auth:  # a new key: every template carries the old one
            self._templates.clear()
            self._auth = credentials
        cached = (path, repr(options))
        template = self._templates.get(cached)
        if template is None:
            template = self._templates[cached] = await self._template(path, options or {})
        content = _openai_dumps(body) if self._openai else _anthropic_dumps(body)
        return await self._send(template, content, stream)

    async def _template(self, path: str, options: Mapping[str, Any]) -> _Template:
        """The request the SDK would send for this path and options, with an empty body."""
        client: Any = self._client
        if client._platform is None:  # as request() does, off the event loop
            platform = _openai_platform if self._openai else _anthropic_platform
            asyncify = _openai_asyncify if self._openai else _anthropic_asyncify
            client._platform = await asyncify(platform)()
        model = _OpenAIOptions if self._openai else _AnthropicOptions
        prepared = model.construct(method="post", url=path, json_data={}, **options)
        header = client._idempotency_header
        if header:
            prepared.idempotency_key = client._idempotency_key()
        if not self._openai:
            prepared = await client._copy_and_prepare(prepared)
        prepared = await client._prepare_options(prepared)
        request = client._build_request(prepared, retries_taken=0)
        await client._prepare_request(request)
        return _Template(request, prepared, header.lower().encode() if header else None)

    async def _send(self, template: _Template, content: bytes, stream: bool) -> httpx2.Response:
        """The SDK's retry loop over one body (bytes, so always replayable)."""
        client: Any = self._client
        http: httpx2.AsyncClient = client._client
        options = template.options
        max_retries = options.get_max_retries(client.max_retries)
        key = client._idempotency_key().encode() if template.key is not None else None
        if self._openai:
            timeouts: tuple[type[BaseException], ...] = _openai_timeout_exceptions()
            failures: tuple[type[BaseException], ...] = _openai_request_exceptions()
            sdk_error: type[BaseException] = openai.OpenAIError
            timeout_error: Any = openai.APITimeoutError
            connection_error: Any = openai.APIConnectionError
        else:
            timeouts, failures = (httpx2.TimeoutException,), (Exception,)
            sdk_error = anthropic.AnthropicError
            timeout_error, connection_error = (
                anthropic.APITimeoutError,
                anthropic.APIConnectionError,
            )
        for retries_taken in range(max_retries + 1):
            remaining = max_retries - retries_taken
            request = template.request(content, retries_taken, key)
            try:
                response = await _send(http, request, stream)
            except sdk_error:
                raise
            except timeouts as exc:
                if remaining > 0:
                    await self._sleep(retries_taken, max_retries, options, None)
                    continue
                raise timeout_error(request=request) from exc
            except failures as exc:
                if remaining > 0:
                    await self._sleep(retries_taken, max_retries, options, None)
                    continue
                raise connection_error(request=request) from exc
            if response.is_success:
                return response
            if remaining > 0 and client._should_retry(response):
                await response.aclose()
                await self._sleep(retries_taken, max_retries, options, response)
                continue
            if not response.is_closed:
                await response.aread()
            raise client._make_status_error_from_response(response) from None
        raise RuntimeError("no attempt was made")  # max_retries >= 0: unreachable

    async def _sleep(
        self, retries_taken: int, max_retries: int, options: Any, response: httpx2.Response | None
    ) -> None:
        await self._client._sleep_for_retry(
            retries_taken=retries_taken, max_retries=max_retries, options=options, response=response
        )


async def _send(http: httpx2.AsyncClient, request: httpx2.Request, stream: bool) -> httpx2.Response:
    """`http.send(request, stream=stream)`; for a plain client, the transport's own answer
    with what httpx2's `_send_single_request` adds to it (the request, the client's cookies
    and default encoding, its log line), less the body wrapper that times `elapsed`."""
    transport = _direct_transport(http)
    if transport is None or request.url.userinfo:  # credentials in the URL: httpx2's auth
        return await http.send(request, stream=stream)
    http._state = _ClientState.OPENED
    with _request_context(request=request):
        response = await transport.handle_async_request(request)
    response.request = request
    if "set-cookie" in response.headers:
        http.cookies.extract_cookies(response)
    response.default_encoding = http._default_encoding
    if _httpx_log.isEnabledFor(logging.INFO):
        _httpx_log.info(
            'HTTP Request: %s %s "%s %d %s"',
            request.method,
            request.url,
            response.http_version,
            response.status_code,
            response.reason_phrase,
        )
    if response.has_redirect_location:  # from here on the client's own redirect handling
        try:
            if http.follow_redirects:
                redirect = http._build_redirect_request(request, response)
                await response.aread()
                response = await http._send_handling_redirects(
                    redirect, follow_redirects=True, history=[response]
                )
            else:
                with contextlib.suppress(httpx2.RemoteProtocolError):
                    response.next_request = http._build_redirect_request(request, response)
        except BaseException:
            await response.aclose()
            raise
    if not stream:
        try:
            await response.aread()
        except BaseException:
            await response.aclose()
            raise
    return response


def _direct_transport(http: httpx2.AsyncClient) -> LeanTransport | None:
    """The client's LeanTransport when nothing else in it acts on a request: no mounts (a
    proxy), no auth, no event hooks, and the client open."""
    transport = http._transport
    if (
        type(transport) is not LeanTransport
        or http._state is _ClientState.CLOSED
        or http._mounts
        or http._auth is not None
        or http._event_hooks["request"]
        or http._event_hooks["response"]
    ):
        return None
    return transport
