#!/usr/bin/python
# Copyright: msa.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: vault_mount
short_description: Ensure a secrets engine is mounted in Vault or OpenBao, or is not
version_added: 0.1.0
author:
  - msa.platform maintainers (@msa)
description:
  - Mounts a secrets engine of O(type) at O(path) when nothing is mounted there, and tunes the O(description),
    O(options) and lease TTLs of an existing mount when they differ.
  - An existing mount of another type fails the task and stays as it is; changing the type would mean
    unmounting, which deletes the engine's data, so that is left to the operator.
  - A KV version 1 mount is upgraded in place when O(options) says C(version=2) (the server migrates the data);
    going back from version 2 to 1 is refused.
seealso:
  - module: msa.platform.vault_kv
  - module: msa.platform.vault_pki_cert
extends_documentation_fragment:
  - msa.platform.attributes
  - msa.platform.vault
  - msa.platform.vault.action_group
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying the target.
    support: full
    details:
      - Reads the mount table and reports what would be mounted, tuned or removed.
  diff_mode:
    description: Returns details on what has changed (or would change in check_mode) when in diff mode.
    support: full
    details:
      - Type, description, options and TTLs before and after.
options:
  path:
    description: Where the engine is mounted, for example C(secret) or C(pki). Not one of the built-in mounts.
    type: str
    required: true
  type:
    description:
      - Engine type, for example V(kv), V(pki), V(transit), V(database). V(kv-v2) is V(kv) with C(version=2).
      - Required for O(state=present).
    type: str
  description:
    description: Human-readable description of the mount. Left as it is when not given.
    type: str
  options:
    description:
      - Engine options, for example C(version=2) for KV. Values are compared as strings. Options not named
        are left as they are.
    type: dict
    default: {}
  default_lease_ttl:
    description: Default lease TTL, in seconds or as a duration such as C(1h). Left as it is when not given.
    type: str
  max_lease_ttl:
    description: Maximum lease TTL, in seconds or as a duration such as C(720h). Left as it is when not given.
    type: str
  state:
    description:
      - V(present) mounts or tunes the engine.
      - V(absent) unmounts it, which deletes everything stored in it.
    type: str
    default: present
    choices: [present, absent]
"""

EXAMPLES = r"""
- name: KV version 2 for the platform's secrets
  msa.platform.vault_mount:
    path: secret
    type: kv
    options:
      version: "2"
    description: platform secrets

- name: A PKI engine for service certificates, ten years max
  msa.platform.vault_mount:
    path: pki
    type: pki
    max_lease_ttl: 87600h
"""

RETURN = r"""
mount:
  description: The mount after the task (or as it would be, in check mode); V(null) when absent.
  returned: success
  type: dict
  sample: {"path": "secret", "type": "kv", "description": "platform secrets", "options": {"version": "2"},
           "default_lease_ttl": 0, "max_lease_ttl": 0}
"""


from ansible_collections.msa.platform.plugins.module_utils._vault_client import (  # noqa: E402
    VaultError,
    VaultModule,
    duration_seconds,
)

BUILT_IN = ("sys", "identity", "cubbyhole", "auth", "token")


def describe(path, entry):
    config = entry.get("config") or {}
    return {
        "path": path,
        "type": entry.get("type"),
        "description": entry.get("description") or "",
        "options": dict(entry.get("options") or {}),
        "default_lease_ttl": config.get("default_lease_ttl", 0),
        "max_lease_ttl": config.get("max_lease_ttl", 0),
    }


def create(module, conn, path, spec):
    kind, options, ttls = spec["type"], spec["options"], spec["ttls"]
    params = module.params
    desired = {"path": path, "type": kind, "description": params["description"] or "", "options": options}
    desired.update((k, v or 0) for k, v in ttls.items())
    if not module.check_mode:
        config = {k: v for k, v in ttls.items() if v is not None}
        body = {"type": kind, "description": params["description"] or "", "options": options, "config": config}
        conn.write("post", "sys/mounts/%s" % path, "mount %s at %s/" % (kind, path), body)
    return desired


def tune(module, conn, current, spec):
    """The mount as it should be; tuned on the server when it differs. Refuses a type change or a KV downgrade."""
    kind, options, ttls = spec["type"], spec["options"], spec["ttls"]
    path = current["path"]
    if current["type"] != kind:
        raise VaultError(
            "%s/ is already a %s mount, not %s; changing the type would delete its data, so unmount it "
            "first if that is really wanted (state=absent)" % (path, current["type"], kind),
            reason="type_change",
            mount=current,
        )
    if kind == "kv" and current["options"].get("version", "1") == "2" and options.get("version") == "1":
        raise VaultError("%s/ is KV version 2; it cannot go back to version 1" % path, reason="kv_downgrade")
    desired = dict(current, options=dict(current["options"], **options))
    if module.params["description"] is not None:
        desired["description"] = module.params["description"]
    desired.update((k, v) for k, v in ttls.items() if v is not None)
    if desired != current and not module.check_mode:
        body = {k: desired[k] for k in ("description", "default_lease_ttl", "max_lease_ttl")}
        changed_options = {k: v for k, v in options.items() if current["options"].get(k) != v}
        if changed_options:
            body["options"] = changed_options
        conn.write("post", "sys/mounts/%s/tune" % path, "tune %s/" % path, body)
    return desired


def ensure(module, conn):
    params = module.params
    path = params["path"].strip("/")
    answer = conn.get("sys/mounts", "list the secrets engines") or {}
    entry = (answer.get("data") or answer).get(path + "/")
    current = describe(path, entry) if isinstance(entry, dict) else None
    if params["state"] == "absent":
        if current is not None and not module.check_mode:
            conn.write("delete", "sys/mounts/%s" % path, "unmount %s/" % path)
        desired = None
    else:
        kind = params["type"]
        options = {str(k): str(v) for k, v in (params["options"] or {}).items()}
        if kind == "kv-v2":
            kind = "kv"
            options.setdefault("version", "2")
        ttls = {name: duration_seconds(name, params[name]) for name in ("default_lease_ttl", "max_lease_ttl")}
        spec = {"type": kind, "options": options, "ttls": ttls}
        desired = create(module, conn, path, spec) if current is None else tune(module, conn, current, spec)
    result = {"changed": desired != current, "mount": desired}
    if result["changed"]:
        result["diff"] = {"before": current or {}, "after": desired or {}}
    return result


def main():
    argument_spec = VaultModule.generate_argspec(
        path={"type": "str", "required": True},
        type={"type": "str"},
        description={"type": "str"},
        options={"type": "dict", "default": {}},
        default_lease_ttl={"type": "str"},
        max_lease_ttl={"type": "str"},
        state={"type": "str", "default": "present", "choices": ["present", "absent"]},
    )
    module = VaultModule(
        argument_spec=argument_spec, supports_check_mode=True, required_if=[("state", "present", ["type"])]
    )
    path = module.params["path"].strip("/")
    if not path or path.split("/")[0] in BUILT_IN or " " in path:
        module.fail_json(
            msg="path must name a mount that is not built in (%s), got %r; nothing was changed"
            % (", ".join(BUILT_IN), module.params["path"]),
        )
    module.run(lambda conn: ensure(module, conn), path=path)


if __name__ == "__main__":
    main()
