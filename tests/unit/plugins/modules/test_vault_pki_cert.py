"""vault_pki_cert against a real OpenBao dev server with a PKI mount and a role."""

from __future__ import annotations

import ipaddress

import pytest
from ansible_collections.msa.platform.plugins.modules import vault_pki_cert
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

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


def host_csr(common_name, dns_names=(), ips=()):
    """A key that stays here and its signing request, as the host makes them (P-256)."""
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.DNSName(name) for name in dns_names] + [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    csr = builder.sign(key, hashes.SHA256())
    return key, csr.public_bytes(serialization.Encoding.PEM).decode()


@pytest.fixture(scope="module")
def sign_role(vault, pki):
    # key_type any: the hosts' keys are EC P-256 while the role's default is RSA.
    vault.api(
        "%s/roles/signer" % pki,
        "POST",
        {
            "allowed_domains": "example.test",
            "allow_subdomains": True,
            "allow_ip_sans": True,
            "max_ttl": "720h",
            "key_type": "any",
        },
    )
    return pki, "signer"


def test_sign_csr_keeps_the_key_on_the_host(vault, vault_args, sign_role, capsys, bg):
    pki, role = sign_role
    key, csr = host_csr("lb.example.test", ["lb.example.test", "balancer.example.test"], ["127.0.0.1"])
    args = dict(vault_args, mount=pki, role=role, csr=csr, ttl="24h")
    before = issued_count(vault, pki)
    checked = bg.run(vault_pki_cert, capsys, args, check_mode=True)
    assert checked["changed"] is True and "certificate" not in checked
    assert issued_count(vault, pki) == before
    result = bg.run(vault_pki_cert, capsys, args)
    assert result["changed"] is True and "private_key" not in result and "private_key_type" not in result
    cert = x509.load_pem_x509_certificate(result["certificate"].encode())
    # Signed for the host's own key, with the request's names, by the mount's CA.
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()
    assert cert.subject.rfc4514_string() == "CN=lb.example.test"
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(sans.get_values_for_type(x509.DNSName)) == {"lb.example.test", "balancer.example.test"}
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    ca_pem = vault.api("%s/cert/ca" % pki)["data"]["certificate"]
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate(ca_pem.encode()))
    assert result["issuing_ca"].strip() == ca_pem.strip()
    assert result["serial_number"] and result["expiration"] > 0
    assert issued_count(vault, pki) == before + 1


def test_sign_refuses_names_the_role_does_not_allow_and_bad_requests(vault, vault_args, sign_role, capsys, bg):
    pki, role = sign_role
    base = dict(vault_args, mount=pki, role=role)
    before = issued_count(vault, pki)
    evil = host_csr("lb.example.test", ["evil.other.test"])[1]
    result = bg.run(vault_pki_cert, capsys, dict(base, csr=evil))
    assert result["failed"] is True and "sign a certificate request" in result["msg"]
    result = bg.run(vault_pki_cert, capsys, dict(base, csr="not a request"))
    assert result["failed"] is True
    result = bg.run(vault_pki_cert, capsys, dict(base, role="nope", csr=evil), check_mode=True)
    assert result["failed"] is True and result["reason"] == "unknown_role"
    result = bg.run(vault_pki_cert, capsys, base)
    assert result["failed"] is True and "common_name" in result["msg"] and "csr" in result["msg"]
    assert issued_count(vault, pki) == before
