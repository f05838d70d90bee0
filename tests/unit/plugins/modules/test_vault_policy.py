"""vault_policy against a real OpenBao dev server."""

from __future__ import annotations

from ansible_collections.msa.platform.plugins.modules import vault_policy

pytest_plugins = ["ansible_collections.msa.platform.tests.unit.plugins.vault_server"]

POLICY = 'path "secret/data/apps/orders/*" {\n  capabilities = ["read"]\n}\n'


def stored(vault, name):
    try:
        return vault.api("sys/policies/acl/%s" % name)["data"]["policy"]
    except Exception:  # noqa: BLE001 - 404: no policy
        return None


def test_check_then_create_then_idempotent_then_absent(vault, vault_args, capsys, bg):
    args = dict(vault_args, name="orders-test", policy=POLICY)
    checked = bg.run(vault_policy, capsys, args, check_mode=True, diff=True)
    assert checked["changed"] is True and checked["diff"]["before"] == "" and stored(vault, "orders-test") is None
    assert bg.run(vault_policy, capsys, args)["changed"] is True
    assert stored(vault, "orders-test") == POLICY
    # Trailing spaces, CRLF and blank lines around do not count.
    same = dict(args, policy="\n" + POLICY.replace("\n", "  \r\n") + "\n\n")
    assert bg.run(vault_policy, capsys, same)["changed"] is False

    changed = bg.run(vault_policy, capsys, dict(args, policy=POLICY.replace("read", "list")), diff=True)
    assert changed["changed"] is True and '["read"]' in changed["diff"]["before"]
    assert '["list"]' in changed["diff"]["after"]

    gone = dict(vault_args, name="orders-test", state="absent")
    assert bg.run(vault_policy, capsys, gone, check_mode=True)["changed"] is True
    assert stored(vault, "orders-test") is not None
    assert bg.run(vault_policy, capsys, gone)["changed"] is True and stored(vault, "orders-test") is None
    assert bg.run(vault_policy, capsys, gone)["changed"] is False


def test_bad_hcl_fails_and_keeps_the_old_policy(vault, vault_args, capsys, bg):
    args = dict(vault_args, name="keep-test", policy=POLICY)
    bg.run(vault_policy, capsys, args)
    result = bg.run(vault_policy, capsys, dict(args, policy='path "x" { capabilities = '))
    assert result["failed"] is True and "refused to write the policy keep-test" in result["msg"]
    assert result["msg"].endswith("nothing was changed") and stored(vault, "keep-test") == POLICY


def test_builtin_and_bad_names(vault, vault_args, capsys, bg):
    result = bg.run(vault_policy, capsys, dict(vault_args, name="default", state="absent"))
    assert result["failed"] is True and "cannot be deleted" in result["msg"]
    result = bg.run(vault_policy, capsys, dict(vault_args, name="bad name", policy=POLICY))
    assert result["failed"] is True and "name must be" in result["msg"]


def test_permission_denied(vault, vault_args, capsys, bg):
    token = vault.api("auth/token/create", "POST", {"policies": ["default"]})["auth"]["client_token"]
    result = bg.run(vault_policy, capsys, dict(vault_args, token=token, name="denied-test", policy=POLICY))
    assert result["failed"] is True and result["reason"] == "permission_denied"
    assert stored(vault, "denied-test") is None
