#!/usr/bin/python
# Copyright: msa.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: vault_approle
short_description: Ensure an AppRole role in Vault or OpenBao, and deliver its credentials
version_added: 0.1.0
author:
  - msa.platform maintainers (@msa)
description:
  - Enables the AppRole auth method at O(mount_point) when it is not enabled, then creates or updates the role
    O(role_name) so that the settings given match; settings left out are left as they are.
  - Returns the role's RV(role_id), and with O(generate_secret_id=true) a new secret ID for delivering to the
    service that logs in with it. A result that carries a secret ID is marked C(no_log) by the collection's action
    plugin; nothing of it is shown, the registered variable has the values.
  - With O(state=absent) the role is deleted (the auth method stays enabled).
seealso:
  - module: msa.platform.vault_policy
extends_documentation_fragment:
  - msa.platform.attributes
  - msa.platform.vault
  - msa.platform.vault.action_group
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying the target.
    support: full
    details:
      - Reports whether the auth method would be enabled and the role created or changed; generates no secret ID.
  diff_mode:
    description: Returns details on what has changed (or would change in check_mode) when in diff mode.
    support: full
    details:
      - The role's managed settings before and after (no secret ID).
options:
  role_name:
    description: Name of the role (letters, digits, C(-), C(_), C(.)).
    type: str
    required: true
  mount_point:
    description: Path the AppRole auth method is (or will be) enabled at, without C(auth/).
    type: str
    default: approle
  token_policies:
    description: Policies of the tokens issued to the role. Compared as a set.
    type: list
    elements: str
  token_ttl:
    description: TTL of issued tokens, in seconds or as a duration such as C(1h).
    type: str
  token_max_ttl:
    description: Maximum TTL of issued tokens, in seconds or as a duration such as C(24h).
    type: str
  token_num_uses:
    description: How many times an issued token may be used; V(0) is unlimited.
    type: int
  token_bound_cidrs:
    description: Networks (CIDR) an issued token may be used from.
    type: list
    elements: str
  secret_id_ttl:
    description: How long a secret ID stays valid, in seconds or as a duration; V(0) is forever.
    type: str
  secret_id_num_uses:
    description: How many logins a secret ID allows; V(0) is unlimited.
    type: int
  secret_id_bound_cidrs:
    description: Networks (CIDR) a secret ID may log in from.
    type: list
    elements: str
  bind_secret_id:
    description: Whether logging in needs a secret ID besides the role ID.
    type: bool
  generate_secret_id:
    description:
      - Generate a new secret ID and return it in RV(secret_id). Reports a change, as a new credential exists
        after it. Not in check mode.
    type: bool
    default: false
  secret_id_metadata:
    description: Metadata (string values) stored with a generated secret ID, shown in audit logs.
    type: dict
  keep_secret_id:
    description:
      - With O(generate_secret_id=true), the secret ID delivered last time (read back from where it was
        delivered). When it is still valid for this role nothing changes and RV(secret_id_kept) is true; the
        value is not returned (the caller has it). When it is unknown, expired or used up, a new one is
        generated and returned in RV(secret_id). This makes delivery idempotent.
      - Empty or left out, a new secret ID is generated on every run.
    type: str
  state:
    description: V(present) creates or updates the role, V(absent) deletes it.
    type: str
    default: present
    choices: [present, absent]
"""

EXAMPLES = r"""
- name: An AppRole for the orders service, and a secret ID to deliver to it
  msa.platform.vault_approle:
    role_name: orders
    token_policies: [orders]
    token_ttl: 1h
    token_max_ttl: 4h
    secret_id_ttl: 720h
    generate_secret_id: true
    secret_id_metadata:
      host: "{{ inventory_hostname }}"
  register: orders_approle

- name: The same, but keep the secret ID the host already has while it is valid
  msa.platform.vault_approle:
    role_name: orders
    token_policies: [orders]
    generate_secret_id: true
    keep_secret_id: "{{ current_orders_secret_id | default('') }}"
  register: orders_approle

- name: Deliver the credentials into the service's environment file
  ansible.builtin.copy:
    dest: /etc/msa/orders.env
    content: |
      VAULT_ROLE_ID={{ orders_approle.role_id }}
      VAULT_SECRET_ID={{ orders_approle.secret_id }}
    mode: "0600"
  no_log: true
"""

RETURN = r"""
role_id:
  description: The role's role ID (not in check mode when the role does not exist yet).
  returned: success and O(state=present)
  type: str
  sample: 0e3bd5f4-1c6a-4a1e-9a4e-4c5a0f5c3b1d
secret_id:
  description:
    - The generated secret ID. The result is marked no_log when it is returned.
  returned: O(generate_secret_id=true) and no valid O(keep_secret_id), not in check mode
  type: str
  sample: VALUE_HIDDEN
secret_id_accessor:
  description: Accessor of the generated secret ID (to look it up or revoke it without knowing it).
  returned: O(generate_secret_id=true), not in check mode
  type: str
  sample: 84896a0c-1347-aa90-a4f6-aca8b7558780
secret_id_kept:
  description: Whether O(keep_secret_id) is still valid and was kept (then RV(secret_id) is not returned).
  returned: O(generate_secret_id=true)
  type: bool
auth_enabled:
  description: Whether the AppRole auth method was enabled by this task (or would be, in check mode).
  returned: success
  type: bool
  sample: false
role:
  description: The role's managed settings after the task (TTLs in seconds).
  returned: success and O(state=present)
  type: dict
  sample: {"token_policies": ["orders"], "token_ttl": 3600, "token_max_ttl": 14400}
"""

import datetime  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402

from ansible_collections.msa.platform.plugins.module_utils._vault_client import (  # noqa: E402
    VaultError,
    VaultModule,
    duration_seconds,
)

NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
DURATIONS = ("token_ttl", "token_max_ttl", "secret_id_ttl")
LISTS = ("token_policies", "token_bound_cidrs", "secret_id_bound_cidrs")
PLAIN = ("token_num_uses", "secret_id_num_uses", "bind_secret_id")


def wanted(params):
    settings = {}
    for name in DURATIONS:
        if params[name] is not None:
            settings[name] = duration_seconds(name, params[name])
    for name in LISTS:
        if params[name] is not None:
            settings[name] = sorted(set(params[name]))
    for name in PLAIN:
        if params[name] is not None:
            settings[name] = params[name]
    return settings


def managed(role, names):
    out = {}
    for name in names:
        value = role.get(name)
        if name in LISTS:
            value = sorted(set(value or []))
        out[name] = value
    return out


def current_state(conn, mount, where, name):
    """``(enabled, role)``: whether AppRole is enabled at ``mount``, and the role's settings (None: no role)."""
    auths = conn.get("sys/auth", "list the auth methods") or {}
    existing = (auths.get("data") or auths).get(mount + "/")
    if isinstance(existing, dict) and existing.get("type") != "approle":
        raise VaultError(
            "auth/%s/ is a %s auth method, not approle" % (mount, existing.get("type")), reason="wrong_engine"
        )
    if not isinstance(existing, dict):
        return False, None
    return True, (conn.get(where, "read the role %s" % name) or {}).get("data")


def deliver(module, conn, where, name, result):
    """Add the role ID and, when asked, a new secret ID to ``result``."""
    answer = conn.get("%s/role-id" % where, "read the role ID of %s" % name) or {}
    result["role_id"] = (answer.get("data") or {}).get("role_id")
    if not module.params["generate_secret_id"]:
        return
    keep = module.params["keep_secret_id"]
    kept = still_valid(conn, where, name, keep) if keep else None
    result["secret_id_kept"] = kept is not None
    if kept is not None:
        result["secret_id_accessor"] = kept.get("secret_id_accessor")
        return
    result["changed"] = True
    if module.check_mode:
        return
    metadata = module.params["secret_id_metadata"]
    body = {"metadata": json.dumps({str(k): str(v) for k, v in metadata.items()})} if metadata else {}
    answer = conn.write("post", "%s/secret-id" % where, "generate a secret ID for %s" % name, body) or {}
    data = answer.get("data") or {}
    result["secret_id"] = data.get("secret_id")
    result["secret_id_accessor"] = data.get("secret_id_accessor")


def still_valid(conn, where, name, secret_id):
    """The lookup answer for ``secret_id`` while it can still log in to this role, else None."""
    what = "look up a secret ID of %s" % name
    try:
        answer = conn.write("post", "%s/secret-id/lookup" % where, what, {"secret_id": secret_id})
    except VaultError as exc:
        # An unknown secret ID is an empty answer on some versions, an error on others.
        if exc.details.get("reason") in ("not_found", "invalid"):
            return None
        raise
    data = (answer or {}).get("data")
    if not isinstance(data, dict):
        return None
    expires = str(data.get("expiration_time") or "")
    # Go's zero time (0001-01-01...) means it never expires.
    if expires and not expires.startswith("0001-") and _expired(expires):
        return None
    return data


def _expired(timestamp):
    """Whether the RFC 3339 ``timestamp`` lies in the past (an unreadable one counts as expired)."""
    trimmed = re.sub(r"(\.\d{6})\d+", r"\1", timestamp.replace("Z", "+00:00"))
    try:
        moment = datetime.datetime.fromisoformat(trimmed)
    except ValueError:
        return True
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment <= datetime.datetime.now(datetime.timezone.utc)


def ensure(module, conn):
    params = module.params
    mount = params["mount_point"].strip("/")
    name = params["role_name"]
    where = "auth/%s/role/%s" % (mount, name)
    enabled, role = current_state(conn, mount, where, name)
    result = {"changed": False, "auth_enabled": False}
    if params["state"] == "absent":
        if role is not None:
            result["changed"] = True
            if not module.check_mode:
                conn.write("delete", where, "delete the role %s" % name)
            result["diff"] = {"before": managed(role, sorted(role)), "after": {}}
        return result
    desired = wanted(params)
    before = managed(role, sorted(desired)) if role is not None else {}
    done = []
    try:
        if not enabled:
            result.update(changed=True, auth_enabled=True)
            if not module.check_mode:
                body = {"type": "approle"}
                conn.write("post", "sys/auth/%s" % mount, "enable the approle auth method at auth/%s" % mount, body)
                done.append("the approle auth method was enabled at auth/%s/" % mount)
        if role is None or before != desired:
            result["changed"] = True
            result["diff"] = {"before": before, "after": desired}
            if not module.check_mode:
                conn.write("post", where, "write the role %s" % name, desired)
                done.append("the role %s was written" % name)
        result["role"] = desired if role is None else dict(managed(role, sorted(role)), **desired)
        if not (module.check_mode and role is None):
            deliver(module, conn, where, name, result)
    except VaultError as exc:
        if done:
            exc.details["partial"] = ", ".join(done)
        raise
    return result


def main():
    argument_spec = VaultModule.generate_argspec(
        role_name={"type": "str", "required": True},
        mount_point={"type": "str", "default": "approle"},
        token_policies={"type": "list", "elements": "str", "no_log": False},
        token_ttl={"type": "str", "no_log": False},
        token_max_ttl={"type": "str", "no_log": False},
        token_num_uses={"type": "int", "no_log": False},
        token_bound_cidrs={"type": "list", "elements": "str", "no_log": False},
        secret_id_ttl={"type": "str", "no_log": False},
        secret_id_num_uses={"type": "int", "no_log": False},
        secret_id_bound_cidrs={"type": "list", "elements": "str", "no_log": False},
        bind_secret_id={"type": "bool"},
        generate_secret_id={"type": "bool", "default": False},
        secret_id_metadata={"type": "dict", "no_log": False},
        keep_secret_id={"type": "str", "no_log": True},
        state={"type": "str", "default": "present", "choices": ["present", "absent"]},
    )
    module = VaultModule(argument_spec=argument_spec, supports_check_mode=True)
    name = module.params["role_name"]
    if not NAME_RE.match(name):
        module.fail_json(
            msg="role_name must be 1 to 128 letters, digits, '-', '_' or '.', got %r; nothing was changed" % name
        )
    module.run(lambda conn: ensure(module, conn), role_name=name)


if __name__ == "__main__":
    main()
