# Copyright: msa.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# FOR INTERNAL COLLECTION USE ONLY
# The interfaces in this file serve the msa.platform Vault modules and lookup and may change in
# any release, even a bugfix release.

"""Connection and login for the Vault (OpenBao) modules and the ``vault_kv`` lookup.

* the connection and auth options, defined once here and documented once in
  ``doc_fragments/vault.py`` (with the environment variables each one falls back to);
* :func:`connect`: an authenticated ``hvac.Client`` from those options, or :class:`VaultError`;
* :func:`lookup_options`: those options for a lookup, with the environment fallbacks applied;
* :func:`translate`: every transport or server error turned into a :class:`VaultError` whose
  message says what is wrong and what to do next, and never carries a secret value;
* :func:`mount_info`: which secrets engine serves a path (type, KV version), with a clear
  error for an unknown mount;
* :class:`VaultModule`: ``AnsibleModule`` with those options and the failure helpers.

Knows nothing of KV, policies or PKI: those live in the modules and ``_vault_kv``.
Managed-node code: Python 3.9 or later (tests/config.yml).
"""

from __future__ import annotations

import copy
import os
import re
import time
import traceback

from ansible.module_utils.basic import env_fallback, missing_required_lib
from ansible_collections.msa.platform.plugins.module_utils._module_failures import (
    NOTHING_CHANGED,
    ExplainedError,
    ServerModule,
)

try:
    import hvac
    import hvac.exceptions
    import requests
except ImportError:
    HVAC_IMPORT_ERROR = traceback.format_exc()
    hvac = None
    requests = None
else:
    HVAC_IMPORT_ERROR = None

# option: environment variables it falls back to, first set wins. The argument spec and the lookup
# both read this table.
ENV_FALLBACKS = {
    "url": ["VAULT_ADDR", "BAO_ADDR"],
    "ca_cert": ["VAULT_CACERT", "BAO_CACERT"],
    "namespace": ["VAULT_NAMESPACE", "BAO_NAMESPACE"],
    "token": ["VAULT_TOKEN", "BAO_TOKEN"],
}

AUTH_METHODS = ("token", "approle", "userpass")
TIMEOUT_RANGE = (1, 3600)

# Options every Vault module takes. Documented once in doc_fragments/vault.py.
CONNECTION_ARGSPEC = {
    "url": {"type": "str", "fallback": (env_fallback, ENV_FALLBACKS["url"])},
    "ca_cert": {"type": "path", "fallback": (env_fallback, ENV_FALLBACKS["ca_cert"])},
    "validate_certs": {"type": "bool", "default": True},
    "timeout": {"type": "int", "default": 30},
    "namespace": {"type": "str", "fallback": (env_fallback, ENV_FALLBACKS["namespace"])},
}
AUTH_ARGSPEC = {
    "auth_method": {"type": "str", "default": "token", "choices": list(AUTH_METHODS)},
    "auth_mount_point": {"type": "str"},
    "token": {"type": "str", "no_log": True, "fallback": (env_fallback, ENV_FALLBACKS["token"])},
    "role_id": {"type": "str", "no_log": False},
    "secret_id": {"type": "str", "no_log": True},
    "username": {"type": "str"},
    "password": {"type": "str", "no_log": True},
}
SHARED_ARGSPEC = dict(CONNECTION_ARGSPEC, **AUTH_ARGSPEC)
SHARED_OPTIONS = tuple(SHARED_ARGSPEC)
SECRET_OPTIONS = ("token", "secret_id", "password")


class VaultError(ExplainedError):
    """A failure explained for the operator; ``details`` go into the failed result as they are."""


def lookup_options(get_option):
    """The shared options of a lookup (``get_option(name)``), unset ones taken from the controller's
    environment as ENV_FALLBACKS says: lookups have no argument spec to do that for them."""
    options = {name: get_option(name) for name in SHARED_OPTIONS}
    for name, env_names in ENV_FALLBACKS.items():
        if options.get(name) is None:
            options[name] = next((os.environ[v] for v in env_names if os.environ.get(v)), None)
    return options


def option_problems(options):
    """Problems with the connection and auth options (already type-checked), as short sentences."""
    problems = []
    url = options.get("url")
    if not url:
        problems.append("url is required (or set VAULT_ADDR or BAO_ADDR), for example https://vault.example.com:8200")
    elif not re.match(r"^https?://[^\s/]+", url):
        problems.append("url must start with http:// or https:// and name a host, got %r" % url)
    timeout = options.get("timeout")
    if timeout is not None and not TIMEOUT_RANGE[0] <= timeout <= TIMEOUT_RANGE[1]:
        problems.append("timeout must be between %d and %d (seconds), got %r" % (TIMEOUT_RANGE + (timeout,)))
    method = options.get("auth_method") or "token"
    needs = {"token": ("token",), "approle": ("role_id", "secret_id"), "userpass": ("username", "password")}
    if method not in needs:
        problems.append("auth_method must be one of %s, got %r" % (", ".join(AUTH_METHODS), method))
    else:
        missing = [name for name in needs[method] if not options.get(name)]
        if missing:
            hint = " (or set VAULT_TOKEN or BAO_TOKEN)" if method == "token" else ""
            problems.append("auth_method=%s needs %s%s" % (method, " and ".join(missing), hint))
    return problems


def _server_errors(exc):
    errors = getattr(exc, "errors", None) or []
    if isinstance(errors, str):
        errors = [errors]
    text = "; ".join(str(e).strip() for e in errors if e)
    return re.sub(r"\s+", " ", text).replace("1 error occurred: * ", "").strip()


def seal_status(client):
    """The unauthenticated ``sys/seal-status`` answer, or None when it cannot be read."""
    try:
        return client.sys.read_seal_status()
    except Exception:  # noqa: BLE001 - only used to explain another failure
        return None


def _transport_error(exc, url, what, timeout):
    """The VaultError for a failure to talk to the server at all, or None."""
    if requests is None:
        return None
    if isinstance(exc, requests.exceptions.SSLError):
        match = re.search(
            r"(certificate verify failed[^'\")]*|hostname mismatch[^'\")]*|wrong version number)", str(exc)
        )
        return VaultError(
            "TLS verification of %s failed (%s); set ca_cert (or VAULT_CACERT / BAO_CACERT) to the CA that "
            "signed the server's certificate" % (url, match.group(1).strip() if match else "TLS error"),
            reason="tls",
        )
    if isinstance(exc, requests.exceptions.Timeout):
        return VaultError(
            "no answer from %s within %s seconds while trying to %s" % (url, timeout, what), reason="timeout"
        )
    if isinstance(exc, requests.exceptions.ConnectionError):
        reason = "connection refused" if "refused" in str(exc).lower() else "cannot connect"
        return VaultError(
            "cannot reach the Vault server at %s (%s); check url (or VAULT_ADDR / BAO_ADDR) and that the "
            "server is running" % (url, reason),
            reason="unreachable",
        )
    return None


def _unavailable_error(url, what, client, detail):
    """503 and friends: sealed, not initialised, or down; the seal status tells which."""
    status = seal_status(client) if client is not None else None
    if status and not status.get("initialized", True):
        return VaultError(
            "the Vault server at %s is not initialised; initialise and unseal it first" % url, reason="uninitialized"
        )
    if status is None or status.get("sealed", True):
        return VaultError(
            "the Vault server at %s is sealed, so it cannot %s; unseal it (bao operator unseal) and retry"
            % (url, what),
            reason="sealed",
        )
    return VaultError(
        "the Vault server at %s is unavailable (%s) while trying to %s" % (url, detail, what), reason="unavailable"
    )


def _server_error(exc, url, what, client):
    """The VaultError for an error answer of the server (hvac exception)."""
    detail = _server_errors(exc)
    errors = hvac.exceptions
    if isinstance(exc, (errors.VaultDown, errors.VaultNotInitialized)):
        return _unavailable_error(url, what, client, detail)
    if isinstance(exc, (errors.Forbidden, errors.Unauthorized)):
        message, reason = "permission denied: the token's policies do not allow it to %s" % what, "permission_denied"
    elif isinstance(exc, errors.InvalidPath) and "no handler for route" in detail:
        message, reason = "nothing is mounted there: cannot %s (%s)" % (what, detail), "unknown_mount"
    elif isinstance(exc, errors.InvalidPath):
        message, reason = "not found: cannot %s" % what, "not_found"
    elif isinstance(exc, errors.InvalidRequest):
        message, reason = "the server refused to %s: %s" % (what, detail or "invalid request"), "invalid"
    else:
        message, reason = "the server failed to %s: %s: %s" % (what, type(exc).__name__, detail), "server"
    return VaultError(message, reason=reason)


def translate(exc, url, what, client=None, timeout=None):
    """A :class:`VaultError` for ``exc``, raised while doing ``what`` (e.g. "read secret/data/app"); None
    when ``exc`` is neither a transport nor a server error (a bug, for the caller to report as such)."""
    if isinstance(exc, VaultError):
        return exc
    error = _transport_error(exc, url, what, timeout)
    if error is None and hvac is not None and isinstance(exc, hvac.exceptions.VaultError):
        error = _server_error(exc, url, what, client)
    return error


DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration_seconds(name, value):
    """Seconds in ``value``: an integer, or a duration such as ``90s``, ``15m``, ``1h30m``, ``7d``."""
    if value is None:
        return None
    text = str(value).strip()
    if text.isdigit():
        return int(text)
    parts = re.findall(r"(\d+)([smhd])", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise VaultError("%s must be seconds or a duration such as 90s, 15m, 1h30m or 7d, got %r" % (name, value))
    return sum(int(n) * DURATION_UNITS[u] for n, u in parts)


# OpenBao runs each request in a storage transaction: two requests on one path at the same moment
# (two hosts of one service writing its AppRole) can make one of them fail with this error, having
# changed nothing. Every request of a module or lookup (logins included) goes through send(), which
# sends such a request again, a few times, a little later each time.
COMMIT_CONFLICT = "transaction commit failed"
COMMIT_CONFLICT_TRIES = 5
COMMIT_CONFLICT_DELAY = 0.2


def commit_conflict(exc):
    return (
        hvac is not None
        and isinstance(exc, hvac.exceptions.InternalServerError)
        and COMMIT_CONFLICT in _server_errors(exc)
    )


def send(func, *args, **kwargs):
    """``func(*args, **kwargs)``, sent again after a transaction commit conflict."""
    for attempt in range(1, COMMIT_CONFLICT_TRIES + 1):
        try:
            return func(*args, **kwargs)
        except Exception as exc:
            if attempt == COMMIT_CONFLICT_TRIES or not commit_conflict(exc):
                raise
            time.sleep(COMMIT_CONFLICT_DELAY * attempt)
    return None  # not reached: the last attempt returns or raises


class Connection:
    """An authenticated client plus what is needed to explain its failures."""

    def __init__(self, client, url, timeout):
        self.client = client
        self.url = url
        self.timeout = timeout

    def call(self, what, func, *args, **kwargs):
        """``func(*args, **kwargs)``; a failure becomes a :class:`VaultError` about ``what``."""
        try:
            return send(func, *args, **kwargs)
        except Exception as exc:
            error = translate(exc, self.url, what, client=self.client, timeout=self.timeout)
            if error is None:
                raise
            raise error from None

    def get(self, path, what=None):
        """GET ``/v1/<path>``: the JSON answer, or None when the path does not exist."""
        try:
            return send(self.client.adapter.get, "/v1/%s" % path)
        except Exception as exc:
            if (
                hvac is not None
                and isinstance(exc, hvac.exceptions.InvalidPath)
                and "no handler" not in _server_errors(exc)
            ):
                return None
            error = translate(exc, self.url, what or "read %s" % path, client=self.client, timeout=self.timeout)
            if error is None:
                raise
            raise error from None

    def write(self, method, path, what, body=None):
        """POST/PUT/DELETE ``/v1/<path>``; the JSON answer or None for 204."""
        func = getattr(self.client.adapter, method)
        answer = (
            self.call(what, func, "/v1/%s" % path, json=body)
            if body is not None
            else self.call(what, func, "/v1/%s" % path)
        )
        return answer if isinstance(answer, dict) else None

    def mount_info(self, path, mount):
        """The secrets engine mounted at ``mount`` (asked through ``path`` inside it).

        Returns the mount's description from ``sys/internal/ui/mounts`` (``type``, ``options``...).
        Raises :class:`VaultError` with ``reason="unknown_mount"`` when nothing is mounted at
        ``mount`` (or only a parent of it), ``permission_denied`` when the token may not see it.
        """
        mount = mount.strip("/")
        full = "%s/%s" % (mount, path.strip("/")) if path else mount
        try:
            info = send(self.client.adapter.get, "/v1/sys/internal/ui/mounts/%s" % full)
        except Exception as exc:
            if hvac is not None and isinstance(exc, hvac.exceptions.Forbidden):
                raise self._no_mount(mount) from None
            error = translate(exc, self.url, "look up the mount %s/" % mount, client=self.client, timeout=self.timeout)
            if error is None:
                raise
            raise error from None
        data = (info or {}).get("data") or {}
        found = (data.get("path") or "").strip("/")
        if found != mount:
            raise VaultError(
                "no secrets engine is mounted at %s/ (the path belongs to the mount %s/); check the mount option"
                % (mount, found),
                reason="unknown_mount",
            )
        return data

    def _no_mount(self, mount):
        # The preflight answers 403 for an unknown mount and for one the token may not use; the
        # mount table tells which when the token may read it.
        try:
            self.client.adapter.get("/v1/sys/mounts/%s" % mount)
        except Exception as exc:  # noqa: BLE001 - only used to word the message
            if hvac is not None and isinstance(exc, hvac.exceptions.InvalidRequest):
                return VaultError(
                    "no secrets engine is mounted at %s/; check the mount option (list mounts with bao secrets list)"
                    % mount,
                    reason="unknown_mount",
                )
            return VaultError(
                "no secrets engine at %s/ that this token may use: the mount does not exist or the token's "
                "policies deny it" % mount,
                reason="unknown_mount",
            )
        return VaultError(
            "permission denied: the token's policies do not allow it to use %s/" % mount, reason="permission_denied"
        )


def connect(options):
    """An authenticated :class:`Connection` from the shared options, or :class:`VaultError`."""
    if hvac is None:
        raise VaultError(missing_required_lib("hvac"), exception=HVAC_IMPORT_ERROR)
    problems = option_problems(options)
    if problems:
        raise VaultError("; ".join(problems))
    url = options["url"].rstrip("/")
    verify = options.get("validate_certs", True)
    if verify and options.get("ca_cert"):
        verify = options["ca_cert"]
    elif not verify:
        # Asked for explicitly (a lab): no warning on every request.
        requests.packages.urllib3.disable_warnings(requests.packages.urllib3.exceptions.InsecureRequestWarning)
    timeout = options.get("timeout") or 30
    client = hvac.Client(url=url, verify=verify, timeout=timeout, namespace=options.get("namespace") or None)
    conn = Connection(client, url, timeout)
    method = options.get("auth_method") or "token"
    mount = options.get("auth_mount_point") or method
    if method == "token":
        client.token = options["token"]
        try:
            send(client.auth.token.lookup_self)
        except Exception as exc:
            if isinstance(exc, (hvac.exceptions.Forbidden, hvac.exceptions.Unauthorized)):
                raise VaultError(
                    "the Vault server at %s refused the token (wrong, expired or revoked); check token "
                    "(or VAULT_TOKEN / BAO_TOKEN)" % url,
                    reason="bad_token",
                ) from None
            raise translate(exc, url, "look up the token", client=client, timeout=timeout) or exc from None
    else:
        if method == "approle":
            login, kwargs = (
                client.auth.approle.login,
                {"role_id": options["role_id"], "secret_id": options["secret_id"]},
            )
        else:
            login, kwargs = (
                client.auth.userpass.login,
                {"username": options["username"], "password": options["password"]},
            )
        try:
            send(login, mount_point=mount, **kwargs)
        except Exception as exc:
            if isinstance(exc, (hvac.exceptions.InvalidRequest, hvac.exceptions.Forbidden)):
                raise VaultError(
                    "%s login at auth/%s refused: %s" % (method, mount, _server_errors(exc) or "invalid credentials"),
                    reason="bad_credentials",
                ) from None
            raise (
                translate(exc, url, "log in with %s at auth/%s" % (method, mount), client=client, timeout=timeout)
                or exc
            ) from None
    return conn


class VaultModule(ServerModule):
    """AnsibleModule with the shared connection and auth options and Vault failure handling."""

    SECRET_OPTIONS = SECRET_OPTIONS
    ERROR = VaultError

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if hvac is None:
            self.fail_json(msg=missing_required_lib("hvac"), exception=HVAC_IMPORT_ERROR)
        problems = option_problems(self.params)
        if problems:
            self.fail_json(msg="; ".join(problems) + "; " + NOTHING_CHANGED)

    @classmethod
    def generate_argspec(cls, **kwargs):
        spec = copy.deepcopy(SHARED_ARGSPEC)
        spec.update(kwargs)
        return spec

    def connection(self):
        return connect(self.params)

    def hide(self, *values):
        """Mask ``values`` in everything this module prints from now on (for failures)."""
        self.no_log_values.update(str(v) for v in values if v not in (None, ""))
