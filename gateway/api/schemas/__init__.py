"""The answers' shapes, one module per API style: each model serializes the answer a handler
sends and is the OpenAPI document's component of the same name (gateway/api/openapi.py)."""
