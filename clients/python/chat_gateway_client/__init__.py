"""A small typed async Python client for chat-gateway's Conversation Service API."""

from chat_gateway_client.client import GatewayClient, GatewayError, StreamEvent

__all__ = ["GatewayClient", "GatewayError", "StreamEvent"]
