# Copyright: msa.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:
    # Connection options of every Consul module
    # (plugins/module_utils/_consul_client.py CONNECTION_ARGSPEC and ENV_FALLBACKS).
    DOCUMENTATION = r"""
options:
  host:
    description:
      - Host name or IP address of the Consul agent's HTTP API, without scheme or port.
      - Usually the local agent on the host the module runs on.
    type: str
    default: 127.0.0.1
  port:
    description: Port of the agent's HTTP API (Consul's default is C(8500) for HTTP, C(8501) for HTTPS).
    type: int
    default: 8500
  scheme:
    description: V(https) for an agent that serves its API over TLS.
    type: str
    default: http
    choices: [http, https]
  token:
    description:
      - ACL token sent as C(X-Consul-Token). When left out, E(CONSUL_HTTP_TOKEN) (on the host the module
        runs on); with neither, the agent's anonymous token is used.
      - It needs C(key_prefix) C(write) on the keys the task manages (C(read) is enough in check mode).
      - Never shown in output or error messages.
    type: str
  ca_path:
    description:
      - PEM file of the CA that signed the agent's certificate, for O(scheme=https) when the system store
        does not trust it. When left out, E(CONSUL_CACERT).
      - A certificate that does not verify fails the task before anything is read.
    type: path
  validate_certs:
    description: Whether to verify the agent's TLS certificate. Turn it off only for a throw-away lab.
    type: bool
    default: true
  timeout:
    description: Seconds to wait for each answer of the agent, from 1 to 3600.
    type: int
    default: 10
notes:
  - Talks to the agent's HTTP API with Ansible's own HTTP client; no Python library is needed.
  - Failures say what went wrong and what to do (agent not reachable on O(host) and O(port), timeout,
    TLS verification, ACL denied and which C(key_prefix) rule the token lacks, unknown token, a key
    changed meanwhile) and never include the token.
"""
