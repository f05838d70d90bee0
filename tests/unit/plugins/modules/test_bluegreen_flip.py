"""bluegreen_flip as Ansible runs it: argument spec, check mode, diff, gate, idempotence, errors."""

from __future__ import annotations

import json
import os

from ansible_collections.msa.platform.plugins.modules import bluegreen_flip, bluegreen_info


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
    bad_balancer = bg.run(bluegreen_flip, capsys, dict(base, to="green", balancer="consul"))
    assert "value of balancer must be one of: haproxy, nginx" in bad_balancer["msg"]
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
