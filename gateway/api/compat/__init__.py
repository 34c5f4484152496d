"""The OpenAI- and Anthropic-compatible APIs: each request becomes a turn like any other
(policies, quotas, accounting), framed in that API's own wire format and error shape."""
