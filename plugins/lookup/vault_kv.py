# Copyright: msa.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
name: vault_kv
short_description: Read KV version 2 secrets from Vault or OpenBao
version_added: 0.1.0
author:
  - msa.platform maintainers (@msa)
description:
  - Returns the data of each secret path given, or the value of one key of it, from a KV version 2 mount.
  - Runs on the controller. The connection and auth options are those of the Vault modules; options left out
    come from the controller's environment (E(VAULT_ADDR), E(BAO_ADDR), E(VAULT_TOKEN), ...).
  - A missing secret, a missing key, a deleted version, an unknown mount or a KV version 1 mount fails the lookup
    with a message that names the path but never a value.
seealso:
  - module: msa.platform.vault_kv
  - module: msa.platform.vault_secret
extends_documentation_fragment:
  - msa.platform.vault
options:
  _terms:
    description: Paths of the secrets inside O(mount), for example C(services/postgres).
    type: list
    elements: str
    required: true
  mount:
    description: Path of the KV version 2 secrets engine.
    type: str
    default: secret
  key:
    description: Return only the value of this key instead of the whole data.
    type: str
  version:
    description: Version to read; the latest when left out.
    type: int
"""

EXAMPLES = r"""
- name: The postgres superuser password
  ansible.builtin.set_fact:
    postgres_password: "{{ lookup('msa.platform.vault_kv', 'services/postgres', key='superuser_password') }}"
  no_log: true

- name: The whole secret, from a given server and version
  ansible.builtin.debug:
    msg: "{{ lookup('msa.platform.vault_kv', 'apps/orders/db', url='https://vault.example.com:8200',
             ca_cert='/etc/ssl/msa/ca.pem', version=2).keys() | list }}"

- name: Logging in with AppRole
  ansible.builtin.set_fact:
    api_key: "{{ lookup('msa.platform.vault_kv', 'apps/orders/api', key='key', auth_method='approle',
                 role_id=orders_role_id, secret_id=orders_secret_id) }}"
  no_log: true
"""

RETURN = r"""
_raw:
  description:
    - One item per path; the secret's data (a dictionary), or with O(key) that key's value.
  type: list
  elements: raw
"""

from ansible.errors import AnsibleLookupError  # noqa: E402
from ansible.plugins.lookup import LookupBase  # noqa: E402
from ansible_collections.msa.platform.plugins.module_utils._module_failures import redact  # noqa: E402
from ansible_collections.msa.platform.plugins.module_utils._vault_client import (  # noqa: E402
    SECRET_OPTIONS,
    VaultError,
    connect,
    lookup_options,
)
from ansible_collections.msa.platform.plugins.module_utils._vault_kv import KV2  # noqa: E402


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        options = lookup_options(self.get_option)
        mount, key, version = self.get_option("mount"), self.get_option("key"), self.get_option("version")
        secrets = [options.get(name) for name in SECRET_OPTIONS]
        results = []
        try:
            conn = connect(options)
            for term in terms:
                kv = KV2(conn, mount, term)
                data, meta = kv.read(version=version)
                if data is None:
                    state = "was deleted or destroyed" if meta.get("exists") else "does not exist"
                    raise VaultError(
                        "the secret %s (version %s) %s" % (kv.where, meta.get("version") or "latest", state)
                    )
                if key is None:
                    results.append(data)
                elif key in data:
                    results.append(data[key])
                else:
                    raise VaultError(
                        "the secret %s has no key %s (its keys: %s)"
                        % (kv.where, key, ", ".join(sorted(data)) or "none")
                    )
        except VaultError as exc:
            raise AnsibleLookupError("vault_kv lookup: %s" % redact(exc.msg, secrets)) from None
        return results
