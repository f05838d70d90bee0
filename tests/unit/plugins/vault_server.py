"""Real OpenBao servers on loopback for the Vault module, module_utils and lookup tests.

The ``bao`` binary comes from the artifact cache (``python3 lab/artifacts.py path openbao``). When
it is not there the tests fail (they do not skip): build it with ``python3 lab/artifacts.py build openbao``.

* :func:`dev_server`: ``bao server -dev`` (in memory, unsealed, a known root token);
* :func:`dev_server` with ``tls=True``: the same over HTTPS with the CA ``-dev-tls`` generates;
* :func:`sealed_server`: a real (non-dev) server on Raft storage in a temp dir, initialised and sealed.

A pytest plugin (see ``lab_servers``, which holds what it shares with ``consul_server``): the test
modules of the Vault plugins load it with
``pytest_plugins = ["ansible_collections.msa.platform.tests.unit.plugins.vault_server"]``.
"""

from __future__ import annotations

import json
import os
import ssl
from functools import partial
from pathlib import Path

import pytest
from ansible_collections.msa.platform.tests.unit.plugins import lab_servers
from ansible_collections.msa.platform.tests.unit.plugins.lab_servers import LOOPBACK


def bao_binary():
    """Path of ``bao`` in the artifact cache (or ``$MSA_BAO_BINARY``); a missing binary is a failure."""
    return lab_servers.artifact_binary(
        "openbao", "bao", override_var="MSA_BAO_BINARY", label="OpenBao", why="the Vault tests need the real bao binary"
    )


def _request(url, method="GET", body=None, token=None, context=None):
    data = json.dumps(body).encode() if body is not None else None
    headers = {"X-Vault-Token": token} if token else None
    text = lab_servers.http_call(url, method, data, headers, context=context).decode()
    return json.loads(text) if text else {}


class BaoServer(lab_servers.ServerProcess):
    """One ``bao server`` process; ``url``, ``token`` (root, dev only), ``ca_cert`` (TLS only)."""

    what = "bao server"

    def __init__(self, binary, tmp, *, dev=True, tls=False):
        self.binary = binary
        self.tmp = Path(tmp)
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.port = lab_servers.free_port()
        self.dev = dev
        self.tls = tls
        self.token = "root-%d" % self.port if dev else None
        self.url = "%s://%s:%d" % ("https" if tls else "http", LOOPBACK, self.port)
        self.ca_cert = str(self.tmp / "vault-ca.pem") if tls else None
        self.log = self.tmp / "bao.log"
        self.proc = None
        self._context = None

    def argv(self):
        if self.dev:
            argv = [
                self.binary,
                "server",
                "-dev",
                "-dev-no-store-token",
                "-dev-root-token-id=%s" % self.token,
                "-dev-listen-address=%s:%d" % (LOOPBACK, self.port),
            ]
            if self.tls:
                argv += ["-dev-tls", "-dev-tls-cert-dir=%s" % self.tmp]
            return argv
        config = self.tmp / "config.hcl"
        storage = self.tmp / "data"
        storage.mkdir(exist_ok=True)
        cluster_port = lab_servers.free_port()
        config.write_text(
            'storage "raft" {\n  path = "%s"\n  node_id = "node1"\n  performance_multiplier = 1\n}\n'
            'listener "tcp" {\n  address = "%s:%d"\n  cluster_address = "%s:%d"\n  tls_disable = true\n}\n'
            'api_addr = "http://%s:%d"\n'
            'cluster_addr = "http://%s:%d"\n'
            % (storage, LOOPBACK, self.port, LOOPBACK, cluster_port, LOOPBACK, self.port, LOOPBACK, cluster_port)
        )
        return [self.binary, "server", "-config=%s" % config]

    def start(self):
        env = dict(os.environ, HOME=str(self.tmp))
        for name in ("VAULT_ADDR", "BAO_ADDR", "VAULT_TOKEN", "BAO_TOKEN"):
            env.pop(name, None)
        self._context = None
        self.launch(self.argv(), env)
        if self.wait_ready(self._answers, timeout=15, interval=0.05):
            return self
        raise AssertionError("bao server did not answer within 15 s: %s" % self.log_tail())

    def _answers(self):
        """Ready: answering seal-status (over TLS once the dev CA is written), a dev server unsealed."""
        if self.tls and self._context is None:
            if not os.path.exists(self.ca_cert):
                return False
            self._context = ssl.create_default_context(cafile=self.ca_cert)
        status = _request(self.url + "/v1/sys/seal-status", context=self._context)
        return not self.dev or status.get("sealed") is False

    def initialise(self):
        """Initialise a non-dev server with one unseal key and leave it sealed."""
        answer = _request(self.url + "/v1/sys/init", "PUT", {"secret_shares": 1, "secret_threshold": 1})
        self.unseal_key = answer["keys"][0]
        self.token = answer["root_token"]
        return self

    def api(self, path, method="GET", body=None, token=None):
        """Raw API call as root (for setting up and checking state behind the modules' backs)."""
        context = ssl.create_default_context(cafile=self.ca_cert) if self.tls else None
        return _request("%s/v1/%s" % (self.url, path), method, body, token or self.token, context)


def dev_server(binary, tmp, tls=False):
    return BaoServer(binary, tmp, dev=True, tls=tls).start()


def sealed_server(binary, tmp):
    return BaoServer(binary, tmp, dev=False).start().initialise()


# --------------------------------------------------------------------------------------------
# fixtures

bao_bin, vault, vault_tls, vault_sealed = lab_servers.session_fixtures(
    "bao_bin",
    bao_binary,
    vault=(dev_server, "``bao server -dev`` on loopback: ``.url``, ``.token`` (root), ``.api(path, method, body)``."),
    vault_tls=(partial(dev_server, tls=True), "``bao server -dev -dev-tls``: HTTPS with its own CA in ``.ca_cert``."),
    vault_sealed=(sealed_server, "A real server on Raft storage, initialised and sealed."),
)


@pytest.fixture
def vault_args(vault):
    """Connection options for the dev server, as a task would pass them."""
    return {"url": vault.url, "token": vault.token}


@pytest.fixture
def kv_path(request):
    """A secret path of its own for each test."""
    return "tests/%s" % request.node.name.replace("[", "-").replace("]", "")
