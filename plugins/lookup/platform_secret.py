# Copyright: msa.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
name: platform_secret
short_description: A platform password by name, from files on the control node or from Vault
version_added: 0.1.0
author:
  - msa.platform maintainers (@msa)
description:
  - Returns one password per name given (for example C(postgres-orders)). Where it comes from depends on
    O(backend) (the variable C(msa_secrets_backend)), so an inventory names its passwords once and switches
    stores with one variable.
  - "V(files) (the default) is P(ansible.builtin.password#lookup) on the control node, called exactly as
    C(lookup('ansible.builtin.password', msa_credentials_dir ~ '/' ~ name ~ ' ' ~ msa_password_spec)):
    created once (mode 0600), then reused."
  - V(vault) reads the key C(value) of the KV version 2 secret C(<kv_prefix>/<name>) at O(kv_mount). A missing
    secret is generated (as O(password_spec) says) and written with check-and-set 0, so it is created only once;
    when another fork wrote it first, the stored value is read and returned. An existing value is returned
    as it is and never rotated.
  - In check mode (C(ansible_check_mode)) a missing secret is not written; a generated value is returned
    and a warning names the secret.
  - Runs on the controller, which needs to reach the Vault API. Every failure (unknown backend, unreadable
    init file, sealed or unreachable server, KV version 1 mount, ...) stops the lookup with a message that
    names the secret and never a value; nothing is written for it (the message names any secret the same
    call created before).
seealso:
  - plugin: msa.platform.vault_kv
    plugin_type: lookup
  - module: msa.platform.vault_secret
  - plugin: ansible.builtin.password
    plugin_type: lookup
extends_documentation_fragment:
  - msa.platform.vault
options:
  _terms:
    description:
      - Names of the secrets, for example C(postgres-orders); letters, digits, C(.), C(_) and C(-), in
        segments separated by C(/).
    type: list
    elements: str
    required: true
  backend:
    description:
      - Where the passwords live, V(files) or V(vault). Anything else fails the lookup.
    type: raw
    default: files
    vars:
      - name: msa_secrets_backend
  credentials_dir:
    description:
      - Control-node directory of the password files, for O(backend=files). Required there.
    type: str
    vars:
      - name: msa_credentials_dir
  password_spec:
    description:
      - Parameters of P(ansible.builtin.password#lookup) for a new password, such as
        C(length=32 chars=ascii_letters,digits). O(backend=vault) generates missing secrets with the same
        parameters (through that lookup, with nothing stored on the control node).
      - Left empty, a new Vault secret is 32 letters and digits, and a new file uses the password lookup's
        own defaults.
    type: str
    default: ""
    vars:
      - name: msa_password_spec
  kv_mount:
    description: Path of the KV version 2 secrets engine, for O(backend=vault).
    type: str
    default: secret
    vars:
      - name: msa_vault_kv_mount
  kv_prefix:
    description: Path inside O(kv_mount) the secrets live under; the secret C(NAME) is C(<kv_prefix>/NAME).
    type: str
    default: msa
    vars:
      - name: msa_vault_kv_prefix
  url:
    description:
      - Address of the Vault or OpenBao server, for O(backend=vault).
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
        (neither O(token) nor E(VAULT_TOKEN) or E(BAO_TOKEN)) and O(auth_method=token), the lookup logs in with
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
  - The login is kept for the rest of the process (until shortly before its token expires), so each template
    that uses the lookup does not log in again.
  - With O(backend=vault), the first host of the group C(vault) must be reachable from the control node on the
    API port; the firewall role opens it to the address the run connects from.
  - A variable read through C(hostvars[other_host]) is templated without C(hostvars), so there the defaults
    that come from the group C(vault) (O(url), O(init_file)) cannot be found; read such passwords in a play on
    that host, or set C(msa_vault_url) and C(msa_vault_init_file) to values that need no C(hostvars).
"""

EXAMPLES = r"""
# group_vars/all/main.yml: one variable chooses the store for every password.
#   msa_secrets_backend: vault
#   msa_password_spec: length=32 chars=ascii_letters,digits

# group_vars/postgres.yml: each password by name.
#   postgres_databases:
#     - name: orders
#       owner: orders
#       password: "{{ lookup('msa.platform.platform_secret', 'postgres-orders') }}"

- name: Two passwords at once, from a Vault named here
  ansible.builtin.set_fact:
    redis_passwords: "{{ query('msa.platform.platform_secret', 'redis-admin', 'redis-sentinel',
                               url='https://vault.example.com:8200', ca_cert='/etc/ssl/msa/ca.pem') }}"
  no_log: true
"""

RETURN = r"""
_raw:
  description: One password per name, in the order given.
  type: list
  elements: str
"""

import json  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import time  # noqa: E402

from ansible.errors import AnsibleError, AnsibleLookupError  # noqa: E402
from ansible.parsing.vault import VaultLib, VaultSecret, is_encrypted  # noqa: E402
from ansible.plugins.loader import lookup_loader  # noqa: E402
from ansible.plugins.lookup import LookupBase  # noqa: E402
from ansible.utils.display import Display  # noqa: E402
from ansible_collections.msa.platform.plugins.filter.platform_address import platform_address  # noqa: E402
from ansible_collections.msa.platform.plugins.module_utils import _vault_client  # noqa: E402
from ansible_collections.msa.platform.plugins.module_utils._vault_client import VaultError  # noqa: E402
from ansible_collections.msa.platform.plugins.module_utils._vault_kv import KV2  # noqa: E402

display = Display()

BACKENDS = ("files", "vault")
# A secret name: path segments of letters, digits, '.', '_' and '-' (no spaces: the files backend
# passes it to ansible.builtin.password inside a "path key=value ..." term).
NAME_RE = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]*(/[A-Za-z0-9_-][A-Za-z0-9._-]*)*$")
KEY = "value"
DEFAULT_SPEC = "length=32 chars=ascii_letters,digits"
VAULT_GROUP = "vault"
# Logins kept by this process, keyed by everything that decides who logs in where.
_LOGINS = {}
# A cached login is dropped this many seconds before its token would expire.
TOKEN_MARGIN = 60


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        variables = variables or {}
        self.set_options(var_options=variables, direct=kwargs)
        # Options taken from variables arrive as written in the inventory, templates included.
        for name in self._options:
            self.set_option(name, self._templar.template(self.get_option(name)))
        backend = self.get_option("backend")
        if not isinstance(backend, str) or backend not in BACKENDS:
            raise AnsibleLookupError(
                "platform_secret lookup: msa_secrets_backend (option backend) must be one of %s, got %s %r; "
                "nothing was read or written" % (", ".join(BACKENDS), _type_name(backend), backend)
            )
        names = []
        for term in terms:
            if not isinstance(term, str) or not NAME_RE.match(term) or ".." in term.split("/"):
                raise AnsibleLookupError(
                    "platform_secret lookup: a secret name is letters, digits, '.', '_' and '-' in segments "
                    "separated by '/', such as postgres-orders; got %r" % (term,)
                )
            names.append(term)
        if backend == "files":
            return [self._from_file(name, variables) for name in names]
        return self._from_vault(names, variables)

    # ---------------------------------------------------------------------------- files

    def _from_file(self, name, variables):
        directory = self.get_option("credentials_dir")
        if not directory:
            raise AnsibleLookupError(
                "platform_secret lookup: secret %s: msa_credentials_dir (option credentials_dir) is not set; the "
                "files backend keeps each password in a file there" % name
            )
        spec = self.get_option("password_spec") or ""
        term = ("%s/%s %s" % (directory, name, spec)).strip()
        return self._password_lookup().run([term], variables)[0]

    def _password_lookup(self):
        plugin = lookup_loader.get("ansible.builtin.password", loader=self._loader, templar=self._templar)
        if plugin is None:
            raise AnsibleLookupError("platform_secret lookup: the lookup ansible.builtin.password cannot be loaded")
        return plugin

    # ---------------------------------------------------------------------------- vault

    def _from_vault(self, names, variables):
        secrets = []
        # Names created in Vault by this call, for a failure on a later name.
        created = []
        try:
            options = self._connection_options(variables)
            secrets = [options.get(option) for option in _vault_client.SECRET_OPTIONS]
            conn = self._connection(options)
            check_mode = bool(self._variable(variables, "ansible_check_mode"))
            mount = self.get_option("kv_mount")
            prefix = (self.get_option("kv_prefix") or "").strip("/")
            results = []
            for name in names:
                path = "%s/%s" % (prefix, name) if prefix else name
                try:
                    value, new = self._ensure(KV2(conn, mount, path), name, check_mode, variables)
                except VaultError as exc:
                    raise VaultError("secret %s: %s" % (name, exc.msg)) from None
                if new:
                    created.append(name)
                secrets.append(value)
                results.append(value)
        except VaultError as exc:
            # A refused or expired login must not stay cached for the next template.
            _LOGINS.clear()
            raise AnsibleLookupError(
                "platform_secret lookup (backend vault, %s): %s; %s"
                % (", ".join(names), _vault_client.redact(exc.msg, secrets), _written(created))
            ) from None
        except Exception as exc:  # noqa: BLE001 - house style: explained, never a bare traceback with values
            _LOGINS.clear()
            raise AnsibleLookupError(
                "platform_secret lookup (backend vault, %s): unexpected %s: %s; %s. This is a bug in msa.platform"
                % (", ".join(names), type(exc).__name__, _vault_client.redact(exc, secrets), _written(created))
            ) from None
        return results

    def _ensure(self, kv, name, check_mode, variables):
        """``(value, created)`` of the secret ``kv``: read, or generated and written once (check-and-set 0)."""
        value = self._stored_value(kv)
        if value is not None:
            return value, False
        candidate = self._generate(variables)
        if check_mode:
            display.warning(
                "platform_secret: %s does not exist in Vault (%s); check mode returns a generated value "
                "and writes nothing: a real run creates it" % (name, kv.where)
            )
            return candidate, False
        try:
            kv.write({KEY: candidate}, cas=0)
        except VaultError as exc:
            if exc.details.get("reason") != "cas":
                raise
            # Another fork (or run) created it between our read and our write: theirs stands.
            value = self._stored_value(kv)
            if value is None:
                raise
            return value, False
        return candidate, True

    def _stored_value(self, kv):
        """The stored value, or None when the secret does not exist yet."""
        data, meta = kv.read()
        if data is None and meta.get("exists"):
            # The data was missing but the metadata, read just after, exists: another fork may have
            # written the first version in between. A second read tells that from a deleted version.
            data, meta = kv.read()
        if data is None:
            if meta.get("exists"):
                raise VaultError(
                    "%s exists but its latest version (%s) was deleted or destroyed; restore it (bao kv undelete) "
                    "or remove its metadata (bao kv metadata delete) to have a new value generated"
                    % (kv.where, meta.get("version")),
                    reason="deleted",
                )
            return None
        value = data.get(KEY)
        if not isinstance(value, str) or not value:
            raise VaultError(
                "%s has no non-empty string under the key %s (its keys: %s); write one there, e.g. with "
                "msa.platform.vault_secret" % (kv.where, KEY, ", ".join(sorted(data)) or "none"),
                reason="bad_data",
            )
        return value

    def _generate(self, variables):
        """A new value as msa_password_spec says, made by ansible.builtin.password without storing it."""
        spec = self.get_option("password_spec") or DEFAULT_SPEC
        try:
            return self._password_lookup().run(["/dev/null %s" % spec], variables)[0]
        except AnsibleError as exc:
            raise VaultError("msa_password_spec (option password_spec) %r: %s" % (spec, exc.message)) from None

    # ------------------------------------------------------------------- connection and login

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

    @staticmethod
    def _connection(options):
        """A logged-in connection, the same one for the rest of the process while its token lives."""
        key = tuple(sorted((name, str(value)) for name, value in options.items()))
        login = _LOGINS.get(key)
        if login is not None and (login.deadline is None or time.monotonic() < login.deadline):
            if login.pid == os.getpid():
                return login.conn
            # A worker forked from the process that logged in: the token is still good, but the HTTP
            # connections it holds are the parent's and must not be shared.
            conn = _vault_client.connect(dict(options, auth_method="token", token=login.conn.client.token))
            _LOGINS[key] = _Login(conn, login.deadline)
            return conn
        conn = _vault_client.connect(options)
        ttl = ((conn.call("look up the token", conn.client.auth.token.lookup_self) or {}).get("data") or {}).get("ttl")
        _LOGINS[key] = _Login(conn, time.monotonic() + max(int(ttl) - TOKEN_MARGIN, 0) if ttl else None)
        return conn


def _written(created):
    """What a failed call left in Vault, for its message."""
    return "created before the failure: %s" % ", ".join(created) if created else "nothing was written"


def _type_name(value):
    """The plain type's name (ansible-core 2.19 hands tagged subclasses of str, int, ...)."""
    for kind in (bool, str, int, float, list, dict):
        if isinstance(value, kind):
            return kind.__name__
    return type(value).__name__


class _Login:
    """A logged-in connection of one process; ``deadline`` (monotonic) is None for a token that never expires."""

    def __init__(self, conn, deadline):
        self.conn = conn
        self.deadline = deadline
        self.pid = os.getpid()
