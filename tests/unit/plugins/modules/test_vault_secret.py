"""vault_secret against a real OpenBao dev server: generate missing keys only, never rotate unasked."""

from __future__ import annotations

import json
import string

from ansible_collections.msa.platform.plugins.modules import vault_secret

pytest_plugins = ["ansible_collections.msa.platform.tests.unit.plugins.vault_server"]


def stored(vault, path):
    answer = vault.api("secret/data/%s" % path)
    return answer["data"]["data"], answer["data"]["metadata"]["version"]


def test_generates_once_then_returns_the_same(vault, vault_args, kv_path, capsys, bg):
    args = dict(vault_args, path=kv_path, keys=["db_password", "api_key"])
    checked = bg.run(vault_secret, capsys, args, check_mode=True)
    assert checked["changed"] is True and checked["generated"] == ["db_password", "api_key"]
    assert checked["secret"] == {}
    created = bg.run(vault_secret, capsys, args, diff=True)
    assert created["changed"] is True and created["version"] == 1
    data, version = stored(vault, kv_path)
    assert version == 1 and created["secret"] == data
    for value in data.values():
        assert len(value) == 32 and set(value) <= set(string.ascii_letters + string.digits)
    assert data["db_password"] != data["api_key"]
    # The diff names keys only: no value anywhere but under "secret".
    without_secret = json.dumps({k: v for k, v in created.items() if k != "secret"})
    assert all(value not in without_secret for value in data.values())

    again = bg.run(vault_secret, capsys, args)
    assert again["changed"] is False and again["secret"] == data and again["generated"] == []
    assert stored(vault, kv_path)[1] == 1


def test_missing_key_only_and_other_keys_kept(vault, vault_args, kv_path, capsys, bg):
    vault.api("secret/data/%s" % kv_path, "POST", {"data": {"db_password": "chosen-by-hand-1", "other": "kept-as-is"}})
    args = dict(vault_args, path=kv_path, keys=["db_password", "api_key"], length=48, charset="hex")
    result = bg.run(vault_secret, capsys, args)
    assert result["changed"] is True and result["generated"] == ["api_key"] and result["rotated"] == []
    data, version = stored(vault, kv_path)
    assert version == 2 and data["db_password"] == "chosen-by-hand-1" and data["other"] == "kept-as-is"
    assert len(data["api_key"]) == 48 and set(data["api_key"]) <= set("0123456789abcdef")
    assert result["secret"] == {"db_password": "chosen-by-hand-1", "api_key": data["api_key"]}


def test_rotate_named_keys_and_all(vault, vault_args, kv_path, capsys, bg):
    args = dict(vault_args, path=kv_path, keys=["a_key", "b_key"])
    first = bg.run(vault_secret, capsys, args)["secret"]
    checked = bg.run(vault_secret, capsys, dict(args, rotate=["b_key"]), check_mode=True)
    assert checked["changed"] is True and checked["rotated"] == ["b_key"] and stored(vault, kv_path)[0] == first
    rotated = bg.run(vault_secret, capsys, dict(args, rotate=["b_key"]))
    assert rotated["rotated"] == ["b_key"] and rotated["secret"]["a_key"] == first["a_key"]
    assert rotated["secret"]["b_key"] != first["b_key"]
    everything = bg.run(vault_secret, capsys, dict(args, rotate_all=True))
    assert everything["rotated"] == ["a_key", "b_key"] and everything["version"] == 3
    assert everything["secret"]["a_key"] != first["a_key"]


def test_return_secret_false_returns_no_values(vault, vault_args, kv_path, capsys, bg):
    result = bg.run(vault_secret, capsys, dict(vault_args, path=kv_path, keys=["k"], return_secret=False), diff=True)
    assert result["changed"] is True and "secret" not in result
    value = stored(vault, kv_path)[0]["k"]
    assert value not in json.dumps(result) and result["diff"]["after"] == {"k": "(new value hidden)"}


def test_bad_options_change_nothing(vault, vault_args, kv_path, capsys, bg):
    result = bg.run(vault_secret, capsys, dict(vault_args, path=kv_path, keys=["a"], rotate=["b"], length=8))
    assert result["failed"] is True
    assert "length must be between 16 and 1024 (characters), got 8" in result["msg"]
    assert "rotate names keys that are not in keys: b" in result["msg"]
    kv1 = bg.run(vault_secret, capsys, dict(vault_args, mount="nosuchmount", path=kv_path, keys=["a"]))
    assert kv1["failed"] is True and kv1["reason"] == "unknown_mount"


def test_concurrent_writer_wins_and_nothing_is_overwritten(vault, kv_path, capsys, bg, monkeypatch):
    """Another run writes between this run's read and write: check-and-set refuses, its value stays."""
    from ansible_collections.msa.platform.plugins.module_utils import _vault_kv  # noqa: PLC0415

    real_read = _vault_kv.KV2.read

    def read_then_race(self, version=None):
        answer = real_read(self, version)
        vault.api("secret/data/%s" % kv_path, "POST", {"data": {"k": "the-other-run-won"}})
        return answer

    monkeypatch.setattr(_vault_kv.KV2, "read", read_then_race)
    args = {"url": vault.url, "token": vault.token, "path": kv_path, "keys": ["k"]}
    result = bg.run(vault_secret, capsys, args)
    assert result["failed"] is True and result["reason"] == "cas"
    assert "check-and-set failed" in result["msg"] and result["msg"].endswith("nothing was changed")
    assert stored(vault, kv_path) == ({"k": "the-other-run-won"}, 1)
    monkeypatch.setattr(_vault_kv.KV2, "read", real_read)
    again = bg.run(vault_secret, capsys, args)
    assert again["changed"] is False and again["secret"] == {"k": "the-other-run-won"}
