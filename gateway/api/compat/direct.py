"""The calls of the compatible APIs that run no chat turn (embeddings, token counts) reach
gateway/turn/direct.py through here."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.turn.direct import DirectCalls

if TYPE_CHECKING:
    from gateway.app import Gateway


def direct_calls(gw: Gateway) -> DirectCalls:
    """A few references to the worker's parts: cheaper to make per request than to keep."""
    return DirectCalls(
        gw.settings, gw.store, gw.connections, gw.governance, gw.chat.limits, gw.metrics
    )
