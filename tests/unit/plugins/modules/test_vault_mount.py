"""vault_mount against a real OpenBao dev server."""

from __future__ import annotations

from ansible_collections.msa.platform.plugins.modules import vault_mount

pytest_plugins = ["ansible_collections.msa.platform.tests.unit.plugins.vault_server"]


def mounts(vault):
    return vault.api("sys/mounts")["data"]


def test_check_then_mount_then_idempotent_then_tune(vault, vault_args, capsys, bg):
    args = dict(vault_args, path="kv-mount-test", type="kv", options={"version": 2}, description="test kv")
    checked = bg.run(vault_mount, capsys, args, check_mode=True, diff=True)
    assert checked["changed"] is True and "kv-mount-test/" not in mounts(vault)
    made = bg.run(vault_mount, capsys, args)
    assert made["changed"] is True
    entry = mounts(vault)["kv-mount-test/"]
    assert entry["type"] == "kv" and entry["options"]["version"] == "2" and entry["description"] == "test kv"
    assert bg.run(vault_mount, capsys, args)["changed"] is False

    tuned = bg.run(vault_mount, capsys, dict(args, description="renamed", max_lease_ttl="48h"), diff=True)
    assert tuned["changed"] is True and tuned["diff"]["before"]["description"] == "test kv"
    entry = mounts(vault)["kv-mount-test/"]
    assert entry["description"] == "renamed" and entry["config"]["max_lease_ttl"] == 172800
    assert bg.run(vault_mount, capsys, dict(args, description="renamed", max_lease_ttl="172800"))["changed"] is False


def test_type_change_is_an_error_not_a_remount(vault, vault_args, capsys, bg):
    args = dict(vault_args, path="typed-test", type="kv", options={"version": "2"})
    bg.run(vault_mount, capsys, args)
    vault.api("typed-test/data/keep", "POST", {"data": {"a": "stays-here"}})
    result = bg.run(vault_mount, capsys, dict(args, type="transit"))
    assert result["failed"] is True and result["reason"] == "type_change"
    assert "already a kv mount, not transit" in result["msg"] and result["msg"].endswith("nothing was changed")
    assert mounts(vault)["typed-test/"]["type"] == "kv"
    assert vault.api("typed-test/data/keep")["data"]["data"] == {"a": "stays-here"}
    down = bg.run(vault_mount, capsys, dict(args, options={"version": "1"}))
    assert down["failed"] is True and down["reason"] == "kv_downgrade"


def test_kv1_upgrade_and_absent(vault, vault_args, capsys, bg):
    args = dict(vault_args, path="upgrade-test", type="kv", options={"version": "1"})
    bg.run(vault_mount, capsys, args)
    assert mounts(vault)["upgrade-test/"]["options"]["version"] == "1"
    up = bg.run(vault_mount, capsys, dict(args, options={"version": "2"}))
    assert up["changed"] is True and mounts(vault)["upgrade-test/"]["options"]["version"] == "2"
    gone = dict(vault_args, path="upgrade-test", state="absent")
    assert bg.run(vault_mount, capsys, gone, check_mode=True)["changed"] is True
    assert "upgrade-test/" in mounts(vault)
    assert bg.run(vault_mount, capsys, gone)["changed"] is True and "upgrade-test/" not in mounts(vault)
    assert bg.run(vault_mount, capsys, gone)["changed"] is False


def test_bad_input(vault, vault_args, capsys, bg):
    result = bg.run(vault_mount, capsys, dict(vault_args, path="sys", type="kv"))
    assert result["failed"] is True and "not built in" in result["msg"]
    result = bg.run(vault_mount, capsys, dict(vault_args, path="ttl-test", type="kv", max_lease_ttl="forever"))
    assert result["failed"] is True and "max_lease_ttl must be seconds or a duration" in result["msg"]
    assert "ttl-test/" not in mounts(vault)
