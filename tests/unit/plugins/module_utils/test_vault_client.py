"""Connection and login (_vault_client) against real OpenBao servers: every bad-connection case is a
clear VaultError without secrets, and a module run with it changes nothing."""

from __future__ import annotations

import contextlib
import json
import urllib.error

import hvac.exceptions
import pytest
from ansible_collections.msa.platform.plugins.module_utils import _vault_client
from ansible_collections.msa.platform.plugins.module_utils._vault_client import (
    VaultError,
    connect,
    option_problems,
)
from ansible_collections.msa.platform.plugins.modules import vault_kv
from ansible_collections.msa.platform.tests.unit.plugins.lab_servers import free_port, run_module

pytest_plugins = ["ansible_collections.msa.platform.tests.unit.plugins.vault_server"]

SECRET = "never-shown-Secret-42"


def error_of(options):
    with pytest.raises(VaultError) as info:
        connect(options)
    return info.value


def test_token_connects_and_reads(vault):
    conn = connect({"url": vault.url, "token": vault.token})
    assert conn.get("sys/mounts/secret")["type"] == "kv"
    assert conn.get("secret/data/does/not/exist") is None


def test_unreachable_address():
    url = "http://127.0.0.1:%d" % free_port()
    exc = error_of({"url": url, "token": SECRET, "timeout": 2})
    assert exc.details["reason"] == "unreachable"
    assert "cannot reach the Vault server at %s" % url in exc.msg and SECRET not in exc.msg


def test_tls_verification_failure_then_ca_cert(vault_tls):
    exc = error_of({"url": vault_tls.url, "token": vault_tls.token})
    assert exc.details["reason"] == "tls"
    assert "TLS verification of %s failed" % vault_tls.url in exc.msg and "ca_cert" in exc.msg
    conn = connect({"url": vault_tls.url, "token": vault_tls.token, "ca_cert": vault_tls.ca_cert})
    assert conn.get("sys/mounts/secret")["type"] == "kv"
    insecure = connect({"url": vault_tls.url, "token": vault_tls.token, "validate_certs": False})
    assert insecure.get("sys/mounts/secret")["type"] == "kv"


def test_wrong_token(vault):
    exc = error_of({"url": vault.url, "token": SECRET})
    assert exc.details["reason"] == "bad_token" and "refused the token" in exc.msg and SECRET not in exc.msg


def test_sealed_server(vault_sealed):
    exc = error_of({"url": vault_sealed.url, "token": vault_sealed.token})
    assert exc.details["reason"] == "sealed"
    assert "is sealed" in exc.msg and "unseal" in exc.msg and vault_sealed.token not in exc.msg


def test_env_fallbacks_are_read(vault, monkeypatch, capsys, kv_path):
    monkeypatch.setenv("BAO_ADDR", vault.url)
    monkeypatch.setenv("BAO_TOKEN", vault.token)
    result = run_module(vault_kv, capsys, {"path": kv_path, "data": {"a": "from-env-value"}})
    assert result["changed"] is True and result["version"] == 1


def test_approle_and_userpass_logins(vault):
    for method in ("approle", "userpass"):
        with contextlib.suppress(urllib.error.HTTPError):  # enabled by another test
            vault.api("sys/auth/%s" % method, "POST", {"type": method})
    vault.api("auth/approle/role/client-test", "POST", {"token_policies": ["default"]})
    role_id = vault.api("auth/approle/role/client-test/role-id")["data"]["role_id"]
    secret_id = vault.api("auth/approle/role/client-test/secret-id", "POST", {})["data"]["secret_id"]
    conn = connect({"url": vault.url, "auth_method": "approle", "role_id": role_id, "secret_id": secret_id})
    assert conn.client.token and conn.client.token != vault.token
    bad = error_of({"url": vault.url, "auth_method": "approle", "role_id": role_id, "secret_id": SECRET})
    assert bad.details["reason"] == "bad_credentials" and "approle login at auth/approle refused" in bad.msg
    assert SECRET not in bad.msg

    vault.api("auth/userpass/users/alice", "POST", {"password": "alice-Password-1", "token_policies": "default"})
    conn = connect({"url": vault.url, "auth_method": "userpass", "username": "alice", "password": "alice-Password-1"})
    assert conn.client.token
    bad = error_of({"url": vault.url, "auth_method": "userpass", "username": "alice", "password": SECRET})
    assert bad.details["reason"] == "bad_credentials" and SECRET not in bad.msg


def test_option_problems():
    assert option_problems({"url": "http://x:8200", "token": "t"}) == []
    problems = option_problems({"url": None, "auth_method": "approle", "role_id": "r", "timeout": 0})
    assert "url is required (or set VAULT_ADDR or BAO_ADDR), for example https://vault.example.com:8200" in problems
    assert "timeout must be between 1 and 3600 (seconds), got 0" in problems
    assert "auth_method=approle needs secret_id" in problems
    assert option_problems({"url": "vault:8200", "token": "t"}) == [
        "url must start with http:// or https:// and name a host, got 'vault:8200'"
    ]


@pytest.mark.parametrize("case", ["unreachable", "tls", "bad_token", "sealed"])
def test_module_fails_cleanly_and_changes_nothing(case, request, capsys, kv_path):
    vault, vault_tls = request.getfixturevalue("vault"), request.getfixturevalue("vault_tls")
    args = {"path": kv_path, "data": {"password": SECRET}}
    if case == "unreachable":
        args.update(url="http://127.0.0.1:%d" % free_port(), token=vault.token, timeout=2)
    elif case == "tls":
        args.update(url=vault_tls.url, token=vault_tls.token)
    elif case == "bad_token":
        args.update(url=vault.url, token="wrong-token-%s" % SECRET)
    else:
        sealed = request.getfixturevalue("vault_sealed")
        args.update(url=sealed.url, token=sealed.token)
    result = run_module(vault_kv, capsys, args, diff=True)
    assert result["failed"] is True and result["reason"] == case
    assert result["msg"].endswith("nothing was changed")
    assert SECRET not in json.dumps(result)
    for server in (vault, vault_tls):
        with pytest.raises(Exception, match="404"):
            server.api("secret/metadata/%s" % kv_path)


def commit_error(message):
    return hvac.exceptions.InternalServerError(errors=[message])


def flaky(failures):
    """A call that fails with each of ``failures`` in turn, then answers."""
    calls = []

    def func(path):
        calls.append(path)
        if len(calls) <= len(failures):
            raise failures[len(calls) - 1]
        return {"data": path}

    return func, calls


def test_commit_conflict_is_sent_again(monkeypatch):
    monkeypatch.setattr(_vault_client, "COMMIT_CONFLICT_DELAY", 0)
    func, calls = flaky([commit_error("1 error occurred:\n\t* transaction commit failed\n\n")] * 2)
    assert _vault_client.send(func, "auth/approle/role/app") == {"data": "auth/approle/role/app"}
    assert len(calls) == 3


def test_commit_conflict_gives_up_after_its_tries(monkeypatch):
    monkeypatch.setattr(_vault_client, "COMMIT_CONFLICT_DELAY", 0)
    conflict = commit_error("transaction commit failed")
    func, calls = flaky([conflict] * _vault_client.COMMIT_CONFLICT_TRIES)
    conn = _vault_client.Connection(client=None, url="https://127.0.0.1:1", timeout=2)
    with pytest.raises(VaultError) as info:
        conn.call("read the role app", func, "auth/approle/role/app")
    assert len(calls) == _vault_client.COMMIT_CONFLICT_TRIES
    assert "failed to read the role app" in info.value.msg and "transaction commit failed" in info.value.msg


def test_other_server_errors_are_not_sent_again(monkeypatch):
    monkeypatch.setattr(_vault_client, "COMMIT_CONFLICT_DELAY", 0)
    func, calls = flaky([commit_error("internal error"), hvac.exceptions.InvalidRequest(errors=["bad"])])
    with pytest.raises(hvac.exceptions.InternalServerError):
        _vault_client.send(func, "a")
    assert len(calls) == 1
    func, calls = flaky([hvac.exceptions.InvalidRequest(errors=["transaction commit failed"])])
    with pytest.raises(hvac.exceptions.InvalidRequest):
        _vault_client.send(func, "a")
    assert len(calls) == 1
