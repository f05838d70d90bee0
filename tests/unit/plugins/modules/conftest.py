"""Helpers for the module tests: run a module's main() as Ansible would, the HAProxy lab's options."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from ansible.module_utils._internal import _traceback
from ansible.module_utils.testing import patch_module_args
from ansible_collections.msa.platform.plugins.modules import bluegreen_info


def run_module(module, capsys, args, *, check_mode=False, diff=False, tracebacks=False):
    """Run ``module.main()``; ``tracebacks`` asks for error tracebacks in results, as ``-vvv`` does."""
    args = dict(args)
    args["_ansible_check_mode"] = check_mode
    args["_ansible_diff"] = diff
    if tracebacks:
        args["_ansible_tracebacks_for"] = ["error"]
    # ansible-core caches the traceback setting for the life of the process (one module run).
    _traceback._module_tracebacks_enabled_events = None
    with patch_module_args(args), pytest.raises(SystemExit) as info:
        module.main()
    out = json.loads(capsys.readouterr().out)
    out["_rc"] = info.value.code
    return out


def lab_args(lab, tmp_path, **kw):
    args = {
        "haproxy_socket": lab.socket,
        "haproxy_state_file": lab.state_file,
        "state_dir": str(tmp_path / "bg"),
        "hosts": ["app1", "app2"],
    }
    args.update(kw)
    return args


@pytest.fixture
def bg(wait):
    """``bg.run(module, capsys, args, check_mode=, diff=)``, ``bg.args(lab, tmp_path, **options)``, ``bg.wait``."""
    return SimpleNamespace(run=run_module, args=lab_args, wait=wait)


@pytest.fixture
def up(haproxy_lab, wait, capsys, tmp_path):
    """The HAProxy lab with every server's checks passing."""

    def all_up():
        result = run_module(bluegreen_info, capsys, lab_args(haproxy_lab, tmp_path, service="orders"))
        health = result["services"]["orders"]["health"]
        return health["blue"]["healthy"] and health["green"]["healthy"]

    wait(all_up, what="all servers UP")
    return haproxy_lab
