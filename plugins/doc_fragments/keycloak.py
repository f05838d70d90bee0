# Copyright: msa.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:
    # Connection options of every Keycloak module
    # (plugins/module_utils/_keycloak_client.py CONNECTION_ARGSPEC).
    DOCUMENTATION = r"""
options:
  url:
    description:
      - Keycloak's base URL, for example V(https://kc-1.internal:8443), with the path prefix if Keycloak
        has one (C(http-relative-path)).
      - Usually a node itself rather than the public gateway, which hides the admin API.
    type: str
    required: true
  auth_realm:
    description: The realm the administrator logs in to.
    type: str
    default: master
  auth_client_id:
    description: The client the administrator logs in through; it needs direct access grants.
    type: str
    default: admin-cli
  auth_username:
    description: The administrator's user name.
    type: str
    required: true
  auth_password:
    description: The administrator's password. Never shown in output or error messages.
    type: str
    required: true
  ca_path:
    description:
      - PEM file of the CA that signed Keycloak's certificate, when the system store does not trust it.
      - A certificate that does not verify fails the task before anything is read.
    type: path
  validate_certs:
    description: Whether to verify Keycloak's TLS certificate. Turn it off only for a throw-away lab.
    type: bool
    default: true
  timeout:
    description: Seconds to wait for each answer, from 1 to 3600.
    type: int
    default: 60
attributes:
  action_group:
    description: Use C(group/msa.platform.keycloak) in C(module_defaults) to set defaults for this module.
    support: full
    membership:
      - msa.platform.keycloak
notes:
  - Talks to Keycloak's admin REST API with Ansible's own HTTP client; no Python library is needed.
  - Failures say what went wrong (Keycloak not reachable, timeout, TLS verification, login refused, a role
    the administrator lacks, not found) and never include the password or the access token.
"""
