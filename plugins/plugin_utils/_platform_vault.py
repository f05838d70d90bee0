# Copyright: msa.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The platform's own Vault as the inventory describes it, for lookups: its address, its CA and the
admin AppRole in the vault role's init file. Options as doc_fragments/platform_vault.py documents."""

from __future__ import annotations

import json
import os

from ansible.errors import AnsibleError
from ansible.parsing.vault import VaultLib, VaultSecret, is_encrypted
from ansible.plugins.lookup import LookupBase
from ansible_collections.msa.platform.plugins.filter.platform_address import platform_address
from ansible_collections.msa.platform.plugins.module_utils import _vault_client
from ansible_collections.msa.platform.plugins.module_utils._vault_client import VaultError

VAULT_GROUP = "vault"


class PlatformVaultLookup(LookupBase):
    """A lookup that connects to the platform's Vault unless told another address or credentials."""

    def _set_templated_options(self, variables, kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        # Options taken from variables arrive as written in the inventory, templates included.
        for name in self._options:
            self.set_option(name, self._templar.template(self.get_option(name)))

    def _connection_options(self, variables):
        """Connection and auth options: given options, else the environment, else the inventory's defaults."""
        options = _vault_client.lookup_options(self.get_option)
        first_vault = self._first_vault_host(variables)
        if not options.get("url") and first_vault is not None:
            port = first_vault.get("vault_api_port", 8200)
            options["url"] = "https://%s:%s" % (platform_address(first_vault), port)
        pki_dir = self._variable(variables, "msa_pki_dir")
        platform_ca = os.path.join(os.path.expanduser(str(pki_dir)), "ca.crt") if pki_dir else None
        if not options.get("ca_cert") and platform_ca and os.path.isfile(platform_ca):
            options["ca_cert"] = platform_ca
        if options.get("ca_cert") and not os.path.isfile(options["ca_cert"]):
            raise VaultError("ca_cert %s (or VAULT_CACERT / BAO_CACERT) is not a file" % options["ca_cert"])
        if (options.get("auth_method") or "token") == "token" and not options.get("token"):
            options["auth_method"] = "approle"
            options["role_id"], options["secret_id"] = self._admin_approle(variables, first_vault)
        return options

    def _variable(self, variables, name):
        """The variable ``name`` templated, or None when it is not defined."""
        return self._templar.template(variables[name]) if name in variables else None

    @staticmethod
    def _first_vault_host(variables):
        """hostvars of the first host of the group vault, or None without one."""
        hosts = (variables.get("groups") or {}).get(VAULT_GROUP) or []
        hostvars = variables.get("hostvars") or {}
        if not hosts or hosts[0] not in hostvars:
            return None
        return hostvars[hosts[0]]

    def _admin_approle(self, variables, first_vault):
        path = self.get_option("init_file")
        if not path and first_vault is not None and "vault_init_file" in first_vault:
            path = first_vault["vault_init_file"]
        if not path:
            pki = self._variable(variables, "msa_pki_dir") or "~/.msa-platform/pki"
            path = "%s/openbao-init.json" % pki
        path = os.path.expanduser(str(path))
        password_file = self.get_option("init_password_file")
        if not password_file and first_vault is not None and "vault_init_vault_password_file" in first_vault:
            password_file = first_vault["vault_init_vault_password_file"]
        text = self._read_init_file(path, os.path.expanduser(str(password_file)) if password_file else None)
        try:
            admin = json.loads(text)["approle"]["admin"]
            role_id, secret_id = admin["role_id"], admin["secret_id"]
        except (ValueError, KeyError, TypeError):
            raise VaultError(
                "the init file %s is not the vault role's JSON with approle.admin.role_id and "
                "approle.admin.secret_id; point msa_vault_init_file at the file the vault role wrote, or give a "
                "token (VAULT_TOKEN)" % path,
                reason="init_file",
            ) from None
        if not isinstance(role_id, str) or not isinstance(secret_id, str) or not role_id or not secret_id:
            raise VaultError(
                "the init file %s holds no usable admin AppRole (approle.admin.role_id and secret_id must be "
                "non-empty strings)" % path,
                reason="init_file",
            )
        return role_id, secret_id

    def _read_init_file(self, path, password_file):
        if not os.path.isfile(path):
            raise VaultError(
                "no token given (token, VAULT_TOKEN or BAO_TOKEN) and no init file at %s to take the admin AppRole "
                "from; converge the vault role first, set msa_vault_init_file, or give a token" % path,
                reason="init_file",
            )
        try:
            if password_file:
                with open(path, "rb") as handle:
                    raw = handle.read()
                if is_encrypted(raw):
                    with open(password_file, "rb") as handle:
                        password = handle.read().strip()
                    return VaultLib([("default", VaultSecret(password))]).decrypt(raw).decode("utf-8")
            return str(self._loader.get_text_file_contents(path))
        except (AnsibleError, OSError, UnicodeDecodeError) as exc:
            reason = "cannot be decrypted with the run's vault passwords or msa_vault_init_password_file"
            if isinstance(exc, OSError):
                reason = "cannot be read (%s)" % (exc.strerror or type(exc).__name__)
            elif isinstance(exc, UnicodeDecodeError):
                reason = "is not text"
            raise VaultError("the init file %s %s" % (path, reason), reason="init_file") from None
