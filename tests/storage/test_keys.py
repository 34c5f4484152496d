"""The key layout: ids are escaped component by component, so no id can run into the next
component or leave its hash tag, and ordinary ids keep exactly the keys they always had
(no data migration)."""

from __future__ import annotations

import itertools

from gateway.storage import keys

CID = "5a7e8f91-0b1c-4d2e-8f3a-9b8c7d6e5f40"
MID = "e5ed0c1a-2b3c-4d5e-8f9a-0b1c2d3e4f50"


def test_ordinary_ids_keep_the_keys_they_always_had():
    # the names as the layout wrote them before ids were escaped, character for character
    assert keys.conversation(CID) == f"gw:{{c:{CID}}}"
    assert keys.resume_log(CID, MID) == f"gw:{{c:{CID}}}:r:{MID}"
    assert keys.turn_lock(CID) == f"gw:{{c:{CID}}}:lock"
    assert keys.org_index("org-1") == "gw:{o:org-1}:convs"
    assert keys.org_index("org-1", "ws_u", "ws-1", "alice") == "gw:{o:org-1}:convs:ws_u:ws-1:alice"
    assert (
        keys.org_index("acme", "ws_repo_u", "ws.2", "repo_3", "auth0|u@x.io")
        == "gw:{o:acme}:convs:ws_repo_u:ws.2:repo_3:auth0|u@x.io"
    )
    assert keys.rate_window("org-1", "tokens", "min:1", "user", "bob") == (
        "gw:{o:org-1}:rl:tok:min:1:u:bob"
    )
    assert keys.counted_once("org-1", MID) == f"gw:{{o:org-1}}:counted:{MID}"


def test_components_never_run_into_each_other():
    pieces = ["ws-1", "secret", "bob", "ws-1:secret", "secret:bob", "a%3Ab", "a:b", "%"]
    seen: dict[str, tuple[str, str]] = {}
    for ws, user in itertools.product(pieces, repeat=2):
        key = keys.org_index("org-1", "ws_u", ws, user)
        assert key not in seen, (seen.get(key), (ws, user))
        seen[key] = (ws, user)


def test_an_id_cannot_move_a_key_to_another_hash_tag():
    # Redis Cluster hashes what lies between the first "{" and the next "}": the layout's
    # braces must be the only ones in a key
    for org in ("a}b", "a{b", "a}:{o:b"):
        for key in (keys.org_usage(org), keys.org_index(org, "u", "}x{")):
            assert key.count("{") == 1 and key.count("}") == 1, key
    assert keys.conversation("x}y").count("}") == 1
