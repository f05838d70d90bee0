"""State document: store, validation, history records, operator."""

from __future__ import annotations

import datetime
import json
import os
import pwd

import pytest
from ansible_collections.msa.platform.plugins.module_utils import _atomic_file as atomic_file
from ansible_collections.msa.platform.plugins.module_utils import _bluegreen_state as state_mod
from ansible_collections.msa.platform.plugins.module_utils._bluegreen_common import BlueGreenError
from ansible_collections.msa.platform.plugins.module_utils._bluegreen_state import (
    StateStore,
    default_operator,
    history_record,
)

# ---- store -------------------------------------------------------------------------


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
    with pytest.raises(BlueGreenError, match="not a valid blue/green state document"):
        StateStore(str(tmp_path)).load("orders")


@pytest.mark.parametrize("name", ["../etc/passwd", "Orders", "", "a" * 40, "1abc", None])
def test_state_file_names_are_validated(tmp_path, name):
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


# ---- validation --------------------------------------------------------------------

RECORD = {
    "time": "2026-11-22T03:00:00Z",
    "operator": "alice",
    "balancer": "haproxy",
    "from": "blue",
    "to": "green",
    "versions": {"blue": "1.0.0", "green": "1.1.0"},
}


def _doc(**changes):
    doc = {"service": "orders", "live": "green", "versions": {"blue": "1.0.0", "green": "1.1.0"}, "history": [RECORD]}
    doc.update(changes)
    return doc


def _record(**changes):
    record = dict(RECORD)
    record.update(changes)
    return record


BAD_DOCUMENTS = [
    pytest.param(_doc(history="abc"), "history is a string, expected a list", id="history-string"),
    pytest.param(_doc(history={"a": 1}), "history is an object, expected a list", id="history-object"),
    pytest.param(_doc(history=["abc"]), "history[0] is a string, expected an object", id="history-entry-string"),
    pytest.param(_doc(versions="1.0.0"), "versions is a string, expected an object", id="versions-string"),
    pytest.param(_doc(versions=[["blue", "1"]]), "versions is a list, expected an object", id="versions-list"),
    pytest.param(_doc(versions={"blue": 1}), "versions.blue is a number, expected a string", id="version-number"),
    pytest.param(_doc(versions={"blue": ""}), "versions.blue is empty", id="version-empty"),
    pytest.param(_doc(versions={"purple": "1"}), "versions has an unknown color 'purple'", id="version-color"),
    pytest.param(_doc(live="purple"), "live is 'purple', expected one of blue, green", id="live-color"),
    pytest.param(_doc(live=None), "live is null, expected one of blue, green", id="live-null"),
    pytest.param(_doc(service="payments"), "service is 'payments' but the file is for orders", id="service-other"),
    pytest.param(_doc(service=7), "service is a number, expected a string", id="service-number"),
    pytest.param(_doc(colour="blue"), "unknown key 'colour'", id="unknown-key"),
    pytest.param([], "the document is a list, expected an object", id="top-list"),
    pytest.param("blue", "the document is a string, expected an object", id="top-string"),
    pytest.param(
        _doc(history=[{"time": "2026-11-22T03:00:00Z", "operator": "alice"}]),
        "history[0] lacks balancer, from, to, versions",
        id="record-keys",
    ),
    pytest.param(_doc(history=[_record(extra=1)]), "history[0] has an unknown key 'extra'", id="record-extra"),
    pytest.param(
        _doc(history=[RECORD, _record(to="purple")]),
        "history[1].to is 'purple', expected one of blue, green",
        id="record-to",
    ),
    pytest.param(
        _doc(history=[_record(**{"from": "red"})]),
        "history[0].from is 'red', expected one of blue, green, mixed, none",
        id="record-from",
    ),
    pytest.param(
        _doc(history=[_record(time="22/11/2026")]),
        "history[0].time is '22/11/2026', expected UTC time as YYYY-MM-DDTHH:MM:SSZ",
        id="record-time",
    ),
    pytest.param(_doc(history=[_record(operator="")]), "history[0].operator is empty", id="record-operator"),
    pytest.param(_doc(history=[_record(balancer=None)]), "history[0].balancer is null", id="record-balancer"),
    pytest.param(
        _doc(history=[_record(versions={"green": 2})]),
        "history[0].versions.green is a number, expected a string",
        id="record-versions",
    ),
]


@pytest.mark.parametrize(("document", "problem"), BAD_DOCUMENTS)
def test_bad_state_document_is_refused_naming_file_and_problem(tmp_path, document, problem):
    path = tmp_path / "orders.json"
    path.write_text(json.dumps(document))
    with pytest.raises(BlueGreenError) as info:
        StateStore(str(tmp_path)).load("orders")
    assert str(path) in info.value.msg
    assert "not a valid blue/green state document" in info.value.msg
    assert problem in info.value.msg


def test_every_problem_is_listed(tmp_path):
    (tmp_path / "orders.json").write_text(json.dumps(_doc(live="red", history="x")))
    with pytest.raises(BlueGreenError) as info:
        StateStore(str(tmp_path)).load("orders")
    assert "live is 'red'" in info.value.msg and "history is a string" in info.value.msg


@pytest.mark.parametrize("text", ["{not json", "", '{"live": "blue"', "\xff\xfe"])
def test_corrupt_json_is_refused_naming_file(tmp_path, text):
    path = tmp_path / "orders.json"
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(BlueGreenError, match="is not valid JSON") as info:
        StateStore(str(tmp_path)).load("orders")
    assert str(path) in info.value.msg


def test_good_documents_load(tmp_path):
    store = StateStore(str(tmp_path))
    full = _doc(history=[RECORD, _record(**{"from": "mixed", "to": "blue", "versions": {}})])
    (tmp_path / "orders.json").write_text(json.dumps(full))
    assert store.load("orders") == full
    # keys left out take the contract's defaults
    (tmp_path / "orders.json").write_text("{}")
    assert store.load("orders") == {"service": "orders", "live": "blue", "versions": {}, "history": []}


# ---- history records, time, operator ------------------------------------------------


def test_utc_time_does_not_need_python_311(monkeypatch):
    """datetime.UTC is new in Python 3.11; the managed-node floor is 3.9 (tests/config.yml)."""
    utc = datetime.UTC
    monkeypatch.delattr(datetime, "UTC", raising=False)
    stamp = history_record("alice", "haproxy", "blue", "green", {})["time"]
    parsed = datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=utc)
    assert abs((datetime.datetime.now(utc) - parsed).total_seconds()) < 5


class _Passwd:
    def __init__(self, names):
        self.names = names

    def __call__(self, uid):
        if uid not in self.names:
            raise KeyError("getpwuid(): uid not found: %d" % uid)
        name = self.names[uid]
        return pwd.struct_passwd((name, "x", uid, uid, "", "/home/%s" % name, "/bin/sh"))


@pytest.fixture
def no_user_env(monkeypatch, tmp_path):
    for var in ("MSA_OPERATOR", "SUDO_USER", "DOAS_USER", "LOGNAME", "USER", "LNAME", "USERNAME"):
        monkeypatch.delenv(var, raising=False)
    loginuid = tmp_path / "loginuid"
    loginuid.write_text("4294967295")  # not set: a service, a container
    monkeypatch.setattr(state_mod, "LOGINUID_PATH", str(loginuid), raising=False)
    return loginuid


def test_operator_is_the_sudo_caller_over_root(monkeypatch, no_user_env):
    monkeypatch.setenv("USER", "root")
    monkeypatch.setenv("LOGNAME", "root")
    monkeypatch.setenv("SUDO_USER", "bob")
    assert default_operator() == "bob"


def test_operator_is_the_login_user_after_su(monkeypatch, no_user_env):
    """become_method su leaves no SUDO_USER: the audit login uid still names who logged in."""
    monkeypatch.setenv("USER", "root")
    monkeypatch.setenv("LOGNAME", "root")
    no_user_env.write_text("1000")
    monkeypatch.setattr(pwd, "getpwuid", _Passwd({0: "root", 1000: "alice"}))
    assert default_operator() == "alice"


def test_operator_without_environment_comes_from_passwd(monkeypatch, no_user_env):
    monkeypatch.setattr(pwd, "getpwuid", _Passwd({os.geteuid(): "carol"}))
    assert default_operator() == "carol"


def test_operator_without_passwd_entry_names_the_uid(monkeypatch, no_user_env):
    monkeypatch.setattr(pwd, "getpwuid", _Passwd({}))
    assert default_operator() == "uid %d" % os.geteuid()
