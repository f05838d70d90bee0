# Copyright: msa.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# FOR INTERNAL COLLECTION USE ONLY
# The interfaces in this file serve the msa.platform blue/green modules and may change in any
# release, even a bugfix release. The contract with the roles is docs/design/bluegreen.md.

"""The balancer plug-in point and the two real balancers.

:class:`TrafficBackend` is what the flip and the report talk to; :data:`BACKENDS` maps the
``balancer`` option to a class. A new balancer (Consul, Istio, ...) is a subclass registered with
:func:`register_backend`. :class:`HAProxyBackend` and :class:`NginxBackend` speak through the
protocol clients ``_haproxy_runtime`` and ``_nginx_upstreams``, which know nothing of blue/green.

Every change a backend makes can be taken back: :meth:`TrafficBackend.switch` puts the balancer
back as it found it when it fails, and :meth:`TrafficBackend.undo` does the same after a
successful switch when a later step of the flip fails.
Managed-node code: Python 3.9 or later (tests/config.yml).
"""

from __future__ import annotations

import os
import re
import time

from ansible.module_utils.common.process import get_bin_path
from ansible.module_utils.urls import open_url
from ansible_collections.msa.platform.plugins.module_utils._bluegreen_common import (
    COLORS,
    IDLE_WEIGHT,
    LIVE_WEIGHT,
    BackendError,
    BlueGreenError,
    HealthGateError,
    UnknownServiceError,
    other_color,
    weight_plan,
)
from ansible_collections.msa.platform.plugins.module_utils._bluegreen_lock import ServiceLock
from ansible_collections.msa.platform.plugins.module_utils._bluegreen_state import StateStore
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


def put_back_note(color, problems):
    """The end of a failure message once :meth:`TrafficBackend.undo` ran (``problems`` it returned)."""
    where = ("on %s" % color) if color in COLORS else ("as it was (%s)" % color)
    if not problems:
        return "traffic was put back %s" % where
    return "putting traffic back %s failed too (%s): check with bluegreen_info and set the balancer by hand" % (
        where,
        "; ".join(problems),
    )


def reraise_put_back(exc, color, problems):
    """After an undo: add what happened to the traffic to the error, then raise it.

    An operator error (:class:`BlueGreenError`) gets it at the end of its message; any other
    exception carries it as ``put_back_note`` for the module's catch-all to report.
    """
    if problems is not None:
        note = put_back_note(color, problems)
        if isinstance(exc, BlueGreenError):
            exc.msg = "%s; %s" % (exc.msg, note)
            exc.args = (exc.msg,)
            exc.details.setdefault("traffic_put_back", not problems)
        elif isinstance(exc, Exception):
            exc.put_back_note = note
    raise exc


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

    # where the state document and the lock live: files on the balancer, unless a backend keeps
    # them elsewhere (Consul keeps them in the cluster, for every balancer at once)
    @classmethod
    def make_store(cls, options):
        return StateStore(options["state_dir"])

    def make_lock(self, store, service, timeout):
        return ServiceLock(store.state_dir, service, timeout=timeout)

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
        mine = [dict(server) for server in servers if server["color"] == color and not server.get("vacant")]
        up = [server for server in mine if server["healthy"]]
        return {"healthy": bool(mine) and len(up) == len(mine), "up": len(up), "total": len(mine), "servers": mine}

    def weights(self, servers=None):
        servers = self.servers() if servers is None else servers
        return {server["name"]: server["weight"] for server in servers}

    def fallback(self, servers=None):
        """Whether the balancer sends the traffic to the idle color by itself because no live
        server is up: ``configured``, ``active``, ``serving`` (color or None), and its record since
        the balancer last (re)started: ``served`` (requests) and ``last_served_ago`` (seconds or None)."""
        return {"configured": False, "active": False, "serving": None, "served": 0, "last_served_ago": None}

    # changing ----------------------------------------------------------------------------
    def switch(self, to, steps=None, step_pause=0, drain_timeout=0):
        """Move traffic to ``to``; return ``{"steps": [...], "drain": {...}}``.

        Check everything that can be checked before the first change. On any failure after it,
        put the balancer back as it was (:meth:`undo`) before the error goes on.
        """
        raise NotImplementedError

    def persist(self):
        """Make the runtime change survive a balancer reload; return a list of warnings."""
        return []

    def undo(self):
        """Take back the last :meth:`switch` (and :meth:`persist`).

        Returns None when nothing had been changed, else the problems met while putting the balancer
        back (an empty list: all of it is back). Never raises for the balancer's errors.
        """
        raise NotImplementedError("the %s balancer cannot put traffic back" % self.name)


# The status HAProxy gives a server-template slot that no DNS record fills.
VACANT_STATUS = "MAINT (resolution)"
DISCOVERED_SLOT_RE = re.compile(r"^(%s)-([1-9][0-9]*)$" % "|".join(COLORS))


def server_name_parts(name):
    """``(host, color, discovered)`` of a server name, ``color`` None when it is not blue/green.

    ``<host>-<color>`` is a server the haproxy role listed; ``<color>-<n>`` a server-template
    slot filled from service discovery (no host: the instance behind it can change).
    """
    match = DISCOVERED_SLOT_RE.match(name)
    if match:
        return None, match.group(1), True
    host, _sep, color = name.rpartition("-")
    if color not in COLORS or not host:
        return None, None, False
    return host, color, False


class HAProxyBackend(TrafficBackend):
    """Backend ``be_<svc>``, servers ``<host>-<color>`` (or discovery slots ``<color>-<n>``),
    traffic share = server weight."""

    name = "haproxy"
    supports_steps = True

    def __init__(self, service, options, **kwargs):
        super().__init__(service, options, **kwargs)
        self.backend = "be_%s" % service
        # The haproxy role's fallback backend: the same servers, each tracking its twin in be_<svc>.
        self.fallback_backend = "fb_%s" % service
        self._has_fallback = False
        self._fallback_totals = {}
        self.runtime = HAProxyRuntime(options.get("haproxy_socket"), options.get("haproxy_timeout") or 5.0)
        self._before = None  # (servers, weights) as the last switch found them
        self._persisted = False

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
        self._has_fallback = self.fallback_backend in backends(rows)
        self._fallback_totals = next(
            (row for row in rows if row.get("pxname") == self.fallback_backend and row.get("svname") == "BACKEND"), {}
        )
        weights = {}
        for row in self._call(self.runtime.show_servers_state, self.backend):
            weights[row.get("srv_name")] = row.get("srv_uweight")
        servers = []
        for row in stat_rows_for_backend(rows, self.backend):
            name = row["svname"]
            host, color, discovered = server_name_parts(name)
            if color is None:
                continue
            status = row.get("status", "")
            servers.append(
                {
                    "name": name,
                    # A discovery slot names the instance DNS put in it (address:port), if any.
                    "host": host if not discovered else row.get("addr", ""),
                    "color": color,
                    "weight": weights.get(name, row.get("weight")),
                    "status": status,
                    # UP and DRAIN (weight 0, checks passing) are healthy; "UP 1/3" is going down.
                    "healthy": status in ("UP", "DRAIN"),
                    "sessions": row.get("scur", 0),
                    "detail": ("%s %s" % (row.get("check_status", ""), row.get("check_desc", ""))).strip(),
                    # A server-template slot that DNS has not filled: no instance, nothing to check.
                    "vacant": discovered and status.startswith(VACANT_STATUS),
                    "discovered": discovered,
                }
            )
        hosts = self.options.get("hosts")
        # Slots filled from service discovery hold whichever instances are registered: every one
        # of them is the service's, so hosts (a check of the role's own server names) passes them.
        if hosts and not any(server["discovered"] for server in servers):
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
            raise UnknownServiceError(
                "HAProxy backend %s has no <host>-blue/<host>-green servers or <color>-<n> slots" % self.backend
            )
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

    def fallback(self, servers=None):
        # HAProxy routes to fb_<svc> when nbsrv(be_<svc>) is 0: no server with weight is up.
        servers = self.servers() if servers is None else servers
        if not self._has_fallback:
            return super().fallback(servers)
        carrying = [server for server in servers if server["weight"]]
        standby = sorted({server["color"] for server in servers if not server["weight"] and server["healthy"]})
        active = bool(carrying) and not any(server["healthy"] for server in carrying) and bool(standby)
        # HAProxy's own counters for fb_<svc> say what the fallback did since the worker started
        # (a reload starts them again): the record that it carried traffic, even once it is over.
        totals = self._fallback_totals
        served = int(totals["stot"]) if str(totals.get("stot", "")).isdigit() else 0
        last = str(totals.get("lastsess", ""))
        return {
            "configured": True,
            "active": active,
            "serving": standby[0] if active and len(standby) == 1 else None,
            "served": served,
            "last_served_ago": int(last) if served and last.isdigit() else None,
        }

    def _set(self, servers, weight):
        for server in servers:
            self._call(self.runtime.set_weight, self.backend, server["name"], weight)

    def _sessions(self, color):
        rows = stat_rows_for_backend(self._call(self.runtime.show_stat), self.backend)
        names = {server["name"] for server in self.servers() if server["color"] == color}
        return sum(row.get("scur", 0) for row in rows if row["svname"] in names)

    def switch(self, to, steps=None, step_pause=0, drain_timeout=0):
        plan = weight_plan(steps)
        servers = self.servers()
        self._before = (servers, self.weights(servers))
        self._persisted = False
        new = [server for server in servers if server["color"] == to]
        old = [server for server in servers if server["color"] != to]
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
                            "aborted the shift to %s at %s%%: %s" % (to, new_weight, describe_unhealthy(gate)),
                            health=gate,
                        )
            drain = self.drain(other_color(to), drain_timeout)
        except BaseException as exc:
            reraise_put_back(exc, other_color(to), self.undo())
        return {"steps": done, "drain": drain}

    def undo(self):
        if self._before is None:
            return None
        servers, before = self._before
        self._before = None
        # Back to the weights found at the start, live color first.
        problems = []
        for server in sorted(servers, key=lambda server: -(before.get(server["name"]) or 0)):
            try:
                self.runtime.set_weight(self.backend, server["name"], before.get(server["name"]) or 0)
            except HAProxyRuntimeError as exc:
                problems.append("could not restore weight of %s/%s: %s" % (self.backend, server["name"], exc.msg))
        if self._persisted and not problems:
            # The dumped server state holds the new weights: dump again, or a reload would bring them back.
            problems.extend(self.persist())
            self._persisted = False
        return problems

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
        self._persisted = True
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
        self._previous = None  # (text, controller) to go back to after a successful switch

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

    @staticmethod
    def _program(name, what, hint):
        """Absolute path of an executable program, checked before anything changes."""
        path = name
        if not os.path.isabs(name):
            try:
                path = get_bin_path(name)
            except ValueError:
                path = None
        if not path or not os.path.isfile(path):
            raise BackendError(
                "%s %s: no such program%s; nothing was changed. %s"
                % (what, name, "" if os.path.isabs(name) else " in PATH", hint)
            )
        if not os.access(path, os.X_OK):
            raise BackendError("%s %s is not executable; nothing was changed. %s" % (what, path, hint))
        return path

    def controller(self):
        mode = self.options.get("nginx_reload") or "auto"
        if mode == "auto":
            mode = "systemd" if os.path.isdir("/run/systemd/system") else "signal"
        extra = {}
        if mode == "systemd":
            hint = "nginx_reload=systemd needs systemctl; use nginx_reload=signal without systemd"
            extra["systemctl"] = self._program("systemctl", "reload program", hint)
        return NginxController(
            self.run_command,
            binary=self._program(
                self.options.get("nginx_binary") or "nginx",
                "nginx_binary",
                "Set nginx_binary to the NGINX program (e.g. /usr/sbin/nginx).",
            ),
            config=self.options.get("nginx_config"),
            reload=mode,
            **extra,
        )

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
        controller = self.controller()
        self._previous = None
        try:
            # Puts the old file back itself when nginx -t or the reload fails.
            switch_file(self.path, new_text, controller)
        except NginxUpstreamError as exc:
            raise BackendError(exc.msg, nginx_output=exc.output) from exc
        except OSError as exc:
            raise BackendError("cannot rewrite %s: %s; traffic unchanged" % (self.path, exc)) from exc
        self._previous = (text, controller)
        try:
            drain = self.drain(live, drain_timeout)
        except BaseException as exc:
            reraise_put_back(exc, live, self.undo())
        return {"steps": [{"new": LIVE_WEIGHT, "old": IDLE_WEIGHT}], "drain": drain}

    def undo(self):
        if self._previous is None:
            return None
        text, controller = self._previous
        self._previous = None
        try:
            switch_file(self.path, text, controller)
        except NginxUpstreamError as exc:
            return [exc.msg]
        except OSError as exc:
            return ["cannot rewrite %s: %s" % (self.path, exc)]
        return []

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
