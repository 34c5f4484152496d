"""tests/api/test_conversation_service.py again, every test unchanged, against the Redis
Cluster: conversation service (seed 003)."""

from tests.api.test_conversation_service import *
