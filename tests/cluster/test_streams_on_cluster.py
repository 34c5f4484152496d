"""tests/faults/test_streams.py again, every test unchanged, against the Redis
Cluster: streams under faults: stop, resume, locks, retries."""

from tests.turn.test_stream_faults import *
