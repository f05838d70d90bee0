# Copyright: msa.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# FOR INTERNAL COLLECTION USE ONLY
# The interfaces in this file serve the msa.platform blue/green modules and may change in any
# release, even a bugfix release. The contract with the roles is docs/design/bluegreen.md.

"""The flip decision and the read-only report, written against :class:`TrafficBackend`.

:func:`run_flip` reads the state file and the balancer, decides, gates on health and changes the
balancer; the state file is written last, and any failure after the balancer changed puts it back
first, so the file never records what the balancer does not do. :func:`describe_service` is what
``bluegreen_info`` reports. Both can be tested with a fake backend.
Managed-node code: Python 3.9 or later (tests/config.yml).
"""

from __future__ import annotations

import socket

from ansible_collections.msa.platform.plugins.module_utils._bluegreen_backends import (
    describe_unhealthy,
    reraise_put_back,
)
from ansible_collections.msa.platform.plugins.module_utils._bluegreen_common import (
    COLORS,
    DEFAULT_COLOR,
    IDLE_WEIGHT,
    LIVE_WEIGHT,
    RUNTIME_STATES,
    BlueGreenError,
    HealthGateError,
    other_color,
    validate_service,
    weight_plan,
)
from ansible_collections.msa.platform.plugins.module_utils._bluegreen_state import default_operator, history_record


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


def node_name():
    """This balancer's short host name, for one-line summaries."""
    name = socket.gethostname() or "localhost"
    return name if name.replace(".", "").isdigit() else name.split(".")[0]


def _steps(count):
    return "%d step%s" % (count, "" if count == 1 else "s")


def run_flip(backend, store, params, *, check_mode=False, lock_factory=None, warn=None):
    """Move ``params['service']`` to the requested color on one balancer. Returns the result dict.

    Order: lock -> read state -> resolve target -> read the balancer -> no-op? -> health gate ->
    (check mode stops here) -> switch (steps, drain) -> persist -> write state + history.
    A failure after the switch began puts the balancer back before it is raised.
    """
    flip = _Flip(backend, store, params, warn=warn)
    if len(flip.plan) > 1 and not backend.supports_steps:
        raise BlueGreenError("gradual steps need balancer=haproxy; %s switches at once (steps=[100])" % backend.name)
    lock = None
    if not check_mode:
        lock_factory = lock_factory or (lambda: backend.make_lock(store, flip.service, params.get("lock_timeout", 30)))
        lock = lock_factory().acquire()
    try:
        if not flip.decide():
            return flip.result
        flip.gate(wait=0 if check_mode else params.get("health_wait") or 0)
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
        self.node = node_name()
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
        if live not in COLORS + RUNTIME_STATES:
            raise BlueGreenError("cannot tell which color is live on %s for %s" % (backend.name, service))
        self.weights_before = backend.weights(self.servers)
        versions = dict(state["versions"])
        given = self.params.get("versions") or {}
        versions.update({color: str(v) for color, v in given.items() if v is not None})
        self.versions = versions
        self.before = {"live": live, "weights": self.weights_before, "versions": dict(state["versions"])}
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
        state_changes = state["live"] != target or versions != state["versions"] or not state_existed
        # Missing file = blue by contract: a settled blue service needs no file written for a no-op.
        if not state_existed and target == DEFAULT_COLOR and not given:
            state_changes = False
        if not self.traffic_moves and not state_changes:
            self.result.update(
                changed=False,
                msg="%s: %s already live on %s (%s), nothing to do" % (service, target, self.node, backend.name),
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

    def gate(self, wait=0):
        """Refuse to send traffic to a color that is not healthy on every server, after waiting
        up to ``wait`` seconds for it to become so (a color just started passes its checks soon)."""
        if not self.traffic_moves:
            return
        health = self.backend.health(self.target, self.servers)
        deadline = self.backend.clock() + wait
        while not health["healthy"] and self.backend.clock() < deadline:
            self.backend.sleep(1)
            self.servers = self.backend.servers()
            health = self.backend.health(self.target, self.servers)
        if not health["healthy"]:
            raise HealthGateError(
                "refusing to flip %s to %s on %s: %s. Traffic stays on %s."
                % (self.service, self.target, self.backend.name, describe_unhealthy(health), self.live),
                health=health,
                live=self.live,
            )
        self.result["health"] = health

    def _weights_text(self, plan):
        new, old = plan[-1]
        return "weights %s/%s, %s" % (old, new, _steps(len(plan)))

    def preview(self):
        self.result["plan"] = [{"new": new, "old": old} for new, old in self.plan] if self.traffic_moves else []
        if self.traffic_moves:
            self.result["msg"] = "%s: would flip %s -> %s on %s (%s, %s)" % (
                self.service,
                self.live,
                self.target,
                self.node,
                self.backend.name,
                self._weights_text(self.plan),
            )
        else:
            self.result["msg"] = "%s: would record %s as live on %s (%s) in %s" % (
                self.service,
                self.target,
                self.node,
                self.backend.name,
                self.store.path(self.service),
            )
        return self.result

    def _save(self):
        state = self.state
        state.update(service=self.service, live=self.target, versions=self.versions)
        if self.record:
            history = [*list(state["history"]), self.record]
            keep = self.params.get("history_keep") or 0
            state["history"] = history[-keep:] if keep > 0 else history
        try:
            self.store.save(self.service, state)
        except OSError as exc:
            raise BlueGreenError(
                "the state file %s could not be written (%s), so %s on %s was not recorded"
                % (self.store.path(self.service), exc, self.target, self.backend.name),
                state_file=self.store.path(self.service),
            ) from exc

    def _undo(self):
        try:
            return self.backend.undo()
        except Exception as exc:  # noqa: BLE001 - the original error goes on; this one joins its message
            return ["%s: %s" % (type(exc).__name__, exc)]

    def apply(self):
        service, target, backend = self.service, self.target, self.backend
        if not self.traffic_moves:
            self.result["weights"] = backend.weights()
            try:
                self._save()
            except BlueGreenError as exc:
                exc.msg = "%s; nothing changed on the balancer" % exc.msg
                exc.args = (exc.msg,)
                raise
            self.result["msg"] = "%s: recorded %s as live on %s (%s already sends its traffic there)" % (
                service,
                target,
                self.node,
                backend.name,
            )
            return self.result
        # The backend puts itself back when the switch fails; after it, this method does.
        switched = backend.switch(
            target,
            steps=[new for new, _old in self.plan],
            step_pause=self.params.get("step_pause", 0),
            drain_timeout=self.params.get("drain_timeout", 0),
        )
        warnings = []
        try:
            self.result["plan"] = switched["steps"]
            drain = self.result["drain"] = switched["drain"]
            if drain.get("drained") is False:
                warnings.append(
                    "%s of %s still had %s sessions after %ss; they were left to finish"
                    % (other_color(target), service, drain["sessions_left"], drain["waited"])
                )
            warnings.extend(backend.persist())
            self.result["weights"] = backend.weights()
            self._save()
        except BaseException as exc:
            reraise_put_back(exc, self.live, self._undo())
        for message in warnings:
            self.warn(message)
        plan = [(step["new"], step["old"]) for step in switched["steps"]] or self.plan
        if drain.get("drained") is False:
            drained = "%s sessions left after %s s" % (drain.get("sessions_left"), drain.get("waited"))
        else:
            drained = "drained in %s s" % drain.get("waited", 0)
        self.result["msg"] = "%s: %s -> %s on %s (%s, %s, %s)" % (
            service,
            self.live,
            target,
            self.node,
            backend.name,
            self._weights_text(plan),
            drained,
        )
        return self.result


def describe_service(backend, store, service, history_limit=10):
    """The read-only view bluegreen_info returns for one service."""
    state = store.load(service)
    servers = backend.servers()
    runtime_live = backend.live_color(servers)
    history = state["history"]
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
        "versions": state["versions"],
        "health": {color: backend.health(color, servers) for color in COLORS},
        "weights": backend.weights(servers),
        "fallback": backend.fallback(servers),
        "servers": servers,
        "history": history,
    }
