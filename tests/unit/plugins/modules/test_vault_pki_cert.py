"""vault_pki_cert against a real OpenBao dev server with a PKI mount and a role."""

from __future__ import annotations

import pytest
from ansible_collections.msa.platform.plugins.modules import vault_pki_cert
from cryptography import x509

pytest_plugins = ["ansible_collections.msa.platform.tests.unit.plugins.vault_server"]


@pytest.fixture(scope="module")
def pki(vault):
    vault.api("sys/mounts/pki-test", "POST", {"type": "pki", "config": {"max_lease_ttl": "87600h"}})
    vault.api("pki-test/root/generate/internal", "POST", {"common_name": "msa test root", "ttl": "8760h"})
    vault.api(
        "pki-test/roles/hosts",
        "POST",
        {"allowed_domains": "example.test", "allow_subdomains": True, "max_ttl": "720h", "allow_ip_sans": True},
    )
    return "pki-test"


def issued_count(vault, mount):
    try:
        return len(vault.api("%s/certs?list=true" % mount)["data"]["keys"])
    except Exception:  # noqa: BLE001 - 404: none
        return 0


def test_check_mode_issues_nothing_then_issue(vault, vault_args, pki, capsys, bg):
    args = dict(
        vault_args,
        mount=pki,
        role="hosts",
        common_name="gw.example.test",
        alt_names=["api.example.test"],
        ip_sans=["127.0.0.1"],
        ttl="24h",
    )
    before = issued_count(vault, pki)
    checked = bg.run(vault_pki_cert, capsys, args, check_mode=True)
    assert checked["changed"] is True and "certificate" not in checked
    assert issued_count(vault, pki) == before
    result = bg.run(vault_pki_cert, capsys, args)
    assert result["changed"] is True and result["private_key"].startswith("-----BEGIN")
    cert = x509.load_pem_x509_certificate(result["certificate"].encode())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(sans.get_values_for_type(x509.DNSName)) == {"gw.example.test", "api.example.test"}
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert result["issuing_ca"].startswith("-----BEGIN CERTIFICATE") and result["serial_number"]
    assert issued_count(vault, pki) == before + 1


def test_unknown_role_name_not_allowed_and_wrong_engine(vault, vault_args, pki, capsys, bg):
    base = dict(vault_args, mount=pki, common_name="gw.example.test")
    before = issued_count(vault, pki)
    result = bg.run(vault_pki_cert, capsys, dict(base, role="nope"), check_mode=True)
    assert result["failed"] is True and result["reason"] == "unknown_role"
    result = bg.run(vault_pki_cert, capsys, dict(base, role="hosts", common_name="evil.other.test"))
    assert result["failed"] is True and "refused to issue a certificate" in result["msg"]
    result = bg.run(vault_pki_cert, capsys, dict(base, mount="secret", role="hosts"))
    assert result["failed"] is True and result["reason"] == "wrong_engine"
    result = bg.run(vault_pki_cert, capsys, dict(base, mount="nopki", role="hosts"))
    assert result["failed"] is True and result["reason"] == "unknown_mount"
    assert issued_count(vault, pki) == before
