# Copyright: msa.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# FOR INTERNAL COLLECTION USE ONLY
# The interfaces in this file serve the msa.platform Keycloak modules and may change in any release,
# even a bugfix release.

"""Connection to Keycloak's admin REST API for the Keycloak modules.

* the connection options, defined once here and documented once in ``doc_fragments/keycloak.py``;
* :class:`KeycloakClient`: logs in with the password grant and calls ``/admin/realms/...`` with
  ``ansible.module_utils.urls.open_url`` (no Python library needed on the host);
* every transport or HTTP error turned into a :class:`KeycloakError` that says what is wrong and
  never carries the password or the access token;
* :class:`KeycloakModule`: ``AnsibleModule`` with those options and the failure helpers.

Knows nothing of users or realms: that lives in the modules.
Managed-node code: Python 3.9 or later (tests/config.yml).
"""

from __future__ import annotations

import copy
import json
import re
from urllib.error import HTTPError
from urllib.parse import quote, urlencode, urlsplit

from ansible.module_utils.urls import open_url
from ansible_collections.msa.platform.plugins.module_utils._http_failures import (
    NOT_HTTPS,
    answer_text,
    timeout_problem,
    transport_failure,
)
from ansible_collections.msa.platform.plugins.module_utils._module_failures import (
    NOTHING_CHANGED,
    ExplainedError,
    ServerModule,
    redact,
)

# Options every Keycloak module takes. Documented once in doc_fragments/keycloak.py.
CONNECTION_ARGSPEC = {
    "url": {"type": "str", "required": True},
    "auth_realm": {"type": "str", "default": "master"},
    "auth_client_id": {"type": "str", "default": "admin-cli"},
    "auth_username": {"type": "str", "required": True},
    "auth_password": {"type": "str", "required": True, "no_log": True},
    "ca_path": {"type": "path"},
    "validate_certs": {"type": "bool", "default": True},
    "timeout": {"type": "int", "default": 60},
}
SHARED_OPTIONS = tuple(CONNECTION_ARGSPEC)
SECRET_OPTIONS = ("auth_password",)


class KeycloakError(ExplainedError):
    """A failure explained for the operator (``reason``: unreachable, timeout, tls, login, forbidden,
    not_found, conflict, http)."""


def option_problems(options):
    """Problems with the connection options (already type-checked), as short sentences."""
    problems = []
    parts = urlsplit(options.get("url") or "")
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        problems.append(
            "url must be Keycloak's base URL, http(s)://host:port with an optional path, got %r" % options.get("url")
        )
    problem = timeout_problem(options.get("timeout"))
    if problem:
        problems.append(problem)
    return problems


def _answer_text(exc):
    """Keycloak's error answer in short: its error fields when it is JSON."""
    text = answer_text(exc)
    try:
        answer = json.loads(text)
        if isinstance(answer, dict):
            text = " ".join(str(answer[k]) for k in ("error", "errorMessage", "error_description") if answer.get(k))
    except ValueError:
        pass
    return re.sub(r"\s+", " ", text).strip()[:300]


class KeycloakClient:
    """Keycloak's admin REST API, as the user of ``auth_realm`` named ``auth_username``."""

    def __init__(self, options):
        self.url = options["url"].rstrip("/")
        self.auth_realm = options.get("auth_realm") or "master"
        self.auth_client_id = options.get("auth_client_id") or "admin-cli"
        self.username = options["auth_username"]
        self.password = options["auth_password"]
        self.ca_path = options.get("ca_path") or None
        self.validate_certs = options.get("validate_certs", True)
        self.timeout = options.get("timeout") or 60
        self.access_token = None

    def secrets(self):
        return [self.password, self.access_token]

    def _open(self, method, url, what, data=None, headers=None):
        try:
            return open_url(
                url,
                data=data,
                headers=headers or {},
                method=method,
                timeout=self.timeout,
                validate_certs=self.validate_certs,
                ca_path=self.ca_path,
                use_netrc=False,
                follow_redirects="none",
            )
        except HTTPError:
            raise
        except Exception as exc:
            error = self._transport_error(exc, what)
            if error is None:
                raise
            raise error from None

    def login(self):
        url = "%s/realms/%s/protocol/openid-connect/token" % (self.url, quote(self.auth_realm, safe=""))
        form = urlencode(
            {
                "grant_type": "password",
                "client_id": self.auth_client_id,
                "username": self.username,
                "password": self.password,
            }
        )
        what = "log in to realm %s as %s" % (self.auth_realm, self.username)
        try:
            resp = self._open(
                "POST", url, what, form.encode("utf-8"), {"Content-Type": "application/x-www-form-urlencoded"}
            )
        except HTTPError as exc:
            if exc.code in (400, 401):
                raise KeycloakError(
                    "Keycloak at %s refused to %s (%s): check auth_username, auth_password, auth_realm and "
                    "auth_client_id (a client with direct access grants)"
                    % (self.url, what, redact(_answer_text(exc), self.secrets()) or exc.code),
                    reason="login",
                ) from None
            raise self._http_error(exc, what) from None
        self.access_token = json.loads(resp.read())["access_token"]

    def call(self, method, path, what, *, body=None, query=None, missing_ok=False):
        """``method /admin/realms/<path>``: ``(decoded JSON answer or None, headers)``; a 404 is
        ``(None, None)`` when ``missing_ok``, any other failure a :class:`KeycloakError` about ``what``."""
        if self.access_token is None:
            self.login()
        url = "%s/admin/realms/%s" % (self.url, path)
        if query:
            url += "?" + urlencode(query)
        headers = {"Authorization": "Bearer %s" % self.access_token, "Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        try:
            resp = self._open(method, url, what, data, headers)
        except HTTPError as exc:
            if exc.code == 404 and missing_ok:
                return None, None
            raise self._http_error(exc, what) from None
        answer = resp.read()
        return (json.loads(answer) if answer else None), resp.headers

    def _http_error(self, exc, what):
        text = redact(_answer_text(exc), self.secrets())
        reasons = {401: "login", 403: "forbidden", 404: "not_found", 409: "conflict"}
        hint = {
            403: "; the administrator needs the realm's manage-users role (realm-management client)",
            409: "; another object already has that name or address",
        }.get(exc.code, "")
        return KeycloakError(
            "Keycloak at %s answered %s while trying to %s: %s%s"
            % (self.url, exc.code, what, text or "(no text)", hint),
            reason=reasons.get(exc.code, "http"),
            status=exc.code,
        )

    def _transport_error(self, exc, what):
        """The KeycloakError for a failure to talk to the server at all, or None (a bug)."""
        failure = transport_failure(exc, self.secrets())
        if failure is None:
            return None
        kind, detail = failure
        if kind == "tls":
            hint = "set ca_path to the CA that signed its certificate"
            if any(word in detail for word in NOT_HTTPS):
                hint = "the port does not speak HTTPS: check the URL's scheme and port"
            return KeycloakError(
                "TLS with Keycloak at %s failed (%s) while trying to %s; %s" % (self.url, detail, what, hint),
                reason="tls",
            )
        if kind == "timeout":
            return KeycloakError(
                "no answer from Keycloak at %s within %s seconds while trying to %s (raise timeout for a busy server)"
                % (self.url, self.timeout, what),
                reason="timeout",
            )
        return KeycloakError(
            "cannot reach Keycloak at %s (%s) while trying to %s; is it running, and is url right?"
            % (self.url, detail, what),
            reason="unreachable",
        )


class KeycloakModule(ServerModule):
    """AnsibleModule with the shared connection options and Keycloak failure handling."""

    SECRET_OPTIONS = SECRET_OPTIONS
    ERROR = KeycloakError

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        problems = option_problems(self.params)
        if problems:
            self.fail_json(msg="; ".join(problems) + "; " + NOTHING_CHANGED)
        self.client = None

    @classmethod
    def generate_argspec(cls, **kwargs):
        spec = copy.deepcopy(CONNECTION_ARGSPEC)
        spec.update(kwargs)
        return spec

    def secrets(self):
        return super().secrets() + ([self.client.access_token] if self.client else [])

    def connection(self):
        self.client = KeycloakClient(self.params)
        return self.client
