"""consul_config against real Consul dev agents: plan, check mode, diff, idempotence, purge, absent,
input errors before any call, ACLs, and check-and-set conflicts that put back what the run wrote."""

from __future__ import annotations

import pytest
from ansible_collections.msa.platform.plugins.module_utils._consul_client import ConsulClient
from ansible_collections.msa.platform.plugins.modules import consul_config
from ansible_collections.msa.platform.tests.unit.plugins.lab_servers import free_port, run_module

pytest_plugins = ["ansible_collections.msa.platform.tests.unit.plugins.consul_server"]


def interfere(monkeypatch, agent, before):
    """Someone else writes behind the module's back: ``before`` maps a full key to the writes
    ``[(full key, value), ...]`` done (once) just before this run's own put or delete of that key,
    that is between the module's read (plan) and its check-and-set write."""
    real_put, real_delete = ConsulClient.put, ConsulClient.delete
    pending = dict(before)

    def meddle(key):
        for other, value in pending.pop(key, []):
            agent.kv_put(other, value)

    def put(self, key, value, cas, scope=None):
        meddle(key)
        return real_put(self, key, value, cas, scope=scope)

    def delete(self, key, cas, scope=None):
        meddle(key)
        return real_delete(self, key, cas, scope=scope)

    monkeypatch.setattr(ConsulClient, "put", put)
    monkeypatch.setattr(ConsulClient, "delete", delete)
    return pending


def test_create_check_mode_first_then_idempotent(consul, consul_args, config_prefix, capsys):
    args = dict(
        consul_args,
        prefix=config_prefix,
        values={"db_host": "db1.internal", "db_port": 5432, "ratio": 0.25, "new_checkout": True, "legacy": False},
    )
    checked = run_module(consul_config, capsys, args, check_mode=True, diff=True)
    assert checked["changed"] is True and checked["_rc"] == 0
    assert checked["added"] == ["db_host", "db_port", "legacy", "new_checkout", "ratio"]
    assert checked["updated"] == [] and checked["removed"] == []
    assert checked["diff"] == {
        "before_header": config_prefix + "/",
        "after_header": config_prefix + "/",
        "before": "",
        "after": "db_host: db1.internal\ndb_port: 5432\nlegacy: false\nnew_checkout: true\nratio: 0.25\n",
    }
    assert consul.kv_tree(config_prefix) == {}  # check mode wrote nothing

    made = run_module(consul_config, capsys, args)
    assert made["changed"] is True and made["added"] == checked["added"] and "diff" not in made
    stored = {"db_host": "db1.internal", "db_port": "5432", "legacy": "false", "new_checkout": "true", "ratio": "0.25"}
    assert consul.kv_tree(config_prefix) == stored and made["values"] == stored

    # The same input again, with the number given as text this time: nothing to do.
    again = run_module(consul_config, capsys, dict(args, values=dict(args["values"], db_port="5432")), diff=True)
    assert again["changed"] is False and again["added"] == again["updated"] == again["removed"] == []
    assert again["diff"]["before"] == again["diff"]["after"] and again["values"] == stored
    indexes = {e["Key"]: e["ModifyIndex"] for e in consul.api("kv/%s/?recurse=true" % config_prefix)}
    assert run_module(consul_config, capsys, args, check_mode=True)["changed"] is False
    assert {e["Key"]: e["ModifyIndex"] for e in consul.api("kv/%s/?recurse=true" % config_prefix)} == indexes


def test_change_one_value_shows_before_and_after(consul, consul_args, config_prefix, capsys):
    consul.kv_put(config_prefix + "/log_level", "info")
    consul.kv_put(config_prefix + "/db_host", "db1")
    consul.kv_put(config_prefix + "/nested/kept", "x")  # not named, no purge: kept
    args = dict(consul_args, prefix=config_prefix, values={"log_level": "debug", "db_host": "db1"})
    checked = run_module(consul_config, capsys, args, check_mode=True, diff=True)
    assert checked["changed"] is True and checked["updated"] == ["log_level"] and checked["added"] == []
    assert checked["diff"]["before"] == "db_host: db1\nlog_level: info\nnested/kept: x\n"
    assert checked["diff"]["after"] == "db_host: db1\nlog_level: debug\nnested/kept: x\n"
    assert consul.kv_tree(config_prefix)["log_level"] == "info"
    changed = run_module(consul_config, capsys, args, diff=True)
    assert changed["changed"] is True and changed["diff"] == checked["diff"]
    assert consul.kv_tree(config_prefix) == {"db_host": "db1", "log_level": "debug", "nested/kept": "x"}
    assert run_module(consul_config, capsys, args)["changed"] is False


def test_multiline_value_stays_one_diff_line(consul, consul_args, config_prefix, capsys):
    args = dict(consul_args, prefix=config_prefix, values={"banner": "line one\nline two"})
    result = run_module(consul_config, capsys, args, diff=True)
    assert result["diff"]["after"] == 'banner: "line one\\nline two"\n'
    assert consul.kv_tree(config_prefix) == {"banner": "line one\nline two"}


def test_purge_removes_unlisted_keys(consul, consul_args, config_prefix, capsys):
    for key in ("keep", "stale", "nested/stale"):
        consul.kv_put("%s/%s" % (config_prefix, key), "v")
    consul.kv_put(config_prefix + "-neighbour/stale", "v")  # another prefix that starts with the same text
    args = dict(consul_args, prefix=config_prefix, values={"keep": "v"})
    assert run_module(consul_config, capsys, args)["changed"] is False  # no purge: the others stay
    checked = run_module(consul_config, capsys, dict(args, purge=True), check_mode=True, diff=True)
    assert checked["changed"] is True and checked["removed"] == ["nested/stale", "stale"]
    assert checked["diff"]["after"] == "keep: v\n" and len(consul.kv_tree(config_prefix)) == 3
    purged = run_module(consul_config, capsys, dict(args, purge=True))
    assert purged["changed"] is True and purged["removed"] == ["nested/stale", "stale"]
    assert consul.kv_tree(config_prefix) == {"keep": "v"} and purged["values"] == {"keep": "v"}
    assert consul.kv_tree(config_prefix + "-neighbour") == {"stale": "v"}
    assert run_module(consul_config, capsys, dict(args, purge=True))["changed"] is False


def test_state_absent(consul, consul_args, config_prefix, capsys):
    for key in ("a", "b", "deep/c"):
        consul.kv_put("%s/%s" % (config_prefix, key), key.upper())
    consul.kv_put(config_prefix + "-neighbour/a", "v")
    args = dict(consul_args, prefix=config_prefix, state="absent")
    checked = run_module(consul_config, capsys, args, check_mode=True, diff=True)
    assert checked["changed"] is True and checked["removed"] == ["a", "b", "deep/c"]
    assert checked["diff"]["before"] == "a: A\nb: B\ndeep/c: DEEP/C\n" and checked["diff"]["after"] == ""
    assert len(consul.kv_tree(config_prefix)) == 3
    gone = run_module(consul_config, capsys, args)
    assert gone["changed"] is True and gone["values"] == {} and consul.kv_tree(config_prefix) == {}
    assert consul.kv_tree(config_prefix + "-neighbour") == {"a": "v"}
    assert run_module(consul_config, capsys, args)["changed"] is False


@pytest.mark.parametrize(
    ("prefix", "message"),
    [
        ("/msa/config", "prefix must not start or end with '/'"),
        ("msa/config/", "prefix must not start or end with '/'"),
        ("msa//config", "has an empty segment"),
        ("msa/../config", "has the segment '..' (no . or .. segments)"),
        ("msa/con fig", "has the segment 'con fig' (only letters, digits, '.', '_' and '-')"),
        ("", "prefix must not be empty"),
    ],
)
def test_bad_prefix_fails_before_any_call(consul, consul_args, prefix, message, capsys):
    args = dict(consul_args, prefix=prefix, values={"a": "1"})
    keys_before = consul.api("kv/?keys=true")
    result = run_module(consul_config, capsys, args)
    assert result["failed"] is True and message in result["msg"] and result["msg"].endswith("nothing was changed")
    # The same against a port where nothing listens: still the input error, so no call was made.
    unreachable = run_module(consul_config, capsys, dict(args, port=free_port()))
    assert unreachable["msg"] == result["msg"]
    assert consul.api("kv/?keys=true") == keys_before


@pytest.mark.parametrize(
    "case",
    [
        ({"good": "1", "nested": {"a": 1}}, "values['nested'] is a dict; each value must be a string"),
        ({"good": "1", "hosts": ["a", "b"]}, "values['hosts'] is a list; each value must be a string"),
        ({"good": "1", "unset": None}, "values['unset'] is a null; each value must be a string"),
        ({"good": "1", "db/host": "x"}, "values key 'db/host' contains '/'"),
        ({"good": "1", "..": "x"}, "values key '..' is not a valid key"),
        ({"good": "1", "": "x"}, "values key '' is not a valid key: it is an empty segment"),
    ],
)
def test_bad_values_fail_and_write_nothing(consul, consul_args, config_prefix, case, capsys):
    values, message = case
    consul.kv_put(config_prefix + "/good", "0")
    result = run_module(consul_config, capsys, dict(consul_args, prefix=config_prefix, values=values))
    assert result["failed"] is True and message in result["msg"] and result["msg"].endswith("nothing was changed")
    assert consul.kv_tree(config_prefix) == {"good": "0"}


def test_values_required_for_present(consul_args, capsys):
    result = run_module(consul_config, capsys, dict(consul_args, prefix="msa/config/x"))
    assert result["failed"] is True and "state is present but all of the following are missing: values" in result["msg"]


def test_non_utf8_value_under_prefix_fails_naming_it(consul, consul_args, config_prefix, capsys):
    consul.kv_put(config_prefix + "/blob", b"\xff\xfe")
    result = run_module(consul_config, capsys, dict(consul_args, prefix=config_prefix, values={"a": "1"}))
    assert result["failed"] is True and result["reason"] == "not_utf8"
    assert "%s/blob" % config_prefix in result["msg"] and result["msg"].endswith("nothing was changed")
    assert "a" not in consul.api("kv/%s/?keys=true" % config_prefix)


def test_acl_denied_without_the_token_in_output(consul_acl, config_prefix, capsys):
    consul_acl.kv_put(config_prefix + "/a", "1")
    reader = consul_acl.token_with_rules('key_prefix "%s/" { policy = "read" }' % config_prefix)
    args = {
        "host": consul_acl.host,
        "port": consul_acl.port,
        "token": reader,
        "prefix": config_prefix,
        "values": {"a": "2", "b": "3"},
    }
    checked = run_module(consul_config, capsys, args, check_mode=True, diff=True)  # reading is allowed
    assert checked["changed"] is True and checked["added"] == ["b"] and checked["updated"] == ["a"]
    assert reader not in checked["_raw"]
    denied = run_module(consul_config, capsys, args, diff=True)
    assert denied["failed"] is True and denied["reason"] == "acl_denied" and denied["changed"] is False
    assert "ACL denied: Consul refused to write %s/a" % config_prefix in denied["msg"]
    assert 'key_prefix "%s/" { policy = "write" }' % config_prefix in denied["msg"]
    assert denied["msg"].endswith("nothing was changed")
    assert reader not in denied["_raw"] and consul_acl.token not in denied["_raw"]
    assert consul_acl.kv_tree(config_prefix) == {"a": "1"}
    # The management token may.
    done = run_module(consul_config, capsys, dict(args, token=consul_acl.token))
    assert done["changed"] is True and consul_acl.kv_tree(config_prefix) == {"a": "2", "b": "3"}
    assert consul_acl.token not in done["_raw"]


def test_acl_denied_midway_puts_back_the_keys_already_written(consul_acl, config_prefix, capsys):
    consul_acl.kv_put(config_prefix + "/a", "old")
    token = consul_acl.token_with_rules(
        'key_prefix "%s/" { policy = "read" }\nkey "%s/a" { policy = "write" }' % (config_prefix, config_prefix)
    )
    args = {
        "host": consul_acl.host,
        "port": consul_acl.port,
        "token": token,
        "prefix": config_prefix,
        "values": {"a": "new", "b": "added"},
    }
    result = run_module(consul_config, capsys, args)
    assert result["failed"] is True and result["reason"] == "acl_denied" and result["changed"] is False
    assert "Consul refused to write %s/b" % config_prefix in result["msg"]
    assert "put back what this run had already written: a (old value restored)" in result["msg"]
    assert result["put_back"] == ["a (old value restored)"] and result["not_put_back"] == []
    assert token not in result["_raw"]
    assert consul_acl.kv_tree(config_prefix) == {"a": "old"}


def test_concurrent_change_refused_and_earlier_keys_put_back(consul, consul_args, config_prefix, capsys, monkeypatch):
    for key, value in (("a", "old-a"), ("c", "old-c"), ("x", "keep")):
        consul.kv_put("%s/%s" % (config_prefix, key), value)
    # Plan: a (update), b (add), c (update). Someone changes c after the read, before its write.
    pending = interfere(monkeypatch, consul, {config_prefix + "/c": [(config_prefix + "/c", "theirs")]})
    args = dict(consul_args, prefix=config_prefix, values={"a": "new-a", "b": "new-b", "c": "new-c"})
    result = run_module(consul_config, capsys, args, diff=True)
    assert pending == {}  # the competing write happened
    assert result["failed"] is True and result["reason"] == "cas" and result["changed"] is False
    assert "check-and-set refused to write %s/c: someone changed it after it was read" % config_prefix in result["msg"]
    assert result["put_back"] == ["b (deleted again)", "a (old value restored)"] and result["not_put_back"] == []
    assert "the keys under %s/ are as they were before the task" % config_prefix in result["msg"]
    # Their change to c wins; everything this run wrote is gone.
    assert consul.kv_tree(config_prefix) == {"a": "old-a", "c": "theirs", "x": "keep"}


def test_concurrent_change_that_cannot_be_put_back_is_reported(consul, consul_args, config_prefix, capsys, monkeypatch):
    for key, value in (("a", "old-a"), ("c", "old-c")):
        consul.kv_put("%s/%s" % (config_prefix, key), value)
    # Before c is written, someone changes both c and a (which this run already wrote).
    interfere(
        monkeypatch,
        consul,
        {config_prefix + "/c": [(config_prefix + "/c", "theirs-c"), (config_prefix + "/a", "theirs-a")]},
    )
    args = dict(consul_args, prefix=config_prefix, values={"a": "new-a", "b": "new-b", "c": "new-c"})
    result = run_module(consul_config, capsys, args)
    assert result["failed"] is True and result["reason"] == "cas" and result["changed"] is True
    assert result["put_back"] == ["b (deleted again)"]
    assert result["not_put_back"] == ["a (changed by someone else meanwhile; left as it is)"]
    assert "could NOT put back: a (changed by someone else meanwhile; left as it is)" in result["msg"]
    assert "fix these keys by hand" in result["msg"]
    assert consul.kv_tree(config_prefix) == {"a": "theirs-a", "c": "theirs-c"}


def test_concurrent_change_during_purge_recreates_removed_keys(consul, consul_args, config_prefix, capsys, monkeypatch):
    for key in ("a", "x", "y"):
        consul.kv_put("%s/%s" % (config_prefix, key), "1")
    # Plan: a (update), then x and y removed. Someone rewrites y before its delete.
    interfere(monkeypatch, consul, {config_prefix + "/y": [(config_prefix + "/y", "theirs")]})
    args = dict(consul_args, prefix=config_prefix, values={"a": "2"}, purge=True)
    result = run_module(consul_config, capsys, args)
    assert result["failed"] is True and result["reason"] == "cas" and result["changed"] is False
    assert "check-and-set refused to delete %s/y" % config_prefix in result["msg"]
    assert result["put_back"] == ["x (re-created)", "a (old value restored)"]
    assert consul.kv_tree(config_prefix) == {"a": "1", "x": "1", "y": "theirs"}


def test_first_write_refused_changes_nothing(consul, consul_args, config_prefix, capsys, monkeypatch):
    interfere(monkeypatch, consul, {config_prefix + "/a": [(config_prefix + "/a", "theirs")]})
    result = run_module(consul_config, capsys, dict(consul_args, prefix=config_prefix, values={"a": "mine"}))
    assert result["failed"] is True and result["reason"] == "cas" and result["changed"] is False
    assert "it did not exist" in result["msg"] and result["msg"].endswith("nothing was changed")
    assert "put_back" not in result and consul.kv_tree(config_prefix) == {"a": "theirs"}


def test_agent_not_reachable(capsys):
    port = free_port()
    token = "unreachable-token-never-shown"
    args = {"port": port, "token": token, "timeout": 2, "prefix": "msa/config/orders", "values": {"a": "1"}}
    result = run_module(consul_config, capsys, args)
    assert result["failed"] is True and result["reason"] == "unreachable" and result["changed"] is False
    assert "cannot reach the Consul agent at http://127.0.0.1:%d (connection refused)" % port in result["msg"]
    assert "is the agent running on 127.0.0.1:%d?" % port in result["msg"]
    assert result["msg"].endswith("nothing was changed") and token not in result["_raw"]


def test_https_agent_with_ca_path(consul_tls, config_prefix, capsys):
    args = {
        "host": consul_tls.host,
        "port": consul_tls.port,
        "scheme": "https",
        "prefix": config_prefix,
        "values": {"a": "1"},
    }
    refused = run_module(consul_config, capsys, args)
    assert refused["failed"] is True and refused["reason"] == "tls" and "ca_path" in refused["msg"]
    done = run_module(consul_config, capsys, dict(args, ca_path=consul_tls.ca_path))
    assert done["changed"] is True and consul_tls.kv_tree(config_prefix) == {"a": "1"}
