"""tests/routes/test_repository_api.py again, every test unchanged, against the Redis
Cluster: repository-style API (seeds 000-004)."""

from tests.api.test_repository_api import *
