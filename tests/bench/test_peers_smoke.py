"""The side-by-side harness (`python -m bench.peers`) runs end to end on our own rows with tiny
loads, skips a peer it cannot install with the reason, and renders each peer's config as the
peer expects it. Counts and shapes only; no timing is asserted."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bench.peers import table
from bench.peers.cache import HERE, Cache
from bench.peers.measure import Sizes, combine
from bench.peers.rows import ROWS
from bench.peers.run import prepare, run
from bench.peers.servers import PeerEnv, litellm_config

TINY = Sizes(ttft_requests=4, ttft_warmup=1, clients=3, warmup_s=0.2, seconds=0.5, sessions=6)
TOKENS = 7  # --tokens: not the default 50, so every row's stream length is the option's


def test_our_rows_run_end_to_end_and_land_in_one_json(tmp_path: Path) -> None:
    path, report = run(
        only=["direct", "conversation", "openai-compat"],
        sizes=TINY,
        profile=False,
        cache_root=tmp_path / "cache",
        out=tmp_path,
        pin=False,
        tokens=TOKENS,
    )

    assert path.parent == tmp_path and json.loads(path.read_text()) == json.loads(
        json.dumps(report, default=str)
    )
    rows = {r["id"]: r for r in report["rows"]}
    assert list(rows) == ["direct", "conversation", "openai-compat"]
    assert report["tokens"] == TOKENS
    for rid, res in rows.items():
        assert "skipped" not in res, res.get("skipped")
        one, sat = res["ttft_one_client"], res["saturation"]
        assert one["row"]["ok"] == one["row"]["requests"] == TINY.ttft_requests
        assert one["row"]["frames_per_stream"] == TOKENS
        assert sat["ok"] == sat["requests"] > 0 and not sat["errors"]
        assert sat["frames_per_stream"] == TOKENS
        assert sat["cpu_ms_per_stream"] > 0
        if rid != "direct":  # measured beside the same requests sent straight to the upstream
            assert one["direct"]["ok"] == TINY.ttft_requests
            assert set(one["added_ms"]) == {"p50", "p99"}
    # the conversation route records every turn in Redis; the compat route counts usage there
    assert (
        rows["conversation"]["ttft_one_client"]["redis_commands_per_stream"]
        > rows["openai-compat"]["ttft_one_client"]["redis_commands_per_stream"]
        > 0
    )
    assert rows["direct"]["ttft_one_client"]["redis_commands_per_stream"] is None
    assert "default policies on" in report["policies"]
    assert report["profiles"] == {}

    text = table.text(report["rows"])
    assert all(ROWS[rid].label in text for rid in rows)
    assert table.markdown(report["rows"]).count("\n") == 1 + len(rows)


def test_a_peer_that_cannot_be_installed_is_skipped_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no node, no npm
    cache = Cache(tmp_path / "cache", log=False)

    skipped = prepare([ROWS["direct"], ROWS["portkey"]], cache)

    assert skipped == {"portkey": "node and npm are not installed"}
    assert not (tmp_path / "cache" / "portkey" / ".installed").exists()


def test_the_peers_configs_point_at_the_upstream_and_pin_the_versions(tmp_path: Path) -> None:
    env = PeerEnv(workdir=tmp_path, upstream_port=9999)

    text = litellm_config(env, "sk-master", 12).read_text()

    assert "api_base: http://127.0.0.1:9999/v1" in text
    assert "model: openai/bench/tokens=12" in text
    assert "master_key: sk-master" in text and "${" not in text
    lock = json.loads((HERE / "portkey" / "package-lock.json").read_text())["packages"]
    assert lock["node_modules/@portkey-ai/gateway"]["version"] == "1.9.8"
    assert lock["node_modules/@hono/node-server"]["version"] == "1.13.8"
    manifest = json.loads((HERE / "portkey" / "package.json").read_text())
    assert manifest["overrides"] == {"@hono/node-server": "1.13.8"}
    assert "litellm[proxy]==" in (HERE / "litellm" / "requirements.txt").read_text()
    assert os.path.isfile(HERE / "litellm" / "constraints.txt")


def test_rounds_of_a_row_combine_into_medians_with_their_spread() -> None:
    def one_round(rate: float, cpu_ms: float, added: float) -> dict:
        return {
            "id": "portkey",
            "label": ROWS["portkey"].label,
            "version": "v",
            "command": "c",
            "notes": [],
            "sizes": {"clients": 50},
            "warnings": [f"at {rate}"],
            "seconds": 10.0,
            "loadavg_1m": {"before": 1.0, "after": 2.0},
            "ttft_one_client": {
                "row": {"ttft_ms": {"p50": added + 0.1, "p99": added + 1}},
                "added_ms": {"p50": added, "p99": added + 0.9},
                "redis_commands_per_stream": None,
            },
            "saturation": {
                "streams_per_s": rate,
                "cpu_ms_per_stream": cpu_ms,
                "cpu_cores": 1.0,
                "gateway_core_neighbours": {"others_cores": 0.0, "stolen_cores": 0.01},
            },
        }

    rounds = [one_round(300, 3.0, 30), one_round(500, 2.0, 29), one_round(400, 2.5, 31)]

    combined = combine(rounds)

    assert combined["saturation"]["streams_per_s"] == 400
    assert combined["saturation"]["cpu_ms_per_stream"] == 2.5
    assert combined["ttft_one_client"]["added_ms"] == {"p50": 30, "p99": 30.9}
    assert combined["spread"]["streams_per_s"] == [300, 500]
    assert combined["warnings"] == ["round 1: at 300", "round 2: at 500", "round 3: at 400"]
    assert len(combined["rounds"]) == 3 and combined["seconds"] == 30.0
    line = table.text([combined]).splitlines()[-1]
    assert "400 (300–500)" in line and "2.500 (2.000–3.000) ms" in line
    assert "30.00 (29.00–31.00) ms" in line and line.rstrip().endswith("0.01")
