"""The flip decision and the report against a fake backend: targets, gate, check mode, history, drift."""

from __future__ import annotations

import os

import pytest
from ansible_collections.msa.platform.plugins.module_utils._bluegreen_backends import TrafficBackend
from ansible_collections.msa.platform.plugins.module_utils._bluegreen_common import (
    BlueGreenError,
    HealthGateError,
    LockTimeoutError,
)
from ansible_collections.msa.platform.plugins.module_utils._bluegreen_decision import (
    describe_service,
    resolve_target,
    run_flip,
)
from ansible_collections.msa.platform.plugins.module_utils._bluegreen_lock import ServiceLock
from ansible_collections.msa.platform.plugins.module_utils._bluegreen_state import StateStore, history_record

# ---- targets ---------------------------------------------------------------------------


STATE = {
    "service": "orders",
    "live": "green",
    "versions": {"blue": "1.0.0", "green": "1.1.0"},
    "history": [history_record("alice", "haproxy", "blue", "green", {"blue": "1.0.0", "green": "1.1.0"})],
}


def test_resolve_target():
    assert resolve_target("blue", STATE) == "blue"
    assert resolve_target("previous", STATE) == "blue"
    assert resolve_target("release", STATE, "1.0.0") == "blue"
    assert resolve_target("release", STATE, "1.1.0") == "green"
    with pytest.raises(
        BlueGreenError, match="no color of orders holds release 2.0.0; deployed: blue=1.0.0, green=1.1.0"
    ):
        resolve_target("release", STATE, "2.0.0")
    with pytest.raises(BlueGreenError, match="no earlier flip"):
        resolve_target("previous", {"service": "orders", "live": "blue", "history": []})
    with pytest.raises(BlueGreenError, match="needs release"):
        resolve_target("release", STATE)


# ---- the flip decision against a fake backend -------------------------------------------


class FakeBackend(TrafficBackend):
    name = "fake"
    supports_steps = True

    def __init__(self, live="blue", healthy=None, hosts=("app1", "app2")):
        super().__init__("orders", {})
        self.hosts = hosts
        self.weights_now = {"%s-%s" % (h, c): (100 if c == live else 0) for h in hosts for c in ("blue", "green")}
        self.healthy = healthy or {"blue": True, "green": True}
        self.switched = []
        self.persisted = 0

    def known_services(self):
        return ["orders"]

    def servers(self):
        return [
            {
                "name": "%s-%s" % (h, c),
                "host": h,
                "color": c,
                "weight": self.weights_now["%s-%s" % (h, c)],
                "status": "UP" if self.healthy[c] else "DOWN",
                "healthy": self.healthy[c],
                "sessions": 0,
                "detail": "L7OK" if self.healthy[c] else "L4CON Connection refused",
            }
            for h in self.hosts
            for c in ("blue", "green")
        ]

    def live_color(self, servers=None):
        carrying = {s["color"] for s in (servers or self.servers()) if s["weight"]}
        return carrying.pop() if len(carrying) == 1 else "mixed"

    def switch(self, to, steps=None, step_pause=0, drain_timeout=0):
        self.switched.append((to, list(steps), step_pause, drain_timeout))
        for name in self.weights_now:
            self.weights_now[name] = 100 if name.endswith(to) else 0
        return {
            "steps": [{"new": s, "old": 100 - s} for s in steps],
            "drain": {"color": "x", "drained": True, "sessions_left": 0, "waited": 0},
        }

    def persist(self):
        self.persisted += 1
        return []


def _params(**kw):
    params = {
        "service": "orders",
        "to": "green",
        "steps": [100],
        "step_pause": 0,
        "drain_timeout": 0,
        "lock_timeout": 1,
        "operator": "alice",
        "versions": None,
        "release": None,
        "history_keep": 3,
    }
    params.update(kw)
    return params


def test_flip_moves_traffic_records_history_and_persists(tmp_path):
    store = StateStore(str(tmp_path))
    backend = FakeBackend(live="blue")
    warnings = []
    result = run_flip(backend, store, _params(versions={"blue": "1.0.0", "green": "1.1.0"}), warn=warnings.append)
    assert result["changed"] is True
    assert (result["from"], result["to"]) == ("blue", "green")
    assert backend.switched == [("green", [100], 0, 0)]
    assert backend.persisted == 1
    state = store.load("orders")
    assert state["live"] == "green"
    assert state["versions"] == {"blue": "1.0.0", "green": "1.1.0"}
    assert [(r["from"], r["to"], r["operator"], r["balancer"]) for r in state["history"]] == [
        ("blue", "green", "alice", "fake")
    ]
    assert result["diff"]["before"]["live"] == "blue" and result["diff"]["after"]["live"] == "green"
    assert result["weights"] == {"app1-blue": 0, "app1-green": 100, "app2-blue": 0, "app2-green": 100}
    assert warnings == []
    # the lock file exists but is not held any more
    ServiceLock(str(tmp_path), "orders", timeout=0).acquire().release()


def test_flip_to_live_color_is_ok_not_changed(tmp_path):
    store = StateStore(str(tmp_path))
    backend = FakeBackend(live="blue")
    result = run_flip(backend, store, _params(to="blue"))
    assert result["changed"] is False
    assert backend.switched == []
    assert not os.path.exists(store.path("orders"))  # nothing written for a no-op

    run_flip(backend, store, _params(to="green"))
    result = run_flip(backend, store, _params(to="green"))
    assert result["changed"] is False
    assert len(store.load("orders")["history"]) == 1


def test_gate_refuses_unhealthy_target_and_leaves_traffic(tmp_path):
    store = StateStore(str(tmp_path))
    backend = FakeBackend(live="blue", healthy={"blue": True, "green": False})
    with pytest.raises(HealthGateError) as info:
        run_flip(backend, store, _params(to="green"))
    assert "refusing to flip orders to green" in info.value.msg
    assert "app1-green DOWN (L4CON Connection refused)" in info.value.msg
    assert "Traffic stays on blue" in info.value.msg
    assert backend.switched == []
    assert not os.path.exists(store.path("orders"))


def test_check_mode_touches_nothing(tmp_path):
    state_dir = tmp_path / "bg"
    store = StateStore(str(state_dir))
    backend = FakeBackend(live="blue")
    result = run_flip(backend, store, _params(steps=[10, 50, 100]), check_mode=True)
    assert result["changed"] is True
    assert result["plan"] == [{"new": 10, "old": 90}, {"new": 50, "old": 50}, {"new": 100, "old": 0}]
    assert result["record"]["to"] == "green"
    assert backend.switched == [] and backend.persisted == 0
    assert not state_dir.exists()  # no state, no lock file, not even the directory


def test_check_mode_still_runs_the_gate(tmp_path):
    backend = FakeBackend(live="blue", healthy={"blue": True, "green": False})
    with pytest.raises(HealthGateError):
        run_flip(backend, StateStore(str(tmp_path)), _params(), check_mode=True)


def test_rollback_to_previous_works_when_new_color_is_dead(tmp_path):
    store = StateStore(str(tmp_path))
    backend = FakeBackend(live="blue")
    run_flip(backend, store, _params(to="green", versions={"blue": "1.0.0", "green": "1.1.0"}))
    backend.healthy["green"] = False  # the new release crashed
    result = run_flip(backend, store, _params(to="previous", operator="bob"))
    assert (result["from"], result["to"], result["changed"]) == ("green", "blue", True)
    history = store.load("orders")["history"]
    assert [(r["from"], r["to"], r["operator"]) for r in history] == [
        ("blue", "green", "alice"),
        ("green", "blue", "bob"),
    ]


def test_rollback_to_release(tmp_path):
    store = StateStore(str(tmp_path))
    backend = FakeBackend(live="blue")
    run_flip(backend, store, _params(to="green", versions={"blue": "1.0.0", "green": "1.1.0"}))
    result = run_flip(backend, store, _params(to="release", release="1.0.0"))
    assert result["to"] == "blue"
    assert result["versions"] == {"blue": "1.0.0", "green": "1.1.0"}


def test_history_is_capped(tmp_path):
    store = StateStore(str(tmp_path))
    backend = FakeBackend(live="blue")
    for color in ["green", "blue", "green", "blue", "green"]:
        run_flip(backend, store, _params(to=color))
    history = store.load("orders")["history"]
    assert len(history) == 3
    assert history[-1]["to"] == "green"


def test_drift_is_reported_and_state_corrected(tmp_path):
    store = StateStore(str(tmp_path))
    store.save("orders", {"service": "orders", "live": "blue", "versions": {}, "history": []})
    backend = FakeBackend(live="green")  # someone flipped by hand
    warnings = []
    result = run_flip(backend, store, _params(to="green"), warn=warnings.append)
    assert result["drift"] is True and result["changed"] is True
    assert backend.switched == []  # no traffic moved
    assert store.load("orders")["live"] == "green"
    assert "balancer sends traffic to green" in warnings[0]


def test_flip_refuses_while_locked(tmp_path):
    store = StateStore(str(tmp_path))
    held = ServiceLock(str(tmp_path), "orders").acquire()
    try:
        with pytest.raises(LockTimeoutError, match="pid %d" % os.getpid()):
            run_flip(FakeBackend(), store, _params(lock_timeout=0))
    finally:
        held.release()


def test_steps_need_a_backend_that_supports_them(tmp_path):
    backend = FakeBackend()
    backend.supports_steps = False
    with pytest.raises(BlueGreenError, match="gradual steps need balancer=haproxy"):
        run_flip(backend, StateStore(str(tmp_path)), _params(steps=[10, 100]))


def test_describe_service(tmp_path):
    store = StateStore(str(tmp_path))
    backend = FakeBackend(live="blue", healthy={"blue": True, "green": False})
    view = describe_service(backend, store, "orders")
    assert view["live"] == "blue" and view["state_live"] == "blue" and view["drift"] is False
    assert view["health"]["blue"]["healthy"] is True
    assert view["health"]["green"] == {
        "healthy": False,
        "up": 0,
        "total": 2,
        "servers": view["health"]["green"]["servers"],
    }
