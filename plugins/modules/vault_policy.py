#!/usr/bin/python
# Copyright: msa.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: vault_policy
short_description: Ensure an ACL policy in Vault or OpenBao has the given rules, or is gone
version_added: 0.1.0
author:
  - msa.platform maintainers (@msa)
description:
  - Declares an ACL policy by name with its HCL text. The stored text is compared with O(policy) ignoring
    trailing spaces, line endings and blank lines at the start and end, so a second run with the same text changes
    nothing.
  - A policy the server cannot parse fails with the server's reason; the stored policy stays as it was.
  - The built-in policies C(root) and C(default) cannot be removed; C(root) cannot be changed.
seealso:
  - module: msa.platform.vault_approle
extends_documentation_fragment:
  - msa.platform.attributes
  - msa.platform.vault
  - msa.platform.vault.action_group
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying the target.
    support: full
    details:
      - Reads the policy and reports whether it would change; the text is not parsed by the server.
  diff_mode:
    description: Returns details on what has changed (or would change in check_mode) when in diff mode.
    support: full
    details:
      - The policy text before and after (policies hold no secrets).
options:
  name:
    description: Name of the policy (letters, digits, C(-), C(_), C(.)).
    type: str
    required: true
  policy:
    description: The policy in HCL (or JSON), for O(state=present).
    type: str
  state:
    description: V(present) creates or updates the policy, V(absent) deletes it.
    type: str
    default: present
    choices: [present, absent]
"""

EXAMPLES = r"""
- name: Let the orders service read its own secrets
  msa.platform.vault_policy:
    name: orders
    policy: |
      path "secret/data/apps/orders/*" {
        capabilities = ["read"]
      }

- name: Policy text from a template
  msa.platform.vault_policy:
    name: postgres-admin
    policy: "{{ lookup('ansible.builtin.template', 'postgres-admin.hcl.j2') }}"

- name: Drop a policy nobody uses
  msa.platform.vault_policy:
    name: legacy
    state: absent
"""

RETURN = r"""
name:
  description: The policy's name.
  returned: always
  type: str
  sample: orders
policy:
  description: The policy text now stored (or that would be, in check mode); V(null) when absent.
  returned: success
  type: str
  sample: "path \"secret/data/apps/orders/*\" { capabilities = [\"read\"] }"
"""

import re  # noqa: E402

from ansible_collections.msa.platform.plugins.module_utils._vault_client import (  # noqa: E402
    VaultError,
    VaultModule,
)

NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")


def normalized(text):
    if text is None:
        return None
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    return "\n".join(lines).strip("\n")


def ensure(module, conn):
    name, state = module.params["name"], module.params["state"]
    where = "sys/policies/acl/%s" % name
    answer = conn.get(where, "read the policy %s" % name)
    current = ((answer or {}).get("data") or {}).get("policy")
    result = {"changed": False, "name": name, "policy": current}
    if state == "absent":
        if current is None:
            return result
        if name in ("root", "default"):
            raise VaultError("the built-in policy %s cannot be deleted" % name)
        result.update(changed=True, policy=None)
        if not module.check_mode:
            conn.write("delete", where, "delete the policy %s" % name)
    else:
        desired = module.params["policy"]
        if normalized(current) == normalized(desired):
            return result
        if name == "root":
            raise VaultError("the built-in policy root cannot be changed")
        result.update(changed=True, policy=desired)
        if not module.check_mode:
            conn.write("put", where, "write the policy %s" % name, {"policy": desired})
    result["diff"] = {
        "before_header": where,
        "after_header": where,
        "before": (normalized(current) + "\n") if current is not None else "",
        "after": (normalized(result["policy"]) + "\n") if result["policy"] is not None else "",
    }
    return result


def main():
    argument_spec = VaultModule.generate_argspec(
        name={"type": "str", "required": True},
        policy={"type": "str"},
        state={"type": "str", "default": "present", "choices": ["present", "absent"]},
    )
    module = VaultModule(
        argument_spec=argument_spec, supports_check_mode=True, required_if=[("state", "present", ["policy"])]
    )
    name = module.params["name"]
    if not NAME_RE.match(name) or (module.params["state"] == "present" and not module.params["policy"].strip()):
        module.fail_json(
            msg="name must be 1 to 128 letters, digits, '-', '_' or '.', and policy must not be empty, got name %r; "
            "nothing was changed" % name,
            name=name,
        )
    module.run(lambda conn: ensure(module, conn), name=name)


if __name__ == "__main__":
    main()
