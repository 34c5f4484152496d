"""The TypeScript client (clients/typescript) against a real gateway: `python -m gateway serve`
with its own embedded Redis, the demo model and the fake upstream; then `npm ci` (only when
the lock file changed), `npm run build` and `npm test` (the compile-time check against the
served /openapi.json, and the node:test suites) with the gateway's URL and tokens in the
environment. Node's output is the failure message. Afterwards, Redis must hold exactly what
the node tests noted in their ledger; and `npm pack` must ship the builds and their types
and nothing else."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from gateway.storage import keys
from gateway.storage.embedded import EmbeddedRedis, free_port
from tests.clients.node import CLIENT, ROOT, ensure_built, npm, require_node
from tests.clients.served import ServedGateway
from tests.fake_upstream import FakeUpstream
from tests.support import ADMIN_TOKEN, JWT_SECRET, make_jwt

ORG = "org-1"

CONFIG = """
[[models]]
id = "demo"
provider = "demo"
pace_ms = 1
answer_words = 12

[[models]]
id = "paced"                  # ~80 words, 15 ms apart: time to cut, stop or abort
provider = "demo"
pace_ms = 15
answer_words = 80

[[models]]
id = "echo"                   # the fake upstream repeats the prompt: exact text to compare
provider = "openai"
model = "echo-model"
base_url = "{upstream}"
max_retries = 0

[[models]]
id = "broken"                 # nothing listens there: 502 provider_error
provider = "openai"
model = "gone"
base_url = "http://127.0.0.1:{closed_port}/v1"
max_retries = 0
connect_timeout = 2

{repositories}

[[policies]]
id = "no-launch-codes"
stages = ["pre"]
action = "block"
kind = "keywords"
keywords = ["launch code"]

[limits.orgs.org-limited]
user_tokens_per_day = 1
"""

REPOSITORIES = {  # id: (workspace, model)
    "repo-echo": ("ws-1", "echo"),
    "repo-paced": ("ws-1", "paced"),
    "repo-seed": ("ws-1", "demo"),
    "repo-list": ("ws-1", "demo"),
    "repo-list-ws2": ("ws-2", "demo"),
    "repo-ws3": ("ws-3", "demo"),
    "repo-broken": ("ws-1", "broken"),
    "repo-readme": ("ws-1", "echo"),
}
# the README's runnable example: the block after this marker, in README.md once the section
# is merged there, in docs/typescript-client.md until then
EXAMPLE = re.compile(r"<!-- example: chat\.mjs[^>]*-->\n```js\n(.*?)```", re.DOTALL)


def config(upstream: FakeUpstream) -> str:
    repos = "\n".join(
        f'[[repositories]]\nid = "{rid}"\nworkspace_id = "{ws}"\n'
        f'org_id = "{ORG}"\nmodel = "{model}"\n'
        for rid, (ws, model) in REPOSITORIES.items()
    )
    return CONFIG.format(
        upstream=upstream.openai_base_url, closed_port=free_port(), repositories=repos
    )


def tokens() -> dict[str, str]:
    return {
        "alice": make_jwt(
            "alice",
            ORG,
            "user",
            workspaces=["ws-1", "ws-2"],
            name="Alice",
            family_name="Doe",
            email="alice@example.com",
        ),
        "bob": make_jwt("bob", ORG, "user", workspaces=["ws-1"]),
        "admin": make_jwt("olga", ORG, "org_admin"),
        "mallory": make_jwt("mallory", "org-2", "user", workspaces=["ws-9"]),
        "limited": make_jwt("lee", "org-limited", "user", workspaces=["ws-l"]),
        "expired": make_jwt("alice", ORG, "user", workspaces=["ws-1"], exp=int(time.time()) - 60),
    }


GATEWAY_ENV = {
    "GATEWAY_ADMIN_TOKEN": ADMIN_TOKEN,
    "GATEWAY_JWT_SECRET": JWT_SECRET,
    "OPENAI_API_KEY": "sk-test-openai",
    "GATEWAY_PING_INTERVAL": "1",  # a live stream is never silent for a second
    "GATEWAY_MAX_BODY_BYTES": "65536",  # a 413 without sending a megabyte
    "GATEWAY_LOG_LEVEL": "warning",
}


@dataclass
class Gateways:
    main: ServedGateway  # its own embedded Redis
    down: ServedGateway  # its Redis stopped once it was ready


@pytest.fixture(scope="module")
def gateways(
    upstream_server: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateways]:
    require_node()  # skips without Node, before a gateway is started for nothing
    upstream_server.reset()
    text = config(upstream_server)
    main = ServedGateway(tmp_path_factory.mktemp("ts-gateway"), text, GATEWAY_ENV).launch()
    down_folder = tmp_path_factory.mktemp("ts-down")
    down_redis = EmbeddedRedis(down_folder / "redis", appendonly=False).start()
    env = {**GATEWAY_ENV, "GATEWAY_REDIS_URL": down_redis.url}
    down = ServedGateway(down_folder, text, env).launch()
    try:
        ensure_built()  # while the gateways start
        main.wait_ready()
        down.wait_ready()
    except BaseException:
        main.stop()
        down.stop()
        raise
    finally:
        down_redis.stop()  # once ready, its Redis goes away
    try:
        yield Gateways(main, down)
    finally:
        down.stop()
        main.stop()


def test_the_client_passes_its_node_tests_against_a_real_gateway(
    gateways: Gateways, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger.jsonl"
    ledger.touch()
    env = {
        "GATEWAY_URL": gateways.main.url,
        "GATEWAY_DOWN_URL": gateways.down.url,
        "GATEWAY_ORG": ORG,
        "GATEWAY_TOKENS": json.dumps(tokens()),
        "GATEWAY_LEDGER": str(ledger),
    }

    output = npm("test", env=env, timeout=240)

    assert "# fail 0" in output, output
    # split on LF only: splitlines() would also break at the U+2028 the SSE test writes
    notes = [json.loads(line) for line in ledger.read_text().split("\n") if line]
    assert len(notes) >= 10, f"the node tests noted too little to check: {notes}"
    store = redis.Redis(unix_socket_path=str(gateways.main.redis_socket), decode_responses=True)
    try:
        for note in notes:
            held = [
                json.loads(m) for m in store.lrange(keys.messages(note["conversation_id"]), 0, -1)
            ]
            seen = [
                {k: m[k] for k in ("role", "status", "content") if k in want}
                for m, want in zip(held, note["messages"], strict=False)
            ]
            assert len(held) == len(note["messages"]) and seen == note["messages"], (
                f"{note['why']}: Redis holds {held}, the node test expected {note['messages']}"
            )
    finally:
        store.close()


def test_npm_pack_ships_the_builds_with_their_types_and_no_tests() -> None:
    ensure_built()
    [packed] = json.loads(npm("pack", "--dry-run", "--json", "--ignore-scripts"))
    files = {f["path"] for f in packed["files"]}

    assert packed["name"] == "@chat-gateway/client"
    assert {"package.json", "README.md", "dist/cjs/package.json"} <= files
    for build in ("esm", "cjs"):
        for module in (
            "index",
            "client",
            "service",
            "stream",
            "sse",
            "errors",
            "http",
            "operations",
            "types",
        ):
            assert {f"dist/{build}/{module}.js", f"dist/{build}/{module}.d.ts"} <= files, (
                build,
                module,
            )
    assert not [
        f for f in files if not (f.startswith("dist/") or f in ("package.json", "README.md"))
    ], files
    assert not [
        f for f in files if "test" in f or f.endswith((".ts", ".map")) and not f.endswith(".d.ts")
    ], files
    manifest = json.loads((CLIENT / "package.json").read_text())
    assert manifest["exports"]["."]["import"]["types"] == "./dist/esm/index.d.ts"
    assert manifest["exports"]["."]["require"]["types"] == "./dist/cjs/index.d.ts"
    assert not manifest.get("dependencies"), "no runtime dependencies beyond the platform's fetch"


def test_the_readme_example_runs_as_written(gateways: Gateways) -> None:
    found = EXAMPLE.search((ROOT / "README.md").read_text())
    assert found, "no `<!-- example: chat.mjs -->` block in README.md"
    script = CLIENT / "build" / "readme-example.mjs"  # inside the package: its name resolves to it
    script.parent.mkdir(exist_ok=True)
    script.write_text(found.group(1))
    env = {
        **os.environ,
        "GW": gateways.main.url,
        "TOKEN": tokens()["alice"],
        "ORG": ORG,
        "REPO": "repo-readme",
    }

    done = subprocess.run(
        ["node", str(script)], check=False, env=env, capture_output=True, text=True, timeout=60
    )

    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "Echo: What is the best practice for securing API keys? (" in out, out
    assert "Echo: And rotation?\n[stop]" in out, out
    assert "1 conversations; the newest has" in out, out
    assert "user: What is the best practice for securing" in out, out
    assert "You asked: How do vector databases work" in out, out
    assert "1 session, 2 messages" in out, out
    assert out.rstrip().endswith("after the delete: 404 conversation_not_found"), out
