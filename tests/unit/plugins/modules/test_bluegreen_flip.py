"""bluegreen_flip as Ansible runs it: argument spec, check mode, diff, gate, idempotence, errors."""

from __future__ import annotations

import json
import os
import re
import socket

import pytest
from ansible_collections.msa.platform.plugins.modules import bluegreen_flip, bluegreen_info
from ansible_collections.msa.platform.tests.unit.plugins import lab_servers


def test_flip_check_mode_then_real_then_idempotent(up, capsys, tmp_path, bg):
    args = bg.args(
        up,
        tmp_path,
        service="orders",
        to="green",
        operator="alice",
        versions={"blue": "1.0.0", "green": "1.1.0"},
        drain_timeout=5,
    )

    check = bg.run(bluegreen_flip, capsys, args, check_mode=True, diff=True)
    assert check["changed"] is True
    assert check["diff"]["before"]["live"] == "blue" and check["diff"]["after"]["live"] == "green"
    assert check["diff"]["after"]["weights"]["app1-green"] == 100
    assert not (tmp_path / "bg").exists()
    assert not os.path.exists(up.state_file)
    assert {up.request() for _attempt in range(4)} == {"blue"}

    real = bg.run(bluegreen_flip, capsys, args, diff=True)
    assert real["changed"] is True, real
    assert (real["from"], real["to"]) == ("blue", "green")
    assert real["record"]["operator"] == "alice"
    assert real["drain"]["drained"] is True
    assert {up.request() for _attempt in range(4)} == {"green"}
    state = json.loads((tmp_path / "bg" / "orders.json").read_text())
    assert state["live"] == "green" and state["versions"] == {"blue": "1.0.0", "green": "1.1.0"}
    assert oct(os.stat(tmp_path / "bg" / "orders.json").st_mode & 0o777) == "0o640"
    assert os.path.exists(up.state_file)

    again = bg.run(bluegreen_flip, capsys, args)
    assert again["changed"] is False

    info = bg.run(bluegreen_info, capsys, bg.args(up, tmp_path, service="orders"))
    assert info["services"]["orders"]["live"] == "green"
    assert [h["to"] for h in info["services"]["orders"]["history"]] == ["green"]

    back = bg.run(bluegreen_flip, capsys, bg.args(up, tmp_path, service="orders", to="previous"))
    assert (back["from"], back["to"], back["changed"]) == ("green", "blue", True)
    assert {up.request() for _attempt in range(4)} == {"blue"}


def test_flip_gate_failure_message(up, color_apps, capsys, tmp_path, bg):
    color_apps[("app1", "green")].stop()
    bg.wait(
        lambda: (
            not bg.run(bluegreen_info, capsys, bg.args(up, tmp_path, service="orders"))["services"]["orders"]["health"][
                "green"
            ]["healthy"]
        ),
        what="app1-green DOWN",
    )
    result = bg.run(bluegreen_flip, capsys, bg.args(up, tmp_path, service="orders", to="green"))
    assert result["failed"] is True
    assert result["msg"].startswith(
        "refusing to flip orders to green on haproxy: 1 of 2 servers not healthy: app1-green"
    )
    assert result["health_failed"]["up"] == 1
    assert {up.request() for _attempt in range(4)} == {"blue"}


def test_flip_typo_host_fails(up, capsys, tmp_path, bg):
    result = bg.run(bluegreen_flip, capsys, bg.args(up, tmp_path, service="orders", to="green", hosts=["app1", "app3"]))
    assert result["failed"] is True
    assert "no server app3-blue, app3-green" in result["msg"]


def test_flip_argument_errors(capsys, tmp_path, bg):
    base = {"service": "orders", "state_dir": str(tmp_path), "haproxy_socket": str(tmp_path / "none.sock")}
    bad_color = bg.run(bluegreen_flip, capsys, dict(base, to="purple"))
    assert (
        bad_color["failed"] is True and "value of to must be one of: blue, green, previous, release" in bad_color["msg"]
    )
    bad_balancer = bg.run(bluegreen_flip, capsys, dict(base, to="green", balancer="istio"))
    assert "value of balancer must be one of: consul, haproxy, nginx" in bad_balancer["msg"]
    no_release = bg.run(bluegreen_flip, capsys, dict(base, to="release"))
    assert "to is release but all of the following are missing: release" in no_release["msg"]
    no_ports = bg.run(bluegreen_flip, capsys, dict(base, to="green", balancer="nginx"))
    assert "balancer is nginx but all of the following are missing: ports" in no_ports["msg"]
    no_socket = bg.run(bluegreen_flip, capsys, dict(base, to="green"))
    assert no_socket["failed"] is True and "does not exist: is haproxy running" in no_socket["msg"]
    bad_name = bg.run(bluegreen_flip, capsys, dict(base, to="green", service="../x"))
    assert "invalid service name" in bad_name["msg"]


def test_unwritable_state_dir_is_a_clear_failure(up, capsys, tmp_path, bg):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    result = bg.run(
        bluegreen_flip, capsys, bg.args(up, tmp_path, service="orders", to="green", state_dir=str(blocker / "bg"))
    )
    assert result["failed"] is True
    assert str(blocker) in result["msg"]
    assert "Traceback" not in json.dumps(result)
    assert {up.request() for _attempt in range(4)} == {"blue"}


# ---- a bad state file changes nothing --------------------------------------------------


@pytest.mark.parametrize(
    "case",
    [
        ('{"live": "blue", "history": "abc"}', "history is a string, expected a list"),
        ('{"live": "blue", "versions": "1.0.0"}', "versions is a string, expected an object"),
        ('{"live": "blue", "history": ["abc"]}', "history[0] is a string, expected an object"),
        ('{"live": "blue", "versions": {"blue": 1}}', "versions.blue is a number, expected a string"),
        ('{"live": "blue", "history": [', "is not valid JSON"),
    ],
    ids=["history-string", "versions-string", "history-entry-string", "version-number", "corrupt-json"],
)
def test_bad_state_file_fails_and_changes_nothing(up, capsys, tmp_path, bg, case):
    content, problem = case
    state_file = tmp_path / "bg" / "orders.json"
    state_file.parent.mkdir()
    state_file.write_text(content)
    for to in ("green", "previous"):
        args = bg.args(up, tmp_path, service="orders", to=to, versions={"green": "2"})
        result = bg.run(bluegreen_flip, capsys, args)
        assert result["failed"] is True, result
        assert str(state_file) in result["msg"] and problem in result["msg"]
        assert "Traceback" not in json.dumps(result)
        assert state_file.read_text() == content
        assert not os.path.exists(up.state_file)
        assert {up.request() for _attempt in range(4)} == {"blue"}

    info = bg.run(bluegreen_info, capsys, bg.args(up, tmp_path, service="orders"))
    assert info["failed"] is True and str(state_file) in info["msg"] and problem in info["msg"]


# ---- options are checked before anything changes ------------------------------------------


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"step_pause": -1, "steps": [10, 100]}, "step_pause must be between 0 and 3600 (seconds), got -1"),
        ({"haproxy_timeout": -1}, "haproxy_timeout must be between 0.1 and 300 (seconds), got -1.0"),
        ({"haproxy_timeout": 0}, "haproxy_timeout must be between 0.1 and 300 (seconds), got 0.0"),
        ({"health_timeout": 0}, "health_timeout must be between 0.1 and 300 (seconds), got 0.0"),
        ({"drain_timeout": -1}, "drain_timeout must be between 0 and 3600 (seconds), got -1"),
        ({"lock_timeout": 99999}, "lock_timeout must be between 0 and 3600 (seconds), got 99999"),
        ({"history_keep": -1}, "history_keep must be between 0 and 100000 (entries), got -1"),
        ({"ports": {"blue": 0, "green": 8102}}, "ports.blue must be between 1 and 65535, got 0"),
        ({"ports": {"blue": 8101, "green": 70000}}, "ports.green must be between 1 and 65535, got 70000"),
        ({"ports": {"blue": 8101, "green": 8101}}, "ports.blue and ports.green must differ"),
        ({"steps": [50, 10, 100]}, "steps must increase"),
        ({"hosts": ["app1", "app2-green 0;shutdown"]}, "hosts[1] 'app2-green 0;shutdown' is not a host name"),
        ({"hosts": []}, "hosts must not be empty"),
        ({"health_path": "health"}, "health_path must start with /"),
        ({"state_dir": "relative/bg"}, "state_dir must be an absolute path, got 'relative/bg'"),
        ({"haproxy_socket": "admin.sock"}, "haproxy_socket must be an absolute path"),
        ({"nginx_binary": "bin/nginx"}, "nginx_binary must be a program name or an absolute path"),
        ({"versions": {"green": "1.1.0\n"}}, "versions.green must be"),
        ({"versions": {"green": ""}}, "versions.green must be"),
        ({"operator": "  "}, "operator must be"),
        ({"operator": "alice\nbob"}, "operator must be"),
        ({"to": "release", "release": ""}, "release must be"),
    ],
)
def test_bad_options_fail_before_anything_happens(capsys, tmp_path, bg, options, problem):
    args = {
        "service": "orders",
        "to": "green",
        "state_dir": str(tmp_path / "bg"),
        "haproxy_socket": str(tmp_path / "none.sock"),  # reaching it would fail differently
    }
    args.update(options)
    result = bg.run(bluegreen_flip, capsys, args)
    assert result["failed"] is True
    assert problem in result["msg"], result["msg"]
    assert "does not exist" not in result["msg"]
    assert not (tmp_path / "bg").exists()


def test_negative_step_pause_never_touches_weights(up, capsys, tmp_path, bg):
    result = bg.run(
        bluegreen_flip, capsys, bg.args(up, tmp_path, service="orders", to="green", steps=[10, 100], step_pause=-1)
    )
    assert result["failed"] is True and "step_pause" in result["msg"]
    info = bg.run(bluegreen_info, capsys, bg.args(up, tmp_path, service="orders"))
    assert info["services"]["orders"]["weights"] == {
        "app1-blue": 100,
        "app1-green": 0,
        "app2-blue": 100,
        "app2-green": 0,
    }


# ---- the result reads well without -v ------------------------------------------------------


def test_msg_is_a_one_line_summary(up, capsys, tmp_path, bg):
    node = socket.gethostname().split(".")[0]
    args = bg.args(up, tmp_path, service="orders", to="green", steps=[10, 50, 100], step_pause=0, drain_timeout=5)
    check = bg.run(bluegreen_flip, capsys, args, check_mode=True)
    assert check["msg"] == "orders: would flip blue -> green on %s (haproxy, weights 0/100, 3 steps)" % node
    real = bg.run(bluegreen_flip, capsys, args)
    assert re.fullmatch(
        r"orders: blue -> green on %s \(haproxy, weights 0/100, 3 steps, drained in \d+\.\d s\)" % re.escape(node),
        real["msg"],
    ), real["msg"]
    assert real["plan"] == [{"new": 10, "old": 90}, {"new": 50, "old": 50}, {"new": 100, "old": 0}]  # still structured
    again = bg.run(bluegreen_flip, capsys, args)
    assert again["msg"] == "orders: green already live on %s (haproxy), nothing to do" % node


# ---- no Python exception escapes ------------------------------------------------------------


def test_unexpected_error_is_a_failure_with_traceback(capsys, tmp_path, bg, monkeypatch):
    def bug(*_args, **_kwargs):
        raise KeyError("weights")

    monkeypatch.setattr(bluegreen_flip, "run_flip", bug)
    result = bg.run(
        bluegreen_flip,
        capsys,
        {"service": "orders", "to": "green", "state_dir": str(tmp_path), "haproxy_socket": str(tmp_path / "a.sock")},
        tracebacks=True,
    )
    assert result["failed"] is True and result["_rc"] == 1
    assert "KeyError" in result["msg"] and "'weights'" in result["msg"]
    assert "Traceback" in result["exception"]


# ---- NGINX through the module ----------------------------------------------------------------


def _nginx_args(lab, tmp_path, **kw):
    args = {
        "service": "orders",
        "to": "green",
        "balancer": "nginx",
        "ports": lab.ports,
        "state_dir": str(tmp_path / "bg"),
        "nginx_upstream_dir": str(lab.upstream_dir),
        "nginx_config": str(lab.conf),
        "nginx_binary": lab.binary,
        "nginx_reload": "signal",
        "drain_timeout": 5,
    }
    args.update(kw)
    return args


def test_nginx_flip_through_the_module(nginx_lab, capsys, tmp_path, bg):
    result = bg.run(bluegreen_flip, capsys, _nginx_args(nginx_lab, tmp_path))
    assert result["changed"] is True, result
    assert result["msg"].startswith("orders: blue -> green on ") and "(nginx, weights 0/100, 1 step, " in result["msg"]
    bg.wait(lambda: nginx_lab.serves("green"), what="green via nginx")


@pytest.mark.parametrize("binary", ["no/such/dir/nginx", "nginx-not-executable"])
def test_nginx_binary_unusable_leaves_the_upstream_alone(nginx_lab, capsys, tmp_path, bg, binary):
    path = nginx_lab.upstream_dir / "orders.conf"
    before = path.read_text()
    nginx = tmp_path / binary
    if binary == "nginx-not-executable":
        nginx.write_text("#!/bin/sh\nexit 0\n")
    result = bg.run(bluegreen_flip, capsys, _nginx_args(nginx_lab, tmp_path, nginx_binary=str(nginx)))
    assert result["failed"] is True
    assert "nginx_binary" in result["msg"] and str(nginx) in result["msg"]
    assert path.read_text() == before
    assert nginx_lab.serves("blue")
    assert not (tmp_path / "bg" / "orders.json").exists()


# --------------------------------------------------------------------------------------------
# balancer=consul, against a real Consul agent with ACLs (default deny)

pytest_plugins = ["ansible_collections.msa.platform.tests.unit.plugins.consul_server"]

# What the consul role's entry point bluegreen grants its flip token, for one service.
FLIP_RULES = """
key_prefix "msa/bluegreen/" { policy = "write" }
session_prefix "" { policy = "write" }
node_prefix "" { policy = "read" }
query_prefix "%(svc)s-live-" { policy = "write" }
service "%(svc)s" { policy = "read" }
"""


def test_consul_flip_as_ansible_runs_it(consul_acl, color_apps, wait, capsys, monkeypatch):
    agent = consul_acl
    svc = "svc-%s" % os.urandom(4).hex()
    apps = {color: color_apps[("app1", color)] for color in ("blue", "green")}
    loopback = lab_servers.LOOPBACK
    try:
        for color, app in apps.items():
            agent.api(
                "agent/service/register",
                "PUT",
                {
                    "ID": "%s-%s" % (svc, color),
                    "Name": svc,
                    "Tags": [color],
                    "Address": loopback,
                    "Port": app.port,
                    "Check": {"HTTP": "http://%s:%d/health" % (loopback, app.port), "Interval": "1s"},
                },
            )
        wait(lambda: len(agent.api("health/service/%s?passing=true" % svc) or []) == 2, timeout=20, what="instances")
        token = agent.token_with_rules(FLIP_RULES % {"svc": svc})
        # The token comes from the environment, through the consul option's fallback.
        monkeypatch.setenv("CONSUL_HTTP_TOKEN", token)
        args = {
            "service": svc,
            "balancer": "consul",
            "consul": {"host": agent.host, "port": agent.port},
            "to": "blue",
            "operator": "alice",
            "drain_timeout": 0,
        }
        first = lab_servers.run_module(bluegreen_flip, capsys, args)
        assert first["changed"] and first["from"] == "none", first
        check = lab_servers.run_module(bluegreen_flip, capsys, dict(args, to="green"), check_mode=True, diff=True)
        assert check["changed"] and check["diff"]["after"]["live"] == "green"
        assert check["state_file"] == "consul:msa/bluegreen/%s/state" % svc
        real = lab_servers.run_module(bluegreen_flip, capsys, dict(args, to="green"), diff=True)
        assert (real["from"], real["to"], real["changed"]) == ("blue", "green", True)
        info = lab_servers.run_module(
            bluegreen_info, capsys, {"service": svc, "balancer": "consul", "consul": args["consul"]}
        )
        view = info["services"][svc]
        assert view["live"] == "green" and [h["to"] for h in view["history"]] == ["blue", "green"]
        for result in (first, check, real, info):
            assert token not in result["_raw"]
        # Bad input fails before any call, naming the option.
        bad = lab_servers.run_module(bluegreen_flip, capsys, dict(args, consul={"host": agent.host, "timeout": 0}))
        assert bad["failed"] and "consul.timeout" in bad["msg"] and "nothing was changed" in bad["msg"]
        # A token without rights: the failure names the rule, never the token.
        monkeypatch.setenv("CONSUL_HTTP_TOKEN", agent.token_with_rules('node_prefix "" { policy = "read" }'))
        denied = lab_servers.run_module(bluegreen_flip, capsys, dict(args, to="blue"))
        assert denied["failed"] and "ACL denied" in denied["msg"], denied["msg"]
        back = agent.api("kv/msa/bluegreen/%s/state?raw=true" % svc, raw=True)
        assert json.loads(back)["live"] == "green"
    finally:
        for color in apps:
            agent.api("agent/service/deregister/%s-%s" % (svc, color), "PUT")
        agent.kv_delete_tree("msa/bluegreen/%s" % svc)
