"""The envelope of a stored provider key: AES-GCM under a per-key data key, the data key
under the KEK; bound to where it is stored; re-wrapped by a rotation without touching the
sealed key; a KEK that does not match what Redis holds is told apart at start."""

from __future__ import annotations

import base64
import os

import pytest

from gateway.models.vault import KekMismatch, Vault, VaultError, kek_id, parse_keks

OLD, NEW = os.urandom(32), os.urandom(32)
AAD = b"provider-key|acme|openai|repo-1"
SECRET = "sk-live-0123456789abcdef0123456789"


def vault(*keks: bytes) -> Vault:
    return Vault(list(keks), fingerprint_secret=b"f" * 32)


def b64(kek: bytes) -> str:
    return base64.urlsafe_b64encode(kek).decode()


def test_a_sealed_key_opens_only_where_it_was_stored():
    v = vault(OLD)
    envelope = v.seal(SECRET, aad=AAD, at=1)
    assert v.open(envelope, aad=AAD) == SECRET
    raw = envelope.to_json()
    assert SECRET not in raw and SECRET[-4:] in raw  # the last 4 may be shown
    assert envelope.kek == kek_id(OLD) and envelope.fingerprint == v.fingerprint(SECRET)
    with pytest.raises(VaultError):
        v.open(envelope, aad=b"provider-key|acme|openai|repo-2")  # copied to another repository
    tampered = envelope.to_json().replace(envelope.ciphertext[:8], "A" * 8)
    with pytest.raises(VaultError):
        v.open(type(envelope).from_json(tampered), aad=AAD)
    assert v.seal(SECRET, aad=AAD, at=1).ciphertext != envelope.ciphertext  # fresh DEK, nonce


def test_a_rotation_rewraps_the_data_key_and_leaves_the_sealed_key():
    before = vault(OLD).seal(SECRET, aad=AAD, at=1)
    during = vault(NEW, OLD)
    assert during.open(before, aad=AAD) == SECRET  # the old KEK still opens
    after = during.rewrap(before, aad=AAD)
    assert after is not None and after.kek == kek_id(NEW)
    assert (after.ciphertext, after.nonce, after.fingerprint) == (
        before.ciphertext,
        before.nonce,
        before.fingerprint,
    )
    assert during.rewrap(after, aad=AAD) is None  # already under the current KEK
    assert vault(NEW).open(after, aad=AAD) == SECRET
    with pytest.raises(VaultError, match=kek_id(NEW)):
        vault(OLD).open(after, aad=AAD)


def test_the_check_values_tell_a_wrong_kek_at_start():
    old = vault(OLD)
    canaries = {old.current: old.canary()}
    old.check(canaries)
    vault(NEW, OLD).check(canaries)  # a rotation's configuration
    with pytest.raises(KekMismatch, match=kek_id(OLD)):
        vault(NEW).check(canaries)  # the KEK that wrapped the keys is missing
    forged = {kek_id(NEW): old.canary()}  # a check value that the named KEK does not open
    with pytest.raises(KekMismatch, match="does not open"):
        vault(NEW).check(forged)


@pytest.mark.parametrize(
    "text, says",
    [
        ("", "is empty"),
        ("not-base64!!", "key 1 is not 32 bytes"),
        (b64(os.urandom(16)), "key 1 is not 32 bytes"),
        (f"{b64(NEW)},{b64(os.urandom(31))}", "key 2 is not 32 bytes"),
        (f"{b64(NEW)},{b64(NEW)}", "twice"),
    ],
    # named, not by their random keys: every xdist worker must collect the same test ids
    ids=["empty", "not-base64", "16-bytes", "second-31-bytes", "twice"],
)
def test_bad_keks_say_what_is_wrong_and_never_echo_the_key(text, says):
    with pytest.raises(ValueError, match=says) as caught:
        parse_keks(text)
    assert not text or text.split(",")[0] not in str(caught.value)


def test_keks_are_read_from_a_list_or_a_file(tmp_path):
    from gateway.settings import ConfigError, load_settings

    assert parse_keks(f" {b64(NEW)}\n{b64(OLD)} ") == [NEW, OLD]
    path = tmp_path / "kek"
    path.write_text(b64(NEW) + "\n")
    settings = load_settings(None, env={}, overrides={"encryption_key_file": str(path)})
    assert settings.encryption_key == b64(NEW) and b64(NEW) not in repr(settings)
    env_wins = load_settings(
        None, env={"GATEWAY_ENCRYPTION_KEY": b64(OLD)}, overrides={"encryption_key_file": str(path)}
    )
    assert env_wins.encryption_key == b64(OLD)
    with pytest.raises(ConfigError, match="encryption_key: key 1 is not 32 bytes"):
        load_settings(None, env={"GATEWAY_ENCRYPTION_KEY": "short"})
    with pytest.raises(ConfigError, match="encryption_key_file"):
        load_settings(None, env={}, overrides={"encryption_key_file": str(tmp_path / "none")})
