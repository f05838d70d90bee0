"""The real backends: HAProxy and NGINX on loopback."""

from __future__ import annotations

import json
import os
import threading
import time

import pytest
from ansible_collections.msa.platform.plugins.module_utils._bluegreen_backends import (
    BACKENDS,
    HAProxyBackend,
    NginxBackend,
    TrafficBackend,
    get_backend,
    register_backend,
)
from ansible_collections.msa.platform.plugins.module_utils._bluegreen_common import (
    BackendError,
    BlueGreenError,
    HealthGateError,
    UnknownServiceError,
)
from ansible_collections.msa.platform.plugins.module_utils._bluegreen_decision import run_flip
from ansible_collections.msa.platform.plugins.module_utils._bluegreen_state import StateStore
from conftest import HAProxyLab


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


def _haproxy_options(lab, **kw):
    options = {
        "haproxy_socket": lab.socket,
        "haproxy_timeout": 5.0,
        "haproxy_state_file": lab.state_file,
        "hosts": None,
    }
    options.update(kw)
    return options


def _nginx_options(lab, **kw):
    options = {
        "nginx_upstream_dir": str(lab.upstream_dir),
        "ports": lab.ports,
        "hosts": None,
        "health_path": "/health",
        "health_timeout": 2.0,
        "nginx_binary": lab.binary,
        "nginx_config": str(lab.conf),
        "nginx_reload": "signal",
    }
    options.update(kw)
    return options


BLUE = {"app1-blue": 100, "app1-green": 0, "app2-blue": 100, "app2-green": 0}


def _wait_up(wait, backend):
    wait(lambda: all(s["healthy"] for s in backend.servers()), what="all servers UP")


def _saved_weights(path):
    weights = {}
    with open(path) as handle:
        for line in handle.read().splitlines()[2:]:
            fields = line.split()
            if not fields:
                continue
            weights[fields[3]] = int(fields[7])
    return weights


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


# ---- the real backends ----------------------------------------------------------------


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


def test_haproxy_gate_waits_for_the_target_color(haproxy_lab, color_apps, tmp_path, wait):
    backend = HAProxyBackend("orders", _haproxy_options(haproxy_lab))
    _wait_up(wait, backend)
    color_apps[("app2", "green")].healthy = False
    wait(lambda: not backend.health("green")["healthy"], what="app2-green DOWN")
    started = time.monotonic()
    with pytest.raises(HealthGateError, match="app2-green DOWN"):
        run_flip(backend, StateStore(str(tmp_path)), _params(health_wait=2))
    assert time.monotonic() - started >= 2  # it waited before refusing
    threading.Timer(1.0, lambda: setattr(color_apps[("app2", "green")], "healthy", True)).start()
    result = run_flip(backend, StateStore(str(tmp_path)), _params(health_wait=20))
    assert result["changed"] and backend.live_color() == "green"
    assert result["health"]["healthy"]


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


def test_haproxy_falls_back_to_the_idle_color_when_live_is_down(haproxy_bin, tmp_path, color_apps, wait):
    lab = HAProxyLab(haproxy_bin, tmp_path / "haproxy", color_apps, fallback=True).start()
    try:
        backend = HAProxyBackend("orders", _haproxy_options(lab))
        quiet = {"configured": True, "active": False, "serving": None, "served": 0, "last_served_ago": None}
        assert backend.fallback() == quiet
        assert lab.request() == "blue"
        for (_host, color), app in color_apps.items():
            if color == "blue":
                app.healthy = False
        wait(lambda: backend.fallback()["active"], what="fallback to green")
        assert backend.fallback()["serving"] == "green"
        assert backend.live_color() == "blue"  # the weights did not move: nobody flipped
        assert {lab.request() for _attempt in range(6)} == {"green"}
        during = backend.fallback()
        assert during["served"] >= 6 and during["last_served_ago"] is not None
        for app in color_apps.values():
            app.healthy = True
        wait(lambda: not backend.fallback()["active"], what="blue back")
        wait(lambda: lab.request() == "blue", what="traffic back on blue")
        # Over, and still on record: how many requests the fallback carried, and when last.
        after = backend.fallback()
        assert after["active"] is False and after["serving"] is None
        assert after["served"] == during["served"]
        assert 0 <= after["last_served_ago"] < 60
    finally:
        lab.stop()


def test_haproxy_without_fallback_reports_none(haproxy_lab, color_apps, wait):
    backend = HAProxyBackend("orders", _haproxy_options(haproxy_lab))
    for (_host, color), app in color_apps.items():
        if color == "blue":
            app.healthy = False
    wait(lambda: not backend.health("blue")["healthy"], what="blue down")
    assert backend.fallback() == {
        "configured": False,
        "active": False,
        "serving": None,
        "served": 0,
        "last_served_ago": None,
    }


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


# ---- every failure after the weights changed puts them back ------------------------------


def test_haproxy_failure_while_draining_puts_weights_back(haproxy_lab, tmp_path, wait):
    backend = HAProxyBackend("orders", _haproxy_options(haproxy_lab))
    _wait_up(wait, backend)

    def socket_gone(color, timeout):
        raise BackendError("cannot talk to HAProxy on %s: Connection reset" % haproxy_lab.socket)

    backend.drain = socket_gone
    store = StateStore(str(tmp_path))
    with pytest.raises(BlueGreenError) as info:
        run_flip(backend, store, _params(steps=[10, 100]))
    assert "Connection reset" in info.value.msg
    assert "traffic was put back on blue" in info.value.msg
    assert backend.weights() == BLUE
    assert not os.path.exists(store.path("orders"))


def test_haproxy_state_file_write_failure_puts_weights_back(haproxy_lab, tmp_path, wait, monkeypatch):
    backend = HAProxyBackend("orders", _haproxy_options(haproxy_lab))
    _wait_up(wait, backend)
    store = StateStore(str(tmp_path))

    def disk_full(service, data):
        raise OSError(28, "No space left on device", store.path(service))

    monkeypatch.setattr(store, "save", disk_full)
    with pytest.raises(BlueGreenError) as info:
        run_flip(backend, store, _params())
    msg = info.value.msg
    assert store.path("orders") in msg and "No space left on device" in msg
    assert "traffic was put back on blue" in msg and "IS now" not in msg
    assert backend.weights() == BLUE
    # the saved server state matches again, so a reload keeps blue too
    assert _saved_weights(haproxy_lab.state_file) == BLUE


def test_haproxy_unexpected_error_after_switch_puts_weights_back(haproxy_lab, tmp_path, wait, monkeypatch):
    backend = HAProxyBackend("orders", _haproxy_options(haproxy_lab))
    _wait_up(wait, backend)

    def bug():
        raise IndexError("list index out of range")  # a bug, not an operator error

    monkeypatch.setattr(backend, "persist", bug)
    with pytest.raises(IndexError) as info:
        run_flip(backend, StateStore(str(tmp_path)), _params())
    assert backend.weights() == BLUE
    assert info.value.put_back_note == "traffic was put back on blue"  # for the module's catch-all


# ---- NGINX: every failure after the upstream file was written restores it ----------------


def test_nginx_failure_after_reload_restores_file_and_traffic(nginx_lab, runner, tmp_path, wait):
    path = nginx_lab.upstream_dir / "orders.conf"
    before = path.read_text()
    backend = NginxBackend("orders", _nginx_options(nginx_lab), run_command=runner)

    def broken_drain(color, timeout):
        raise RuntimeError("boom")

    backend.drain = broken_drain
    store = StateStore(str(tmp_path))
    with pytest.raises(RuntimeError):
        run_flip(backend, store, _params(drain_timeout=1))
    assert path.read_text() == before
    wait(lambda: nginx_lab.serves("blue"), what="blue via nginx again")
    assert not os.path.exists(store.path("orders"))


def test_nginx_state_file_write_failure_restores_file(nginx_lab, runner, tmp_path, wait, monkeypatch):
    path = nginx_lab.upstream_dir / "orders.conf"
    before = path.read_text()
    backend = NginxBackend("orders", _nginx_options(nginx_lab), run_command=runner)
    store = StateStore(str(tmp_path))

    def disk_full(service, data):
        raise OSError(28, "No space left on device", store.path(service))

    monkeypatch.setattr(store, "save", disk_full)
    with pytest.raises(BlueGreenError, match="traffic was put back on blue"):
        run_flip(backend, store, _params(drain_timeout=1))
    assert path.read_text() == before
    wait(lambda: nginx_lab.serves("blue"), what="blue via nginx again")


@pytest.mark.parametrize("binary", ["missing", "not-executable"])
def test_nginx_binary_problem_is_found_before_the_file_changes(nginx_lab, runner, tmp_path, binary):
    path = nginx_lab.upstream_dir / "orders.conf"
    before = path.read_text()
    nginx = tmp_path / "bin" / "nginx"
    if binary == "not-executable":
        nginx.parent.mkdir()
        nginx.write_text("#!/bin/sh\nexit 0\n")
        nginx.chmod(0o644)
    backend = NginxBackend("orders", _nginx_options(nginx_lab, nginx_binary=str(nginx)), run_command=runner)
    with pytest.raises(BlueGreenError) as info:
        run_flip(backend, StateStore(str(tmp_path / "bg")), _params())
    assert "nginx_binary" in info.value.msg and str(nginx) in info.value.msg
    assert path.read_text() == before
    assert nginx_lab.serves("blue")
    assert json.dumps(info.value.details)  # serialisable for fail_json
