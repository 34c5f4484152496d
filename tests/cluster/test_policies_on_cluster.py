"""tests/api/test_policies.py again, every test unchanged, against the Redis
Cluster: policies: every stage and action, hot reload through Redis."""

from tests.api.test_policies import *
