# Copyright: msa.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# FOR INTERNAL COLLECTION USE ONLY
# The interfaces in this file serve the msa.platform blue/green modules and may change in any
# release, even a bugfix release. The contract with the roles is docs/design/bluegreen.md.

"""Module glue for the blue/green modules: the shared argument spec, option checks and
:class:`BlueGreenModule`, which builds each module's spec and turns errors into results.

The rest lives beside it, one concern per file:

* ``_bluegreen_common``: colors, service names, weight plans, the error classes;
* ``_bluegreen_state``: the state document (validation, atomic writes) and history records;
* ``_bluegreen_lock``: the per-service lock;
* ``_bluegreen_backends``: the balancer interface, its registry, HAProxy and NGINX;
* ``_bluegreen_consul``: Consul, where the live color is cluster state every balancer follows;
* ``_bluegreen_decision``: the flip (:func:`run_flip`) and the report (:func:`describe_service`).

Managed-node code: Python 3.9 or later (tests/config.yml).
"""

from __future__ import annotations

import copy
import errno
import math
import os
import re

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.process import get_bin_path
from ansible_collections.msa.platform.plugins.module_utils._bluegreen_backends import BACKENDS, get_backend
from ansible_collections.msa.platform.plugins.module_utils._bluegreen_common import (
    COLORS,
    BlueGreenError,
    validate_service,
    weight_plan,
)
from ansible_collections.msa.platform.plugins.module_utils._bluegreen_consul import (  # registers "consul"
    DEFAULT_PREFIX as CONSUL_DEFAULT_PREFIX,
)
from ansible_collections.msa.platform.plugins.module_utils._consul_client import CONNECTION_ARGSPEC
from ansible_collections.msa.platform.plugins.module_utils._consul_client import (
    option_problems as consul_option_problems,
)
from ansible_collections.msa.platform.plugins.module_utils._module_failures import fail_unexpected

# Options every blue/green module takes. Documented once in doc_fragments/bluegreen.py.
SHARED_ARGSPEC = {
    "balancer": {"type": "str", "default": "haproxy", "choices": ["consul", "haproxy", "nginx"]},
    "state_dir": {"type": "path", "default": "/var/lib/msa/bluegreen"},
    "hosts": {"type": "list", "elements": "str"},
    "ports": {
        "type": "dict",
        "options": {"blue": {"type": "int", "required": True}, "green": {"type": "int", "required": True}},
    },
    "health_path": {"type": "str", "default": "/health"},
    "health_timeout": {"type": "float", "default": 3.0},
    "haproxy_socket": {"type": "path", "default": "/run/haproxy/admin.sock"},
    "haproxy_timeout": {"type": "float", "default": 5.0},
    "haproxy_state_file": {"type": "path", "default": "/var/lib/haproxy/server-state"},
    "nginx_upstream_dir": {"type": "path", "default": "/etc/nginx/msa/upstreams"},
    "nginx_binary": {"type": "path", "default": "nginx"},
    "nginx_config": {"type": "path", "default": "/etc/nginx/nginx.conf"},
    "nginx_reload": {"type": "str", "default": "auto", "choices": ["auto", "signal", "systemd"]},
    # The Consul agent's connection options (those of the Consul modules) and the KV prefix.
    "consul": {
        "type": "dict",
        "default": {},
        "options": dict(copy.deepcopy(CONNECTION_ARGSPEC), prefix={"type": "str", "default": CONSUL_DEFAULT_PREFIX}),
    },
}

# --------------------------------------------------------------------------------------------
# option checks: every option's range and format, before anything is read or changed

# option: (lowest, highest, unit). Documented with each option.
NUMBER_RANGES = {
    "health_timeout": (0.1, 300, "seconds"),
    "haproxy_timeout": (0.1, 300, "seconds"),
    "step_pause": (0, 3600, "seconds"),
    "drain_timeout": (0, 3600, "seconds"),
    "health_wait": (0, 3600, "seconds"),
    "lock_timeout": (0, 3600, "seconds"),
    "history_keep": (0, 100000, "entries"),
    "history_limit": (0, 100000, "entries"),
}
PORT_RANGE = (1, 65535)
ABSOLUTE_PATHS = ("state_dir", "haproxy_socket", "nginx_upstream_dir", "nginx_config")
# An inventory host name as it appears in HAProxy server names and health URLs: a DNS-like name or
# an IPv6 address in brackets. Nothing that could end a runtime API command (space, ';', newline).
HOST_RE = re.compile(r"^(?:[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,252})|\[[0-9A-Fa-f:.]+\])$")
VERSION_RE = re.compile(r"^[^\s\x00-\x1f\x7f]{1,128}$")
OPERATOR_RE = re.compile(r"^(?=.*\S)[^\x00-\x1f\x7f]{1,128}$")
HEALTH_PATH_RE = re.compile(r"^/[^\s\x00-\x1f\x7f]*$")
CONSUL_PREFIX_RE = re.compile(r"^[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)*$")


def _raised(check, value):
    try:
        check(value)
    except BlueGreenError as exc:
        return [exc.msg]
    return []


def _numbers(params):
    problems = []
    for name, (lowest, highest, unit) in NUMBER_RANGES.items():
        value = params.get(name)
        if value is None:
            continue
        if (isinstance(value, float) and not math.isfinite(value)) or not lowest <= value <= highest:
            problems.append("%s must be between %s and %s (%s), got %r" % (name, lowest, highest, unit, value))
    ports = params.get("ports")
    if ports:
        for color in COLORS:
            if not PORT_RANGE[0] <= ports[color] <= PORT_RANGE[1]:
                problems.append("ports.%s must be between %d and %d, got %r" % (color, *PORT_RANGE, ports[color]))
        if ports["blue"] == ports["green"]:
            problems.append("ports.blue and ports.green must differ (both are %s)" % ports["blue"])
    return problems


def _names(params):
    problems = []
    if params.get("service") is not None:
        problems += _raised(validate_service, params["service"])
    if params.get("steps") is not None:
        problems += _raised(weight_plan, params["steps"])
    hosts = params.get("hosts")
    if hosts is not None and not hosts:
        problems.append("hosts must not be empty (leave it out to take every server of the service)")
    problems.extend(
        "hosts[%d] %r is not a host name (letters, digits, '.', '-', '_', or an IPv6 address in [])" % (index, host)
        for index, host in enumerate(hosts or [])
        if not HOST_RE.fullmatch(host)
    )
    texts = [("versions.%s" % color, version) for color, version in sorted((params.get("versions") or {}).items())]
    texts.append(("release", params.get("release")))
    problems.extend(
        "%s must be a non-empty version of at most 128 characters without spaces or control characters, got %r"
        % (name, value)
        for name, value in texts
        if value is not None and not VERSION_RE.fullmatch(value)
    )
    operator = params.get("operator")
    if operator is not None and not OPERATOR_RE.fullmatch(operator):
        problems.append(
            "operator must be a name of at most 128 characters, not blank, without control characters, got %r"
            % operator
        )
    return problems


def _paths(params):
    problems = [
        "%s must be an absolute path, got %r" % (name, params[name])
        for name in ABSOLUTE_PATHS
        if params.get(name) is not None and not os.path.isabs(params[name])
    ]
    state_file = params.get("haproxy_state_file")
    if state_file and not os.path.isabs(state_file):
        problems.append("haproxy_state_file must be an absolute path or empty, got %r" % state_file)
    binary = params.get("nginx_binary")
    if binary is not None and (not binary or ("/" in binary and not os.path.isabs(binary))):
        problems.append("nginx_binary must be a program name or an absolute path, got %r" % binary)
    health_path = params.get("health_path")
    if health_path is not None and not HEALTH_PATH_RE.fullmatch(health_path):
        problems.append("health_path must start with / and hold no spaces or control characters, got %r" % health_path)
    return problems


def _consul(params):
    if params.get("balancer") != "consul":
        return []
    settings = params.get("consul") or {}
    problems = ["consul.%s" % problem for problem in consul_option_problems(settings)]
    prefix = settings.get("prefix")
    if not prefix or not CONSUL_PREFIX_RE.fullmatch(prefix) or "/../" in "/%s/" % prefix:
        problems.append(
            "consul.prefix must be a KV path of letters, digits, '.', '-', '_' and inner '/', got %r" % prefix
        )
    return problems


def option_problems(params):
    """Every problem with the (already type-checked) options, as short sentences; empty = fine.

    Options a module does not take are absent (or None) in ``params`` and are skipped.
    """
    return _numbers(params) + _names(params) + _paths(params) + _consul(params)


# --------------------------------------------------------------------------------------------
# module base


class BlueGreenModule(AnsibleModule):
    """AnsibleModule with the shared blue/green options, option checks and error handling."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        problems = option_problems(self.params)
        if problems:
            self.fail_json(msg="; ".join(problems) + "; nothing was changed", service=self.params.get("service"))

    @classmethod
    def generate_argspec(cls, **kwargs):
        spec = copy.deepcopy(SHARED_ARGSPEC)
        spec["balancer"]["choices"] = sorted(BACKENDS)
        spec.update(kwargs)
        return spec

    def backend_for(self, service):
        return get_backend(
            self.params["balancer"],
            service,
            self.params,
            run_command=self._run,
            warn=self.warn,
        )

    def _run(self, argv):
        """``run_command`` that raises OSError instead of exiting, so callers can put things back first."""
        binary = argv[0]
        if not os.path.isabs(binary):
            try:
                binary = get_bin_path(binary)
            except ValueError as exc:
                raise FileNotFoundError(errno.ENOENT, "no such program in PATH", argv[0]) from exc
        return self.run_command([binary, *argv[1:]], handle_exceptions=False)

    def store(self):
        """Where the balancer kind keeps the state documents (files in state_dir, or Consul KV)."""
        return BACKENDS[self.params["balancer"]].make_store(self.params)

    def fail_bluegreen(self, exc, **result):
        details = dict(getattr(exc, "details", {}) or {})
        details.update(result)
        self.fail_json(msg=getattr(exc, "msg", str(exc)), **details)

    def fail_os_error(self, exc, **result):
        # State directory, lock or upstream file not reachable (permissions, read-only fs, ...).
        self.fail_json(msg="%s: %s" % (getattr(exc, "filename", None) or "I/O error", exc.strerror or exc), **result)

    def fail_unexpected(self, exc, **result):
        """The catch-all: a bug, reported as a failed task with its traceback instead of a crash."""
        secrets = [(self.params.get("consul") or {}).get("token")]
        fail_unexpected(self, exc, secrets, getattr(exc, "put_back_note", None), **result)
