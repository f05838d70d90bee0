#!/usr/bin/python
# Copyright: msa.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: vault_pki_cert
short_description: Issue a certificate from a PKI secrets engine of Vault or OpenBao, or sign a CSR with it
version_added: 0.1.0
author:
  - msa.platform maintainers (@msa)
description:
  - Issues a new certificate and private key from the role O(role) of the PKI engine at O(mount), for a host or
    a service, and returns the certificate, the issuing CA, the CA chain and the private key.
  - With O(csr), signs that certificate signing request instead (the role's C(sign) endpoint), so the private key
    never leaves the host that made the request, and none is returned.
  - The module only talks to the API; writing the files (and deciding when to renew) is the caller's, for example
    with M(ansible.builtin.copy) and C(mode=0600) for the key. Every run that is not in check mode issues (or
    signs) a new certificate, so guard the task (for example with the expiry of the certificate in place).
  - An issued certificate's result carries the private key, so the collection's action plugin marks it
    C(no_log); the registered variable has the values. A signed certificate's result holds no secret.
  - Checks first that O(mount) is a PKI engine and, when the token may read it, that O(role) exists.
seealso:
  - module: msa.platform.vault_mount
extends_documentation_fragment:
  - msa.platform.attributes
  - msa.platform.vault
  - msa.platform.vault.action_group
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying the target.
    support: full
    details:
      - Checks the mount and the role and reports that a certificate would be issued (or signed); issues nothing.
  diff_mode:
    description: Returns details on what has changed (or would change in check_mode) when in diff mode.
    support: none
options:
  mount:
    description: Path of the PKI secrets engine.
    type: str
    default: pki
  role:
    description: Name of the PKI role that allows the names asked for.
    type: str
    required: true
  common_name:
    description:
      - Common name of the certificate, for example the host's FQDN.
      - Required without O(csr). With O(csr), the role decides whether the request's own subject is used
        (its C(use_csr_common_name), on by default) or this one.
    type: str
  csr:
    description:
      - PEM certificate signing request to have signed by O(role) (C(<mount>/sign/<role>)) instead of having a key
        and certificate issued. The result then has no RV(private_key).
      - The role decides whether the request's subject alternative names are used (its C(use_csr_sans), on by
        default) or those of O(alt_names) and O(ip_sans).
    type: str
  alt_names:
    description: DNS names (and email addresses) for the subject alternative names.
    type: list
    elements: str
    default: []
  ip_sans:
    description: IP addresses for the subject alternative names.
    type: list
    elements: str
    default: []
  ttl:
    description: Lifetime asked for, such as C(720h); the role's maximum applies. The role's default when left out.
    type: str
  exclude_cn_from_sans:
    description: Leave the common name out of the subject alternative names.
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: A certificate for the gateway
  msa.platform.vault_pki_cert:
    mount: pki
    role: platform-hosts
    common_name: "{{ inventory_hostname }}"
    alt_names: [gateway.example.com]
    ip_sans: ["{{ ansible_host }}"]
    ttl: 720h
  register: gateway_cert
  delegate_to: localhost

- name: Or keep the key on the host and have its signing request signed
  msa.platform.vault_pki_cert:
    mount: pki
    role: platform-hosts
    csr: "{{ gateway_csr.csr }}"
  register: gateway_signed
  delegate_to: localhost

- name: Install the key, readable by root only
  ansible.builtin.copy:
    dest: /etc/ssl/private/gateway.key
    content: "{{ gateway_cert.private_key }}"
    mode: "0600"
  no_log: true
"""

RETURN = r"""
certificate:
  description: The certificate, PEM.
  returned: success, not in check mode
  type: str
  sample: "-----BEGIN CERTIFICATE-----\n..."
issuing_ca:
  description: The CA certificate that signed it, PEM.
  returned: success, not in check mode
  type: str
  sample: "-----BEGIN CERTIFICATE-----\n..."
ca_chain:
  description: The chain from the issuing CA up, PEM each.
  returned: success, not in check mode
  type: list
  elements: str
  sample: ["-----BEGIN CERTIFICATE-----\n..."]
private_key:
  description: The private key, PEM. The task result is marked no_log.
  returned: success, not in check mode, without O(csr)
  type: str
  sample: VALUE_HIDDEN
private_key_type:
  description: Key type.
  returned: success, not in check mode
  type: str
  sample: rsa
serial_number:
  description: Serial number of the certificate.
  returned: success, not in check mode
  type: str
  sample: 39:dd:2e:90:b7:23:1f:8d:d3:7d:31:c5:1b:da:84:d0:5b:65:31:58
expiration:
  description: When the certificate expires, seconds since the epoch.
  returned: success, not in check mode
  type: int
  sample: 1798761600
"""

from ansible_collections.msa.platform.plugins.module_utils._vault_client import (  # noqa: E402
    VaultError,
    VaultModule,
)
from ansible_collections.msa.platform.plugins.module_utils._vault_kv import clean_path  # noqa: E402

# What both endpoints return; issue also returns the private key it made.
SIGNED = ("certificate", "issuing_ca", "ca_chain", "serial_number", "expiration")


def request_body(params):
    """The issue or sign request: the options given, lists joined as the API takes them."""
    body = {"exclude_cn_from_sans": params["exclude_cn_from_sans"]}
    for name in ("common_name", "csr", "ttl"):
        if params[name]:
            body[name] = params[name]
    for name in ("alt_names", "ip_sans"):
        if params[name]:
            body[name] = ",".join(params[name])
    return body


def issue(module, conn):
    params = module.params
    mount = clean_path("mount", params["mount"])
    role = params["role"]
    info = conn.mount_info("", mount)
    if info.get("type") != "pki":
        raise VaultError(
            "the mount %s/ is a %s secrets engine, not pki" % (mount, info.get("type")), reason="wrong_engine"
        )
    try:
        exists = conn.get("%s/roles/%s" % (mount, role), "read the role %s" % role) is not None
    except VaultError as exc:
        if exc.details.get("reason") != "permission_denied":
            raise
        exists = True  # an issuing token need not read roles: the issue call will tell
    if not exists:
        raise VaultError("the PKI mount %s/ has no role %s" % (mount, role), reason="unknown_role")
    result = {"changed": True}
    if module.check_mode:
        return result
    body = request_body(params)
    if params["csr"]:
        endpoint, what, returned = "sign", "sign a certificate request with", SIGNED
    else:
        endpoint, what, returned = "issue", "issue a certificate from", SIGNED + ("private_key", "private_key_type")
    answer = conn.write("post", "%s/%s/%s" % (mount, endpoint, role), "%s %s/%s" % (what, mount, role), body)
    data = (answer or {}).get("data") or {}
    for name in returned:
        result[name] = data.get(name)
    return result


def main():
    argument_spec = VaultModule.generate_argspec(
        mount={"type": "str", "default": "pki"},
        role={"type": "str", "required": True},
        common_name={"type": "str"},
        csr={"type": "str"},
        alt_names={"type": "list", "elements": "str", "default": []},
        ip_sans={"type": "list", "elements": "str", "default": []},
        ttl={"type": "str"},
        exclude_cn_from_sans={"type": "bool", "default": False},
    )
    module = VaultModule(
        argument_spec=argument_spec,
        supports_check_mode=True,
        required_one_of=[("common_name", "csr")],
    )
    module.run(lambda conn: issue(module, conn), common_name=module.params["common_name"])


if __name__ == "__main__":
    main()
