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


def test_info_history_limit_must_not_be_negative(capsys, tmp_path, bg):
    result = bg.run(bluegreen_info, capsys, {"state_dir": str(tmp_path), "history_limit": -1})
    assert result["failed"] is True
    assert "history_limit must be between 0 and 100000 (entries), got -1" in result["msg"]


def test_info_bad_state_file_is_named_in_the_listing(up, capsys, tmp_path, bg):
    (tmp_path / "bg").mkdir()
    (tmp_path / "bg" / "orders.json").write_text('{"history": "abc"}')
    result = bg.run(bluegreen_info, capsys, bg.args(up, tmp_path))
    assert result.get("failed") is not True
    error = result["services"]["orders"]["error"]
    assert str(tmp_path / "bg" / "orders.json") in error and "history is a string" in error


def test_info_unexpected_error_is_a_failure_with_traceback(capsys, tmp_path, bg, monkeypatch):
    def bug(*_args, **_kwargs):
        raise TypeError("unsupported operand")

    monkeypatch.setattr(bluegreen_info, "describe_service", bug)
    result = bg.run(bluegreen_info, capsys, {"service": "orders", "state_dir": str(tmp_path)}, tracebacks=True)
    assert result["failed"] is True
    assert "TypeError" in result["msg"] and "Traceback" in result["exception"]
