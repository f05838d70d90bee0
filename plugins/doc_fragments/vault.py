# Copyright: msa.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:
    # Connection and auth options of every Vault module and the vault_kv lookup
    # (plugins/module_utils/_vault_client.py SHARED_ARGSPEC and ENV_FALLBACKS).
    DOCUMENTATION = r"""
options:
  url:
    description:
      - Address of the Vault or OpenBao server, for example V(https://vault.example.com:8200).
      - When left out, the first set of the environment variables E(VAULT_ADDR) and E(BAO_ADDR) (on the
        host the module runs on; on the controller for the lookup).
      - An unreachable address fails naming it, before anything is read or changed.
    type: str
  ca_cert:
    description:
      - PEM file of the CA that signed the server's certificate, for an HTTPS O(url) whose certificate the
        system store does not trust.
      - When left out, E(VAULT_CACERT) or E(BAO_CACERT). A certificate that does not verify fails the task.
    type: path
  validate_certs:
    description:
      - Whether to verify the server's TLS certificate. Turn it off only for a throw-away lab.
    type: bool
    default: true
  timeout:
    description: Seconds to wait for each answer of the server, from 1 to 3600.
    type: int
    default: 30
  namespace:
    description:
      - Namespace to work in, for servers that have namespaces. When left out, E(VAULT_NAMESPACE) or
        E(BAO_NAMESPACE); none when those are unset.
    type: str
  auth_method:
    description:
      - How to log in. V(token) uses O(token) as it is; V(approle) logs in with O(role_id) and O(secret_id);
        V(userpass) with O(username) and O(password).
      - A token that the server refuses, or a refused login, fails the task before anything is read.
    type: str
    default: token
    choices: [token, approle, userpass]
  auth_mount_point:
    description:
      - Path the auth method is mounted at, without C(auth/). Defaults to the method's name
        (C(approle), C(userpass)).
    type: str
  token:
    description:
      - Token for O(auth_method=token). When left out, E(VAULT_TOKEN) or E(BAO_TOKEN).
      - Never shown in output or error messages.
    type: str
  role_id:
    description: Role ID for O(auth_method=approle).
    type: str
  secret_id:
    description: Secret ID for O(auth_method=approle). Never shown in output or error messages.
    type: str
  username:
    description: User name for O(auth_method=userpass).
    type: str
  password:
    description: Password for O(auth_method=userpass). Never shown in output or error messages.
    type: str
requirements:
  - hvac (Python library) 1.0 or later, on the host that talks to the server.
notes:
  - Works with OpenBao and HashiCorp Vault (the same HTTP API); the collection's tests run against OpenBao.
  - Failures say what went wrong (unreachable address, TLS verification, refused token or login, permission
    denied, sealed server, unknown mount, KV version mismatch) and never include secret values.
"""

    ACTION_GROUP = r"""
options: {}
attributes:
  action_group:
    description: Use C(group/msa.platform.vault) in C(module_defaults) to set the connection options once.
    support: full
    membership:
      - msa.platform.vault
"""
