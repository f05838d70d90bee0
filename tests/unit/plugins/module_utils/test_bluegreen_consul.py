"""The Consul backend against a real Consul dev agent: the live query, the state in KV, the session
lock, the health gate from Consul's checks, put-back on failure, ACL errors, and a real HAProxy
that follows the live query through Consul DNS under load without a failed request."""

from __future__ import annotations

import contextlib
import json
import threading
import time
import urllib.error
import urllib.request
import uuid

import pytest
from ansible_collections.msa.platform.plugins.module_utils._bluegreen import option_problems
from ansible_collections.msa.platform.plugins.module_utils._bluegreen_common import (
    BlueGreenError,
    HealthGateError,
    LockTimeoutError,
    StateFileError,
)
from ansible_collections.msa.platform.plugins.module_utils._bluegreen_consul import (
    ConsulBackend,
    ConsulLock,
    query_name,
)
from ansible_collections.msa.platform.plugins.module_utils._bluegreen_decision import describe_service, run_flip
from ansible_collections.msa.platform.plugins.module_utils._consul_client import ConsulClient
from conftest import LOOPBACK, ColorApp, HAProxyLab, wait_for

pytest_plugins = ["ansible_collections.msa.platform.tests.unit.plugins.consul_server"]


class ConsulService:
    """Two blue and two green :class:`ColorApp` instances of one service (a name of its own per
    test), registered in the agent with an HTTP check on /health every second. As on two
    application hosts, blue-1 and green-1 share one address (127.0.0.2), blue-2 and green-2 another:
    Consul names an SRV target after the address, so the colors of a host share a target name."""

    def __init__(self, agent):
        self.agent = agent
        self.name = "svc-%s" % uuid.uuid4().hex[:8]
        self.haproxy_socket = None
        self.prefix = "msa/tests/%s" % self.name
        self.apps = {}
        for index in (1, 2):
            for color in ("blue", "green"):
                self.add("%s-%d" % (color, index), color, "127.0.0.%d" % (index + 1))

    def add(self, label, color, address):
        app = ColorApp(color, label=label, address=address)
        self.apps[label] = app
        self.agent.api(
            "agent/service/register",
            "PUT",
            {
                "ID": "%s-%s" % (self.name, label),
                "Name": self.name,
                "Tags": [color],
                "Address": address,
                "Port": app.port,
                "Check": {"HTTP": "http://%s:%d/health" % (address, app.port), "Interval": "1s"},
            },
        )
        return app

    def passing(self, color=None):
        entries = self.agent.api("health/service/%s?passing=true" % self.name) or []
        return [e for e in entries if color is None or color in e["Service"]["Tags"]]

    def wait_passing(self, count=4):
        wait_for(lambda: len(self.passing()) == count, timeout=20, what="%d passing instances" % count)

    def options(self, **consul):
        settings = {"host": self.agent.host, "port": self.agent.port, "prefix": self.prefix}
        settings.update(consul)
        # Where a balancer's HAProxy would be: a test that runs one points here at its socket.
        return {"consul": settings, "haproxy_socket": self.haproxy_socket}

    def backend(self, **consul):
        return ConsulBackend(self.name, self.options(**consul))

    def queries(self):
        """``{color: query}`` of the service's live queries as the agent has them."""
        names = {query_name(self.name, color): color for color in ("blue", "green")}
        return {names[q["Name"]]: q for q in self.agent.api("query") or [] if q["Name"] in names}

    def indexes(self):
        return {color: q["ModifyIndex"] for color, q in self.queries().items()}

    def serving(self):
        """The colors whose query answers instances; None when there is no query at all."""
        found = self.queries()
        if not found:
            return None
        return sorted(color for color, q in found.items() if q["Service"]["Tags"] == [color])

    def state(self):
        raw = self.agent.api("kv/%s/%s/state?raw=true" % (self.prefix, self.name), raw=True)
        return json.loads(raw) if raw else None

    def cleanup(self):
        for found in self.queries().values():
            self.agent.api("query/%s" % found["ID"], "DELETE")
        for label in self.apps:
            self.agent.api("agent/service/deregister/%s-%s" % (self.name, label), "PUT")
        self.agent.kv_delete_tree(self.prefix)
        for app in self.apps.values():
            with contextlib.suppress(OSError):
                app.stop()


@pytest.fixture
def service(consul):
    svc = ConsulService(consul)
    svc.wait_passing()
    yield svc
    svc.cleanup()


def _params(service, **kw):
    params = {
        "service": service.name,
        "to": "blue",
        "steps": [100],
        "drain_timeout": 0,
        "lock_timeout": 1,
        "health_wait": 0,
        "operator": "alice",
        "history_keep": 200,
    }
    params.update(kw)
    return params


def flip(service, **kw):
    backend = service.backend()
    return run_flip(backend, ConsulBackend.make_store(service.options()), _params(service, **kw))


def test_first_flip_creates_the_live_query_and_records_it(service):
    result = flip(service, to="blue", versions={"blue": "1.0.0"})
    assert result["changed"] and result["from"] == "none" and result["to"] == "blue"
    assert result["state_file"] == "consul:%s/%s/state" % (service.prefix, service.name)
    assert service.serving() == ["blue"]
    queries = service.queries()
    assert queries["green"]["Service"]["Tags"] == ["green", "!green"]
    for query in queries.values():
        assert query["Service"]["OnlyPassing"] is True and query["DNS"]["TTL"] == "0s"
    state = service.state()
    assert state["live"] == "blue" and state["versions"] == {"blue": "1.0.0"}
    assert [(r["balancer"], r["from"], r["to"], r["operator"]) for r in state["history"]] == [
        ("consul", "none", "blue", "alice")
    ]
    # The query answers the blue instances only.
    answer = service.agent.api("query/%s/execute" % queries["blue"]["ID"])
    assert sorted(n["Service"]["Port"] for n in answer["Nodes"]) == sorted(
        service.apps[label].port for label in ("blue-1", "blue-2")
    )
    assert service.agent.api("query/%s/execute" % queries["green"]["ID"])["Nodes"] == []
    # Again: nothing to do, nothing written.
    index = service.agent.api("kv/%s/%s/state" % (service.prefix, service.name))[0]["ModifyIndex"]
    again = flip(service, to="blue")
    assert again["changed"] is False
    assert service.agent.api("kv/%s/%s/state" % (service.prefix, service.name))[0]["ModifyIndex"] == index


def test_flip_and_rollback_with_history_and_report(service):
    flip(service, to="blue", versions={"blue": "1.0.0"})
    result = flip(service, to="green", versions={"green": "1.1.0"})
    assert (result["from"], result["to"]) == ("blue", "green")
    assert result["health"]["healthy"] and result["health"]["total"] == 2
    assert service.serving() == ["green"]
    assert set(result["weights"].values()) == {0, 100}
    assert all(w == 100 for name, w in result["weights"].items() if name.startswith(service.name + "-green"))
    back = flip(service, to="previous")
    assert (back["from"], back["to"]) == ("green", "blue")
    assert service.serving() == ["blue"]
    by_release = flip(service, to="release", release="1.1.0")
    assert by_release["to"] == "green"
    state = service.state()
    assert [(r["from"], r["to"]) for r in state["history"]] == [
        ("none", "blue"),
        ("blue", "green"),
        ("green", "blue"),
        ("blue", "green"),
    ]
    assert state["versions"] == {"blue": "1.0.0", "green": "1.1.0"}
    report = describe_service(
        service.backend(), ConsulBackend.make_store(service.options()), service.name, history_limit=2
    )
    assert report["live"] == "green" and report["state_live"] == "green" and not report["drift"]
    assert report["health"]["blue"]["up"] == 2 and len(report["history"]) == 2


def test_check_mode_reports_and_changes_nothing(service):
    flip(service, to="blue")
    index = service.indexes()
    result = run_flip(
        service.backend(),
        ConsulBackend.make_store(service.options()),
        _params(service, to="green"),
        check_mode=True,
    )
    assert result["changed"] and "would flip blue -> green" in result["msg"]
    assert service.indexes() == index and service.state()["live"] == "blue"


def test_health_gate_refuses_a_color_consul_does_not_pass(service):
    flip(service, to="blue")
    service.apps["green-2"].healthy = False
    wait_for(lambda: len(service.passing("green")) == 1, timeout=15, what="green-2 critical in Consul")
    with pytest.raises(HealthGateError) as failure:
        flip(service, to="green")
    assert "1 of 2 servers not healthy" in failure.value.msg and "Traffic stays on blue" in failure.value.msg
    assert service.serving() == ["blue"] and service.state()["live"] == "blue"
    # Back to health: health_wait lets the gate wait for it.
    service.apps["green-2"].healthy = True
    assert flip(service, to="green", health_wait=15)["to"] == "green"


def test_gate_refuses_a_color_with_no_instance(service):
    flip(service, to="blue")
    for label in ("green-1", "green-2"):
        service.agent.api("agent/service/deregister/%s-%s" % (service.name, label), "PUT")
    with pytest.raises(HealthGateError, match="no servers of that color"):
        flip(service, to="green")
    assert service.serving() == ["blue"]


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        ("{not json", "is not valid JSON"),
        (json.dumps({"live": "purple"}), "live"),
        (json.dumps({"live": "green", "history": "yesterday"}), "history"),
        (json.dumps(["blue"]), "not a valid blue/green state document"),
    ],
)
def test_a_corrupt_state_in_kv_fails_naming_it_and_changes_nothing(service, stored, expected):
    flip(service, to="blue")
    index = service.indexes()
    service.agent.kv_put("%s/%s/state" % (service.prefix, service.name), stored)
    with pytest.raises(StateFileError) as failure:
        flip(service, to="green")
    assert expected in failure.value.msg and "consul:%s/%s/state" % (service.prefix, service.name) in failure.value.msg
    assert "nothing was changed" in failure.value.msg
    assert service.indexes() == index


def test_a_write_to_the_state_behind_the_flip_puts_the_query_back(service, monkeypatch):
    flip(service, to="blue")
    store = ConsulBackend.make_store(service.options())
    real_load = store.load

    def load_then_meddle(name):
        document = real_load(name)
        service.agent.kv_put("%s/%s/state" % (service.prefix, service.name), json.dumps({"live": "blue"}))
        return document

    monkeypatch.setattr(store, "load", load_then_meddle)
    with pytest.raises(BlueGreenError) as failure:
        run_flip(service.backend(), store, _params(service, to="green"))
    assert "could not be written" in failure.value.msg and "check-and-set" in failure.value.msg
    assert "traffic was put back on blue" in failure.value.msg
    assert service.serving() == ["blue"]


def test_a_query_that_is_not_ours_is_left_alone(service):
    service.agent.api(
        "query",
        "POST",
        {"Name": query_name(service.name, "blue"), "Service": {"Service": "someone-else", "Tags": ["x"]}},
    )
    with pytest.raises(BlueGreenError, match="is not a blue/green live query"):
        flip(service, to="green")
    assert service.queries()["blue"]["Service"]["Tags"] == ["x"] and "green" not in service.queries()


def test_the_lock_is_one_per_service_across_hosts(service):
    client = ConsulClient(host=service.agent.host, port=service.agent.port)
    key = "%s/%s/lock" % (service.prefix, service.name)
    held = ConsulLock(client, key, service.name, timeout=0).acquire()
    try:
        holder = json.loads(service.agent.api("kv/%s?raw=true" % key, raw=True))
        assert holder["pid"] > 0
        with pytest.raises(LockTimeoutError) as failure:
            flip(service, to="green", lock_timeout=1)
        assert "another flip of %s holds consul:%s" % (service.name, key) in failure.value.msg
        assert '"pid"' in failure.value.msg
        assert service.serving() is None
    finally:
        held.release()
    # Released: the session is gone and with it the key (Behavior=delete); the next flip runs.
    assert service.agent.api("kv/%s" % key) is None or not service.agent.api("kv/%s" % key)[0].get("Session")
    assert flip(service, to="green")["to"] == "green"
    sessions = service.agent.api("session/list") or []
    assert not [s for s in sessions if service.name in s.get("Name", "")]


def test_a_lock_whose_holder_died_frees_itself(service):
    client = ConsulClient(host=service.agent.host, port=service.agent.port)
    key = "%s/%s/lock" % (service.prefix, service.name)
    dead = ConsulLock(client, key, service.name, timeout=0, ttl=10).acquire()
    dead._stop.set()  # the holder dies: nobody renews its session or releases the lock
    start = time.monotonic()
    assert flip(service, to="blue", lock_timeout=40)["to"] == "blue"
    assert time.monotonic() - start <= 40


def test_acl_denied_names_the_rule_and_changes_nothing(consul_acl):
    agent = consul_acl
    name = "svc-%s" % uuid.uuid4().hex[:8]
    app = ColorApp("green")
    try:
        agent.api(
            "agent/service/register",
            "PUT",
            {"ID": name, "Name": name, "Tags": ["green"], "Address": LOOPBACK, "Port": app.port},
        )
        token = agent.token_with_rules(
            'service_prefix "" { policy = "read" }\nnode_prefix "" { policy = "read" }\n'
            'key_prefix "msa/bluegreen/" { policy = "write" }\nsession_prefix "" { policy = "write" }'
        )
        options = {"consul": {"host": agent.host, "port": agent.port, "token": token, "prefix": "msa/bluegreen"}}
        with pytest.raises(BlueGreenError) as failure:
            run_flip(ConsulBackend(name, options), ConsulBackend.make_store(options), _params_for(name, to="green"))
        assert 'query_prefix "%s-live-green" { policy = "write" }' % name in failure.value.msg
        assert token not in failure.value.msg
        assert not [q for q in agent.api("query") or [] if q["Name"].startswith(name)]
        assert agent.api("kv/msa/bluegreen/%s/state" % name) is None
    finally:
        agent.api("agent/service/deregister/%s" % name, "PUT")
        app.stop()


def _params_for(name, **kw):
    return dict(
        {"service": name, "steps": [100], "drain_timeout": 0, "lock_timeout": 1, "operator": "alice"},
        **kw,
    )


def test_bad_consul_options_fail_before_any_call():
    problems = option_problems(
        {"balancer": "consul", "consul": {"host": "http://x", "port": 0, "timeout": 0, "prefix": "/a//b"}}
    )
    text = "; ".join(problems)
    for expected in ("consul.host", "consul.port", "consul.timeout", "consul.prefix"):
        assert expected in text
    assert option_problems({"balancer": "consul", "consul": {"host": "127.0.0.1", "prefix": "msa/bluegreen"}}) == []
    assert option_problems({"balancer": "consul", "consul": {"host": "127.0.0.1", "prefix": "a/../b"}})


# --------------------------------------------------------------------------------------------
# a real HAProxy following the live query through Consul DNS


class FollowingHAProxy(HAProxyLab):
    """be_<svc> holds ``blue-1..4`` and ``green-1..4`` slots, filled from
    ``_<svc>-live-<color>._tcp.query.consul`` on the agent's DNS port, all with the same weight, as
    the haproxy role renders a service that flips through Consul."""

    def __init__(self, binary, tmp, agent, service):
        self.agent = agent
        self.service = service
        super().__init__(binary, tmp, {})

    def write_config(self, live):
        resolvers = (
            "resolvers consul\n"
            "  nameserver consul %s:%d\n"
            "  accepted_payload_size 8192\n"
            "  timeout resolve 1s\n"
            "  timeout retry 1s\n"
            "  hold valid 10s\n"
            "  hold nx 1s\n"
            "  hold obsolete 1s\n" % (LOOPBACK, self.agent.dns_port)
        )
        slots = "  option redispatch\n  retries 3\n" + "\n".join(
            "  server-template %s- 4 _%s-live-%s._tcp.query.consul resolvers consul resolve-prefer ipv4 "
            "resolve-opts ignore-weight init-addr none check weight 100" % (color, self.service, color)
            for color in ("blue", "green")
        )
        # The backend is named after the service, as the haproxy role names it.
        self.cfg.write_text(self.render_config(slots, sections=resolvers).replace("be_orders", "be_" + self.service))


class Load(threading.Thread):
    """Requests through the balancer back to back; counts answers per instance and failures."""

    def __init__(self, url):
        super().__init__(daemon=True)
        self.url = url
        self.answers = []
        self.failures = []
        self.running = True

    def run(self):
        while self.running:
            try:
                with urllib.request.urlopen(self.url, timeout=5) as resp:  # noqa: S310 - loopback only
                    self.answers.append((time.monotonic(), resp.read().decode().strip()))
            except (urllib.error.URLError, OSError) as exc:
                self.failures.append("%.2f %r" % (time.monotonic(), exc))
            time.sleep(0.02)

    def colors_since(self, moment):
        return {label.split("-")[0] for when, label in self.answers if when >= moment}

    def stop(self):
        self.running = False
        self.join(10)


def test_haproxy_follows_flip_and_rollback_under_load_without_a_failed_request(service, haproxy_bin, tmp_path):
    flip(service, to="blue")
    lab = FollowingHAProxy(haproxy_bin, tmp_path / "haproxy", service.agent, service.name).start()
    load = Load("http://%s:%d/" % (LOOPBACK, lab.lb_port))
    try:
        wait_for(lambda: _answers(lab) == {"blue"}, timeout=15, what="HAProxy to serve blue from the query")
        load.start()
        time.sleep(1)
        timings = []
        for target in ("green", "blue"):
            started = time.monotonic()
            result = flip(service, to=target if target == "green" else "previous", drain_timeout=10)
            assert result["to"] == target
            # Away from a balancer the flip waits the time the balancers need to follow.
            assert result["drain"]["drained"] is None and result["drain"]["waited"] >= 3
            wait_for(lambda t=target: _answers(lab) == {t}, timeout=10, what="HAProxy to follow to %s" % target)
            timings.append(time.monotonic() - started)
            time.sleep(1)
            assert load.colors_since(time.monotonic() - 0.8) == {target}
        # On the balancer the flip watches its own HAProxy: when it returns, only the new color answers.
        service.haproxy_socket = lab.socket
        for target in ("green", "blue"):
            result = flip(service, to=target, drain_timeout=10)
            assert result["drain"]["drained"] is True, result["drain"]
            assert "dropped" in result["drain"]["detail"]
            assert _answers(lab, times=12) == {target}
        load.stop()
        assert load.failures == []
        assert len(load.answers) > 50
        print("followed in %s s, %d requests, 0 failed" % (["%.1f" % t for t in timings], len(load.answers)))
    finally:
        load.running = False
        lab.stop()


def _answers(lab, times=8):
    try:
        return {lab.request().split("-")[0] for _attempt in range(times)}
    except (urllib.error.URLError, OSError):
        return set()
