# Copyright: msa.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:
    # How a lookup finds the platform's own Vault from the inventory: address, CA and the admin AppRole
    # of the vault role's init file (plugins/plugin_utils/_platform_vault.py). With the msa.platform.vault
    # fragment, whose url and ca_cert these entries extend with their inventory variables.
    DOCUMENTATION = r"""
options:
  url:
    description:
      - Address of the platform's Vault or OpenBao server.
      - When left out, E(VAULT_ADDR) or E(BAO_ADDR); else C(https://<platform address>:<vault_api_port>) of the
        first host of the inventory group C(vault) (its C(msa_address), else C(ansible_host), else its name, as
        the filter P(msa.platform.platform_address#filter) says; C(vault_api_port) defaults to 8200).
    type: str
    vars:
      - name: msa_vault_url
  ca_cert:
    description:
      - PEM file of the CA that signed the server's certificate.
      - When left out, E(VAULT_CACERT) or E(BAO_CACERT); else C(<msa_pki_dir>/ca.crt), the platform CA the vault
        role issues the servers' certificates from, when that file exists; else the system's trust store.
    type: path
    vars:
      - name: msa_vault_ca_cert
  init_file:
    description:
      - Control-node file the vault role wrote at initialisation (C(vault_init_file)). When no token is given
        (neither O(token) nor E(VAULT_TOKEN) or E(BAO_TOKEN)) and O(auth_method=token), the lookup uses
        the admin AppRole it holds (C(approle.admin.role_id), C(approle.admin.secret_id)).
      - Read through Ansible's loader, so a file encrypted with ansible-vault works with the run's vault
        passwords, or with O(init_password_file).
      - When left out, C(vault_init_file) of the first host of the group C(vault), else
        C(<msa_pki_dir>/openbao-init.json), the vault role's default.
    type: path
    vars:
      - name: msa_vault_init_file
  init_password_file:
    description:
      - Control-node file holding the ansible-vault password O(init_file) is encrypted with.
      - When left out, C(vault_init_vault_password_file) of the first host of the group C(vault), if set;
        else the run's own vault passwords (C(--vault-password-file), C(--vault-id)) decrypt it.
    type: path
    vars:
      - name: msa_vault_init_password_file
notes:
  - The first host of the group C(vault) must be reachable from the control node on the
    API port; the firewall role opens it to the address the run connects from.
  - A variable read through C(hostvars[other_host]) is templated without C(hostvars), so there the defaults
    that come from the group C(vault) (O(url), O(init_file)) cannot be found; use the lookup in a play on
    that host, or set C(msa_vault_url) and C(msa_vault_init_file) to values that need no C(hostvars).
"""
