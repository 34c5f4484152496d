"""SSRF through alert webhooks: an org admin names the URLs an alert is POSTed to. They go
only to hosts the operator allows, never to a loopback, private, link-local or otherwise
non-public address after DNS (IPv4, IPv6 and IPv6 forms of IPv4 alike) unless the operator
allows that network by name, to the very address that was checked, with no redirect
followed. Checked where the admin API stores the URL and again where it is used."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from gateway.storage import keys
from gateway.storage.embedded import free_port
from tests.fake_upstream import Reply
from tests.gateway_fixtures import ORG
from tests.support import ADMIN_TOKEN, bearer, make_jwt

OLGA = make_jwt("olga", ORG, "org_admin")


class Receiver:
    """An HTTP server on the loopback that records what reaches it; `status` and
    `location` make it answer a redirect."""

    def __init__(self, status: int = 204, location: str | None = None) -> None:
        self.hits: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.hits.append({"host": self.headers["Host"], "body": json.loads(body)})
                self.send_response(status)
                if location:
                    self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.port = free_port()
        self.server = HTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def alert_policy(*webhooks: str) -> dict:
    return {
        "kind": "keywords",
        "keywords": ["escalate"],
        "stages": ["pre"],
        "action": "alert",
        "webhooks": list(webhooks),
    }


async def trigger(client, token: str) -> None:
    """A prompt that the alert policy sees; the alert leaves in the background."""
    conv = await client.create_conversation(token)
    session = await client.create_session(token, conv["id"], "gpt")
    await client.chat(token, session["id"], "please escalate this")


async def test_an_org_admin_cannot_point_webhooks_at_loopback_metadata_or_redis(
    client, redis, receiver
):
    for url in [
        receiver.url(),
        "http://169.254.169.254/latest/meta-data/",
        "http://127.0.0.1:6379/",  # Redis' port: a POST there is a Redis command
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://[::ffff:a9fe:a9fe]/hook",  # 169.254.169.254 again
        "http://[64:ff9b::7f00:1]/hook",  # NAT64 of 127.0.0.1
        "http://2130706433/hook",  # 127.0.0.1 as one decimal number
        "http://0.0.0.0/hook",
        "http://localhost/hook",
        "http://10.0.0.8/hook",
        "https://hooks.example.com/x",  # public, but not a host the operator allowed
    ]:
        r = await client.http.put(
            "/admin/policies/escalations", json=alert_policy(url), headers=bearer(OLGA)
        )
        assert r.status_code == 400, (url, r.text)
        assert r.json()["code"] == "webhook_not_allowed"
    assert await redis.hgetall(keys.POLICIES) == {}  # nothing was stored


async def test_a_stored_webhook_is_checked_again_where_it_is_used(
    client, gateway_server, alice, upstream, redis, receiver
):
    """A policy an older gateway stored, pointing at the loopback: its alert is still
    published on the channel, but nothing is POSTed."""
    spec = {"id": "escalations", "org_id": ORG, **alert_policy(receiver.url())}
    await redis.hset(keys.POLICIES, "escalations", json.dumps(spec))
    await redis.incr(keys.POLICIES_VERSION)
    await gateway_server.call(gateway_server.app.state.gateway.governance.reload())
    pubsub = redis.pubsub()
    await pubsub.subscribe(keys.ALERT_CHANNEL)
    upstream.script(Reply(chunks=["ok"]))
    await trigger(client, alice)
    published = None
    for _ in range(50):
        published = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
        if published:
            break
    await pubsub.aclose()
    assert published and json.loads(published["data"])["policy_id"] == "escalations"
    await asyncio.sleep(1.0)  # a POST would have landed by now
    assert receiver.hits == []


async def test_an_allowed_name_that_resolves_to_loopback_is_never_posted(
    gateway_factory, alice, upstream, redis, receiver
):
    async with gateway_factory(env={"GATEWAY_WEBHOOK_ALLOWED_HOSTS": "localhost"}) as client:
        r = await client.http.put(
            "/admin/policies/escalations",
            json=alert_policy(receiver.url("localhost")),
            headers=bearer(OLGA),
        )
        assert r.status_code == 201, r.text  # a name: only DNS can tell, at delivery
        upstream.script(Reply(chunks=["ok"]))
        await trigger(client, alice)
        await asyncio.sleep(1.5)
        assert receiver.hits == []


async def test_an_allowed_internal_network_gets_the_post_at_the_checked_address_and_no_redirect(
    gateway_factory, alice, upstream, redis, receiver
):
    elsewhere = Receiver()
    bouncer = Receiver(status=307, location=elsewhere.url())
    env = {
        "GATEWAY_WEBHOOK_ALLOWED_HOSTS": "localhost,127.0.0.1",
        "GATEWAY_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8,::1/128",
    }
    try:
        async with gateway_factory(env=env) as client:
            hooks = [receiver.url("localhost"), bouncer.url("127.0.0.1")]
            r = await client.http.put(
                "/admin/policies/escalations", json=alert_policy(*hooks), headers=bearer(OLGA)
            )
            assert r.status_code == 201, r.text
            upstream.script(Reply(chunks=["ok"]))
            await trigger(client, alice)
            for _ in range(100):
                if receiver.hits and bouncer.hits:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)
        (hit,) = receiver.hits
        assert hit["host"] == f"localhost:{receiver.port}"  # the URL's name, on the checked IP
        assert hit["body"]["policy_id"] == "org-1:escalations" and hit["body"]["org_id"] == ORG
        assert len(bouncer.hits) == 1  # a 307 is not retried...
        assert elsewhere.hits == []  # ...and never followed
    finally:
        elsewhere.close()
        bouncer.close()


async def test_the_admin_api_bounds_the_webhooks_of_one_policy(gateway_factory, redis):
    async with gateway_factory(env={"GATEWAY_WEBHOOK_ALLOWED_HOSTS": "*.example.com"}) as client:
        many = [f"https://h{i}.example.com/x" for i in range(6)]
        r = await client.http.put(
            "/admin/policies/p", json=alert_policy(*many), headers=bearer(ADMIN_TOKEN)
        )
        assert r.status_code == 400 and r.json()["code"] == "webhook_not_allowed"
        for url in ("https://example.com.evil.net/x", "https://user:pw@h.example.com/x"):
            r = await client.http.put(
                "/admin/policies/p", json=alert_policy(url), headers=bearer(ADMIN_TOKEN)
            )
            assert r.status_code == 400, url
        r = await client.http.put(
            "/admin/policies/p", json=alert_policy(*many[:5]), headers=bearer(ADMIN_TOKEN)
        )
        assert r.status_code == 201
        assert await redis.hexists(keys.POLICIES, "p")


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "100.64.0.1",
        "169.254.169.254",
        "0.0.0.0",
        "224.0.0.1",
        "240.0.0.1",
        "255.255.255.255",
        "::",
        "::1",
        "fe80::1",
        "fc00::1",
        "ff02::1",
        "::ffff:10.0.0.1",
        "2002:7f00:1::",
        "64:ff9b::a00:1",
    ],
)
def test_every_non_public_address_is_refused(address):
    from gateway.governance.webhooks import address_problem

    assert address_problem(ipaddress.ip_address(address)) is not None


def test_public_addresses_pass_and_an_allowed_network_is_the_operators_exception():
    from gateway.governance.webhooks import WebhookPolicy, WebhookRefused, address_problem

    assert address_problem(ipaddress.ip_address("93.184.216.34")) is None
    assert address_problem(ipaddress.ip_address("2606:2800:220:1:248:1893:25c8:1946")) is None
    policy = WebhookPolicy(("hooks.internal",), ("10.20.0.0/16",))
    assert policy.address_allowed(ipaddress.ip_address("10.20.3.4")) is None
    assert policy.address_allowed(ipaddress.ip_address("10.21.3.4")) is not None
    with pytest.raises(WebhookRefused):
        policy.check("http://10.21.3.4/x")
