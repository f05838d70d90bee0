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
  - msa.platform.platform_vault
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
notes:
  - The login is kept for the rest of the process (until shortly before its token expires), so each template
    that uses the lookup does not log in again.
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

import os  # noqa: E402
import re  # noqa: E402
import time  # noqa: E402

from ansible.errors import AnsibleError, AnsibleLookupError  # noqa: E402
from ansible.plugins.loader import lookup_loader  # noqa: E402
from ansible.utils.display import Display  # noqa: E402
from ansible_collections.msa.platform.plugins.module_utils import _vault_client  # noqa: E402
from ansible_collections.msa.platform.plugins.module_utils._module_failures import redact  # noqa: E402
from ansible_collections.msa.platform.plugins.module_utils._vault_client import VaultError  # noqa: E402
from ansible_collections.msa.platform.plugins.module_utils._vault_kv import KV2  # noqa: E402
from ansible_collections.msa.platform.plugins.plugin_utils._platform_vault import PlatformVaultLookup  # noqa: E402

display = Display()

BACKENDS = ("files", "vault")
# A secret name: path segments of letters, digits, '.', '_' and '-' (no spaces: the files backend
# passes it to ansible.builtin.password inside a "path key=value ..." term).
NAME_RE = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]*(/[A-Za-z0-9_-][A-Za-z0-9._-]*)*$")
KEY = "value"
DEFAULT_SPEC = "length=32 chars=ascii_letters,digits"
# Logins kept by this process, keyed by everything that decides who logs in where.
_LOGINS = {}
# A cached login is dropped this many seconds before its token would expire.
TOKEN_MARGIN = 60


class LookupModule(PlatformVaultLookup):
    def run(self, terms, variables=None, **kwargs):
        variables = variables or {}
        self._set_templated_options(variables, kwargs)
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
                % (", ".join(names), redact(exc.msg, secrets), _written(created))
            ) from None
        except Exception as exc:  # noqa: BLE001 - house style: explained, never a bare traceback with values
            _LOGINS.clear()
            raise AnsibleLookupError(
                "platform_secret lookup (backend vault, %s): unexpected %s: %s; %s. This is a bug in msa.platform"
                % (", ".join(names), type(exc).__name__, redact(exc, secrets), _written(created))
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
