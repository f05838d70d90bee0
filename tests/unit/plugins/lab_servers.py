"""What the pytest plugins that run real servers on loopback share (``vault_server`` for OpenBao,
``consul_server`` for Consul): free ports, the server binary from the artifact cache, an HTTP call,
:class:`ServerProcess` (start, wait until it answers, stop), their session-scoped fixtures
(:func:`session_fixtures`) and :func:`run_module`.

A plain helper module, not a pytest plugin: it registers no fixtures or hooks of its own. The plugins
and the tests import it by its collection path, ``ansible_collections.msa.platform.tests.unit.plugins.lab_servers``,
the way test modules load the plugins themselves
(``pytest_plugins = ["ansible_collections.msa.platform.tests.unit.plugins.<name>"]``; their session-scoped
fixtures start each server once for the whole run, when a test first asks). Plugins rather than a
conftest.py here, which would shadow tests/unit/conftest.py for ``from conftest import ...``.
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


def free_ports(count):
    """``count`` distinct free ports (held together while picked, so no two are the same)."""
    socks = []
    try:
        for _index in range(count):
            sock = socket.socket()
            sock.bind((LOOPBACK, 0))
            socks.append(sock)
        return [s.getsockname()[1] for s in socks]
    finally:
        for sock in socks:
            sock.close()


def free_port():
    return free_ports(1)[0]


def artifact_binary(recipe, name, *, override_var, label, why):
    """Path of the executable ``name`` in the artifact cache entry of ``recipe``, without building
    it (``$override_var``, when set, names it instead): a missing binary is a failure, which says how
    to build it and ``why``."""
    hint = "run `python3 lab/artifacts.py build %s` (%s)" % (recipe, why)
    override = os.environ.get(override_var)
    if override:
        if not os.access(override, os.X_OK):
            raise AssertionError("%s=%s is not an executable; %s" % (override_var, override, hint))
        return override
    spec = importlib.util.spec_from_file_location("_msa_lab_artifacts", ROOT / "lab" / "artifacts.py")
    artifacts = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = artifacts  # dataclasses look their module up there
    spec.loader.exec_module(artifacts)
    entry = artifacts.load_recipe(recipe).entry(artifacts.cache_root())
    path = entry / name
    if not (entry / artifacts.MANIFEST).is_file() or not os.access(path, os.X_OK):
        raise AssertionError("the %s binary is not in the artifact cache (%s); %s" % (label, path, hint))
    return str(path)


def http_call(url, method="GET", data=None, headers=None, *, context=None, timeout=30):
    """One request to a loopback test server; the answer's body (bytes). HTTP errors raise."""
    req = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - loopback test server
    for header, value in (headers or {}).items():
        req.add_header(header, value)
    with urllib.request.urlopen(req, timeout=timeout, context=context) as resp:  # noqa: S310
        return resp.read()


class ServerProcess:
    """A server process whose output goes to ``self.log``; ``self.proc`` once launched."""

    what = "server"  # its name in failure messages
    log: Path
    proc = None

    def launch(self, argv, env):
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)

    def log_tail(self):
        return self.log.read_text()[-2000:]

    def wait_ready(self, ready, *, timeout, interval):
        """Poll ``ready()`` until it is true (True) or ``timeout`` seconds pass (False); the errors of a
        server that does not listen or answer yet count as not ready. The process exiting fails at once."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("%s exited: %s" % (self.what, self.log_tail()))
            try:
                if ready():
                    return True
            except (OSError, urllib.error.URLError, ValueError):
                pass
            time.sleep(interval)
        return False

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def run_module(module, capsys, args, *, check_mode=False, diff=False):
    """Run ``module.main()`` as Ansible would; the result dict, with the exit code in ``_rc`` and the
    raw JSON the module printed in ``_raw`` (to look for secrets in)."""
    from ansible.module_utils.testing import patch_module_args  # noqa: PLC0415

    args = dict(args, _ansible_check_mode=check_mode, _ansible_diff=diff)
    with patch_module_args(args), pytest.raises(SystemExit) as info:
        module.main()
    raw = capsys.readouterr().out
    out = json.loads(raw)
    out["_rc"] = info.value.code
    out["_raw"] = raw
    return out


def session_fixtures(binary_name, find_binary, **servers):
    """The session-scoped fixtures of a server plugin, in this order: ``binary_name``, the server
    binary's path (``find_binary()``); then one per keyword ``name=(start, doc)``, the server that
    ``start(binary, tmp)`` returns (``tmp``: a fresh temp dir), started when a test first asks for it
    and stopped after the last test, ``doc`` its docstring. The plugin binds them at module level to
    the same names, where pytest finds them."""

    def binary():
        return find_binary()

    binary.__doc__ = find_binary.__doc__
    fixtures = [pytest.fixture(scope="session", name=binary_name)(binary)]
    fixtures += [_server_fixture(name, start, doc, binary_name) for name, (start, doc) in servers.items()]
    return fixtures


def _server_fixture(name, start, doc, binary_name):
    def server(request, tmp_path_factory):
        started = start(request.getfixturevalue(binary_name), tmp_path_factory.mktemp(name))
        yield started
        started.stop()

    server.__doc__ = doc
    return pytest.fixture(scope="session", name=name)(server)
