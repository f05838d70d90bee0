"""The platform_secret lookup: the files backend against ansible.builtin.password, the vault backend
against a real OpenBao dev server (and a TLS one, and a sealed Raft one).

Each call runs in a fresh Python process, as a forked Ansible worker would: the collection loader
resolves ``msa.platform.platform_secret`` and ``ansible.builtin.password`` the way ansible-playbook
does (this test process imports the collection from a plain path, where FQCNs do not resolve), and
the lookup's per-process login cache starts empty. The driver prints each call's values or error,
and stderr carries Ansible's warnings.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.error
from pathlib import Path

import pytest
from ansible.module_utils._internal import _traceback
from ansible.parsing.vault import VaultLib, VaultSecret

# See test_lookup_vault_kv.py: controller imports switch ansible-core's traceback setting for the
# whole process; the module tests collected after this file expect the module-side one.
_traceback._is_traceback_enabled = _traceback._is_module_traceback_enabled

pytest_plugins = ["ansible_collections.msa.platform.tests.unit.plugins.vault_server"]

ROOT = Path(__file__).resolve().parents[4]
COLLECTIONS = ROOT / ".venv" / "collections"
NAME = "platform_secret"
STORED = "Stored-Value-Never-Shown-42"

# Runs lookups as ansible-playbook would: collection loader, DataLoader (with the run's vault
# password when given), a Templar over the variables. With "race", a competing value is written
# through the raw API once, just before the lookup's check-and-set write ("write") or between its
# read of the data and of the metadata ("metadata").
DRIVER = r"""
import json, sys, urllib.request
from ansible.plugins.loader import init_plugin_loader, lookup_loader
init_plugin_loader([sys.argv[1]])
from ansible.errors import AnsibleError
from ansible.parsing.dataloader import DataLoader
from ansible.parsing.vault import VaultSecret
from ansible.template import Templar

spec = json.load(sys.stdin)
loader = DataLoader()
if spec.get("vault_password"):
    loader.set_vault_secrets([("default", VaultSecret(spec["vault_password"].encode()))])
race = spec.get("race")
if race:
    from ansible_collections.msa.platform.plugins.module_utils import _vault_kv

    # The competitor writes once, just before the step named by race["before"].
    original = getattr(_vault_kv.KV2, race["before"])

    def after_a_competitor(self, *args, **kwargs):
        if not race.get("done"):
            race["done"] = True
            body = json.dumps({"data": {"value": race["value"]}}).encode()
            request = urllib.request.Request(race["url"], data=body, method="POST")
            request.add_header("X-Vault-Token", race["token"])
            urllib.request.urlopen(request, timeout=30).read()
        return original(self, *args, **kwargs)

    setattr(_vault_kv.KV2, race["before"], after_a_competitor)
results = []
for call in spec["calls"]:
    variables = call.get("variables", spec.get("variables", {}))
    templar = Templar(loader=loader, variables=variables)
    plugin = lookup_loader.get(call.get("plugin", "msa.platform.platform_secret"), loader=loader, templar=templar)
    try:
        results.append({"values": plugin.run(call["terms"], variables, **call.get("kwargs", {}))})
    except AnsibleError as exc:
        results.append({"error": str(exc)})
json.dump(results, sys.stdout)
"""


def run_calls(calls, variables=None, env=None, **spec):
    """Each call ({"terms", "kwargs", "variables"}) in one fresh process: (results, stderr)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
    clean.update(env or {})
    clean.update(ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS), ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
    payload = dict(spec, calls=calls, variables=variables or {})
    proc = subprocess.run(
        [sys.executable, "-c", DRIVER, str(COLLECTIONS)],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        env=clean,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout), proc.stderr


def one(terms, variables=None, **spec):
    """A single call: (values or None, error or None, stderr)."""
    results, stderr = run_calls([{"terms": terms}], variables, **spec)
    return results[0].get("values"), results[0].get("error"), stderr


def vault_vars(vault, **extra):
    return dict({"msa_secrets_backend": "vault", "msa_vault_url": vault.url}, **extra)


def kv_version(vault, path, mount="secret"):
    """Current version of a KV v2 secret, 0 when it does not exist."""
    try:
        return vault.api("%s/metadata/%s" % (mount, path))["data"]["current_version"]
    except Exception:  # noqa: BLE001 - a 404 means "never written"
        return 0


@pytest.fixture
def name(request):
    """A secret name of its own for each test (the lookup stores it under msa/<name>)."""
    return "t-%s" % request.node.name.replace("[", "-").replace("]", "").replace("_", "-")


@pytest.fixture
def admin_approle(vault):
    """The vault role's admin AppRole on the dev server: (role_id, secret_id)."""
    return create_admin_approle(vault)


def create_admin_approle(vault):
    """Makes the vault role's admin AppRole (policy admin: everything); returns (role_id, secret_id)."""
    mounts = vault.api("sys/auth")
    if "approle/" not in mounts.get("data", mounts):
        vault.api("sys/auth/approle", "POST", {"type": "approle"})
    vault.api(
        "sys/policies/acl/admin",
        "PUT",
        {"policy": 'path "*" { capabilities = ["create", "read", "update", "patch", "delete", "list", "sudo"] }'},
    )
    vault.api("auth/approle/role/admin", "POST", {"token_policies": ["admin"], "token_ttl": 3600})
    role_id = vault.api("auth/approle/role/admin/role-id")["data"]["role_id"]
    secret_id = vault.api("auth/approle/role/admin/secret-id", "POST")["data"]["secret_id"]
    return role_id, secret_id


def init_json(role_id, secret_id):
    return json.dumps({"approle": {"admin": {"role_id": role_id, "secret_id": secret_id}}, "unseal_keys_b64": ["x"]})


# ------------------------------------------------------------------------------------ files


def test_files_backend_is_ansible_builtin_password(tmp_path):
    variables = {"msa_credentials_dir": str(tmp_path / "creds"), "msa_password_spec": "length=24 chars=digits"}
    calls = [
        {"terms": ["postgres-orders"]},
        {"terms": ["postgres-orders"], "variables": dict(variables, msa_secrets_backend="files")},
        {
            "plugin": "ansible.builtin.password",
            "terms": ["%s/postgres-orders length=24 chars=digits" % variables["msa_credentials_dir"]],
        },
    ]
    results = run_calls(calls, variables)[0]
    first, again, builtin = (r["values"][0] for r in results)
    assert first == again == builtin
    assert len(first) == 24 and first.isdigit()
    stored = tmp_path / "creds" / "postgres-orders"
    assert stored.read_text().strip() == first
    assert stored.stat().st_mode & 0o777 == 0o600
    # Another process (a later run) reads the same file.
    assert one(["postgres-orders"], variables)[0] == [first]


def test_files_backend_needs_the_credentials_dir(name):
    values, error = one([name], {"msa_secrets_backend": "files"})[:2]
    assert values is None
    assert "secret %s: msa_credentials_dir" % name in error


# ------------------------------------------------------------------------------------ vault


def test_generated_once_then_reused(vault, name, tmp_path):
    variables = vault_vars(vault, msa_password_spec="length=40 chars=ascii_letters,digits", msa_pki_dir=str(tmp_path))
    env = {"VAULT_TOKEN": vault.token}
    (first,), error = one([name], variables, env=env)[:2]
    assert error is None
    assert len(first) == 40 and first.isalnum()
    assert one([name], variables, env=env)[0] == [first]
    stored = vault.api("secret/data/msa/%s" % name)["data"]
    assert stored["data"] == {"value": first}
    assert stored["metadata"]["version"] == 1
    # Nothing on the control node.
    assert not any(tmp_path.iterdir())


def test_default_value_is_32_letters_and_digits(vault, name):
    (value,), error = one([name], vault_vars(vault), env={"VAULT_TOKEN": vault.token})[:2]
    assert error is None
    assert len(value) == 32 and value.isalnum()


def test_existing_value_is_never_rotated(vault, name):
    vault.api("secret/data/msa/%s" % name, "POST", {"data": {"value": STORED}})
    values, error, stderr = one(
        [name, name], vault_vars(vault, msa_password_spec="length=8"), env={"VAULT_TOKEN": vault.token}
    )
    assert error is None
    assert values == [STORED, STORED]
    assert kv_version(vault, "msa/%s" % name) == 1
    assert STORED not in stderr


def test_mount_and_prefix_options(vault, name):
    values, error = one(
        [name],
        vault_vars(vault, msa_vault_kv_mount="secret", msa_vault_kv_prefix="platform/one"),
        env={"VAULT_TOKEN": vault.token},
    )[:2]
    assert error is None
    assert vault.api("secret/data/platform/one/%s" % name)["data"]["data"] == {"value": values[0]}


def test_check_mode_writes_nothing_and_warns_by_name(vault, name):
    variables = vault_vars(vault, ansible_check_mode=True)
    (value,), error, stderr = one([name], variables, env={"VAULT_TOKEN": vault.token})
    assert error is None
    assert len(value) == 32
    assert kv_version(vault, "msa/%s" % name) == 0
    assert "%s does not exist in Vault" % name in stderr
    assert value not in stderr
    # An existing secret is read as usual in check mode.
    vault.api("secret/data/msa/%s" % name, "POST", {"data": {"value": STORED}})
    assert one([name], variables, env={"VAULT_TOKEN": vault.token})[0] == [STORED]


@pytest.mark.parametrize("before", ["write", "metadata"])
def test_cas_race_returns_the_competitors_value(vault, name, before):
    """Another fork creates the secret between this one's read and its write (or mid-read)."""
    race = {
        "url": "%s/v1/secret/data/msa/%s" % (vault.url, name),
        "token": vault.token,
        "value": STORED,
        "before": before,
    }
    values, error, stderr = one([name], vault_vars(vault), env={"VAULT_TOKEN": vault.token}, race=race)
    assert error is None
    assert values == [STORED]
    assert vault.api("secret/data/msa/%s" % name)["data"]["data"] == {"value": STORED}
    assert kv_version(vault, "msa/%s" % name) == 1
    assert STORED not in stderr


def test_one_login_per_process(vault, admin_approle, name, tmp_path):
    """Several templates in one worker log in once: one new token per process, not per call."""
    (tmp_path / "openbao-init.json").write_text(init_json(*admin_approle))
    variables = vault_vars(vault, msa_pki_dir=str(tmp_path))
    before = len(tokens(vault))
    results = run_calls([{"terms": [name]}, {"terms": [name]}, {"terms": [name, name]}], variables)[0]
    assert len({value for r in results for value in r["values"]}) == 1
    assert len(tokens(vault)) == before + 1
    run_calls([{"terms": [name]}], variables)
    assert len(tokens(vault)) == before + 2


def tokens(vault):
    return vault.api("auth/token/accessors", "LIST")["data"]["keys"]


# ---------------------------------------------------------------------- AppRole from the init file


def test_admin_approle_from_the_init_file(vault, admin_approle, name, tmp_path):
    role_id, secret_id = admin_approle
    (tmp_path / "openbao-init.json").write_text(init_json(role_id, secret_id))
    # The vault role's default path: <msa_pki_dir>/openbao-init.json.
    variables = vault_vars(vault, msa_pki_dir=str(tmp_path))
    (value,), error, stderr = one([name], variables)
    assert error is None
    assert vault.api("secret/data/msa/%s" % name)["data"]["data"] == {"value": value}
    assert secret_id not in stderr


def test_init_file_of_the_first_vault_host(vault, admin_approle, name, tmp_path):
    role_id, secret_id = admin_approle
    init = tmp_path / "elsewhere.json"
    init.write_text(init_json(role_id, secret_id))
    variables = vault_vars(
        vault,
        groups={"vault": ["vault-1", "vault-2"]},
        hostvars={"vault-1": {"inventory_hostname": "vault-1", "vault_init_file": str(init)}},
    )
    assert one([name], variables)[1] is None


def test_ansible_vault_encrypted_init_file(vault, admin_approle, name, tmp_path):
    role_id, secret_id = admin_approle
    encrypted = VaultLib([("default", VaultSecret(b"init-file-password"))]).encrypt(init_json(role_id, secret_id))
    init = tmp_path / "openbao-init.json"
    init.write_bytes(encrypted)
    variables = vault_vars(vault, msa_vault_init_file=str(init))
    # With the run's vault password (--vault-password-file), through the DataLoader.
    (value,), error = one([name], variables, vault_password="init-file-password")[:2]
    assert error is None
    # With the vault role's own password file (vault_init_vault_password_file).
    password_file = tmp_path / "init-password"
    password_file.write_text("init-file-password\n")
    assert one([name], dict(variables, msa_vault_init_password_file=str(password_file)))[0] == [value]
    # With neither, or the wrong one: a clear error.
    error = one([name], variables)[1]
    assert "cannot be decrypted" in error and str(init) in error
    password_file.write_text("wrong\n")
    error = one([name], dict(variables, msa_vault_init_password_file=str(password_file)))[1]
    assert "cannot be decrypted" in error


def test_url_and_ca_from_the_inventory(vault_tls, bao_bin, name, tmp_path):
    """https://<platform address of the first vault host>:<vault_api_port>, verified with <msa_pki_dir>/ca.crt."""
    shutil.copy(vault_tls.ca_cert, tmp_path / "ca.crt")
    variables = {
        "msa_secrets_backend": "vault",
        "msa_pki_dir": str(tmp_path),
        "groups": {"vault": ["vault-1"]},
        "hostvars": {
            "vault-1": {"inventory_hostname": "vault-1", "ansible_host": "127.0.0.1", "vault_api_port": vault_tls.port}
        },
    }
    (value,), error = one([name], variables, env={"VAULT_TOKEN": vault_tls.token})[:2]
    assert error is None
    assert vault_tls.api("secret/data/msa/%s" % name)["data"]["data"] == {"value": value}
    # Without the platform CA the certificate does not verify.
    (tmp_path / "ca.crt").unlink()
    error = one([name], dict(variables, msa_pki_dir=str(tmp_path / "none")), env={"VAULT_TOKEN": vault_tls.token})[1]
    assert "TLS verification" in error


# ------------------------------------------------------------------------------------ failures


def assert_nothing_written(vault, name, error, *secrets):
    assert error is not None
    assert name in error
    assert kv_version(vault, "msa/%s" % name) == 0
    for secret in secrets:
        assert secret not in error


@pytest.mark.parametrize("backend", ["consul", ["vault"], 1, ""])
def test_bad_backend(vault, name, tmp_path, backend):
    variables = {"msa_secrets_backend": backend, "msa_credentials_dir": str(tmp_path), "msa_vault_url": vault.url}
    values, error = one([name], variables, env={"VAULT_TOKEN": vault.token})[:2]
    assert values is None
    assert "msa_secrets_backend (option backend) must be one of files, vault, got %s" % type(backend).__name__ in error
    assert kv_version(vault, "msa/%s" % name) == 0
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("term", ["with space", "../escape", "", "a//b"])
def test_bad_names(vault, term):
    error = one([term], vault_vars(vault), env={"VAULT_TOKEN": vault.token})[1]
    assert "a secret name is letters, digits" in error


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "is not the vault role's JSON"),
        (json.dumps({"approle": {}}), "is not the vault role's JSON"),
        (json.dumps({"approle": {"admin": {"role_id": "r", "secret_id": ""}}}), "holds no usable admin AppRole"),
        (None, "no init file at"),
    ],
    ids=["corrupt", "missing-keys", "empty-secret-id", "missing-file"],
)
def test_bad_init_file(vault, name, tmp_path, content, message):
    init = tmp_path / "openbao-init.json"
    if content is not None:
        init.write_text(content)
    error = one([name], vault_vars(vault, msa_vault_init_file=str(init)))[1]
    assert message in error and str(init) in error
    assert_nothing_written(vault, name, error)


def test_refused_approle_shows_no_secret_id(vault, admin_approle, name, tmp_path):
    role_id = admin_approle[0]
    init = tmp_path / "openbao-init.json"
    init.write_text(init_json(role_id, "wrong-secret-id-%s" % STORED))
    error = one([name], vault_vars(vault, msa_vault_init_file=str(init)))[1]
    assert "approle login at auth/approle refused" in error
    assert_nothing_written(vault, name, error, STORED)


def test_refused_token_is_not_shown(vault, name):
    error = one([name], vault_vars(vault), env={"VAULT_TOKEN": "bad-token-%s" % STORED})[1]
    assert "refused the token" in error
    assert_nothing_written(vault, name, error, STORED)


def test_sealed_server(vault_sealed, name):
    error = one([name], vault_vars(vault_sealed), env={"VAULT_TOKEN": vault_sealed.token})[1]
    assert "is sealed" in error and name in error
    assert vault_sealed.token not in error


def test_unreachable_server(name):
    from ansible_collections.msa.platform.tests.unit.plugins.lab_servers import free_port  # noqa: PLC0415

    url = "http://127.0.0.1:%d" % free_port()
    error = one([name], {"msa_secrets_backend": "vault", "msa_vault_url": url}, env={"VAULT_TOKEN": "some-token-x"})[1]
    assert "cannot reach the Vault server at %s" % url in error and name in error
    assert "some-token-x" not in error


def test_kv_version_1_mount(vault, name):
    vault.api("sys/mounts/kv1-%s" % name, "POST", {"type": "kv", "options": {"version": "1"}})
    error = one([name], vault_vars(vault, msa_vault_kv_mount="kv1-%s" % name), env={"VAULT_TOKEN": vault.token})[1]
    assert "is KV version 1" in error and name in error
    # Nothing written, neither where KV v1 keeps msa/<name> nor under a "data/" key.
    for path in ("kv1-%s/msa/%s" % (name, name), "kv1-%s/data/msa/%s" % (name, name)):
        with pytest.raises(urllib.error.HTTPError, match="404"):
            vault.api(path)


def test_existing_secret_without_the_value_key(vault, name):
    vault.api("secret/data/msa/%s" % name, "POST", {"data": {"password": STORED}})
    error = one([name], vault_vars(vault), env={"VAULT_TOKEN": vault.token})[1]
    assert "has no non-empty string under the key value (its keys: password)" in error
    assert STORED not in error
    assert kv_version(vault, "msa/%s" % name) == 1


def test_deleted_secret_is_not_regenerated(vault, name):
    vault.api("secret/data/msa/%s" % name, "POST", {"data": {"value": STORED}})
    vault.api("secret/data/msa/%s" % name, "DELETE")
    error = one([name], vault_vars(vault), env={"VAULT_TOKEN": vault.token})[1]
    assert "was deleted or destroyed" in error and name in error
    assert kv_version(vault, "msa/%s" % name) == 1


def test_failure_names_what_the_same_call_created(vault, name):
    vault.api("secret/data/msa/%s-b" % name, "POST", {"data": {"password": STORED}})
    error = one([name, name + "-b"], vault_vars(vault), env={"VAULT_TOKEN": vault.token})[1]
    assert "secret %s-b: " % name in error
    assert error.endswith("created before the failure: %s" % name)
    assert kv_version(vault, "msa/%s" % name) == 1
    assert STORED not in error
