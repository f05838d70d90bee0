"""The platform_vault_auth lookup: the platform's Vault and its admin credentials, worked out from the
inventory as platform_secret does it, checked by logging in to a real OpenBao dev server with them."""

from __future__ import annotations

import pytest
from ansible_collections.msa.platform.plugins.module_utils._vault_client import connect
from ansible_collections.msa.platform.tests.unit.plugins.lookup.test_platform_secret import (
    create_admin_approle,
    init_json,
    run_calls,
)

pytest_plugins = ["ansible_collections.msa.platform.tests.unit.plugins.vault_server"]

PLUGIN = "msa.platform.platform_vault_auth"


@pytest.fixture
def admin_approle(vault):
    return create_admin_approle(vault)


def auth(variables, terms=(), **spec):
    """(options or None, error or None, stderr) of one lookup call."""
    results, stderr = run_calls([{"terms": list(terms), "plugin": PLUGIN}], variables, **spec)
    values = results[0].get("values")
    return (values[0] if values else None), results[0].get("error"), stderr


def test_admin_approle_and_address_from_the_inventory(vault, admin_approle, tmp_path):
    role_id, secret_id = admin_approle
    (tmp_path / "openbao-init.json").write_text(init_json(role_id, secret_id))
    (tmp_path / "ca.crt").write_text("not read by this test\n")
    port = vault.url.rsplit(":", 1)[1]
    variables = {
        "msa_pki_dir": str(tmp_path),
        "groups": {"vault": ["vault-1"]},
        "hostvars": {"vault-1": {"inventory_hostname": "vault-1", "ansible_host": "127.0.0.1", "vault_api_port": port}},
    }
    options, error, stderr = auth(variables)
    assert error is None
    assert options == {
        "url": "https://127.0.0.1:%s" % port,
        "ca_cert": str(tmp_path / "ca.crt"),
        "auth_method": "approle",
        "role_id": role_id,
        "secret_id": secret_id,
    }
    assert secret_id not in stderr
    # The credentials are the admin's: they log in (the dev server speaks plain HTTP).
    login = connect(dict(options, url=vault.url, ca_cert=None))
    assert "admin" in login.client.auth.token.lookup_self()["data"]["policies"]


def test_a_token_wins_over_the_init_file(vault, tmp_path):
    variables = {"msa_vault_url": vault.url, "msa_pki_dir": str(tmp_path)}
    options, error = auth(variables, env={"VAULT_TOKEN": vault.token})[:2]
    assert error is None
    assert options == {"url": vault.url, "auth_method": "token", "token": vault.token}


def test_no_init_file_and_bad_calls_fail_clearly(vault, admin_approle, tmp_path):
    role_id, secret_id = admin_approle
    variables = {"msa_vault_url": vault.url, "msa_pki_dir": str(tmp_path)}
    options, error = auth(variables)[:2]
    assert options is None and "no init file at %s/openbao-init.json" % tmp_path in error
    (tmp_path / "openbao-init.json").write_text(init_json(role_id, ""))
    options, error, stderr = auth(variables)
    assert options is None and "holds no usable admin AppRole" in error
    assert role_id not in error + stderr
    error = auth(variables, terms=["orders"])[1]
    assert "takes no terms" in error
    # A good init file but no address anywhere (no option, environment or vault group).
    (tmp_path / "good").mkdir()
    (tmp_path / "good" / "openbao-init.json").write_text(init_json(role_id, secret_id))
    options, error, stderr = auth({"msa_pki_dir": str(tmp_path / "good")})
    assert options is None and "url is required" in error
    assert secret_id not in error + stderr
