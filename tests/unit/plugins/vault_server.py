"""Real OpenBao servers on loopback for the Vault module, module_utils and lookup tests.

The ``bao`` binary comes from the artifact cache (``python3 lab/artifacts.py path openbao``). When
it is not there the tests fail (they do not skip): build it with ``python3 lab/artifacts.py build openbao``.

* :func:`dev_server`: ``bao server -dev`` (in memory, unsealed, a known root token);
* :func:`dev_server` with ``tls=True``: the same over HTTPS with the CA ``-dev-tls`` generates;
* :func:`sealed_server`: a real (non-dev) server on Raft storage in a temp dir, initialised and sealed.

It is a pytest plugin: a test module that needs the servers says
``pytest_plugins = ["ansible_collections.msa.platform.tests.unit.plugins.vault_server"]``, and the
session-scoped fixtures below start each server once for the whole run, when a test first asks.
(A conftest.py here would shadow tests/unit/conftest.py for ``from conftest import ...``.)
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
LOOPBACK = "127.0.0.1"
BUILD_HINT = "run `python3 lab/artifacts.py build openbao` (the Vault tests need the real bao binary)"


def free_port():
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def bao_binary():
    """Path of ``bao`` in the artifact cache, without building it: a missing binary is a failure."""
    override = os.environ.get("MSA_BAO_BINARY")
    if override:
        if not os.access(override, os.X_OK):
            raise AssertionError("MSA_BAO_BINARY=%s is not an executable; %s" % (override, BUILD_HINT))
        return override
    spec = importlib.util.spec_from_file_location("_msa_lab_artifacts", ROOT / "lab" / "artifacts.py")
    artifacts = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = artifacts  # dataclasses look their module up there
    spec.loader.exec_module(artifacts)
    entry = artifacts.load_recipe("openbao").entry(artifacts.cache_root())
    path = entry / "bao"
    if not (entry / artifacts.MANIFEST).is_file() or not os.access(path, os.X_OK):
        raise AssertionError("the OpenBao binary is not in the artifact cache (%s); %s" % (path, BUILD_HINT))
    return str(path)


def _request(url, method="GET", body=None, token=None, context=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - loopback test server
    if token:
        req.add_header("X-Vault-Token", token)
    with urllib.request.urlopen(req, timeout=30, context=context) as resp:  # noqa: S310
        text = resp.read().decode()
        return json.loads(text) if text else {}


class BaoServer:
    """One ``bao server`` process; ``url``, ``token`` (root, dev only), ``ca_cert`` (TLS only)."""

    def __init__(self, binary, tmp, *, dev=True, tls=False):
        self.binary = binary
        self.tmp = Path(tmp)
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.dev = dev
        self.tls = tls
        self.token = "root-%d" % self.port if dev else None
        self.url = "%s://%s:%d" % ("https" if tls else "http", LOOPBACK, self.port)
        self.ca_cert = str(self.tmp / "vault-ca.pem") if tls else None
        self.log = self.tmp / "bao.log"
        self.proc = None

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
        cluster_port = free_port()
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
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(self.argv(), stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 15
        context = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("bao server exited: %s" % self.log.read_text()[-2000:])
            if self.tls and context is None and os.path.exists(self.ca_cert):
                import ssl  # noqa: PLC0415

                context = ssl.create_default_context(cafile=self.ca_cert)
            try:
                if self.tls and context is None:
                    raise OSError("no CA yet")
                status = _request(self.url + "/v1/sys/seal-status", context=context)
                if not self.dev or status.get("sealed") is False:
                    return self
            except (OSError, urllib.error.URLError, ValueError):
                pass
            time.sleep(0.05)
        raise AssertionError("bao server did not answer within 15 s: %s" % self.log.read_text()[-2000:])

    def initialise(self):
        """Initialise a non-dev server with one unseal key and leave it sealed."""
        answer = _request(self.url + "/v1/sys/init", "PUT", {"secret_shares": 1, "secret_threshold": 1})
        self.unseal_key = answer["keys"][0]
        self.token = answer["root_token"]
        return self

    def api(self, path, method="GET", body=None, token=None):
        """Raw API call as root (for setting up and checking state behind the modules' backs)."""
        context = None
        if self.tls:
            import ssl  # noqa: PLC0415

            context = ssl.create_default_context(cafile=self.ca_cert)
        return _request("%s/v1/%s" % (self.url, path), method, body, token or self.token, context)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def dev_server(binary, tmp, tls=False):
    return BaoServer(binary, tmp, dev=True, tls=tls).start()


def sealed_server(binary, tmp):
    return BaoServer(binary, tmp, dev=False).start().initialise()


def run_module(module, capsys, args, *, check_mode=False, diff=False):
    """Run ``module.main()`` as Ansible would (as tests/unit/plugins/modules/conftest.py does); the result dict."""
    from ansible.module_utils.testing import patch_module_args  # noqa: PLC0415

    args = dict(args, _ansible_check_mode=check_mode, _ansible_diff=diff)
    with patch_module_args(args), pytest.raises(SystemExit) as info:
        module.main()
    out = json.loads(capsys.readouterr().out)
    out["_rc"] = info.value.code
    return out


# --------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="session")
def bao_bin():
    return bao_binary()


@pytest.fixture(scope="session")
def vault(bao_bin, tmp_path_factory):
    """``bao server -dev`` on loopback: ``.url``, ``.token`` (root), ``.api(path, method, body)``."""
    server = dev_server(bao_bin, tmp_path_factory.mktemp("bao-dev"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def vault_tls(bao_bin, tmp_path_factory):
    """``bao server -dev -dev-tls``: HTTPS with its own CA in ``.ca_cert``."""
    server = dev_server(bao_bin, tmp_path_factory.mktemp("bao-tls"), tls=True)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def vault_sealed(bao_bin, tmp_path_factory):
    """A real server on Raft storage, initialised and sealed."""
    server = sealed_server(bao_bin, tmp_path_factory.mktemp("bao-sealed"))
    yield server
    server.stop()


@pytest.fixture
def vault_args(vault):
    """Connection options for the dev server, as a task would pass them."""
    return {"url": vault.url, "token": vault.token}


@pytest.fixture
def kv_path(request):
    """A secret path of its own for each test."""
    return "tests/%s" % request.node.name.replace("[", "-").replace("]", "")
