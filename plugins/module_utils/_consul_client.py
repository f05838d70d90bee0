# Copyright: msa.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# FOR INTERNAL COLLECTION USE ONLY
# The interfaces in this file serve the msa.platform Consul modules and may change in any release,
# even a bugfix release.

"""Connection to a Consul agent's HTTP API for the Consul modules.

* the connection options, defined once here and documented once in ``doc_fragments/consul.py``
  (with the environment variables each one falls back to);
* :class:`ConsulClient`: a small client on ``ansible.module_utils.urls.open_url`` (no python-consul):
  read a KV prefix recursively, put and delete one key with check-and-set;
* every transport or HTTP error turned into a :class:`ConsulError` whose message says what is wrong
  and what to do next, and never carries the token;
* :class:`ConsulModule`: ``AnsibleModule`` with those options and the failure helpers.

Knows nothing of what the keys mean: that lives in the modules.
Managed-node code: Python 3.9 or later (tests/config.yml).
"""

from __future__ import annotations

import base64
import copy
import json
import re
from urllib.error import HTTPError
from urllib.parse import quote

from ansible.module_utils.basic import env_fallback
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

# option: environment variables it falls back to. The argument spec reads this table.
ENV_FALLBACKS = {
    "token": ["CONSUL_HTTP_TOKEN"],
    "ca_path": ["CONSUL_CACERT"],
}


# Options every Consul module takes. Documented once in doc_fragments/consul.py.
CONNECTION_ARGSPEC = {
    "host": {"type": "str", "default": "127.0.0.1"},
    "port": {"type": "int", "default": 8500},
    "scheme": {"type": "str", "default": "http", "choices": ["http", "https"]},
    "token": {"type": "str", "no_log": True, "fallback": (env_fallback, ENV_FALLBACKS["token"])},
    "ca_path": {"type": "path", "fallback": (env_fallback, ENV_FALLBACKS["ca_path"])},
    "validate_certs": {"type": "bool", "default": True},
    "timeout": {"type": "int", "default": 10},
}
SHARED_OPTIONS = tuple(CONNECTION_ARGSPEC)
SECRET_OPTIONS = ("token",)


class ConsulError(ExplainedError):
    """A failure explained for the operator; ``details`` go into the failed result as they are
    (``reason``: unreachable, timeout, tls, acl_denied, acl_filtered, acl_unknown_token, cas,
    not_utf8, http)."""


def option_problems(options):
    """Problems with the connection options (already type-checked), as short sentences."""
    problems = []
    host = options.get("host")
    if not host or not re.match(r"^[A-Za-z0-9._:\[\]-]+$", host) or "://" in host:
        problems.append(
            "host must be a host name or an IP address (no scheme, no port, no path), got %r; "
            "set scheme and port separately" % host
        )
    port = options.get("port")
    if port is not None and not 1 <= port <= 65535:
        problems.append("port must be between 1 and 65535, got %r" % port)
    problem = timeout_problem(options.get("timeout"))
    if problem:
        problems.append(problem)
    return problems


def _status_text(exc):
    return re.sub(r"\s+", " ", answer_text(exc)).strip()[:500]


class ConsulClient:
    """The HTTP API of one Consul agent (``/v1/...``) with an optional ACL token."""

    def __init__(
        self, *, host="127.0.0.1", port=8500, scheme="http", token=None, ca_path=None, validate_certs=True, timeout=10
    ):
        self.host = host
        self.port = port
        self.scheme = scheme or "http"
        self.token = token or None
        self.ca_path = ca_path or None
        self.validate_certs = validate_certs
        self.timeout = timeout or 10
        # An IPv6 address goes in brackets in a URL.
        self.url = "%s://%s:%s" % (self.scheme, "[%s]" % host if ":" in host and "[" not in host else host, port)

    @classmethod
    def from_options(cls, options):
        return cls(**{name: options.get(name) for name in SHARED_OPTIONS if options.get(name) is not None})

    # ---------------------------------------------------------------------------------------
    # transport

    def request(self, method, path, what, *, query=None, body=None, scope=None, rule="key_prefix"):
        """``method /v1/<path>?<query>``: ``(status, body bytes, headers)`` for a 2xx answer or a 404;
        any other failure is a :class:`ConsulError` about ``what`` (e.g. "write msa/config/a"), whose
        ACL hint names the policy ``rule`` (``key_prefix``, ``query_prefix``, ...) for ``scope``."""
        url = "%s/v1/%s" % (self.url, quote(path, safe="/"))
        if query:
            url += "?" + "&".join("%s=%s" % (k, quote(str(v), safe="")) for k, v in query.items())
        headers = {"Accept": "application/json"}
        if self.token:
            headers["X-Consul-Token"] = self.token
        try:
            resp = open_url(
                url,
                data=body,
                headers=headers,
                method=method,
                timeout=self.timeout,
                validate_certs=self.validate_certs,
                ca_path=self.ca_path,
                use_netrc=False,
                follow_redirects="none",
            )
            return resp.getcode(), resp.read(), resp.headers
        except HTTPError as exc:
            if exc.code == 404:
                return 404, b"", exc.headers
            raise self._http_error(exc, what, scope, rule) from None
        except ConsulError:
            raise
        except Exception as exc:
            error = self._transport_error(exc, what)
            if error is None:
                raise
            raise error from None

    def _where(self):
        return "the Consul agent at %s" % self.url

    def _transport_error(self, exc, what):
        """The ConsulError for a failure to talk to the agent at all, or None (a bug)."""
        failure = transport_failure(exc, [self.token])
        if failure is None:
            return None
        kind, detail = failure
        if kind == "tls":
            hint = "set ca_path (or CONSUL_CACERT) to the CA that signed the agent's certificate"
            if any(word in detail for word in NOT_HTTPS):
                hint = "the port does not speak HTTPS: check scheme and port (Consul's HTTPS port is often 8501)"
            return ConsulError(
                "TLS with %s failed (%s) while trying to %s; %s" % (self._where(), detail, what, hint), reason="tls"
            )
        if kind == "timeout":
            return ConsulError(
                "no answer from %s within %s seconds while trying to %s; is the agent running on %s:%s and "
                "reachable from this host? (raise timeout for a slow agent)"
                % (self._where(), self.timeout, what, self.host, self.port),
                reason="timeout",
            )
        cause = "unknown host %s" % self.host if detail == "unknown host" else detail
        return ConsulError(
            "cannot reach %s (%s) while trying to %s; is the agent running on %s:%s? check host, port and "
            "scheme" % (self._where(), cause, what, self.host, self.port),
            reason="unreachable",
        )

    def _http_error(self, exc, what, scope, rule="key_prefix"):
        text = redact(_status_text(exc), [self.token])
        if exc.code == 403:
            if "ACL not found" in text:
                return ConsulError(
                    "Consul does not know the ACL token (ACL not found) while trying to %s; check token "
                    "(or CONSUL_HTTP_TOKEN)" % what,
                    reason="acl_unknown_token",
                )
            need = "write" if re.search(r"^(write|delete|put)\b", what) else "read"
            given = "the token" if self.token else "no token was given (the anonymous token was used); the token"
            return ConsulError(
                'ACL denied: Consul refused to %s (%s): %s needs a policy with %s "%s" { policy = "%s" }; '
                "set token (or CONSUL_HTTP_TOKEN) to such a token"
                % (what, text or "403", given, rule, scope or "", need),
                reason="acl_denied",
            )
        if exc.code == 400 and "HTTPS server" in text:
            return ConsulError(
                "%s speaks HTTPS on port %s; set scheme=https (and ca_path)" % (self._where(), self.port),
                reason="http",
            )
        return ConsulError(
            "%s answered %s %s while trying to %s: %s"
            % (self._where(), exc.code, getattr(exc, "reason", "") or "", what, text or "(no text)"),
            reason="http",
            status=exc.code,
        )

    def call(self, method, path, what, *, query=None, body=None, scope=None, rule="key_prefix"):
        """:meth:`request` with a JSON ``body`` (any JSON value) and a JSON answer: the decoded answer,
        None for a 404 or an empty answer."""
        data = None if body is None else json.dumps(body).encode("utf-8")
        status, answer, _headers = self.request(method, path, what, query=query, body=data, scope=scope, rule=rule)
        if status == 404 or not answer:
            return None
        try:
            return json.loads(answer)
        except ValueError:
            raise ConsulError(
                "%s answered %s with something that is not JSON" % (self._where(), what), reason="http"
            ) from None

    # ---------------------------------------------------------------------------------------
    # KV

    def read_tree(self, prefix):
        """Every key under ``prefix/`` as ``{full key: {"value": str, "index": ModifyIndex}}`` (empty when
        there is none). A null value (a folder marker) reads as ``""``; a value that is not UTF-8 text is
        a :class:`ConsulError` naming its key. Keys the token may not read are an error too, as a
        plan made without them would be wrong."""
        folder = prefix.strip("/") + "/"
        status, body, headers = self.request(
            "GET", "kv/" + folder, "read %s" % folder, query={"recurse": "true"}, scope=folder
        )
        filtered = (headers.get("X-Consul-Results-Filtered-By-ACLs") or "").lower() == "true" if headers else False
        if filtered:
            raise ConsulError(
                "ACL denied: Consul hid some keys under %s from the token while reading them: the token needs a "
                'policy with key_prefix "%s" { policy = "write" } (read is enough in check mode); set token '
                "(or CONSUL_HTTP_TOKEN) to such a token" % (folder, folder),
                reason="acl_filtered",
            )
        if status == 404 or not body:
            return {}
        try:
            entries = json.loads(body)
        except ValueError:
            raise ConsulError(
                "%s answered a read of %s with something that is not JSON" % (self._where(), folder), reason="http"
            ) from None
        tree = {}
        for entry in entries or []:
            key = entry.get("Key")
            raw = entry.get("Value")
            try:
                value = base64.b64decode(raw).decode("utf-8") if raw is not None else ""
            except (ValueError, UnicodeDecodeError):
                raise ConsulError(
                    "the value of %s in Consul is not UTF-8 text (binary data?); this module manages text "
                    "values only: fix or delete that key, or keep it out of this prefix" % key,
                    reason="not_utf8",
                    key=key,
                ) from None
            tree[key] = {"value": value, "index": entry.get("ModifyIndex", 0)}
        return tree

    def read_key(self, key):
        """``{"value": str, "index": ModifyIndex}`` of one key, or None when it does not exist."""
        status, body, _headers = self.request("GET", "kv/" + key, "read %s" % key, scope=key)
        if status == 404 or not body:
            return None
        entry = (json.loads(body) or [None])[0]
        if not entry:
            return None
        raw = entry.get("Value")
        try:
            value = base64.b64decode(raw).decode("utf-8") if raw is not None else ""
        except (ValueError, UnicodeDecodeError):
            raise ConsulError("the value of %s in Consul is not UTF-8 text" % key, reason="not_utf8", key=key) from None
        return {"value": value, "index": entry.get("ModifyIndex", 0)}

    def _cas_answer(self, body, key, index, verb):
        answer = body.decode("utf-8", "replace").strip() if body else ""
        if answer == "true":
            return
        if answer == "false":
            state = "it did not exist" if index == 0 else "it was at ModifyIndex %s" % index
            raise ConsulError(
                "check-and-set refused to %s %s: someone changed it after it was read (%s); read the "
                "configuration again and retry" % (verb, key, state),
                reason="cas",
                key=key,
            )
        raise ConsulError(
            "%s answered %s %s with %r instead of true or false" % (self._where(), verb, key, answer[:100]),
            reason="http",
        )

    def put(self, key, value, cas, scope=None):
        """Write ``value`` (str) at ``key`` only if its ModifyIndex is still ``cas`` (0: it must not exist)."""
        _status, body, _headers = self.request(
            "PUT", "kv/" + key, "write %s" % key, query={"cas": cas}, body=value.encode("utf-8"), scope=scope or key
        )
        self._cas_answer(body, key, cas, "write")

    def delete(self, key, cas, scope=None):
        """Delete ``key`` only if its ModifyIndex is still ``cas``."""
        _status, body, _headers = self.request(
            "DELETE", "kv/" + key, "delete %s" % key, query={"cas": cas}, scope=scope or key
        )
        self._cas_answer(body, key, cas, "delete")


class ConsulModule(ServerModule):
    """AnsibleModule with the shared connection options and Consul failure handling."""

    SECRET_OPTIONS = SECRET_OPTIONS
    ERROR = ConsulError

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        problems = option_problems(self.params)
        if problems:
            self.fail_json(msg="; ".join(problems) + "; " + NOTHING_CHANGED)

    @classmethod
    def generate_argspec(cls, **kwargs):
        spec = copy.deepcopy(CONNECTION_ARGSPEC)
        spec.update(kwargs)
        return spec

    def connection(self):
        return ConsulClient.from_options(self.params)
