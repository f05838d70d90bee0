#!/usr/bin/python
# Copyright: msa.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: vault_kv
short_description: Ensure a KV version 2 secret in Vault or OpenBao holds the given data, or is gone
version_added: 0.1.0
author:
  - msa.platform maintainers (@msa)
description:
  - Reads the secret at O(mount) and O(path) and writes a new version only when its data differs from O(data),
    so a second run reports no change and creates no version.
  - Checks first that O(mount) is a KV version 2 engine; a KV version 1 mount fails instead of getting a key
    named C(data/<path>).
  - The diff and the result name the keys that were added, changed or removed, never a value.
seealso:
  - module: msa.platform.vault_secret
  - plugin: msa.platform.vault_kv
    plugin_type: lookup
extends_documentation_fragment:
  - msa.platform.attributes
  - msa.platform.vault
  - msa.platform.vault.action_group
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying the target.
    support: full
    details:
      - Reads the secret and reports what would change; writes nothing.
  diff_mode:
    description: Returns details on what has changed (or would change in check_mode) when in diff mode.
    support: full
    details:
      - Key names before and after, each value replaced by C((value hidden)) or C((new value hidden)).
options:
  mount:
    description: Path of the KV version 2 secrets engine.
    type: str
    default: secret
  path:
    description: Path of the secret inside O(mount), for example C(apps/orders/db).
    type: str
    required: true
  data:
    description:
      - The secret's data for O(state=present); the whole data, or with O(merge=true) the keys to set.
      - Its values are never shown.
    type: dict
  merge:
    description:
      - With V(true), keys of the stored secret that O(data) does not name are kept; with V(false) the secret
        holds exactly O(data).
    type: bool
    default: false
  state:
    description:
      - V(present) writes O(data) when it differs from what is stored.
      - V(absent) deletes the latest version (it can be undeleted with C(bao kv undelete)); with O(purge=true)
        every version and the metadata are removed for good.
    type: str
    default: present
    choices: [present, absent]
  purge:
    description: With O(state=absent), remove every version and the metadata instead of deleting the latest version.
    type: bool
    default: false
  cas:
    description:
      - Check-and-set for O(state=present). The write happens only when the secret's current version is this
        number (V(0) means it must not exist yet); otherwise the task fails and nothing is written.
      - Not checked when the stored data already equals O(data), as nothing is written then.
    type: int
"""

EXAMPLES = r"""
- name: Store the orders database credentials
  msa.platform.vault_kv:
    url: https://vault.example.com:8200
    mount: secret
    path: apps/orders/db
    data:
      username: orders
      password: "{{ orders_db_password }}"

- name: Add one key, keeping the others
  msa.platform.vault_kv:
    path: apps/orders/db
    data:
      port: 5432
    merge: true

- name: Write only if nobody changed version 3 meanwhile
  msa.platform.vault_kv:
    path: apps/orders/db
    data: "{{ new_credentials }}"
    cas: 3

- name: Remove a secret with its whole history
  msa.platform.vault_kv:
    path: apps/retired
    state: absent
    purge: true

- name: Set the connection once for every Vault task
  module_defaults:
    group/msa.platform.vault:
      url: https://vault.example.com:8200
      ca_cert: /etc/ssl/msa/ca.pem
  block:
    - name: Store the API key
      msa.platform.vault_kv:
        path: apps/orders/api
        data:
          key: "{{ orders_api_key }}"
"""

RETURN = r"""
version:
  description: Version of the secret after the task (the one written, or the current one when nothing changed).
  returned: success
  type: int
  sample: 4
keys:
  description: Names of the keys added, changed and removed (or that would be, in check mode). Never values.
  returned: success
  type: dict
  sample: {"added": ["port"], "changed": ["password"], "removed": []}
"""

from ansible_collections.msa.platform.plugins.module_utils._vault_client import (  # noqa: E402
    VaultError,
    VaultModule,
)
from ansible_collections.msa.platform.plugins.module_utils._vault_kv import (  # noqa: E402
    KV2,
    key_changes,
    key_diff,
)


def ensure(module, conn):
    params = module.params
    kv = KV2(conn, params["mount"], params["path"])
    current, meta = kv.read()
    version = meta.get("version") or 0
    result = {"changed": False, "version": version}
    if params["state"] == "absent":
        gone = not meta.get("exists") if params["purge"] else current is None
        desired = None
        result["keys"] = key_changes(current, None)
        if not gone:
            result["changed"] = True
            if not module.check_mode:
                kv.purge() if params["purge"] else kv.delete_latest()
    else:
        desired = dict(current or {}) if params["merge"] else {}
        desired.update(params["data"] or {})
        result["keys"] = key_changes(current, desired)
        if current is None or current != desired:
            cas = params["cas"]
            if cas is not None and cas != version:
                raise VaultError(
                    "check-and-set failed for %s: the secret is at version %s, not %s; read it again and retry"
                    % (kv.where, version, cas),
                    reason="cas",
                )
            result["changed"] = True
            if not module.check_mode:
                result["version"] = kv.write(desired, cas=cas)
    if result["changed"]:
        result["diff"] = key_diff(current, desired, kv.where)
    return result


def main():
    argument_spec = VaultModule.generate_argspec(
        mount={"type": "str", "default": "secret"},
        path={"type": "str", "required": True},
        data={"type": "dict", "no_log": True},
        merge={"type": "bool", "default": False},
        state={"type": "str", "default": "present", "choices": ["present", "absent"]},
        purge={"type": "bool", "default": False},
        cas={"type": "int"},
    )
    module = VaultModule(
        argument_spec=argument_spec,
        supports_check_mode=True,
        required_if=[("state", "present", ["data"])],
    )
    module.run(lambda conn: ensure(module, conn), mount=module.params["mount"], path=module.params["path"])


if __name__ == "__main__":
    main()
