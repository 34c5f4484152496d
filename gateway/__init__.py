"""chat-gateway: an LLM chat gateway with policies, SSE streaming and conversations in Redis."""

__version__ = "0.1.0"
