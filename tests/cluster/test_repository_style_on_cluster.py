"""tests/api/test_repository_style.py again, every test unchanged, against the Redis
Cluster: repository-style API (seeds 000-004)."""

from tests.api.test_repository_style import *
