# Copyright: msa.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# FOR INTERNAL COLLECTION USE ONLY
# The interfaces in this file serve the msa.platform blue/green modules and may change in any
# release, even a bugfix release. The contract with the roles is docs/design/bluegreen.md.

"""Shared pieces of the blue/green modules.

* the shared argument spec and :class:`BlueGreenModule`, which builds each module's spec from it;
* :class:`StateStore` (``<state_dir>/<svc>.json``, written atomically, mode 0640) and
  :class:`ServiceLock` (``<state_dir>/<svc>.lock``, ``fcntl.flock`` with a bounded wait);
* history records;
* the backend plug-in point: :class:`TrafficBackend` and the :data:`BACKENDS` registry. A new
  balancer (Consul, Istio, ...) is a subclass registered with :func:`register_backend`; the
  modules only talk to the interface;
* the flip itself (:func:`run_flip`) and the read-only report (:func:`describe_service`), written
  against the interface so they can be tested with a fake backend.
"""

from __future__ import annotations

import copy
import datetime
import errno
import fcntl
import getpass
import json
import os
import re
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.urls import open_url
from ansible_collections.msa.platform.plugins.module_utils._atomic_file import write_atomic
from ansible_collections.msa.platform.plugins.module_utils._haproxy_runtime import (
    HAProxyRuntime,
    HAProxyRuntimeError,
    backends,
    stat_rows_for_backend,
)
from ansible_collections.msa.platform.plugins.module_utils._nginx_upstreams import (
    NginxController,
    NginxUpstreamError,
    color_of,
    parse_upstream,
    retarget,
    shutting_down_workers,
    switch_file,
    upstream_path,
)
from ansible_collections.msa.platform.plugins.module_utils._nginx_upstreams import (
    known_services as nginx_known_services,
)

COLORS = ("blue", "green")
DEFAULT_COLOR = "blue"  # missing state file = live is blue (contract)
SERVICE_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
STATE_MODE = 0o640
LIVE_WEIGHT = 100
IDLE_WEIGHT = 0

# Options every blue/green module takes. Documented once in doc_fragments/bluegreen.py.
SHARED_ARGSPEC = {
    "balancer": {"type": "str", "default": "haproxy", "choices": ["haproxy", "nginx"]},
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
}


# --------------------------------------------------------------------------------------------
# errors


class BlueGreenError(Exception):
    """A failure with a message meant for the operator, plus details for the result."""

    def __init__(self, msg, **details):
        super().__init__(msg)
        self.msg = msg
        self.details = details


class UnknownServiceError(BlueGreenError):
    pass


class HealthGateError(BlueGreenError):
    pass


class LockTimeoutError(BlueGreenError):
    pass


class BackendError(BlueGreenError):
    pass


# --------------------------------------------------------------------------------------------
# small helpers


def other_color(color):
    return "green" if color == "blue" else "blue"


def validate_service(name):
    if not isinstance(name, str) or not SERVICE_NAME_RE.match(name):
        raise BlueGreenError(
            "invalid service name %r: it must match %s (as in msa_services)" % (name, SERVICE_NAME_RE.pattern)
        )
    return name


def utc_now():
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def default_operator():
    """Who runs the flip when the playbook does not say: the sudo caller, else the login."""
    for var in ("MSA_OPERATOR", "SUDO_USER", "LOGNAME", "USER"):
        value = os.environ.get(var)
        if value:
            return value
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry in a minimal container
        return "unknown"


def history_record(operator, balancer, from_color, to_color, versions, *, when=None):
    """One audit-trail entry, exactly the keys of the contract."""
    return {
        "time": when or utc_now(),
        "operator": operator,
        "balancer": balancer,
        "from": from_color,
        "to": to_color,
        "versions": dict(versions),
    }


def weight_plan(steps):
    """Turn target-color steps (e.g. [10, 50, 100]) into (new_weight, old_weight) pairs.

    The share moves in steps; each pair sums to 100 so the percentages read as traffic share.
    The last pair is always (100, 0). A plain flip is ``[100]`` -> ``[(100, 0)]``.
    """
    steps = list(steps or [LIVE_WEIGHT])
    previous = 0
    for step in steps:
        if not isinstance(step, int) or isinstance(step, bool) or not 1 <= step <= LIVE_WEIGHT:
            raise BlueGreenError("steps must be integers between 1 and 100, got %r" % (steps,))
        if step <= previous:
            raise BlueGreenError("steps must increase, got %r" % (steps,))
        previous = step
    if steps[-1] != LIVE_WEIGHT:
        raise BlueGreenError("the last step must be 100 (all traffic on the new color), got %r" % (steps,))
    return [(step, LIVE_WEIGHT - step) for step in steps]


def resolve_target(to, state, release=None):
    """Turn ``to`` (blue, green, previous, release) into a color using the state document."""
    if to in COLORS:
        return to
    live = state.get("live", DEFAULT_COLOR)
    if to == "previous":
        for record in reversed(state.get("history") or []):
            if record.get("to") == live and record.get("from") in COLORS:
                return record["from"]
        raise BlueGreenError(
            "no earlier flip of %s is recorded in the state file; there is no previous color to go back to "
            "(live is %s). Name a color with to=blue|green." % (state.get("service"), live)
        )
    if to == "release":
        if not release:
            raise BlueGreenError("to=release needs release=<version>")
        versions = state.get("versions") or {}
        holders = [color for color in COLORS if versions.get(color) == release]
        if not holders:
            raise BlueGreenError(
                "no color of %s holds release %s; deployed: %s. Deploy it again with the blue_green playbook."
                % (
                    state.get("service"),
                    release,
                    ", ".join("%s=%s" % (c, versions.get(c, "?")) for c in COLORS) or "nothing recorded",
                )
            )
        return holders[0]
    raise BlueGreenError("to must be one of blue, green, previous, release; got %r" % (to,))


# --------------------------------------------------------------------------------------------
# state store and lock


class StateStore:
    """``<state_dir>/<svc>.json``: live color, versions per color, history. One writer (the flip)."""

    def __init__(self, state_dir):
        self.state_dir = state_dir

    def path(self, service):
        return os.path.join(self.state_dir, "%s.json" % validate_service(service))

    def exists(self, service):
        return os.path.exists(self.path(service))

    def known_services(self):
        try:
            names = os.listdir(self.state_dir)
        except FileNotFoundError:
            return []
        found = []
        for name in names:
            if name.endswith(".json") and not name.startswith("."):
                service = name[: -len(".json")]
                if SERVICE_NAME_RE.match(service):
                    found.append(service)
        return sorted(found)

    @staticmethod
    def empty(service):
        return {"service": service, "live": DEFAULT_COLOR, "versions": {}, "history": []}

    def load(self, service):
        path = self.path(service)
        try:
            with open(path) as handle:
                data = json.load(handle)
        except FileNotFoundError:
            return self.empty(service)
        except ValueError as exc:
            raise BlueGreenError(
                "state file %s is not valid JSON (%s); fix or move it aside, the flip will not guess" % (path, exc)
            ) from exc
        if not isinstance(data, dict) or data.get("live", DEFAULT_COLOR) not in COLORS:
            raise BlueGreenError("state file %s does not look like a blue/green state document" % path)
        data.setdefault("service", service)
        data.setdefault("live", DEFAULT_COLOR)
        data.setdefault("versions", {})
        data.setdefault("history", [])
        return data

    def save(self, service, data):
        """Write atomically: temp file in the same directory, fsync, chmod 0640, rename, fsync dir."""
        os.makedirs(self.state_dir, mode=0o750, exist_ok=True)
        content = json.dumps(data, indent=2, sort_keys=False) + "\n"
        write_atomic(self.path(service), content, STATE_MODE, sync_dir=True)
        return self.path(service)


class ServiceLock:
    """Exclusive ``flock`` on ``<state_dir>/<svc>.lock``, waiting at most ``timeout`` seconds.

    The holder writes its pid into the file so a waiter can name it. The file is never removed
    (removing a lock file under flock invites two holders).
    """

    def __init__(self, state_dir, service, *, timeout=30, poll=0.2, sleep=time.sleep, clock=time.monotonic):
        self.path = os.path.join(state_dir, "%s.lock" % validate_service(service))
        self.service = service
        self.state_dir = state_dir
        self.timeout = timeout
        self.poll = poll
        self.sleep = sleep
        self.clock = clock
        self.fd = None

    def holder(self):
        try:
            with open(self.path) as handle:
                text = handle.read().strip()
        except OSError:
            return None
        return text or None

    def acquire(self):
        os.makedirs(self.state_dir, mode=0o750, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, STATE_MODE)
        deadline = self.clock() + max(0, self.timeout)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    os.close(fd)
                    raise
                if self.clock() >= deadline:
                    os.close(fd)
                    holder = self.holder()
                    raise LockTimeoutError(
                        "another flip of %s holds %s (%s); gave up after %ss. Wait for it to finish, "
                        "or if that process is gone, run again (flock locks die with their process)."
                        % (self.service, self.path, "pid %s" % holder if holder else "holder unknown", self.timeout),
                        lock_file=self.path,
                        holder_pid=holder,
                    ) from exc
                self.sleep(self.poll)
        os.ftruncate(fd, 0)
        os.write(fd, ("%d\n" % os.getpid()).encode())
        self.fd = fd
        return self

    def release(self):
        if self.fd is not None:
            try:
                os.ftruncate(self.fd, 0)
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            finally:
                os.close(self.fd)
                self.fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc_info):
        self.release()
        return False


# --------------------------------------------------------------------------------------------
# backend plug-in point


class TrafficBackend:
    """What the modules need from a balancer. Subclass, implement, :func:`register_backend`.

    A server is a dict: ``name``, ``host``, ``color``, ``weight`` (0-100 share, None if the
    balancer has no weights), ``status`` (balancer's word), ``healthy`` (bool), ``sessions``
    (current connections, None if unknown), ``detail``.
    """

    name = None
    supports_steps = False

    def __init__(self, service, options, *, run_command=None, warn=None, sleep=time.sleep, clock=time.monotonic):
        self.service = service
        self.options = options
        self.run_command = run_command
        self.warn = warn or (lambda msg: None)
        self.sleep = sleep
        self.clock = clock

    # discovery ---------------------------------------------------------------------------
    def known_services(self):
        raise NotImplementedError

    def servers(self):
        """All blue/green servers of the service (raises UnknownServiceError)."""
        raise NotImplementedError

    # reading -----------------------------------------------------------------------------
    def live_color(self, servers=None):
        """The color taking traffic: blue, green, ``mixed`` (mid-shift), ``none``, or None (unknown)."""
        raise NotImplementedError

    def settled(self, color, servers=None):
        """True when ``color`` takes all the traffic and the other color none."""
        return self.live_color(servers) == color

    def health(self, color, servers=None):
        """``{"healthy": bool, "up": n, "total": n, "servers": [...]}`` for one color."""
        servers = self.servers() if servers is None else servers
        mine = [dict(server) for server in servers if server["color"] == color]
        up = [server for server in mine if server["healthy"]]
        return {"healthy": bool(mine) and len(up) == len(mine), "up": len(up), "total": len(mine), "servers": mine}

    def weights(self, servers=None):
        servers = self.servers() if servers is None else servers
        return {server["name"]: server["weight"] for server in servers}

    # changing ----------------------------------------------------------------------------
    def switch(self, to, steps=None, step_pause=0, drain_timeout=0):
        """Move traffic to ``to``; return ``{"steps": [...], "drain": {...}}``. Revert on failure."""
        raise NotImplementedError

    def persist(self):
        """Make the runtime change survive a balancer reload; return a list of warnings."""
        return []


class HAProxyBackend(TrafficBackend):
    """Backend ``be_<svc>``, servers ``<host>-<color>``, traffic share = server weight."""

    name = "haproxy"
    supports_steps = True

    def __init__(self, service, options, **kwargs):
        super().__init__(service, options, **kwargs)
        self.backend = "be_%s" % service
        self.runtime = HAProxyRuntime(options.get("haproxy_socket"), options.get("haproxy_timeout") or 5.0)

    def _call(self, func, *args):
        try:
            return func(*args)
        except HAProxyRuntimeError as exc:
            raise BackendError(exc.msg, haproxy_command=exc.command) from exc

    def known_services(self):
        rows = self._call(self.runtime.show_stat)
        return sorted(name[3:] for name in backends(rows) if name.startswith("be_"))

    def servers(self):
        rows = self._call(self.runtime.show_stat)
        if self.backend not in backends(rows):
            known = sorted(name[3:] for name in backends(rows) if name.startswith("be_"))
            raise UnknownServiceError(
                "unknown service %s: HAProxy has no backend %s; known services: %s"
                % (self.service, self.backend, ", ".join(known) or "none"),
                known_services=known,
            )
        weights = {}
        for row in self._call(self.runtime.show_servers_state, self.backend):
            weights[row.get("srv_name")] = row.get("srv_uweight")
        servers = []
        for row in stat_rows_for_backend(rows, self.backend):
            name = row["svname"]
            host, _sep, color = name.rpartition("-")
            if color not in COLORS or not host:
                continue
            status = row.get("status", "")
            servers.append(
                {
                    "name": name,
                    "host": host,
                    "color": color,
                    "weight": weights.get(name, row.get("weight")),
                    "status": status,
                    # UP and DRAIN (weight 0, checks passing) are healthy; "UP 1/3" is going down.
                    "healthy": status in ("UP", "DRAIN"),
                    "sessions": row.get("scur", 0),
                    "detail": ("%s %s" % (row.get("check_status", ""), row.get("check_desc", ""))).strip(),
                }
            )
        hosts = self.options.get("hosts")
        if hosts:
            names = {server["name"] for server in servers}
            missing = [
                "%s-%s" % (host, color) for host in hosts for color in COLORS if "%s-%s" % (host, color) not in names
            ]
            if missing:
                raise UnknownServiceError(
                    "HAProxy backend %s has no server %s (typo in hosts?); it has: %s"
                    % (self.backend, ", ".join(missing), ", ".join(sorted(names)) or "none"),
                    missing_servers=missing,
                )
            servers = [server for server in servers if server["host"] in hosts]
        if not servers:
            raise UnknownServiceError("HAProxy backend %s has no <host>-blue/<host>-green servers" % self.backend)
        return servers

    def live_color(self, servers=None):
        servers = self.servers() if servers is None else servers
        carrying = {server["color"] for server in servers if server["weight"]}
        if len(carrying) > 1:
            return "mixed"
        if not carrying:
            return "none"
        color = carrying.pop()
        if all(server["weight"] == LIVE_WEIGHT for server in servers if server["color"] == color):
            return color
        return "mixed"

    def _set(self, servers, weight):
        for server in servers:
            self._call(self.runtime.set_weight, self.backend, server["name"], weight)

    def _sessions(self, color):
        rows = stat_rows_for_backend(self._call(self.runtime.show_stat), self.backend)
        names = {server["name"] for server in self.servers() if server["color"] == color}
        return sum(row.get("scur", 0) for row in rows if row["svname"] in names)

    def switch(self, to, steps=None, step_pause=0, drain_timeout=0):
        servers = self.servers()
        before = self.weights(servers)
        new = [server for server in servers if server["color"] == to]
        old = [server for server in servers if server["color"] != to]
        plan = weight_plan(steps)
        done = []
        try:
            for index, (new_weight, old_weight) in enumerate(plan):
                # Raise the new color first, then lower the old: never a moment with no weight.
                self._set(new, new_weight)
                self._set(old, old_weight)
                done.append({"new": new_weight, "old": old_weight})
                if index < len(plan) - 1:
                    self.sleep(step_pause)
                    gate = self.health(to)
                    if not gate["healthy"]:
                        raise HealthGateError(
                            "aborted the shift to %s at %s%%: %s; traffic was put back on %s"
                            % (to, new_weight, describe_unhealthy(gate), other_color(to)),
                            health=gate,
                        )
        except BaseException:
            self._restore(servers, before)
            raise
        return {"steps": done, "drain": self.drain(other_color(to), drain_timeout)}

    def _restore(self, servers, before):
        # Back to the weights found at the start, live color first. Errors here must not hide
        # the original error, so they become warnings.
        ordered = sorted(servers, key=lambda server: -(before.get(server["name"]) or 0))
        for server in ordered:
            try:
                self.runtime.set_weight(self.backend, server["name"], before.get(server["name"]) or 0)
            except HAProxyRuntimeError as exc:
                self.warn("could not restore weight of %s/%s: %s" % (self.backend, server["name"], exc.msg))

    def drain(self, color, timeout):
        """Wait until the old color's current sessions reach 0, at most ``timeout`` seconds."""
        start = self.clock()
        remaining = self._sessions(color)
        while remaining and self.clock() - start < timeout:
            self.sleep(min(1.0, max(0.0, timeout - (self.clock() - start))))
            remaining = self._sessions(color)
        waited = round(self.clock() - start, 1)
        return {"color": color, "drained": remaining == 0, "sessions_left": remaining, "waited": waited}

    def persist(self):
        path = self.options.get("haproxy_state_file")
        if not path:
            return [
                "haproxy_state_file is empty: runtime weights are not saved and a reload before the next "
                "role run would restore the configured weights"
            ]
        if not os.path.isdir(os.path.dirname(path) or "."):
            return ["directory of %s does not exist: server state not saved" % path]
        try:
            self.runtime.dump_server_state(path)
        except (HAProxyRuntimeError, OSError) as exc:
            return ["could not save the HAProxy server state to %s: %s" % (path, getattr(exc, "msg", exc))]
        return []


def http_health(url, timeout):
    """GET ``url``; healthy only on a 2xx answer within ``timeout`` seconds."""
    try:
        response = open_url(url, method="GET", timeout=timeout, validate_certs=False, follow_redirects="none")
        code = response.getcode()
        return 200 <= code < 300, "HTTP %s" % code
    except Exception as exc:  # noqa: BLE001 - any failure is "not healthy", with its reason
        code = getattr(exc, "code", None)
        return False, ("HTTP %s" % code) if code else str(getattr(exc, "reason", exc))


class NginxBackend(TrafficBackend):
    """``upstream msa_<svc>`` in ``<nginx_upstream_dir>/<svc>.conf`` lists the live color's servers."""

    name = "nginx"
    supports_steps = False

    def __init__(self, service, options, **kwargs):
        super().__init__(service, options, **kwargs)
        self.path = upstream_path(options.get("nginx_upstream_dir"), service)
        self.ports = options.get("ports")

    def known_services(self):
        return nginx_known_services(self.options.get("nginx_upstream_dir"))

    def _read(self):
        try:
            with open(self.path) as handle:
                text = handle.read()
        except FileNotFoundError as exc:
            known = self.known_services()
            raise UnknownServiceError(
                "unknown service %s: no upstream file %s; known services: %s"
                % (self.service, self.path, ", ".join(known) or "none"),
                known_services=known,
            ) from exc
        try:
            return text, parse_upstream(text, self.service)
        except NginxUpstreamError as exc:
            raise BackendError("%s: %s" % (self.path, exc.msg)) from exc

    def _require_ports(self):
        if not self.ports:
            raise BlueGreenError("balancer=nginx needs ports={blue: N, green: N} for %s" % self.service)

    def servers(self):
        _text, parsed = self._read()
        listed = parsed["servers"]
        hosts = self.options.get("hosts") or sorted({server["host"] for server in listed})
        live = color_of(listed, self.ports)
        result = []
        if not self.ports:
            # Without ports we only know what the file lists.
            for server in listed:
                result.append(self._probe(server["host"], server["port"], None, True))
            return result
        for color in COLORS:
            for host in hosts:
                result.append(self._probe(host, int(self.ports[color]), color, color == live))
        return result

    def _probe(self, host, port, color, listed):
        url = "http://%s:%d%s" % (host, port, self.options.get("health_path") or "/health")
        healthy, detail = http_health(url, self.options.get("health_timeout") or 3.0)
        return {
            "name": "%s:%d" % (host, port),
            "host": host,
            "color": color,
            "weight": LIVE_WEIGHT if listed else IDLE_WEIGHT,
            "status": "UP" if healthy else "DOWN",
            "healthy": healthy,
            "sessions": None,
            "detail": "%s %s" % (url, detail),
        }

    def live_color(self, servers=None):
        _text, parsed = self._read()
        if not self.ports:
            return None
        live = color_of(parsed["servers"], self.ports)
        if live is None:
            raise BackendError(
                "upstream %s in %s points at %s, which is neither the blue port %s nor the green port %s: "
                "the gateway goes through HAProxy, flip on the haproxy balancer instead"
                % (
                    parsed["name"],
                    self.path,
                    ", ".join("%s:%s" % (s["host"], s["port"]) for s in parsed["servers"]) or "no servers",
                    self.ports["blue"],
                    self.ports["green"],
                )
            )
        return live

    def switch(self, to, steps=None, step_pause=0, drain_timeout=0):
        self._require_ports()
        if steps and list(steps) != [LIVE_WEIGHT]:
            raise BlueGreenError("gradual steps need balancer=haproxy; NGINX moves the upstream at once (steps=[100])")
        text, _parsed = self._read()
        live = self.live_color()
        try:
            new_text = retarget(text, self.service, self.ports[live], self.ports[to])
        except NginxUpstreamError as exc:
            raise BackendError("%s: %s" % (self.path, exc.msg)) from exc
        mode = self.options.get("nginx_reload") or "auto"
        if mode == "auto":
            mode = "systemd" if os.path.isdir("/run/systemd/system") else "signal"
        controller = NginxController(
            self.run_command,
            binary=self.options.get("nginx_binary") or "nginx",
            config=self.options.get("nginx_config"),
            reload=mode,
        )
        try:
            switch_file(self.path, new_text, controller)
        except NginxUpstreamError as exc:
            raise BackendError(exc.msg, nginx_output=exc.output) from exc
        except OSError as exc:
            raise BackendError("cannot rewrite %s: %s; traffic unchanged" % (self.path, exc)) from exc
        return {
            "steps": [{"new": LIVE_WEIGHT, "old": IDLE_WEIGHT}],
            "drain": self.drain(live, drain_timeout),
        }

    def drain(self, color, timeout):
        """Wait until the workers of the old configuration have exited, at most ``timeout`` seconds.

        A reload is graceful: old workers stop accepting and finish their requests. Their count
        stands in for the old color's sessions (on a gateway they only serve old upstreams).
        """
        start = self.clock()
        remaining = len(shutting_down_workers())
        while remaining and self.clock() - start < timeout:
            self.sleep(min(1.0, max(0.0, timeout - (self.clock() - start))))
            remaining = len(shutting_down_workers())
        return {
            "color": color,
            "drained": remaining == 0,
            "sessions_left": remaining,
            "waited": round(self.clock() - start, 1),
            "detail": "old NGINX workers still finishing requests: %d" % remaining,
        }


BACKENDS = {"haproxy": HAProxyBackend, "nginx": NginxBackend}


def register_backend(name, cls):
    """Add a balancer kind (e.g. ``consul``). The modules' ``balancer`` choices list it too."""
    if not issubclass(cls, TrafficBackend):
        raise TypeError("%r is not a TrafficBackend" % (cls,))
    BACKENDS[name] = cls


def get_backend(name, service, options, **kwargs):
    try:
        cls = BACKENDS[name]
    except KeyError as exc:
        raise BlueGreenError("unknown balancer %r; known balancers: %s" % (name, ", ".join(sorted(BACKENDS)))) from exc
    return cls(service, options, **kwargs)


def describe_unhealthy(health):
    bad = [server for server in health["servers"] if not server["healthy"]]
    if not health["servers"]:
        return "no servers of that color"
    return "%d of %d servers not healthy: %s" % (
        len(bad),
        health["total"],
        ", ".join(
            "%s %s (%s)" % (s["name"], s["status"], s["detail"]) if s["detail"] else "%s %s" % (s["name"], s["status"])
            for s in bad
        ),
    )


# --------------------------------------------------------------------------------------------
# the flip and the report


def run_flip(backend, store, params, *, check_mode=False, lock_factory=None, warn=None):
    """Move ``params['service']`` to the requested color on one balancer. Returns the result dict.

    Order: lock -> read state -> resolve target -> read the balancer -> no-op? -> health gate ->
    (check mode stops here) -> switch (steps, drain) -> persist -> write state + history.
    """
    flip = _Flip(backend, store, params, warn=warn)
    if len(flip.plan) > 1 and not backend.supports_steps:
        raise BlueGreenError("gradual steps need balancer=haproxy; %s switches at once (steps=[100])" % backend.name)
    lock = None
    if not check_mode:
        lock_factory = lock_factory or (
            lambda: ServiceLock(store.state_dir, flip.service, timeout=params.get("lock_timeout", 30))
        )
        lock = lock_factory().acquire()
    try:
        if not flip.decide():
            return flip.result
        flip.gate()
        if check_mode:
            return flip.preview()
        return flip.apply()
    finally:
        if lock is not None:
            lock.release()


class _Flip:
    """One flip of one service on one balancer; the steps of :func:`run_flip`."""

    def __init__(self, backend, store, params, warn=None):
        self.backend = backend
        self.store = store
        self.params = params
        self.warn = warn or (lambda msg: None)
        self.service = validate_service(params["service"])
        self.plan = weight_plan(params.get("steps") or [LIVE_WEIGHT])
        self.result = {}

    def decide(self):
        """Read state and balancer; return True when something has to change."""
        service, backend, store = self.service, self.backend, self.store
        self.state = state = store.load(service)
        state_existed = store.exists(service)
        self.target = target = resolve_target(self.params["to"], state, self.params.get("release"))
        self.servers = backend.servers()
        live = backend.live_color(self.servers)
        self.live = live = state["live"] if live is None else live
        if live not in (*COLORS, "mixed", "none"):
            raise BlueGreenError("cannot tell which color is live on %s for %s" % (backend.name, service))
        self.weights_before = backend.weights(self.servers)
        versions = dict(state.get("versions") or {})
        given = self.params.get("versions") or {}
        versions.update({color: str(v) for color, v in given.items() if v is not None})
        self.versions = versions
        self.before = {"live": live, "weights": self.weights_before, "versions": dict(state.get("versions") or {})}
        self.result = {
            "service": service,
            "balancer": backend.name,
            "from": live,
            "to": target,
            "state_file": store.path(service),
            "versions": versions,
            "drift": state_existed and live != state["live"],
            "health": None,
            "weights": self.weights_before,
        }
        if self.result["drift"]:
            self.warn(
                "state file says %s is live on %s but the balancer sends traffic to %s; the balancer is believed"
                % (state["live"], service, live)
            )
        self.traffic_moves = live != target
        state_changes = state["live"] != target or versions != (state.get("versions") or {}) or not state_existed
        # Missing file = blue by contract: a settled blue service needs no file written for a no-op.
        if not state_existed and target == DEFAULT_COLOR and not given:
            state_changes = False
        if not self.traffic_moves and not state_changes:
            self.result.update(
                changed=False,
                msg="%s already live on %s (%s)" % (service, target, backend.name),
                diff={"before": self.before, "after": self.before},
            )
            return False
        after_weights = {s["name"]: (LIVE_WEIGHT if s["color"] == target else IDLE_WEIGHT) for s in self.servers}
        after = {
            "live": target,
            "weights": after_weights if self.traffic_moves else self.weights_before,
            "versions": versions,
        }
        self.record = None
        if self.traffic_moves:
            operator = self.params.get("operator") or default_operator()
            self.record = history_record(operator, backend.name, live, target, versions)
        self.result.update(changed=True, record=self.record, diff={"before": self.before, "after": after})
        return True

    def gate(self):
        """Refuse to send traffic to a color that is not healthy on every server."""
        if not self.traffic_moves:
            return
        health = self.backend.health(self.target, self.servers)
        if not health["healthy"]:
            raise HealthGateError(
                "refusing to flip %s to %s on %s: %s. Traffic stays on %s."
                % (self.service, self.target, self.backend.name, describe_unhealthy(health), self.live),
                health=health,
                live=self.live,
            )
        self.result["health"] = health

    def preview(self):
        self.result["plan"] = [{"new": new, "old": old} for new, old in self.plan] if self.traffic_moves else []
        if self.traffic_moves:
            self.result["msg"] = "would flip %s from %s to %s on %s" % (
                self.service,
                self.live,
                self.target,
                self.backend.name,
            )
        else:
            self.result["msg"] = "would record %s as live on %s in %s" % (
                self.target,
                self.backend.name,
                self.store.path(self.service),
            )
        return self.result

    def apply(self):
        service, target, backend = self.service, self.target, self.backend
        if self.traffic_moves:
            switched = backend.switch(
                target,
                steps=[new for new, _old in self.plan],
                step_pause=self.params.get("step_pause", 0),
                drain_timeout=self.params.get("drain_timeout", 0),
            )
            self.result["plan"] = switched["steps"]
            drain = self.result["drain"] = switched["drain"]
            if drain.get("drained") is False:
                self.warn(
                    "%s of %s still had %s sessions after %ss; they were left to finish"
                    % (other_color(target), service, drain["sessions_left"], drain["waited"])
                )
            for message in backend.persist():
                self.warn(message)
        self.result["weights"] = backend.weights()
        state = self.state
        state.update(service=service, live=target, versions=self.versions)
        if self.record:
            history = [*list(state.get("history") or []), self.record]
            keep = self.params.get("history_keep") or 0
            state["history"] = history[-keep:] if keep > 0 else history
        try:
            self.store.save(service, state)
        except OSError as exc:
            raise BlueGreenError(
                "traffic for %s IS now on %s, but the state file %s could not be written (%s): fix it before the "
                "next site.yml run, or the roles will render %s again"
                % (service, target, self.store.path(service), exc, self.live)
            ) from exc
        if self.traffic_moves:
            self.result["msg"] = "flipped %s from %s to %s on %s" % (service, self.live, target, backend.name)
        else:
            self.result["msg"] = "recorded %s as live on %s" % (target, backend.name)
        return self.result


def describe_service(backend, store, service, history_limit=10):
    """The read-only view bluegreen_info returns for one service."""
    state = store.load(service)
    servers = backend.servers()
    runtime_live = backend.live_color(servers)
    history = state.get("history") or []
    if history_limit and history_limit > 0:
        history = history[-history_limit:]
    return {
        "service": service,
        "balancer": backend.name,
        "live": runtime_live if runtime_live is not None else state["live"],
        "runtime_live": runtime_live,
        "state_live": state["live"],
        "state_file_exists": store.exists(service),
        "drift": runtime_live in COLORS and store.exists(service) and runtime_live != state["live"],
        "versions": state.get("versions") or {},
        "health": {color: backend.health(color, servers) for color in COLORS},
        "weights": backend.weights(servers),
        "servers": servers,
        "history": history,
    }


# --------------------------------------------------------------------------------------------
# module base


class BlueGreenModule(AnsibleModule):
    """AnsibleModule with the shared blue/green options and error handling."""

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
        binary = argv[0]
        if not os.path.isabs(binary):
            argv = [self.get_bin_path(binary, required=True), *argv[1:]]
        return self.run_command(argv)

    def store(self):
        return StateStore(self.params["state_dir"])

    def fail_bluegreen(self, exc, **result):
        details = dict(getattr(exc, "details", {}) or {})
        details.update(result)
        self.fail_json(msg=getattr(exc, "msg", str(exc)), **details)
