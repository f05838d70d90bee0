"""vault_kv against a real OpenBao dev server: check mode first, then the change, then idempotence."""

from __future__ import annotations

import contextlib
import json
import urllib.error

from ansible_collections.msa.platform.plugins.modules import vault_kv

pytest_plugins = ["ansible_collections.msa.platform.tests.unit.plugins.vault_server"]

SECRET = "s3cr3t-Value-0f-the-test"


def stored(vault, path, mount="secret"):
    answer = vault.api("%s/data/%s" % (mount, path))
    return answer["data"]["data"], answer["data"]["metadata"]["version"]


def versions(vault, path, mount="secret"):
    try:
        return vault.api("%s/metadata/%s" % (mount, path))["data"]["current_version"]
    except Exception:  # noqa: BLE001 - 404: no secret
        return 0


def test_check_mode_then_write_then_idempotent(vault, vault_args, kv_path, capsys, bg):
    args = dict(vault_args, path=kv_path, data={"user": "orders", "password": SECRET})
    checked = bg.run(vault_kv, capsys, args, check_mode=True, diff=True)
    assert checked["changed"] is True and checked["keys"]["added"] == ["password", "user"]
    assert versions(vault, kv_path) == 0, "check mode wrote"

    written = bg.run(vault_kv, capsys, args, diff=True)
    assert written["changed"] is True and written["version"] == 1
    assert stored(vault, kv_path) == ({"user": "orders", "password": SECRET}, 1)

    again = bg.run(vault_kv, capsys, args, diff=True)
    assert again["changed"] is False and again["version"] == 1 and "diff" not in again
    assert versions(vault, kv_path) == 1, "an equal write made a new version"


def test_diff_names_keys_never_values(vault, vault_args, kv_path, capsys, bg):
    vault.api("secret/data/%s" % kv_path, "POST", {"data": {"a": "old-value-123", "b": "keep-value-456"}})
    args = dict(vault_args, path=kv_path, data={"a": SECRET, "b": "keep-value-456", "c": "added-value-789"})
    result = bg.run(vault_kv, capsys, args, diff=True)
    assert result["changed"] is True and result["version"] == 2
    assert result["keys"] == {"added": ["c"], "changed": ["a"], "removed": []}
    assert result["diff"]["before"] == {"a": "(value hidden)", "b": "(value hidden)"}
    assert result["diff"]["after"] == {"a": "(new value hidden)", "b": "(value hidden)", "c": "(new value hidden)"}
    text = json.dumps(result)
    for value in (SECRET, "old-value-123", "keep-value-456", "added-value-789"):
        assert value not in text


def test_merge_keeps_other_keys(vault, vault_args, kv_path, capsys, bg):
    vault.api("secret/data/%s" % kv_path, "POST", {"data": {"a": "value-a", "b": "value-b"}})
    result = bg.run(vault_kv, capsys, dict(vault_args, path=kv_path, data={"c": "value-c"}, merge=True))
    assert result["changed"] is True and result["version"] == 2
    assert stored(vault, kv_path) == ({"a": "value-a", "b": "value-b", "c": "value-c"}, 2)
    replaced = bg.run(vault_kv, capsys, dict(vault_args, path=kv_path, data={"c": "value-c"}))
    assert replaced["keys"]["removed"] == ["a", "b"]
    assert stored(vault, kv_path) == ({"c": "value-c"}, 3)


def test_cas_conflict_fails_and_writes_nothing(vault, vault_args, kv_path, capsys, bg):
    vault.api("secret/data/%s" % kv_path, "POST", {"data": {"a": "1"}})
    vault.api("secret/data/%s" % kv_path, "POST", {"data": {"a": "2"}})
    args = dict(vault_args, path=kv_path, data={"a": SECRET}, cas=1)
    for check_mode in (True, False):
        result = bg.run(vault_kv, capsys, args, check_mode=check_mode)
        assert result["failed"] is True and result["reason"] == "cas"
        assert "check-and-set failed" in result["msg"] and "version 2, not 1" in result["msg"]
        assert "nothing was changed" in result["msg"] and SECRET not in json.dumps(result)
    assert stored(vault, kv_path) == ({"a": "2"}, 2)
    ok = bg.run(vault_kv, capsys, dict(args, cas=2))
    assert ok["changed"] is True and ok["version"] == 3


def test_cas_zero_creates_only(vault, vault_args, kv_path, capsys, bg):
    args = dict(vault_args, path=kv_path, data={"a": "first-value"}, cas=0)
    assert bg.run(vault_kv, capsys, args)["version"] == 1
    assert bg.run(vault_kv, capsys, args)["changed"] is False  # equal: nothing to write, cas not needed
    result = bg.run(vault_kv, capsys, dict(args, data={"a": "second-value"}))
    assert result["failed"] is True and result["reason"] == "cas"


def test_absent_deletes_latest_then_purges(vault, vault_args, kv_path, capsys, bg):
    vault.api("secret/data/%s" % kv_path, "POST", {"data": {"a": "1"}})
    args = dict(vault_args, path=kv_path, state="absent")
    assert bg.run(vault_kv, capsys, args, check_mode=True)["changed"] is True
    assert stored(vault, kv_path)[0] == {"a": "1"}
    assert bg.run(vault_kv, capsys, args)["changed"] is True
    assert bg.run(vault_kv, capsys, args)["changed"] is False
    assert versions(vault, kv_path) == 1  # history kept
    purge = dict(args, purge=True)
    assert bg.run(vault_kv, capsys, purge)["changed"] is True
    assert versions(vault, kv_path) == 0
    assert bg.run(vault_kv, capsys, purge)["changed"] is False


def test_kv_version_1_mount_is_refused(vault, vault_args, kv_path, capsys, bg):
    with contextlib.suppress(urllib.error.HTTPError):  # already mounted by an earlier run of this session
        vault.api("sys/mounts/kv1test", "POST", {"type": "kv", "options": {"version": "1"}})
    result = bg.run(vault_kv, capsys, dict(vault_args, mount="kv1test", path=kv_path, data={"a": SECRET}))
    assert result["failed"] is True and result["reason"] == "kv_version"
    assert "KV version 1" in result["msg"] and "nothing was changed" in result["msg"]
    try:
        listed = vault.api("kv1test/?list=true")["data"]["keys"]
    except Exception:  # noqa: BLE001 - 404: the mount is empty
        listed = []
    assert listed == []


def test_unknown_mount(vault, vault_args, capsys, bg):
    result = bg.run(vault_kv, capsys, dict(vault_args, mount="nosuchmount", path="a", data={"a": SECRET}))
    assert result["failed"] is True and result["reason"] == "unknown_mount"
    assert "no secrets engine is mounted at nosuchmount/" in result["msg"]
    nested = bg.run(vault_kv, capsys, dict(vault_args, mount="secret/apps", path="a", data={"a": "1"}))
    assert nested["failed"] is True and "belongs to the mount secret/" in nested["msg"]


def test_wrong_engine(vault, vault_args, capsys, bg):
    result = bg.run(vault_kv, capsys, dict(vault_args, mount="cubbyhole", path="a", data={"a": "1"}))
    assert result["failed"] is True and result["reason"] == "wrong_engine"


def test_permission_denied_changes_nothing(vault, vault_args, kv_path, capsys, bg):
    vault.api("sys/policies/acl/kv-read-only", "PUT", {"policy": 'path "secret/data/*" { capabilities = ["read"] }'})
    token = vault.api("auth/token/create", "POST", {"policies": ["kv-read-only"]})["auth"]["client_token"]
    vault.api("secret/data/%s" % kv_path, "POST", {"data": {"a": "1"}})
    result = bg.run(vault_kv, capsys, dict(vault_args, token=token, path=kv_path, data={"a": SECRET}))
    assert result["failed"] is True and result["reason"] == "permission_denied"
    assert "permission denied" in result["msg"] and "nothing was changed" in result["msg"]
    assert token not in json.dumps(result) and SECRET not in json.dumps(result)
    assert stored(vault, kv_path) == ({"a": "1"}, 1)
