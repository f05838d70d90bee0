"""The vault_kv lookup against a real OpenBao dev server.

Called directly (options as its documentation defines them), and once end to end: ansible-playbook
loads the lookup and the vault_secret module from the collection, the registered secret equals what
the lookup reads, and no value appears in the output even at -vvv with --diff.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from ansible.errors import AnsibleLookupError
from ansible.module_utils._internal import _traceback
from ansible_collections.msa.platform.plugins.lookup import vault_kv

# Importing controller code (ansible.errors -> ansible.utils.display) points ansible-core's traceback
# switch at the controller's configuration for the whole process; the module tests collected after
# this file expect the module-side switch (their `_ansible_tracebacks_for`), so put it back.
_traceback._is_traceback_enabled = _traceback._is_module_traceback_enabled

pytest_plugins = ["ansible_collections.msa.platform.tests.unit.plugins.vault_server"]

ROOT = Path(__file__).resolve().parents[4]
SECRET = "lookup-Secret-value-77"


def documented_defaults():
    options = yaml.safe_load(vault_kv.DOCUMENTATION)["options"]
    defaults = {name: spec.get("default") for name, spec in options.items() if name != "_terms"}
    # The shared options come from the doc fragment msa.platform.vault.
    from ansible_collections.msa.platform.plugins.doc_fragments.vault import ModuleDocFragment  # noqa: PLC0415

    for name, spec in yaml.safe_load(ModuleDocFragment.DOCUMENTATION)["options"].items():
        defaults[name] = spec.get("default")
    return defaults


def lookup(terms, **options):
    plugin = vault_kv.LookupModule()
    values = documented_defaults()
    values.update(options)
    plugin.set_options = lambda **_kwargs: None
    plugin._options = values
    return plugin.run(terms, {})


@pytest.fixture
def written(vault, kv_path):
    vault.api("secret/data/%s" % kv_path, "POST", {"data": {"password": "first-version-1"}})
    vault.api("secret/data/%s" % kv_path, "POST", {"data": {"password": SECRET, "user": "orders"}})
    return kv_path


def test_whole_data_one_key_and_version(vault_args, written):
    assert lookup([written], **vault_args) == [{"password": SECRET, "user": "orders"}]
    assert lookup([written, written], key="user", **vault_args) == ["orders", "orders"]
    assert lookup([written], key="password", version=1, **vault_args) == ["first-version-1"]


def test_environment_defaults(vault, written, monkeypatch):
    monkeypatch.setenv("VAULT_ADDR", vault.url)
    monkeypatch.setenv("VAULT_TOKEN", vault.token)
    assert lookup([written], key="user") == ["orders"]


def test_missing_secret_key_and_mount(vault, vault_args, written):
    with pytest.raises(AnsibleLookupError, match="does not exist"):
        lookup(["no/such/secret"], **vault_args)
    with pytest.raises(AnsibleLookupError, match=r"has no key nope \(its keys: password, user\)") as info:
        lookup([written], key="nope", **vault_args)
    assert SECRET not in str(info.value)
    with pytest.raises(AnsibleLookupError, match="no secrets engine is mounted at nosuchmount/"):
        lookup([written], mount="nosuchmount", **vault_args)
    vault.api("secret/data/%s" % written, "DELETE")
    with pytest.raises(AnsibleLookupError, match=r"version 2\) was deleted or destroyed"):
        lookup([written], **vault_args)


def test_wrong_token_is_not_shown(vault, written):
    with pytest.raises(AnsibleLookupError, match="refused the token") as info:
        lookup([written], url=vault.url, token="bad-token-%s" % SECRET)
    assert SECRET not in str(info.value)


PLAYBOOK = """
- hosts: localhost
  gather_facts: false
  module_defaults:
    group/msa.platform.vault:
      url: "{{ vault_url }}"
  tasks:
    - name: Make sure the secret exists
      msa.platform.vault_secret:
        path: "{{ secret_path }}"
        keys: [password]
      register: made
    - name: Read it back with the lookup
      ansible.builtin.assert:
        that:
          - made.secret.password == lookup('msa.platform.vault_kv', secret_path, key='password', url=vault_url)
          - made.secret.password | length == 32
        quiet: true
    - name: Write a second secret with a diff
      msa.platform.vault_kv:
        path: "{{ secret_path }}-kv"
        data:
          password: "{{ made.secret.password }}"
"""


def test_end_to_end_no_value_in_output(vault, kv_path, tmp_path):
    playbook = tmp_path / "play.yml"
    playbook.write_text(PLAYBOOK)
    env = dict(
        os.environ,
        ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".venv" / "collections"),
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        VAULT_TOKEN=vault.token,
        ANSIBLE_LOCALHOST_WARNING="false",
        ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
    )
    argv = [
        str(Path(sys.executable).parent / "ansible-playbook"),
        str(playbook),
        "-i",
        "localhost,",
        "-c",
        "local",
        "-vvv",
        "--diff",
        "-e",
        "vault_url=%s secret_path=%s ansible_python_interpreter=%s" % (vault.url, kv_path, sys.executable),
    ]
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, check=False, cwd=tmp_path)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    value = vault.api("secret/data/%s" % kv_path)["data"]["data"]["password"]
    assert vault.api("secret/data/%s-kv" % kv_path)["data"]["data"]["password"] == value
    assert value not in output
    assert vault.token not in output
