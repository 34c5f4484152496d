"""A small typed async client for the Conversation Service API.

    async with GatewayClient("http://127.0.0.1:8000", token, org_id="acme") as gw:
        conv = await gw.create_conversation("Project Discussion")
        session = await gw.create_session(conv["id"], "demo")
        async for event in gw.stream_chat(session["id"], "How do vector databases work?"):
            if event.type == "content":
                print(event.delta, end="", flush=True)

A dropped connection is resumed through the resume route with Last-Event-ID, so the
iteration yields every content event exactly once.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

EventType = Literal["start", "content", "error", "end"]


@dataclass(slots=True, frozen=True)
class StreamEvent:
    type: EventType
    data: dict[str, Any] = field(default_factory=dict)
    id: str | None = None

    @property
    def delta(self) -> str:
        return self.data.get("delta", "") if self.type == "content" else ""


class GatewayError(Exception):
    """An error answer in the contract's shape."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


async def sse_lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[str]:
    """The stream's lines, split only where the SSE format ends a line: CR, LF or CRLF.
    (httpx's aiter_lines() uses str.splitlines(), which also splits on U+2028, U+2029,
    U+0085 and a few control characters: a JSON string holding one would be cut in two.)
    Lines are split as bytes, then decoded: a character cut between two reads is whole."""
    pending = b""
    cr = False  # the last read ended with CR: a LF first in the next one is the same break
    async for chunk in chunks:
        if not chunk:
            continue
        if cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]
        cr = chunk.endswith(b"\r")
        lines = (pending + chunk).replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
        pending = lines.pop()
        for line in lines:
            yield line.decode("utf-8")
    if pending:
        yield pending.decode("utf-8")


async def parse_sse(lines: AsyncIterator[str]) -> AsyncIterator[StreamEvent]:
    """Server-sent events from text lines (comments and unknown fields ignored)."""
    event, data, event_id = "message", [], None
    async for line in lines:
        if not line:
            if data:
                yield StreamEvent(event, json.loads("\n".join(data)), event_id)  # type: ignore[arg-type]
            event, data, event_id = "message", [], None
        elif line.startswith(":"):
            continue
        else:
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "event":
                event = value
            elif name == "data":
                data.append(value)
            elif name == "id":
                event_id = value


class GatewayClient:
    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        org_id: str,
        timeout: float = 300.0,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.org_id = org_id
        self._http = http or httpx.AsyncClient(
            base_url=base_url,
            timeout=httpx.Timeout(timeout, connect=10.0),
            headers={"Authorization": f"Bearer {token}"},
        )

    async def __aenter__(self) -> GatewayClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        r = await self._http.request(
            method, path, params={"org_id": self.org_id, **kwargs.pop("params", {})}, **kwargs
        )
        if r.status_code >= 400:
            raise _error(r.status_code, r.content)
        return r.json()

    async def create_conversation(
        self, title: str, *, workspace_id: str | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"title": title}
        if workspace_id:
            body["workspace_id"] = workspace_id
        return await self._json("POST", "/api/conversation/create", json=body)

    async def create_session(self, conversation_id: str, model_id: str) -> dict[str, Any]:
        return await self._json(
            "POST",
            "/api/conversation/create_session",
            json={"conversation_id": conversation_id, "model_id": model_id},
        )

    async def list_conversations(self, *, limit: int = 50, offset: int = 0) -> dict[str, Any]:
        return await self._json(
            "GET", "/api/conversation/list", params={"limit": limit, "offset": offset}
        )

    async def messages(
        self, conversation_id: str, *, limit: int = 20, offset: int = 0
    ) -> dict[str, Any]:
        return await self._json(
            "GET",
            "/api/conversation/messages",
            params={"conversation_id": conversation_id, "limit": limit, "offset": offset},
        )

    async def stop(self, message_id: str) -> dict[str, Any]:
        return await self._json("POST", "/api/conversation/stop", json={"message_id": message_id})

    async def stream_chat(
        self,
        chat_session_id: str,
        message: str,
        *,
        resume_attempts: int = 3,
        on_disconnect: Literal["cancel", "continue"] = "continue",
    ) -> AsyncIterator[StreamEvent]:
        """start, content..., [error], end: reconnecting through the resume route when the
        connection drops before `end`. The gateway keeps generating through the drop
        (on_disconnect="continue") so the resumed stream carries the whole answer."""
        body = {
            "chat_session_id": chat_session_id,
            "message": message,
            "on_disconnect": on_disconnect,
        }
        request = self._http.build_request(
            "POST", "/api/conversation/stream_chat", params={"org_id": self.org_id}, json=body
        )
        message_id: str | None = None
        last_id: str | None = None
        attempts = 0
        while True:
            try:
                response = await self._http.send(request, stream=True)
                try:
                    if response.status_code >= 400:
                        raise _error(response.status_code, await response.aread())
                    async for event in parse_sse(sse_lines(response.aiter_bytes())):
                        if event.type == "start":
                            message_id = event.data.get("message_id")
                            if last_id is not None:
                                continue  # a resumed stream starts again; the caller has it
                        if event.id:
                            last_id = event.id
                        yield event
                        if event.type == "end":
                            return
                finally:
                    await response.aclose()
            except (httpx.TransportError, httpx.RemoteProtocolError):
                pass
            attempts += 1
            if message_id is None or attempts > resume_attempts:
                raise GatewayError(0, "stream_lost", "the stream ended before its end event")
            headers = {"Last-Event-ID": last_id} if last_id else {}
            request = self._http.build_request(
                "GET",
                "/api/conversation/stream",
                headers=headers,
                params={"org_id": self.org_id, "message_id": message_id},
            )


def _error(status: int, raw: bytes) -> GatewayError:
    try:
        body = json.loads(raw)
        return GatewayError(status, body.get("code", "error"), body.get("message", ""))
    except ValueError:
        return GatewayError(status, "error", raw.decode("utf-8", "replace")[:200])
