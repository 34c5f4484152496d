"""tests/api/test_models_api.py again, every test unchanged, against the Redis Cluster: each
org's data in its own slot, what every org shares in another."""

from tests.api.test_models_api import *
