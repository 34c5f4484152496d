"""HTTP: thin handlers, one module per API style (parse -> authorize -> turn or storage ->
response); the SSE response and the native event contract (sse.py); request inputs and their
limits (inputs.py); the OpenAPI document (openapi.py); the pages (pages.py); and the
OpenAI- and Anthropic-compatible APIs in compat/."""
