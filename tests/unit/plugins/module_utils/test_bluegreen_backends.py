"""The real backends: HAProxy and NGINX on loopback."""

from __future__ import annotations

import importlib
import json
import os
import threading
import time

import pytest
from ansible_collections.msa.platform.plugins.module_utils._bluegreen_backends import (
    BACKENDS,
    VACANT_STATUS,
    HAProxyBackend,
    NginxBackend,
    TrafficBackend,
    get_backend,
    register_backend,
    server_name_parts,
)
from ansible_collections.msa.platform.plugins.module_utils._bluegreen_common import (
    BackendError,
    BlueGreenError,
    HealthGateError,
    UnknownServiceError,
)
from ansible_collections.msa.platform.plugins.module_utils._bluegreen_decision import run_flip
from ansible_collections.msa.platform.plugins.module_utils._bluegreen_state import StateStore
from conftest import ColorApp, HAProxyDiscoveryLab, HAProxyLab


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
    # The Consul backend registers itself when imported, as the modules' glue (_bluegreen) does.
    importlib.import_module("ansible_collections.msa.platform.plugins.module_utils._bluegreen_consul")
    assert set(BACKENDS) >= {"haproxy", "nginx", "consul"}
    with pytest.raises(BlueGreenError, match="unknown balancer 'istio'; known balancers: consul, haproxy, nginx"):
        get_backend("istio", "orders", {})

    class Istio(TrafficBackend):
        name = "istio"

    register_backend("istio", Istio)
    try:
        assert isinstance(get_backend("istio", "orders", {}), Istio)
    finally:
        BACKENDS.pop("istio")
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


# ---- HAProxy server-template slots filled from DNS SRV records (Consul DNS) ----------------


@pytest.mark.parametrize(
    ("name", "parts"),
    [
        ("app1-blue", ("app1", "blue", False)),
        ("my-host-green", ("my-host", "green", False)),
        ("blue-3", (None, "blue", True)),
        ("green-12", (None, "green", True)),
        ("blue-0", (None, None, False)),  # HAProxy numbers slots from 1
        ("blue-03", (None, None, False)),  # and does not pad
        ("orders", (None, None, False)),
        ("-blue", (None, None, False)),
    ],
)
def test_server_name_parts(name, parts):
    assert server_name_parts(name) == parts


BLUE_SRV = HAProxyDiscoveryLab.srv_name("blue")
GREEN_SRV = HAProxyDiscoveryLab.srv_name("green")
SLOTS = ["%s-%d" % (color, n) for color in ("blue", "green") for n in range(1, 5)]


class Discovery:
    """Instances (ColorApps, one loopback address each: 127.0.0.<n>) registered in a DNS server,
    and the HAProxy that fills its slots from it."""

    def __init__(self, binary, tmp, dns):
        self.binary = binary
        self.tmp = tmp
        self.dns = dns
        self.apps = []
        self.lab = None

    def register(self, color, n):
        """Start an instance of ``color`` on 127.0.0.<n> and put it in DNS; it answers ``<color>@<n>``."""
        app = ColorApp(color, address="127.0.0.%d" % n, label="%s@%d" % (color, n))
        self.apps.append(app)
        self.dns.add(HAProxyDiscoveryLab.srv_name(color), app.address, app.port)
        return app

    def deregister(self, app):
        """Take it out of DNS only: it keeps running and answering."""
        self.dns.remove(HAProxyDiscoveryLab.srv_name(app.color), app.address, app.port)

    def start(self, **kw):
        self.lab = HAProxyDiscoveryLab(self.binary, self.tmp, self.dns, **kw).start()
        return self.lab

    def backend(self, **kw):
        return HAProxyBackend("orders", _haproxy_options(self.lab, **kw))

    def close(self):
        if self.lab:
            self.lab.stop()
        for app in self.apps:
            app.stop()


@pytest.fixture
def discovery(haproxy_bin, tmp_path, dns_server):
    found = Discovery(haproxy_bin, tmp_path / "haproxy", dns_server)
    yield found
    found.close()


def _addr(app):
    return "%s:%d" % (app.address, app.port)


def _wait_filled(wait, backend, apps, timeout=5.0):
    """Until the slots DNS filled hold exactly ``apps``, all passing their checks; returns the servers."""
    want = sorted(_addr(app) for app in apps)
    seen = {}

    def filled():
        seen["servers"] = backend.servers()
        slots = [s for s in seen["servers"] if not s["vacant"]]
        return sorted(s["host"] for s in slots) == want and all(s["healthy"] for s in slots)

    wait(filled, timeout=timeout, what="slots filled by %s" % ", ".join(want))
    return seen["servers"]


def test_haproxy_slots_filled_from_dns(discovery, wait):
    blue = [discovery.register("blue", 2), discovery.register("blue", 3)]
    green = discovery.register("green", 4)
    lab = discovery.start()
    backend = discovery.backend()
    servers = _wait_filled(wait, backend, [*blue, green])
    assert discovery.dns.asked(BLUE_SRV) and discovery.dns.asked(GREEN_SRV)  # HAProxy did ask the DNS server
    by_name = {s["name"]: s for s in servers}
    assert sorted(by_name) == sorted(SLOTS)
    filled = {name for name, s in by_name.items() if not s["vacant"]}
    assert {by_name[name]["host"] for name in filled if name.startswith("blue-")} == {_addr(app) for app in blue}
    assert {by_name[name]["host"] for name in filled if name.startswith("green-")} == {_addr(green)}
    for name, server in by_name.items():
        assert server["discovered"] is True
        if name in filled:
            assert server["healthy"] and server["status"] == "UP", server
        else:
            assert server["status"].startswith(VACANT_STATUS) and not server["healthy"], server
            assert server["host"] == "", server
        assert server["weight"] == (100 if name.startswith("blue-") else 0), server
    assert len(filled) == 3
    health = backend.health("blue", servers)
    assert (health["healthy"], health["up"], health["total"]) == (True, 2, 2)
    assert {s["host"] for s in health["servers"]} == {_addr(app) for app in blue}
    assert backend.live_color(servers) == "blue"
    assert backend.known_services() == ["orders"]
    # the green instance passes its checks, weight 0: no request reaches it
    assert {lab.request() for _attempt in range(8)} == {"blue@2", "blue@3"}


def test_haproxy_flip_of_slots_then_instances_come_and_go(discovery, tmp_path, wait):
    discovery.register("blue", 2)
    first_green = discovery.register("green", 3)
    lab = discovery.start()
    backend = discovery.backend()
    _wait_filled(wait, backend, discovery.apps)
    seen = []
    backend.sleep = lambda _s: seen.append(backend.weights())
    store = StateStore(str(tmp_path / "bg"))
    result = run_flip(backend, store, _params(steps=[50, 100]))
    assert result["changed"] is True
    # Every slot of a color moves, the vacant ones too: an instance that comes later gets their weight.
    assert seen == [{name: 50 for name in SLOTS}]  # and the gate between the steps passed on green-1 alone
    assert backend.weights() == {name: (100 if name.startswith("green-") else 0) for name in SLOTS}
    assert backend.live_color() == "green"
    assert {lab.request() for _attempt in range(6)} == {"green@3"}
    assert store.load("orders")["live"] == "green"

    # A new green instance, registered in DNS only: in traffic within seconds, no reload.
    pid = lab.proc.pid
    started = time.monotonic()
    second_green = discovery.register("green", 4)
    wait(lambda: lab.request() == "green@4", timeout=5, interval=0.05, what="the new instance in traffic")
    took_in = time.monotonic() - started
    slot = next(s for s in backend.servers() if s["host"] == _addr(second_green))
    assert slot["color"] == "green" and slot["weight"] == 100 and slot["healthy"], slot
    assert {lab.request() for _attempt in range(8)} == {"green@3", "green@4"}

    # Out of DNS (it still runs and answers): out of traffic.
    started = time.monotonic()
    discovery.deregister(first_green)
    wait(
        lambda: all(s["host"] != _addr(first_green) for s in backend.servers()),
        timeout=5,
        what="the deregistered instance's slot vacant",
    )
    took_out = time.monotonic() - started
    served = first_green.served
    assert [lab.request() for _attempt in range(8)] == ["green@4"] * 8
    assert first_green.served == served
    assert lab.proc.pid == pid and lab.proc.poll() is None
    assert took_in < 5 and took_out < 5
    health = backend.health("green")
    assert (health["healthy"], health["total"]) == (True, 1)

    # The state file keeps the weights of the vacant slots: after a reload a new instance still lands on green.
    lab.restart()
    assert backend.weights() == {name: (100 if name.startswith("green-") else 0) for name in SLOTS}
    assert backend.live_color() == "green"


def test_haproxy_gate_refuses_a_color_with_no_instance_in_dns(discovery, tmp_path, wait):
    discovery.register("blue", 2)
    lab = discovery.start()
    backend = discovery.backend()
    servers = _wait_filled(wait, backend, discovery.apps)
    assert discovery.dns.asked(GREEN_SRV)  # asked, and answered NXDOMAIN
    assert all(s["vacant"] for s in servers if s["color"] == "green")
    health = backend.health("green")
    assert (health["healthy"], health["up"], health["total"], health["servers"]) == (False, 0, 0, [])
    before = backend.weights()
    store = StateStore(str(tmp_path / "bg"))
    with pytest.raises(HealthGateError, match="refusing to flip orders to green on haproxy: no servers of that color"):
        run_flip(backend, store, _params())
    assert backend.weights() == before == {name: (100 if name.startswith("blue-") else 0) for name in SLOTS}
    assert backend.live_color() == "blue"
    assert not os.path.exists(store.path("orders"))
    assert lab.request() == "blue@2"


def test_haproxy_hosts_option_filters_nothing_on_slots(discovery, tmp_path, wait):
    """docs/design/bluegreen.md: with discovery slots ``hosts`` filters nothing (any registered
    instance is the service's); it is not taken for a typo either, and the flip moves every slot."""
    discovery.register("blue", 2)
    discovery.register("green", 3)
    lab = discovery.start()
    every = _wait_filled(wait, discovery.backend(), discovery.apps)
    backend = discovery.backend(hosts=["app1", "no-such-host"])
    servers = backend.servers()
    assert [(s["name"], s["host"], s["vacant"]) for s in servers] == [
        (s["name"], s["host"], s["vacant"]) for s in every
    ]
    result = run_flip(backend, StateStore(str(tmp_path / "bg")), _params())
    assert result["changed"] is True
    assert backend.weights() == {name: (100 if name.startswith("green-") else 0) for name in SLOTS}
    assert {lab.request() for _attempt in range(4)} == {"green@3"}


def test_haproxy_slots_take_the_srv_weight_without_ignore_weight(discovery, wait):
    """Why the slots need ``resolve-opts ignore-weight``: HAProxy sets a filled slot's weight from
    the SRV record (Consul: weight 1, so HAProxy weight 1/256+1 = 1) at every resolution, over the
    configured weight and over a flip's runtime weight."""
    discovery.register("blue", 2)
    discovery.register("green", 3)
    lab = discovery.start(ignore_weight=False)
    backend = discovery.backend()
    servers = _wait_filled(wait, backend, discovery.apps)
    weights = backend.weights(servers)
    assert (weights["blue-1"], weights["green-1"], weights["blue-2"], weights["green-2"]) == (1, 1, 100, 0)
    assert backend.live_color(servers) == "mixed"
    wait(lambda: lab.request() == "green@3", timeout=2, what="the idle color in traffic")
