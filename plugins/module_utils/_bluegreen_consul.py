# Copyright: msa.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# FOR INTERNAL COLLECTION USE ONLY
# The interfaces in this file serve the msa.platform blue/green modules and may change in any
# release, even a bugfix release. The contract with the roles is docs/design/bluegreen.md.

"""Consul as the place the live color lives, for every balancer at once.

The live color of a service is kept in two prepared queries, ``<svc>-live-blue`` and
``<svc>-live-green``: the live color's answers its passing instances, the idle color's answers none
(tags ``[color, "!color"]``). Balancers follow them through DNS (the haproxy role's
``server-template <color>-`` slots on ``_<svc>-live-<color>._tcp.query.consul``), so one write per
color moves every balancer at once. One query per color, not one for the live color, because
HAProxy matches SRV records to slots by target name: blue and green of a host share it, and a
single query whose answer changes port on the same targets leaves slots empty for a while. The state
document, the same one the state files hold, is the KV key ``<prefix>/<svc>/state`` (written with
check-and-set), and the lock is a Consul session lock on ``<prefix>/<svc>/lock``: one flip at a time
across every host that can reach the cluster, not only on one balancer.

:class:`ConsulBackend` is the :class:`TrafficBackend`; it brings its own store
(:class:`ConsulStateStore`) and lock (:class:`ConsulLock`). Consul's answers become
:class:`BlueGreenError`s that name the ACL rule a refused token lacks.
Managed-node code: Python 3.9 or later (tests/config.yml).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time

from ansible_collections.msa.platform.plugins.module_utils._bluegreen_backends import (
    VACANT_STATUS,
    TrafficBackend,
    register_backend,
    reraise_put_back,
    server_name_parts,
)
from ansible_collections.msa.platform.plugins.module_utils._bluegreen_common import (
    COLORS,
    DEFAULT_COLOR,
    IDLE_WEIGHT,
    LIVE_WEIGHT,
    BackendError,
    BlueGreenError,
    LockTimeoutError,
    UnknownServiceError,
    other_color,
    validate_service,
)
from ansible_collections.msa.platform.plugins.module_utils._bluegreen_state import parse_state
from ansible_collections.msa.platform.plugins.module_utils._consul_client import ConsulClient, ConsulError
from ansible_collections.msa.platform.plugins.module_utils._haproxy_runtime import (
    HAProxyRuntime,
    HAProxyRuntimeError,
    stat_rows_for_backend,
)

DEFAULT_PREFIX = "msa/bluegreen"
QUERY_FORMAT = "%s-live-%s"
# Balancers resolve the queries every second and drop an answer that is gone after another second
# (the haproxy role's resolvers section): after this wait every one of them has followed a change.
FOLLOW_SECONDS = 3
# On a balancer, how long the flip waits for its own HAProxy to take the new color in.
LOCAL_WAIT = 15
LOCK_TTL = 15
DETAIL_LIMIT = 200


def query_name(service, color):
    """``<svc>-live-<color>``: the instances of ``color`` that take traffic (none while idle)."""
    return QUERY_FORMAT % (validate_service(service), color)


def query_definition(service, color, serving, found=None):
    """The prepared query of one color: its passing instances when ``serving``, else none (the tag
    and its negation: no instance has both). Keeps what else ``found`` carries."""
    definition = dict(found or {})
    for read_only in ("ID", "CreateIndex", "ModifyIndex"):
        definition.pop(read_only, None)
    definition["Name"] = query_name(service, color)
    tags = [color] if serving else [color, "!" + color]
    definition["Service"] = dict(definition.get("Service") or {}, Service=service, Tags=tags, OnlyPassing=True)
    # Balancers must not keep an old answer: each resolution asks the cluster again.
    definition["DNS"] = {"TTL": "0s"}
    return definition


def connection(options):
    """``(ConsulClient, KV prefix)`` from the modules' ``consul`` option."""
    settings = dict(options.get("consul") or {})
    prefix = (settings.pop("prefix", None) or DEFAULT_PREFIX).strip("/")
    return ConsulClient.from_options(settings), prefix


def consul_failure(exc, **details):
    """A ConsulError as the blue/green modules report it (the token never is in its text)."""
    return BackendError(exc.msg, consul_reason=exc.details.get("reason"), **details)


class _Consul:
    """Calls to Consul that fail as :class:`BackendError`."""

    def __init__(self, client):
        self.client = client

    def __call__(self, *args, **kwargs):
        try:
            return self.client.call(*args, **kwargs)
        except ConsulError as exc:
            raise consul_failure(exc) from exc


class ConsulStateStore:
    """The state document in KV at ``<prefix>/<svc>/state``; interface of :class:`StateStore`."""

    def __init__(self, client, prefix=DEFAULT_PREFIX):
        self.client = client
        self.prefix = prefix.strip("/")
        self.state_dir = "consul:%s" % self.prefix
        self._index = {}

    def key(self, service):
        return "%s/%s/state" % (self.prefix, validate_service(service))

    def path(self, service):
        return "consul:%s" % self.key(service)

    def _read(self, service):
        try:
            return self.client.read_key(self.key(service))
        except ConsulError as exc:
            raise consul_failure(exc, state_file=self.path(service)) from exc

    def exists(self, service):
        return self._read(service) is not None

    def known_services(self):
        try:
            tree = self.client.read_tree(self.prefix)
        except ConsulError as exc:
            raise consul_failure(exc) from exc
        found = []
        for key in tree:
            parts = key[len(self.prefix) + 1 :].split("/")
            if len(parts) == 2 and parts[1] == "state":
                try:
                    found.append(validate_service(parts[0]))
                except BlueGreenError:
                    continue  # a key that is no service name is not ours
        return sorted(found)

    @staticmethod
    def empty(service):
        return {"service": service, "live": DEFAULT_COLOR, "versions": {}, "history": []}

    def load(self, service):
        """The validated document (left-out keys filled in); remembers its ModifyIndex for :meth:`save`."""
        entry = self._read(service)
        self._index[service] = entry["index"] if entry else 0
        if entry is None:
            return self.empty(service)
        return parse_state(
            lambda: entry["value"],
            service,
            "state %s" % self.path(service),
            "Fix the key or delete it (the next flip then believes Consul's live queries and writes a new one)",
            state_file=self.path(service),
        )

    def save(self, service, data):
        """Write with check-and-set on the index :meth:`load` saw: a write by anyone else meanwhile
        fails (OSError, as a state file that cannot be written does) instead of being overwritten."""
        key = self.key(service)
        try:
            self.client.put(key, json.dumps(data, indent=2) + "\n", self._index.get(service, 0))
        except ConsulError as exc:
            raise OSError(exc.msg) from exc
        return self.path(service)


class ConsulLock:
    """A Consul session lock on ``<prefix>/<svc>/lock``, waiting at most ``timeout`` seconds.

    The session has a TTL, renewed while the lock is held, and ``Behavior=delete``: a flip that
    dies without releasing frees the lock within two TTLs. The key's value names the holder.
    """

    def __init__(
        self, client, key, service, *, timeout=30, ttl=LOCK_TTL, poll=0.5, sleep=time.sleep, clock=time.monotonic
    ):
        self.client = client
        self.key = key
        self.path = "consul:%s" % key
        self.service = service
        self.timeout = timeout
        self.ttl = ttl
        self.poll = poll
        self.sleep = sleep
        self.clock = clock
        self.session = None
        self._stop = threading.Event()
        self._renewer = None

    def _call(self, *args, **kwargs):
        kwargs.setdefault("scope", "")
        kwargs.setdefault("rule", "session_prefix")
        try:
            return self.client.call(*args, **kwargs)
        except ConsulError as exc:
            raise consul_failure(exc, lock_file=self.path) from exc

    def holder(self):
        try:
            entry = self.client.read_key(self.key)
        except ConsulError:
            return None
        return entry["value"] if entry and entry["value"] else None

    def _try(self, holder):
        try:
            _status, body, _headers = self.client.request(
                "PUT",
                "kv/" + self.key,
                "write %s (lock)" % self.key,
                query={"acquire": self.session},
                body=holder.encode("utf-8"),
                scope=self.key,
            )
        except ConsulError as exc:
            raise consul_failure(exc, lock_file=self.path) from exc
        return (body or b"").strip() == b"true"

    def acquire(self):
        holder = json.dumps({"host": socket.gethostname(), "pid": os.getpid()})
        created = self._call(
            "PUT",
            "session/create",
            "write a session for the lock %s" % self.key,
            body={
                "Name": "msa.platform blue/green flip of %s" % self.service,
                "TTL": "%ds" % self.ttl,
                "Behavior": "delete",
                "LockDelay": "0s",
            },
        )
        self.session = (created or {}).get("ID")
        if not self.session:
            raise BackendError("Consul created no session for the lock %s" % self.key, lock_file=self.path)
        deadline = self.clock() + max(0, self.timeout)
        try:
            while not self._try(holder):
                if self.clock() >= deadline:
                    raise LockTimeoutError(
                        "another flip of %s holds %s (%s); gave up after %ss. Wait for it to finish; a holder that "
                        "died frees it within %d s (session TTL)."
                        % (self.service, self.path, self.holder() or "holder unknown", self.timeout, 2 * self.ttl),
                        lock_file=self.path,
                        holder=self.holder(),
                    )
                self.sleep(self.poll)
        except BaseException:
            self._destroy()
            raise
        self._stop.clear()
        self._renewer = threading.Thread(target=self._renew, name="consul-lock-renew", daemon=True)
        self._renewer.start()
        return self

    def _renew(self):
        while not self._stop.wait(self.ttl / 3.0):
            try:
                self.client.call("PUT", "session/renew/%s" % self.session, "write (renew) the lock session")
            except ConsulError:
                continue  # the next round tries again; a lost session frees the lock, the flip goes on

    def _destroy(self):
        session, self.session = self.session, None
        # On failure its TTL ends it, and Behavior=delete frees the key then.
        if session:
            with contextlib.suppress(ConsulError):
                self.client.call("PUT", "session/destroy/%s" % session, "write (destroy) the lock session")

    def release(self):
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(5)
            self._renewer = None
        # On failure, destroying the session below frees it too.
        if self.session:
            with contextlib.suppress(ConsulError):
                self.client.request(
                    "PUT", "kv/" + self.key, "write %s (unlock)" % self.key, query={"release": self.session}
                )
        self._destroy()

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc_info):
        self.release()
        return False


def _check_status(checks):
    """Worst status of an instance's checks, ``maintenance`` for Consul's maintenance mode."""
    if any(str(check.get("CheckID", "")).startswith(("_service_maintenance", "_node_maintenance")) for check in checks):
        return "maintenance"
    statuses = {check.get("Status") for check in checks}
    for status in ("critical", "warning"):
        if status in statuses:
            return status
    return "passing"


class ConsulBackend(TrafficBackend):
    """Live color = the tag of the prepared query ``<svc>-live``; servers = the service's instances
    in Consul's catalog, with the health Consul's checks give them."""

    name = "consul"
    supports_steps = False

    def __init__(self, service, options, **kwargs):
        super().__init__(service, options, **kwargs)
        self.client, self.prefix = connection(options)
        self.consul = _Consul(self.client)
        self._before = None  # (query found before the switch or None, its ID after the switch)
        # On a balancer, the module watches its own HAProxy follow the queries.
        socket_path = options.get("haproxy_socket")
        self.local = None
        if socket_path and os.path.exists(socket_path):
            self.local = HAProxyRuntime(socket_path, options.get("haproxy_timeout") or 5.0)

    # hooks for the modules: where the state and the lock live
    @classmethod
    def make_store(cls, options):
        return ConsulStateStore(*connection(options))

    def make_lock(self, store, service, timeout):
        return ConsulLock(
            self.client,
            "%s/%s/lock" % (self.prefix, validate_service(service)),
            service,
            timeout=timeout,
            sleep=self.sleep,
            clock=self.clock,
        )

    # reading -----------------------------------------------------------------------------
    def _queries(self):
        return self.consul("GET", "query", "read prepared queries", scope="", rule="query_prefix") or []

    def queries(self):
        """``{color: query as Consul has it}`` for the colors whose query exists."""
        wanted = {query_name(self.service, color): color for color in COLORS}
        return {wanted[found["Name"]]: found for found in self._queries() if found.get("Name") in wanted}

    def known_services(self):
        names = set()
        for found in self._queries():
            service = (found.get("Service") or {}).get("Service")
            if service and any(found.get("Name") == QUERY_FORMAT % (service, color) for color in COLORS):
                names.add(service)
        return sorted(names)

    def serving(self, found=None):
        """``{color: True/False}``: whether each color's query answers its instances (missing: False)."""
        found = self.queries() if found is None else found
        result = {}
        for color in COLORS:
            query = found.get(color)
            if query is None:
                result[color] = False
                continue
            service = (query.get("Service") or {}).get("Service")
            tags = (query.get("Service") or {}).get("Tags") or []
            if service != self.service or tags not in ([color], [color, "!" + color]):
                raise BackendError(
                    "the prepared query %s is not a blue/green live query of %s (service %r, tags %r); nothing "
                    "was changed. Delete it or give it another name"
                    % (query_name(self.service, color), self.service, service, tags)
                )
            result[color] = tags == [color]
        return result

    def servers(self):
        entries = (
            self.consul(
                "GET",
                "health/service/%s" % self.service,
                "read the health of service %s" % self.service,
                scope=self.service,
                rule="service",
            )
            or []
        )
        found = self.queries()
        serving = self.serving(found)
        if not entries and not found:
            raise UnknownServiceError(
                "unknown service %s: Consul has no instance of it and no prepared query %s-live-<color> (is the "
                'token allowed service "%s" { policy = "read" }?)' % (self.service, self.service, self.service)
            )
        servers = []
        for entry in entries:
            instance = entry.get("Service") or {}
            colors = [tag for tag in instance.get("Tags") or [] if tag in COLORS]
            if len(colors) != 1:
                continue
            color = colors[0]
            checks = entry.get("Checks") or []
            status = _check_status(checks)
            failing = [
                "%s: %s" % (check.get("Name") or check.get("CheckID"), (check.get("Output") or "").strip())
                for check in checks
                if check.get("Status") != "passing"
            ]
            node = entry.get("Node") or {}
            servers.append(
                {
                    # Instance IDs are unique per agent only: the node makes them unique.
                    "name": "%s@%s" % (instance.get("ID") or color, node.get("Node")),
                    "host": node.get("Node"),
                    "address": "%s:%s" % (instance.get("Address") or node.get("Address"), instance.get("Port")),
                    "color": color,
                    "weight": (LIVE_WEIGHT if serving[color] else IDLE_WEIGHT) if found else None,
                    "status": status,
                    "healthy": status == "passing",
                    "sessions": None,
                    "detail": "; ".join(failing)[:DETAIL_LIMIT],
                }
            )
        return sorted(servers, key=lambda server: (server["color"], server["host"] or "", server["name"]))

    def live_color(self, servers=None, found=None):
        """From the queries as Consul has them now, or as ``found`` (what :meth:`queries` returned)."""
        serving = [color for color, on in self.serving(found).items() if on]
        if not serving:
            return "none"
        return serving[0] if len(serving) == 1 else "mixed"

    # changing ----------------------------------------------------------------------------
    def _write(self, color, serving, found):
        definition = query_definition(self.service, color, serving, found)
        what = "write prepared query %s" % definition["Name"]
        scope = definition["Name"]
        if found is not None:
            self.consul("PUT", "query/%s" % found["ID"], what, body=definition, scope=scope, rule="query_prefix")
            return dict(definition, ID=found["ID"])
        created = self.consul("POST", "query", what, body=definition, scope=scope, rule="query_prefix") or {}
        if not created.get("ID"):
            raise BackendError("Consul did not say which ID the new prepared query %s got" % definition["Name"])
        return dict(definition, ID=created["ID"])

    def _answers(self, color, query_id):
        name = query_name(self.service, color)
        answer = (
            self.consul(
                "GET",
                "query/%s/execute" % query_id,
                "read (execute) prepared query %s" % name,
                scope=name,
                rule="query_prefix",
            )
            or {}
        )
        return [
            tag
            for node in answer.get("Nodes") or []
            for tag in ((node.get("Service") or {}).get("Tags") or [])
            if tag in COLORS
        ]

    def switch(self, to, steps=None, step_pause=0, drain_timeout=0):
        found = self.queries()
        self.serving(found)
        old = other_color(to)
        # What to put back: each color's query as it was (None: it did not exist), and its ID now.
        self._before = {color: (found.get(color), None) for color in COLORS}
        try:
            # The new color in first, the old one out once every balancer has it: a moment with
            # both, never one with neither.
            written = self._write(to, True, found.get(to))
            self._before[to] = (found.get(to), written["ID"])
            answered = self._answers(to, written["ID"])
            if not answered or set(answered) != {to}:
                raise BackendError(
                    "after the flip, the query %s answers %s instead of the passing %s instances"
                    % (query_name(self.service, to), ", ".join(answered) or "nothing", to)
                )
            # Every balancer resolves the query within FOLLOW_SECONDS; this one is also watched.
            start = self.clock()
            self.wait_local(lambda slots: any(color == to for color, _sessions in slots), LOCAL_WAIT)
            self.sleep(max(0.0, FOLLOW_SECONDS - (self.clock() - start)))
            written = self._write(old, False, found.get(old))
            self._before[old] = (found.get(old), written["ID"])
            drain = self.drain(old, drain_timeout)
        except BaseException as exc:
            reraise_put_back(exc, self.live_color(found=found), self.undo())
        return {"steps": [{"new": LIVE_WEIGHT, "old": IDLE_WEIGHT}], "drain": drain}

    def local_slots(self):
        """``[(color, sessions)]`` of the filled slots of ``be_<svc>`` on this host's HAProxy, or None
        when there is none to watch."""
        if self.local is None:
            return None
        try:
            rows = stat_rows_for_backend(self.local.show_stat(), "be_%s" % self.service)
        except HAProxyRuntimeError:
            return None
        slots = []
        for row in rows:
            _host, color, discovered = server_name_parts(row["svname"])
            if discovered and not str(row.get("status", "")).startswith(VACANT_STATUS):
                slots.append((color, row.get("scur", 0) or 0))
        return slots if rows else None

    def wait_local(self, done, timeout):
        """Poll this host's HAProxy until ``done(slots)``, at most ``timeout`` seconds; True when it was
        done, None when there is no local HAProxy carrying the service."""
        start = self.clock()
        while True:
            slots = self.local_slots()
            if slots is None:
                return None
            if done(slots):
                return True
            if self.clock() - start >= timeout:
                return False
            self.sleep(0.2)

    def drain(self, color, timeout):
        """Wait until the balancers have dropped the old color. On a balancer, until its own HAProxy
        holds no slot of ``color`` and no session on one (at most ``timeout``); elsewhere Consul sees
        no balancer, so the wait is the time every balancer needs to re-resolve the query."""
        start = self.clock()
        left = []

        def drained(slots):
            left[:] = [sessions for slot_color, sessions in slots if slot_color == color]
            return not left

        followed = self.wait_local(drained, max(0, timeout))
        waited = round(self.clock() - start, 1)
        if followed is None:
            self.sleep(min(FOLLOW_SECONDS, max(0, timeout)))
            return {
                "color": color,
                "drained": None,
                "sessions_left": None,
                "waited": round(self.clock() - start, 1),
                "detail": "no HAProxy of the service here: waited for the balancers to re-resolve the queries",
            }
        return {
            "color": color,
            "drained": followed,
            # Slots still filled count as one each, so an undrained wait never reads as 0 left.
            "sessions_left": sum(left) or len(left),
            "waited": waited,
            "detail": "this balancer's HAProxy %s the %s slots"
            % ("dropped" if followed else "still holds %d of" % len(left), color),
        }

    def undo(self):
        if self._before is None:
            return None
        before, self._before = self._before, None
        touched = {color: entry for color, entry in before.items() if entry[1] is not None}
        if not touched:
            return None
        problems = []
        # The color that was serving goes back first, as in a flip.
        for color in sorted(touched, key=lambda c: not (touched[c][0] and self._was_serving(touched[c][0]))):
            found, query_id = touched[color]
            name = query_name(self.service, color)
            try:
                if found is None:
                    self.client.call(
                        "DELETE",
                        "query/%s" % query_id,
                        "delete prepared query %s" % name,
                        scope=name,
                        rule="query_prefix",
                    )
                else:
                    self._write(color, self._was_serving(found), dict(found, ID=query_id))
            except (ConsulError, BackendError) as exc:
                problems.append("could not put the query %s back: %s" % (name, getattr(exc, "msg", exc)))
        return problems

    @staticmethod
    def _was_serving(found):
        return len((found.get("Service") or {}).get("Tags") or []) == 1


register_backend("consul", ConsulBackend)
