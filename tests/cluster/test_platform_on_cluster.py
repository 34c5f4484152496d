"""tests/api/test_models_api.py, test_provider_keys_api.py, test_api_keys_api.py and
test_usage_api.py again, every test unchanged, against the Redis Cluster: provider
connections, repository AI keys, API keys and usage, each org's data in its own slot."""

from tests.api.test_api_keys_api import *
from tests.api.test_models_api import *
from tests.api.test_provider_keys_api import *
from tests.api.test_usage_api import *
