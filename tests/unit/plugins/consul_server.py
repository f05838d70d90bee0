"""Real Consul agents on loopback for the ``consul_config`` module and ``_consul_client`` tests.

The ``consul`` binary comes from the artifact cache (``python3 lab/artifacts.py path consul``). When
it is not there the tests fail (they do not skip): build it with ``python3 lab/artifacts.py build consul``.

* :func:`dev_agent`: ``consul agent -dev`` (in memory, a server that elects itself) on free loopback
  ports (HTTP, DNS, Serf LAN/WAN, server RPC; gRPC off), its data dir in a temp dir;
* ``acl=True``: the same with ACLs on, ``default_policy = "deny"`` and a known management token;
* ``tls=True``: HTTPS only, with a CA and a server certificate made by ``consul tls``.

A pytest plugin (see ``lab_servers``, which holds what it shares with ``vault_server``): the
``consul_config`` and ``_consul_client`` test modules load it with
``pytest_plugins = ["ansible_collections.msa.platform.tests.unit.plugins.consul_server"]``.
"""

from __future__ import annotations

import base64
import json
import os
import re
import ssl
import subprocess
import urllib.error
import urllib.parse
import uuid
from functools import partial
from pathlib import Path

import pytest
from ansible_collections.msa.platform.tests.unit.plugins import lab_servers
from ansible_collections.msa.platform.tests.unit.plugins.lab_servers import LOOPBACK


def consul_binary():
    """Path of ``consul`` in the artifact cache (or ``$MSA_CONSUL_BINARY``); a missing binary is a failure."""
    return lab_servers.artifact_binary(
        "consul",
        "consul",
        override_var="MSA_CONSUL_BINARY",
        label="Consul",
        why="the Consul tests need the real consul binary",
    )


class ConsulAgent(lab_servers.ServerProcess):
    """One ``consul agent -dev``: ``host``, ``port``, ``scheme``, ``url``, ``token`` (management token,
    ACL agent only), ``ca_path`` (TLS agent only); ``api()`` and the ``kv_*`` helpers go behind the
    module's back with that token."""

    what = "consul agent"

    def __init__(self, binary, tmp, *, acl=False, tls=False):
        self.binary = binary
        self.tmp = Path(tmp)
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.acl = acl
        self.tls = tls
        self.host = LOOPBACK
        self.port, self.dns_port, self.serf_lan, self.serf_wan, self.server_port = lab_servers.free_ports(5)
        self.scheme = "https" if tls else "http"
        self.url = "%s://%s:%d" % (self.scheme, self.host, self.port)
        # A UUID: Consul deprecates other forms for the management token.
        self.token = str(uuid.uuid4()) if acl else None
        self.ca_path = None
        self.log = self.tmp / "consul.log"
        self.proc = None

    def _make_certs(self):
        certs = self.tmp / "certs"
        certs.mkdir(exist_ok=True)
        for argv in (["tls", "ca", "create"], ["tls", "cert", "create", "-server", "-dc", "dc1"]):
            subprocess.run([self.binary, *argv], cwd=certs, check=True, capture_output=True, timeout=60)
        self.ca_path = str(certs / "consul-agent-ca.pem")
        return certs / "dc1-server-consul-0.pem", certs / "dc1-server-consul-0-key.pem"

    def argv(self):
        data = self.tmp / "data"
        data.mkdir(exist_ok=True)
        argv = [
            self.binary,
            "agent",
            "-dev",
            "-node=msa-test-%d" % self.port,
            "-bind=%s" % LOOPBACK,
            "-client=%s" % LOOPBACK,
            "-data-dir=%s" % data,
            "-dns-port=%d" % self.dns_port,
            "-serf-lan-port=%d" % self.serf_lan,
            "-serf-wan-port=%d" % self.serf_wan,
            "-server-port=%d" % self.server_port,
            "-grpc-port=-1",
            "-hcl=ports { grpc_tls = -1 }",
        ]
        if self.tls:
            cert, key = self._make_certs()
            argv += [
                "-http-port=-1",
                "-hcl=ports { https = %d }" % self.port,
                '-hcl=tls { defaults { ca_file = "%s" cert_file = "%s" key_file = "%s" verify_incoming = false } }'
                % (self.ca_path, cert, key),
            ]
        else:
            argv.append("-http-port=%d" % self.port)
        if self.acl:
            argv.append(
                '-hcl=acl { enabled = true default_policy = "deny" tokens { initial_management = "%s" } }' % self.token
            )
        return argv

    def start(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONSUL_")}
        env["HOME"] = str(self.tmp)
        self.launch(self.argv(), env)
        if self.wait_ready(self._has_leader, timeout=30, interval=0.1):
            return self
        self.stop()
        raise AssertionError("consul agent had no leader within 30 s: %s" % self.log_tail())

    def _has_leader(self):
        # The management token is usable once the leader has bootstrapped the ACLs.
        return self.api("status/leader") and (not self.acl or self.api("acl/token/self").get("AccessorID"))

    def api(self, path, method="GET", body=None, token=None, raw=False):
        """Raw HTTP API call (``/v1/<path>``) with the management token (or ``token``); the decoded
        JSON answer (``raw``: the bytes), None for 404."""
        if body is None:
            data = None
        elif isinstance(body, (bytes, str)):
            data = body.encode() if isinstance(body, str) else body
        else:
            data = json.dumps(body).encode()
        headers = {"X-Consul-Token": token or self.token} if token or self.token else None
        context = ssl.create_default_context(cafile=self.ca_path) if self.tls else None
        try:
            text = lab_servers.http_call(
                "%s/v1/%s" % (self.url, path), method, data, headers, context=context, timeout=10
            )
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise
        if raw:
            return text
        return json.loads(text) if text else None

    # KV helpers, keys are full paths

    def kv_tree(self, prefix):
        """``{relative key: value}`` under ``prefix/`` (values decoded, None for a null value)."""
        entries = self.api("kv/%s/?recurse=true" % urllib.parse.quote(prefix)) or []
        tree = {}
        for entry in entries:
            value = entry["Value"]
            tree[entry["Key"][len(prefix) + 1 :]] = base64.b64decode(value).decode() if value is not None else None
        return tree

    def kv_put(self, key, value):
        if self.api("kv/%s" % urllib.parse.quote(key), "PUT", value) is not True:
            raise AssertionError("consul refused to write %s" % key)

    def kv_delete_tree(self, prefix):
        self.api("kv/%s/?recurse=true" % urllib.parse.quote(prefix), "DELETE")

    def token_with_rules(self, rules):
        """A new ACL token (its SecretID) whose only policy has ``rules``."""
        name = "msa-test-%s" % uuid.uuid4().hex[:12]
        self.api("acl/policy", "PUT", {"Name": name, "Rules": rules})
        return self.api("acl/token", "PUT", {"Policies": [{"Name": name}]})["SecretID"]


def dev_agent(binary, tmp, *, acl=False, tls=False):
    return ConsulAgent(binary, tmp, acl=acl, tls=tls).start()


# --------------------------------------------------------------------------------------------
# fixtures

consul_bin, consul, consul_acl, consul_tls = lab_servers.session_fixtures(
    "consul_bin",
    consul_binary,
    consul=(
        dev_agent,
        "``consul agent -dev`` on loopback, no ACLs: ``.host``, ``.port``, ``.url``, ``.api()``, ``.kv_*()``.",
    ),
    consul_acl=(
        partial(dev_agent, acl=True),
        "A dev agent with ACLs on, default deny; ``.token`` is the initial management token.",
    ),
    consul_tls=(partial(dev_agent, tls=True), "A dev agent serving HTTPS only, its CA in ``.ca_path``."),
)


@pytest.fixture
def consul_args(consul):
    """Connection options for the plain dev agent, as a task would pass them."""
    return {"host": consul.host, "port": consul.port}


@pytest.fixture
def config_prefix(request):
    """A KV prefix of its own for each test (a valid one: letters, digits and '-' only)."""
    name = re.sub(r"[^A-Za-z0-9]+", "-", request.node.name).strip("-")
    return "msa/tests/%s" % name
