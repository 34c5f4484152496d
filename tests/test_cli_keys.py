"""`keys` run from another folder reaches the running gateway's Redis, says which Redis it
used, and never mints a key into a new, empty embedded Redis unless told to."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import httpx
import pytest

from tests.support import bearer
from tests.test_cli import Serve, gateway


def keys_create(cwd: Path, state: Path, *flags: str, **env: str):
    return gateway(
        "keys",
        "create",
        "--org",
        "acme",
        "--user",
        "alice",
        "--role",
        "user",
        *flags,
        cwd=cwd,
        XDG_STATE_HOME=str(state),
        **env,
    )


def key_of(created) -> str:
    assert created.returncode == 0, created.stderr
    return created.stdout.split("only its hash is kept): ")[1].strip()


def keys_in(data_dir: Path, state: Path) -> list[str]:
    """The key ids the gateway whose data is in `data_dir` holds."""
    listed = gateway("keys", "list", GATEWAY_DATA_DIR=str(data_dir), XDG_STATE_HOME=str(state))
    assert listed.returncode == 0, listed.stderr
    return [json.loads(line)["key_id"] for line in listed.stdout.splitlines()]


def answers_with(serve: Serve, key: str) -> int:
    return httpx.get(
        f"{serve.url}/api/conversation/list?org_id=acme", headers=bearer(key)
    ).status_code


def test_keys_create_from_another_folder_reaches_the_running_gateway(tmp_path):
    a, b, state = tmp_path / "a", tmp_path / "b", tmp_path / "state"
    a.mkdir(), b.mkdir()
    with Serve(None, cwd=a, state=state) as serve:  # data in a/.gateway
        record = next(state.glob("chat-gateway/serve-*.json"))
        assert stat.S_IMODE(record.stat().st_mode) == 0o600
        assert json.loads(record.read_text())["data_dir"] == str(a / ".gateway")

        created = keys_create(b, state)

        assert answers_with(serve, key_of(created)) == 200
        assert created.stderr.splitlines() == [
            (
                f"chat-gateway: Redis: unix://{a}/.gateway/redis.sock (the gateway serving "
                f"http://127.0.0.1:{serve.port}, pid {serve.proc.pid}, data in {a}/.gateway)"
            )
        ]
        assert not (b / ".gateway").exists()  # no Redis was started in b
    assert not record.exists()  # withdrawn when serve ended


def test_a_named_data_folder_wins_over_the_running_gateway(tmp_path):
    a, b, state = tmp_path / "a", tmp_path / "b", tmp_path / "state"
    a.mkdir(), b.mkdir()
    with Serve(None, cwd=a, state=state) as serve:
        elsewhere = b / "elsewhere"
        refused = keys_create(b, state, GATEWAY_DATA_DIR=str(elsewhere))
        assert refused.returncode == 1
        assert refused.stderr.splitlines() == [
            (
                f"chat-gateway: no running gateway found and no gateway data in {elsewhere}: start "
                "`serve` first, or set GATEWAY_REDIS_URL or GATEWAY_DATA_DIR, or pass "
                "--create-data-dir to start a new embedded Redis there"
            )
        ]
        assert not elsewhere.exists()
        assert keys_in(a / ".gateway", state) == []  # nor did it go to the running one
        # naming the running gateway's own folder reaches it too
        named = keys_create(b, state, GATEWAY_DATA_DIR=str(a / ".gateway"))
        assert answers_with(serve, key_of(named)) == 200


def test_no_gateway_anywhere_refuses_unless_told_to_create_the_data(tmp_path):
    b, state = tmp_path / "b", tmp_path / "state"
    b.mkdir()
    refused = keys_create(b, state)
    assert refused.returncode == 1
    assert "no running gateway found and no gateway data in" in refused.stderr
    assert refused.stdout == "" and not (b / ".gateway").exists()

    first = keys_create(b, state, "--create-data-dir")
    assert first.stderr.splitlines()[0] == (
        f"chat-gateway: Redis: unix://{b}/.gateway/redis.sock"
        f" (a new embedded Redis in {b}/.gateway)"
    )
    # the data is there now: the next key goes into it without the flag
    second = keys_create(b, state)
    assert second.stderr.splitlines()[0].endswith(
        f"(started for this command on the data in {b}/.gateway)"
    )
    assert not list((b / ".gateway").glob("redis.sock"))  # stopped after each command

    with Serve(None, cwd=b, state=state) as serve:  # the gateway started there knows both
        assert answers_with(serve, key_of(first)) == 200
        assert answers_with(serve, key_of(second)) == 200


def test_two_running_gateways_make_keys_ask_which_one(tmp_path):
    a, c, b, state = tmp_path / "a", tmp_path / "c", tmp_path / "b", tmp_path / "state"
    for folder in (a, b, c):
        folder.mkdir()
    with Serve(None, cwd=a, state=state) as in_a, Serve(None, cwd=c, state=state) as in_c:
        refused = keys_create(b, state)
        assert refused.returncode == 1
        assert refused.stderr.splitlines() == [
            (
                f"chat-gateway: 2 gateways are running (data in {a}/.gateway, {c}/.gateway): "
                "set GATEWAY_DATA_DIR to the one you mean"
            )
        ]
        assert keys_in(a / ".gateway", state) == keys_in(c / ".gateway", state) == []

        key = key_of(keys_create(b, state, GATEWAY_DATA_DIR=str(c / ".gateway")))
        assert answers_with(in_c, key) == 200
        assert answers_with(in_a, key) == 401


@pytest.mark.serial  # within 10 s
def test_junk_and_foreign_records_in_the_state_folder_are_never_followed(tmp_path):
    """Someone else's or a broken record must not send a key to some other Redis, and a
    folder full of junk costs a bounded amount of work."""
    b, state = tmp_path / "b", tmp_path / "state"
    b.mkdir()
    folder = state / "chat-gateway"
    folder.mkdir(parents=True, mode=0o700)
    (folder / "serve-1.json").write_text("{not json")
    (folder / "serve-2.json").write_bytes(b"x" * 5_000_000)
    remote = {
        "pid": os.getpid(),
        "redis_url": "redis://10.0.0.1:6379/0",
        "data_dir": "/srv/x",
        "listen": "http://10.0.0.1:8000",
    }
    (folder / "serve-3.json").write_text(json.dumps(remote))
    gone = {
        "pid": 2**22 + 12345,
        "redis_url": "unix:///nowhere/redis.sock",
        "data_dir": "/nowhere",
        "listen": "http://127.0.0.1:1",
    }
    (folder / "serve-4.json").write_text(json.dumps(gone))
    for i in range(500):
        (folder / f"serve-junk-{i:03}.json").write_text("[]")

    started = time.monotonic()
    refused = keys_create(b, state)
    assert time.monotonic() - started < 10
    assert refused.returncode == 1 and "no running gateway found" in refused.stderr
    assert not (folder / "serve-4.json").exists()  # its process is gone: the record too


def test_a_state_folder_others_may_write_is_ignored(tmp_path):
    a, b, state = tmp_path / "a", tmp_path / "b", tmp_path / "state"
    a.mkdir(), b.mkdir()
    with Serve(None, cwd=a, state=state):
        (state / "chat-gateway").chmod(0o777)
        refused = keys_create(b, state)
        assert refused.returncode == 1 and "no running gateway found" in refused.stderr
        (state / "chat-gateway").chmod(0o700)


def test_a_key_with_an_id_outside_the_alphabet_is_refused_when_it_is_made(tmp_path):
    """Such a key would only ever answer 401 (its org would break the org's hash tag):
    `keys create` refuses it at once, naming the flag, and touches no Redis."""
    state = tmp_path / "state"
    for flags in (("--org", "ws-1:secret"), ("--user", "bob}x"), ("--workspace", "a:b")):
        refused = gateway(
            "keys", "create", "--org", "acme", "--user", "alice", "--role", "user", *flags,
            cwd=tmp_path, XDG_STATE_HOME=str(state),
        )  # fmt: skip
        assert refused.returncode == 2 and flags[0] in refused.stderr, refused.stderr
        assert "Redis:" not in refused.stderr and refused.stdout == ""
    assert not (tmp_path / ".gateway").exists()
