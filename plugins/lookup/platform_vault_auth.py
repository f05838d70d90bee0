# Copyright: msa.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
name: platform_vault_auth
short_description: Connection and admin credentials of the platform's own Vault, for the Vault modules
version_added: 0.1.0
author:
  - msa.platform maintainers (@msa)
description:
  - Returns one dictionary with the connection and auth options of the Vault modules (C(url), C(ca_cert),
    C(auth_method), and C(token) or C(role_id) and C(secret_id)) for the platform's Vault, found the same way
    as P(msa.platform.platform_secret#lookup) finds it (options given, else the controller's environment,
    else the inventory (the first host of the group C(vault), the platform CA, the admin AppRole of the vault
    role's init file)).
  - Nothing is sent to Vault; the init file is only read. An option that cannot be worked out (no init file,
    one that cannot be decrypted, no address) fails the lookup with a message that never shows a value.
  - The result holds a credential; use it in tasks marked C(no_log), or pass its values to module options
    that the modules already hide.
seealso:
  - plugin: msa.platform.platform_secret
    plugin_type: lookup
  - module: msa.platform.vault_approle
  - module: msa.platform.vault_policy
extends_documentation_fragment:
  - msa.platform.vault
  - msa.platform.platform_vault
"""

EXAMPLES = r"""
- name: Let the orders service read its own secrets
  msa.platform.vault_policy:
    url: "{{ admin.url }}"
    ca_cert: "{{ admin.ca_cert | default(omit) }}"
    auth_method: "{{ admin.auth_method }}"
    token: "{{ admin.token | default(omit) }}"
    role_id: "{{ admin.role_id | default(omit) }}"
    secret_id: "{{ admin.secret_id | default(omit) }}"
    name: orders
    policy: |
      path "secret/data/msa/services/orders/*" { capabilities = ["read"] }
  vars:
    admin: "{{ lookup('msa.platform.platform_vault_auth') }}"
  delegate_to: localhost
"""

RETURN = r"""
_raw:
  description:
    - One dictionary of module options; keys whose value is not set are left out.
  type: list
  elements: dict
  contains:
    url:
      description: Address of the server.
      type: str
    ca_cert:
      description: CA file on the control node, when one is known.
      type: str
    auth_method:
      description: V(token), or V(approle) for the admin AppRole of the init file.
      type: str
    token:
      description: The token given (option or environment), with O(auth_method=token).
      type: str
    role_id:
      description: Role ID of the AppRole.
      type: str
    secret_id:
      description: Secret ID of the AppRole.
      type: str
"""

from ansible.errors import AnsibleLookupError  # noqa: E402
from ansible_collections.msa.platform.plugins.module_utils import _vault_client  # noqa: E402
from ansible_collections.msa.platform.plugins.module_utils._module_failures import redact  # noqa: E402
from ansible_collections.msa.platform.plugins.module_utils._vault_client import VaultError  # noqa: E402
from ansible_collections.msa.platform.plugins.plugin_utils._platform_vault import PlatformVaultLookup  # noqa: E402

# Options a caller passes on to the modules; the rest (timeouts, TLS checks) keep the modules' defaults.
RETURNED = ("url", "ca_cert", "namespace", "auth_method", "auth_mount_point", "token", "role_id", "secret_id")


class LookupModule(PlatformVaultLookup):
    def run(self, terms, variables=None, **kwargs):
        if terms:
            raise AnsibleLookupError("platform_vault_auth lookup: takes no terms, got %d" % len(terms))
        variables = variables or {}
        self._set_templated_options(variables, kwargs)
        secrets = []
        try:
            options = self._connection_options(variables)
            secrets = [options.get(name) for name in _vault_client.SECRET_OPTIONS]
            problems = _vault_client.option_problems(options)
            if problems:
                raise VaultError("; ".join(problems))
        except VaultError as exc:
            raise AnsibleLookupError("platform_vault_auth lookup: %s" % redact(exc.msg, secrets)) from None
        return [{name: options[name] for name in RETURNED if options.get(name) not in (None, "")}]
