"""The failure budget itself, on a clock the test turns: a burst of `per_minute` failures, then
one more every 60/per_minute s, Retry-After counting down to it, and a table that stays
bounded however many addresses fail (an attacker with many addresses only evicts its own)."""

from __future__ import annotations

from gateway.access.throttle import FailureThrottle, address_key


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_then_one_failure_per_interval():
    clock = Clock()
    throttle = FailureThrottle(6, clock=clock)  # one every 10 s once the 6 are spent
    for _ in range(6):
        assert throttle.retry_after("192.0.2.1") is None
        throttle.failed("192.0.2.1")
    assert throttle.retry_after("192.0.2.1") == 10
    clock.now += 4
    assert throttle.retry_after("192.0.2.1") == 6  # counts down
    clock.now += 6
    assert throttle.retry_after("192.0.2.1") is None  # one more may be tried...
    throttle.failed("192.0.2.1")
    assert throttle.retry_after("192.0.2.1") == 10  # ...and only one
    assert throttle.retry_after("192.0.2.2") is None  # nobody else is touched
    clock.now += 60
    assert throttle.retry_after("192.0.2.1") is None
    assert throttle._due == {}  # paid off and forgotten


def test_off_means_off():
    throttle = FailureThrottle(0)
    for _ in range(1000):
        throttle.failed("192.0.2.1")
    assert throttle.retry_after("192.0.2.1") is None


def test_the_table_stays_bounded_under_many_addresses():
    throttle = FailureThrottle(1, capacity=100, clock=Clock())
    for i in range(10_000):
        throttle.failed(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}")
    assert len(throttle._due) == 100
    assert throttle.retry_after("10.0.39.15") is not None  # the latest failures are kept


def test_ipv6_addresses_of_one_64_share_a_budget():
    assert address_key("2001:db8:1:2::1") == address_key("2001:db8:1:2:ffff:ffff:ffff:ffff")
    assert address_key("2001:db8:1:2::1") != address_key("2001:db8:1:3::1")
    assert address_key("192.0.2.1") == "192.0.2.1"
