"""The Consul HTTP client (_consul_client) against real Consul agents: KV reads and check-and-set
writes, and every bad-connection case a clear ConsulError that never carries the token."""

from __future__ import annotations

import socket

import pytest
from ansible_collections.msa.platform.plugins.module_utils._consul_client import (
    ConsulClient,
    ConsulError,
    option_problems,
)
from ansible_collections.msa.platform.plugins.modules import consul_config
from ansible_collections.msa.platform.tests.unit.plugins.lab_servers import LOOPBACK, free_port, run_module

pytest_plugins = ["ansible_collections.msa.platform.tests.unit.plugins.consul_server"]

SECRET = "never-shown-consul-token-42"


def client_of(agent, **kw):
    options = {"host": agent.host, "port": agent.port, "scheme": agent.scheme, "token": agent.token}
    options.update(kw)
    return ConsulClient.from_options(options)


def error_of(func, *args, **kwargs):
    with pytest.raises(ConsulError) as info:
        func(*args, **kwargs)
    return info.value


def test_read_tree_put_and_delete_with_cas(consul, config_prefix):
    client = client_of(consul)
    assert client.read_tree(config_prefix) == {}  # 404: nothing there yet
    client.put(config_prefix + "/a", "1", 0)
    client.put(config_prefix + "/nested/b", "zwei", 0)
    consul.kv_put(config_prefix + "-other/c", "not mine")  # shares the text of the prefix, not the folder
    tree = client.read_tree(config_prefix)
    assert {k: v["value"] for k, v in tree.items()} == {config_prefix + "/a": "1", config_prefix + "/nested/b": "zwei"}
    index = tree[config_prefix + "/a"]["index"]
    assert index > 0 and client.read_key(config_prefix + "/a") == {"value": "1", "index": index}
    assert client.read_key(config_prefix + "/missing") is None

    # cas=0 on an existing key, or a stale index: refused, and nothing written.
    exc = error_of(client.put, config_prefix + "/a", "2", 0)
    assert exc.details["reason"] == "cas" and "check-and-set refused to write %s/a" % config_prefix in exc.msg
    assert "it did not exist" in exc.msg and "retry" in exc.msg
    client.put(config_prefix + "/a", "2", index)
    exc = error_of(client.put, config_prefix + "/a", "3", index)
    assert exc.details["reason"] == "cas" and "ModifyIndex %d" % index in exc.msg
    exc = error_of(client.delete, config_prefix + "/a", index)
    assert exc.details["reason"] == "cas" and "refused to delete" in exc.msg
    assert consul.kv_tree(config_prefix)["a"] == "2"
    client.delete(config_prefix + "/a", client.read_key(config_prefix + "/a")["index"])
    assert consul.kv_tree(config_prefix) == {"nested/b": "zwei"}


def test_folder_marker_and_non_utf8_value(consul, config_prefix):
    client = client_of(consul)
    consul.api("kv/%s/folder/" % config_prefix, "PUT")  # what the UI makes for a folder: a null value
    assert client.read_tree(config_prefix)[config_prefix + "/folder/"]["value"] == ""
    consul.kv_put(config_prefix + "/blob", b"\xff\xfe\x00binary")
    exc = error_of(client.read_tree, config_prefix)
    assert exc.details["reason"] == "not_utf8" and exc.details["key"] == config_prefix + "/blob"
    assert "the value of %s/blob in Consul is not UTF-8 text" % config_prefix in exc.msg


def test_other_status_carries_consuls_text(consul, config_prefix):
    client = client_of(consul)
    exc = error_of(client.request, "PUT", "kv/%s/x" % config_prefix, "write x", query={"cas": "abc"}, body=b"v")
    assert exc.details["reason"] == "http" and exc.details["status"] == 500
    assert "answered 500" in exc.msg and 'parsing "abc": invalid syntax' in exc.msg


def test_unreachable_agent():
    port = free_port()
    client = ConsulClient(host=LOOPBACK, port=port, token=SECRET, timeout=2)
    exc = error_of(client.read_tree, "msa/config/x")
    assert exc.details["reason"] == "unreachable"
    assert "cannot reach the Consul agent at http://%s:%d (connection refused)" % (LOOPBACK, port) in exc.msg
    assert "is the agent running on %s:%d?" % (LOOPBACK, port) in exc.msg and SECRET not in exc.msg


def test_agent_that_does_not_answer_times_out():
    with socket.socket() as listener:
        listener.bind((LOOPBACK, 0))
        listener.listen(8)  # connections complete in the backlog; nobody ever answers
        port = listener.getsockname()[1]
        client = ConsulClient(host=LOOPBACK, port=port, token=SECRET, timeout=1)
        exc = error_of(client.read_tree, "msa/config/x")
    assert exc.details["reason"] == "timeout"
    assert "no answer from the Consul agent at http://%s:%d within 1 seconds" % (LOOPBACK, port) in exc.msg
    assert "is the agent running" in exc.msg and SECRET not in exc.msg


def test_tls_verification_then_ca_path(consul_tls, consul):
    exc = error_of(client_of(consul_tls).read_tree, "msa/x")
    assert exc.details["reason"] == "tls" and "certificate verify failed" in exc.msg
    assert "set ca_path (or CONSUL_CACERT)" in exc.msg
    assert client_of(consul_tls, ca_path=consul_tls.ca_path).read_tree("msa/x") == {}
    assert client_of(consul_tls, validate_certs=False).read_tree("msa/x") == {}
    # HTTPS to a plain HTTP port, and HTTP to the HTTPS port: each says which way round it is.
    exc = error_of(client_of(consul, scheme="https").read_tree, "msa/x")
    assert exc.details["reason"] == "tls" and "does not speak HTTPS: check scheme and port" in exc.msg
    exc = error_of(client_of(consul_tls, scheme="http").read_tree, "msa/x")
    assert "speaks HTTPS on port %d; set scheme=https" % consul_tls.port in exc.msg


def test_acl_errors_never_carry_the_token(consul_acl, config_prefix):
    consul_acl.kv_put(config_prefix + "/a", "1")
    # A token Consul does not know.
    exc = error_of(client_of(consul_acl, token=SECRET).read_tree, config_prefix)
    assert exc.details["reason"] == "acl_unknown_token" and "ACL not found" in exc.msg and SECRET not in exc.msg
    # A token that may read but not write.
    reader = consul_acl.token_with_rules('key_prefix "%s/" { policy = "read" }' % config_prefix)
    client = client_of(consul_acl, token=reader)
    assert {k: v["value"] for k, v in client.read_tree(config_prefix).items()} == {config_prefix + "/a": "1"}
    exc = error_of(client.put, config_prefix + "/a", "2", 0, scope=config_prefix + "/")
    assert exc.details["reason"] == "acl_denied" and "lacks permission 'key:write'" in exc.msg
    assert 'key_prefix "%s/" { policy = "write" }' % config_prefix in exc.msg and reader not in exc.msg
    # No token at all: the anonymous token, which default deny lets do nothing.
    exc = error_of(client_of(consul_acl, token=None).put, config_prefix + "/a", "2", 0)
    assert exc.details["reason"] == "acl_denied" and "no token was given" in exc.msg
    # A token that may read only some of the keys: the read is refused rather than half empty.
    partial = consul_acl.token_with_rules('key "%s/a" { policy = "read" }' % config_prefix)
    consul_acl.kv_put(config_prefix + "/b", "2")
    exc = error_of(client_of(consul_acl, token=partial).read_tree, config_prefix)
    assert exc.details["reason"] == "acl_filtered" and "hid some keys under %s/" % config_prefix in exc.msg
    assert consul_acl.kv_tree(config_prefix) == {"a": "1", "b": "2"}


def test_token_from_environment(consul_acl, config_prefix, monkeypatch, capsys):
    args = {"host": consul_acl.host, "port": consul_acl.port, "prefix": config_prefix, "values": {"a": "1"}}
    monkeypatch.setenv("CONSUL_HTTP_TOKEN", consul_acl.token)
    result = run_module(consul_config, capsys, args)
    assert result["changed"] is True and consul_acl.kv_tree(config_prefix) == {"a": "1"}
    assert consul_acl.token not in result["_raw"]
    monkeypatch.setenv("CONSUL_HTTP_TOKEN", SECRET)
    result = run_module(consul_config, capsys, dict(args, values={"a": "2"}))
    assert result["failed"] is True and result["reason"] == "acl_unknown_token" and SECRET not in result["_raw"]


def test_option_problems(capsys):
    assert option_problems({"host": "127.0.0.1", "port": 8500, "timeout": 10}) == []
    problems = option_problems({"host": "http://consul:8500", "port": 0, "timeout": 0})
    assert problems == [
        "host must be a host name or an IP address (no scheme, no port, no path), got 'http://consul:8500'; "
        "set scheme and port separately",
        "port must be between 1 and 65535, got 0",
        "timeout must be between 1 and 3600 (seconds), got 0",
    ]
    result = run_module(consul_config, capsys, {"host": "consul/x", "prefix": "a", "values": {}})
    assert result["failed"] is True and result["msg"].startswith("host must be")
    assert result["msg"].endswith("nothing was changed")
    assert ConsulClient(host="::1", port=8500).url == "http://[::1]:8500"
