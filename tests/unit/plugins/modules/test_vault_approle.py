"""vault_approle against a real OpenBao dev server: auth method, role, role ID and secret ID delivery."""

from __future__ import annotations

import contextlib
import json
import time
import urllib.error

from ansible_collections.msa.platform.plugins.module_utils._vault_client import connect
from ansible_collections.msa.platform.plugins.modules import vault_approle

pytest_plugins = ["ansible_collections.msa.platform.tests.unit.plugins.vault_server"]


def auths(vault):
    return vault.api("sys/auth")["data"]


def test_enable_create_idempotent_and_deliver(vault, vault_args, capsys, bg):
    args = dict(
        vault_args,
        mount_point="approle-test",
        role_name="orders",
        token_policies=["orders", "default"],
        token_ttl="1h",
        token_max_ttl="4h",
        secret_id_ttl="720h",
    )
    checked = bg.run(vault_approle, capsys, args, check_mode=True, diff=True)
    assert checked["changed"] is True and checked["auth_enabled"] is True and "role_id" not in checked
    assert "approle-test/" not in auths(vault)

    made = bg.run(vault_approle, capsys, args)
    assert made["changed"] is True and made["auth_enabled"] is True and made["role_id"]
    role = vault.api("auth/approle-test/role/orders")["data"]
    assert role["token_ttl"] == 3600 and role["token_max_ttl"] == 14400 and role["secret_id_ttl"] == 2592000
    assert sorted(role["token_policies"]) == ["default", "orders"]

    again = bg.run(vault_approle, capsys, dict(args, token_policies=["default", "orders"], token_ttl="3600"))
    assert again["changed"] is False and again["role_id"] == made["role_id"]

    delivered = bg.run(vault_approle, capsys, dict(args, generate_secret_id=True, secret_id_metadata={"host": "app1"}))
    assert delivered["changed"] is True and delivered["secret_id"] and delivered["secret_id_accessor"]
    # The delivered pair logs in.
    conn = connect(
        {
            "url": vault.url,
            "auth_method": "approle",
            "auth_mount_point": "approle-test",
            "role_id": delivered["role_id"],
            "secret_id": delivered["secret_id"],
        }
    )
    assert conn.client.token
    checked = bg.run(vault_approle, capsys, dict(args, generate_secret_id=True), check_mode=True)
    assert checked["changed"] is True and "secret_id" not in checked


def test_change_then_absent(vault, vault_args, capsys, bg):
    args = dict(vault_args, role_name="change-test", token_policies=["a"])
    bg.run(vault_approle, capsys, args)
    changed = bg.run(vault_approle, capsys, dict(args, token_policies=["b"]), diff=True)
    assert changed["changed"] is True and changed["diff"]["before"] == {"token_policies": ["a"]}
    assert changed["diff"]["after"] == {"token_policies": ["b"]}
    gone = dict(vault_args, role_name="change-test", state="absent")
    assert bg.run(vault_approle, capsys, gone, check_mode=True)["changed"] is True
    assert bg.run(vault_approle, capsys, gone)["changed"] is True
    assert bg.run(vault_approle, capsys, gone)["changed"] is False


def test_wrong_auth_type_and_bad_ttl(vault, vault_args, capsys, bg):
    with contextlib.suppress(urllib.error.HTTPError):  # enabled by an earlier run
        vault.api("sys/auth/userpass-test", "POST", {"type": "userpass"})
    result = bg.run(vault_approle, capsys, dict(vault_args, mount_point="userpass-test", role_name="x"))
    assert result["failed"] is True and "userpass auth method, not approle" in result["msg"]
    result = bg.run(vault_approle, capsys, dict(vault_args, role_name="ttl-test", token_ttl="soon"))
    assert result["failed"] is True and "token_ttl must be seconds or a duration" in result["msg"]


def test_permission_denied_shows_no_secret(vault, vault_args, capsys, bg):
    token = vault.api("auth/token/create", "POST", {"policies": ["default"]})["auth"]["client_token"]
    result = bg.run(vault_approle, capsys, dict(vault_args, token=token, role_name="denied"))
    assert result["failed"] is True and result["reason"] == "permission_denied"
    assert token not in json.dumps(result)


def test_keep_secret_id_while_valid(vault, vault_args, capsys, bg):
    args = dict(vault_args, role_name="keep-test", token_policies=["default"], generate_secret_id=True)
    first = bg.run(vault_approle, capsys, args)
    assert first["changed"] is True and first["secret_id"]

    assert first["secret_id_kept"] is False
    kept = bg.run(vault_approle, capsys, dict(args, keep_secret_id=first["secret_id"]))
    assert kept["changed"] is False and kept["secret_id_kept"] is True and "secret_id" not in kept
    assert kept["secret_id_accessor"] == first["secret_id_accessor"]
    # The value given is never echoed back.
    assert first["secret_id"] not in json.dumps(kept)
    checked = bg.run(vault_approle, capsys, dict(args, keep_secret_id=first["secret_id"]), check_mode=True)
    assert checked["changed"] is False and checked["secret_id_kept"] is True

    # Unknown, another role's, or destroyed: a new one, which logs in.
    other = bg.run(vault_approle, capsys, dict(args, role_name="keep-other"))
    for stale in ("0e3bd5f4-1c6a-4a1e-9a4e-4c5a0f5c3b1d", other["secret_id"]):
        renewed = bg.run(vault_approle, capsys, dict(args, keep_secret_id=stale))
        assert renewed["changed"] is True and renewed["secret_id_kept"] is False
        assert renewed["secret_id"] not in (stale, first["secret_id"])
    vault.api("auth/approle/role/keep-test/secret-id/destroy", "POST", {"secret_id": first["secret_id"]})
    renewed = bg.run(vault_approle, capsys, dict(args, keep_secret_id=first["secret_id"]))
    assert renewed["changed"] is True and renewed["secret_id"] != first["secret_id"]
    login = connect(
        {"url": vault.url, "auth_method": "approle", "role_id": renewed["role_id"], "secret_id": renewed["secret_id"]}
    )
    assert login.client.token
    # Check mode with a stale one: a new one would be made, none is.
    checked = bg.run(vault_approle, capsys, dict(args, keep_secret_id=first["secret_id"]), check_mode=True)
    assert checked["changed"] is True and "secret_id" not in checked and checked["secret_id_kept"] is False


def test_keep_secret_id_expired(vault, vault_args, capsys, bg):
    args = dict(vault_args, role_name="keep-expiry", secret_id_ttl="2s", generate_secret_id=True)
    first = bg.run(vault_approle, capsys, args)
    time.sleep(3)
    renewed = bg.run(vault_approle, capsys, dict(args, keep_secret_id=first["secret_id"]))
    assert renewed["changed"] is True and renewed["secret_id"] != first["secret_id"]
