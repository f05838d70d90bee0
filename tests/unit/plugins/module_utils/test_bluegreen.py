"""Shared blue/green logic: state store, lock, history, plans, the flip decision, real backends."""

from __future__ import annotations

import json
import multiprocessing
import os
import threading
import time

import pytest
from ansible_collections.msa.platform.plugins.module_utils import _atomic_file as atomic_file
from ansible_collections.msa.platform.plugins.module_utils._bluegreen import (
    BACKENDS,
    BlueGreenError,
    HAProxyBackend,
    HealthGateError,
    LockTimeoutError,
    NginxBackend,
    ServiceLock,
    StateStore,
    TrafficBackend,
    UnknownServiceError,
    describe_service,
    get_backend,
    history_record,
    register_backend,
    resolve_target,
    run_flip,
    weight_plan,
)

# ---- state store -----------------------------------------------------------------------


def test_missing_state_means_blue(tmp_path):
    store = StateStore(str(tmp_path / "bg"))
    assert store.load("orders") == {"service": "orders", "live": "blue", "versions": {}, "history": []}
    assert store.known_services() == []


def test_state_round_trip_mode_and_no_temp_left(tmp_path):
    store = StateStore(str(tmp_path / "bg"))
    doc = {
        "service": "orders",
        "live": "green",
        "versions": {"blue": "1.0.0", "green": "1.1.0"},
        "history": [history_record("alice", "haproxy", "blue", "green", {"blue": "1.0.0", "green": "1.1.0"})],
    }
    path = store.save("orders", doc)
    assert path == str(tmp_path / "bg" / "orders.json")
    assert oct(os.stat(path).st_mode & 0o777) == "0o640"
    assert store.load("orders") == doc
    with open(path) as handle:
        assert json.load(handle)["live"] == "green"  # plain JSON, as the roles read it
    assert sorted(os.listdir(tmp_path / "bg")) == ["orders.json"]
    assert store.known_services() == ["orders"]


def test_state_save_is_atomic(tmp_path, monkeypatch):
    """A crash while writing leaves the old file intact and no temp file behind."""
    store = StateStore(str(tmp_path))
    store.save("orders", {"service": "orders", "live": "blue", "versions": {}, "history": []})

    def boom(*_args, **_kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(atomic_file.os, "fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        store.save("orders", {"service": "orders", "live": "green", "versions": {}, "history": []})
    monkeypatch.undo()
    assert store.load("orders")["live"] == "blue"
    assert os.listdir(tmp_path) == ["orders.json"]


def test_corrupt_state_is_refused(tmp_path):
    (tmp_path / "orders.json").write_text("{not json")
    with pytest.raises(BlueGreenError, match="not valid JSON"):
        StateStore(str(tmp_path)).load("orders")
    (tmp_path / "orders.json").write_text('{"live": "purple"}')
    with pytest.raises(BlueGreenError, match="does not look like"):
        StateStore(str(tmp_path)).load("orders")


@pytest.mark.parametrize("name", ["../etc/passwd", "Orders", "", "a" * 40, "1abc", None])
def test_service_names_are_validated(tmp_path, name):
    with pytest.raises(BlueGreenError, match="invalid service name"):
        StateStore(str(tmp_path)).path(name)


def test_history_record_shape():
    record = history_record("alice", "haproxy", "blue", "green", {"blue": "1.0.0"}, when="2026-11-22T03:00:00Z")
    assert record == {
        "time": "2026-11-22T03:00:00Z",
        "operator": "alice",
        "balancer": "haproxy",
        "from": "blue",
        "to": "green",
        "versions": {"blue": "1.0.0"},
    }
    assert history_record("bob", "nginx", "green", "blue", {})["time"].endswith("Z")


# ---- lock ------------------------------------------------------------------------------


def _hold_lock(state_dir, ready, release):
    with ServiceLock(state_dir, "orders", timeout=5):
        ready.set()
        release.wait(10)


def test_lock_contention_times_out_naming_the_holder(tmp_path):
    ready, release = multiprocessing.Event(), multiprocessing.Event()
    holder = multiprocessing.Process(target=_hold_lock, args=(str(tmp_path), ready, release))
    holder.start()
    try:
        assert ready.wait(10)
        start = time.monotonic()
        with pytest.raises(LockTimeoutError) as info:
            ServiceLock(str(tmp_path), "orders", timeout=0.5, poll=0.05).acquire()
        assert 0.4 < time.monotonic() - start < 3
        assert "pid %d" % holder.pid in info.value.msg
        assert info.value.details["holder_pid"] == str(holder.pid)
    finally:
        release.set()
        holder.join(10)
    # Once the holder is gone the lock is free again.
    with ServiceLock(str(tmp_path), "orders", timeout=1) as lock, open(lock.path) as handle:
        assert handle.read().strip() == str(os.getpid())


def test_lock_waits_for_a_short_holder(tmp_path):
    first = ServiceLock(str(tmp_path), "orders", timeout=1).acquire()
    timer = threading.Timer(0.3, first.release)
    timer.start()
    second = ServiceLock(str(tmp_path), "orders", timeout=5, poll=0.05).acquire()
    second.release()
    timer.join()


# ---- plans and targets ----------------------------------------------------------------


def test_weight_plan():
    assert weight_plan([100]) == [(100, 0)]
    assert weight_plan(None) == [(100, 0)]
    assert weight_plan([10, 50, 100]) == [(10, 90), (50, 50), (100, 0)]


@pytest.mark.parametrize(
    ("steps", "match"),
    [
        ([50], "last step must be 100"),
        ([50, 10, 100], "must increase"),
        ([0, 100], "between 1 and 100"),
        ([10, 150], "between 1 and 100"),
        ([100, 100], "must increase"),
    ],
)
def test_weight_plan_rejects(steps, match):
    with pytest.raises(BlueGreenError, match=match):
        weight_plan(steps)


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


# ---- registry -------------------------------------------------------------------------


def test_registry_and_unknown_balancer():
    assert set(BACKENDS) >= {"haproxy", "nginx"}
    with pytest.raises(BlueGreenError, match="unknown balancer 'consul'; known balancers: haproxy, nginx"):
        get_backend("consul", "orders", {})

    class Consul(TrafficBackend):
        name = "consul"

    register_backend("consul", Consul)
    try:
        assert isinstance(get_backend("consul", "orders", {}), Consul)
    finally:
        BACKENDS.pop("consul")
    with pytest.raises(TypeError):
        register_backend("bad", object)


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


# ---- the real backends ----------------------------------------------------------------


def _haproxy_options(lab, **kw):
    options = {
        "haproxy_socket": lab.socket,
        "haproxy_timeout": 5.0,
        "haproxy_state_file": lab.state_file,
        "hosts": None,
    }
    options.update(kw)
    return options


def _wait_up(wait, backend):
    wait(lambda: all(s["healthy"] for s in backend.servers()), what="all servers UP")


def test_haproxy_backend_flip_with_steps_and_persist(haproxy_lab, tmp_path, wait):
    backend = HAProxyBackend("orders", _haproxy_options(haproxy_lab, hosts=["app1", "app2"]))
    _wait_up(wait, backend)
    assert backend.known_services() == ["orders"]
    assert backend.live_color() == "blue"
    seen = []
    backend.sleep = lambda _s: seen.append(backend.weights())
    store = StateStore(str(tmp_path / "bg"))
    result = run_flip(backend, store, _params(steps=[10, 50, 100], versions={"green": "1.1.0"}))
    assert result["changed"] is True
    assert seen[0] == {"app1-blue": 90, "app1-green": 10, "app2-blue": 90, "app2-green": 10}
    assert seen[1] == {"app1-blue": 50, "app1-green": 50, "app2-blue": 50, "app2-green": 50}
    assert backend.live_color() == "green"
    assert result["drain"]["drained"] is True
    assert {haproxy_lab.request() for _attempt in range(6)} == {"green"}
    assert store.load("orders")["live"] == "green"
    # persisted: a restart (what a reload does) keeps green live
    haproxy_lab.restart()
    assert HAProxyBackend("orders", _haproxy_options(haproxy_lab)).live_color() == "green"


def test_haproxy_backend_typo_and_unknown_service(haproxy_lab):
    with pytest.raises(UnknownServiceError, match="known services: orders"):
        HAProxyBackend("ordres", _haproxy_options(haproxy_lab)).servers()
    with pytest.raises(UnknownServiceError, match="has no server app3-blue, app3-green"):
        HAProxyBackend("orders", _haproxy_options(haproxy_lab, hosts=["app1", "app3"])).servers()


def test_haproxy_backend_gate_on_real_health(haproxy_lab, color_apps, tmp_path, wait):
    backend = HAProxyBackend("orders", _haproxy_options(haproxy_lab))
    _wait_up(wait, backend)
    color_apps[("app2", "green")].healthy = False
    wait(lambda: not backend.health("green")["healthy"], what="app2-green DOWN")
    with pytest.raises(HealthGateError, match="app2-green DOWN"):
        run_flip(backend, StateStore(str(tmp_path)), _params())
    assert backend.live_color() == "blue"


def test_haproxy_backend_aborts_mid_shift(haproxy_lab, color_apps, tmp_path, wait):
    backend = HAProxyBackend("orders", _haproxy_options(haproxy_lab))
    _wait_up(wait, backend)

    def pause(_seconds):
        # the new color dies during the first pause
        color_apps[("app1", "green")].healthy = False
        wait(lambda: not backend.health("green")["healthy"], what="app1-green DOWN")

    backend.sleep = pause
    store = StateStore(str(tmp_path))
    with pytest.raises(HealthGateError, match="aborted the shift to green at 10%"):
        run_flip(backend, store, _params(steps=[10, 100]))
    assert backend.weights() == {"app1-blue": 100, "app1-green": 0, "app2-blue": 100, "app2-green": 0}
    assert not os.path.exists(store.path("orders"))


def test_haproxy_backend_drain_is_bounded(haproxy_lab, color_apps, wait):
    backend = HAProxyBackend("orders", _haproxy_options(haproxy_lab))
    _wait_up(wait, backend)
    for app in color_apps.values():
        app.slow = 3.0
    worker = threading.Thread(target=lambda: haproxy_lab.request("/slow"), daemon=True)
    worker.start()
    wait(lambda: backend._sessions("blue") > 0, what="a session on blue")
    start = time.monotonic()
    result = backend.switch("green", steps=[100], drain_timeout=0.5)
    assert result["drain"]["drained"] is False
    assert result["drain"]["sessions_left"] >= 1
    assert time.monotonic() - start < 2.5
    drained = backend.drain("blue", 10)
    assert drained["drained"] is True
    worker.join(5)


def test_haproxy_backend_socket_missing(tmp_path):
    backend = HAProxyBackend("orders", {"haproxy_socket": str(tmp_path / "none.sock")})
    with pytest.raises(BlueGreenError, match="does not exist: is haproxy running"):
        backend.servers()


def test_nginx_backend_flip_and_back(nginx_lab, runner, color_apps, tmp_path, wait):
    options = {
        "nginx_upstream_dir": str(nginx_lab.upstream_dir),
        "ports": nginx_lab.ports,
        "hosts": None,
        "health_path": "/health",
        "health_timeout": 2.0,
        "nginx_binary": nginx_lab.binary,
        "nginx_config": str(nginx_lab.conf),
        "nginx_reload": "signal",
    }
    backend = NginxBackend("orders", options, run_command=runner)
    store = StateStore(str(tmp_path))
    assert backend.known_services() == ["orders"]
    assert backend.live_color() == "blue"
    with pytest.raises(BlueGreenError, match="gradual steps need balancer=haproxy"):
        run_flip(backend, store, _params(steps=[50, 100]))
    result = run_flip(backend, store, _params(to="green", drain_timeout=10))
    assert result["drain"]["drained"] is True
    assert result["drain"]["color"] == "blue"
    wait(lambda: nginx_lab.serves("green"), what="green via nginx")
    color_apps[("app1", "green")].healthy = False
    color_apps[("app1", "green")].stop()  # the new color is dead; rollback still works
    result = run_flip(backend, store, _params(to="previous"))
    assert result["to"] == "blue"
    wait(lambda: nginx_lab.serves("blue"), what="blue via nginx")
    # and the gate refuses the dead color
    with pytest.raises(HealthGateError, match="refusing to flip orders to green"):
        run_flip(backend, store, _params(to="green"))
    with pytest.raises(UnknownServiceError, match="known services: orders"):
        NginxBackend("payments", options, run_command=runner).servers()


def test_nginx_backend_through_haproxy_is_refused(tmp_path):
    (tmp_path / "orders.conf").write_text("upstream msa_orders {\n    server lb1:9101;\n}\n")
    backend = NginxBackend("orders", {"nginx_upstream_dir": str(tmp_path), "ports": {"blue": 8101, "green": 8102}})
    with pytest.raises(BlueGreenError, match="goes through HAProxy"):
        backend.live_color()
