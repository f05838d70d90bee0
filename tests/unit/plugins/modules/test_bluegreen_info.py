"""bluegreen_info as Ansible runs it: read-only report, check mode, unknown service."""

from __future__ import annotations

from ansible_collections.msa.platform.plugins.modules import bluegreen_info


def test_info_reports_live_color_health_and_history(up, capsys, tmp_path, bg):
    result = bg.run(bluegreen_info, capsys, bg.args(up, tmp_path, service="orders"), check_mode=True)
    assert result["_rc"] == 0 and result["changed"] is False
    orders = result["services"]["orders"]
    assert orders["live"] == "blue" and orders["state_live"] == "blue" and orders["drift"] is False
    assert orders["weights"] == {"app1-blue": 100, "app1-green": 0, "app2-blue": 100, "app2-green": 0}
    assert orders["history"] == []

    everything = bg.run(bluegreen_info, capsys, bg.args(up, tmp_path))
    assert list(everything["services"]) == ["orders"]


def test_info_unknown_service_lists_known(up, capsys, tmp_path, bg):
    result = bg.run(bluegreen_info, capsys, bg.args(up, tmp_path, service="ordrs"))
    assert result["failed"] is True
    assert "unknown service ordrs" in result["msg"] and "known services: orders" in result["msg"]
