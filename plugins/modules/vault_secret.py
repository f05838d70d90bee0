#!/usr/bin/python
# Copyright: msa.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: vault_secret
short_description: Ensure a KV version 2 secret holds generated values for the given keys
version_added: 0.1.0
author:
  - msa.platform maintainers (@msa)
description:
  - Makes sure the secret at O(mount) and O(path) has a value for every key in O(keys). A missing key (or one
    whose value is empty) gets a strong random value (Python C(secrets) module); a key that has a value keeps it,
    on every run, unless it is named in O(rotate) or O(rotate_all=true). Other keys of the secret are kept as
    they are.
  - This is how roles get their passwords; the first run generates them, every later run returns the same values.
  - The write uses check-and-set against the version that was read, so two runs at the same time cannot
    overwrite each other's values; the loser fails and a rerun returns the winner's values.
  - The values of O(keys) are returned in RV(secret). Because of that the collection's action plugin marks the
    whole task result C(no_log) when RV(secret) is not empty, so no callback, log, C(-v) or C(--diff) output shows
    it; the registered variable has the values.
seealso:
  - module: msa.platform.vault_kv
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
      - Reports which keys would be generated or rotated; generates and writes nothing, and RV(secret) holds
        only the values that exist.
  diff_mode:
    description: Returns details on what has changed (or would change in check_mode) when in diff mode.
    support: full
    details:
      - Key names before and after, each value replaced by a marker. A result with values in RV(secret) is
        no_log, so the diff is shown only when O(return_secret=false) or nothing is returned.
options:
  mount:
    description: Path of the KV version 2 secrets engine.
    type: str
    default: secret
  path:
    description: Path of the secret inside O(mount), for example C(services/postgres).
    type: str
    required: true
  keys:
    description: Keys that must have a value. At least one.
    type: list
    elements: str
    required: true
  length:
    description: Length of each generated value, in characters, from 16 to 1024.
    type: int
    default: 32
  charset:
    description:
      - Characters of generated values. V(alphanumeric) is C([A-Za-z0-9]) (about 5.95 bits each),
        V(hex) is C([0-9a-f]), V(urlsafe) adds C(-) and C(_) to alphanumeric, V(printable) adds punctuation
        without quotes, backslash or space (safe in most configuration files unquoted).
    type: str
    default: alphanumeric
    choices: [alphanumeric, hex, urlsafe, printable]
  rotate:
    description: Keys of O(keys) that get a new value even though they have one.
    type: list
    elements: str
    default: []
  rotate_all:
    description: Give every key of O(keys) a new value.
    type: bool
    default: false
  return_secret:
    description:
      - Return the values in RV(secret). With V(false) nothing secret is returned and the result is not
        marked no_log (useful to just make sure the secret exists, for a service that reads Vault itself).
    type: bool
    default: true
"""

EXAMPLES = r"""
- name: Make sure the postgres passwords exist (generated once, the same on every run)
  msa.platform.vault_secret:
    path: services/postgres
    keys: [superuser_password, replication_password]
  register: postgres_secret

- name: Use them
  ansible.builtin.set_fact:
    postgres_superuser_password: "{{ postgres_secret.secret.superuser_password }}"
  no_log: true

- name: Rotate the replication password only
  msa.platform.vault_secret:
    path: services/postgres
    keys: [superuser_password, replication_password]
    rotate: [replication_password]

- name: A hex token of 64 characters
  msa.platform.vault_secret:
    url: https://vault.example.com:8200
    mount: secret
    path: services/redis
    keys: [requirepass]
    length: 64
    charset: hex
"""

RETURN = r"""
secret:
  description:
    - The value of every key in O(keys) (in check mode, of those that exist). The task result is marked no_log.
  returned: success and O(return_secret=true)
  type: dict
  sample: {"superuser_password": "VALUE_HIDDEN"}
generated:
  description: Keys that got a value because they had none (or would, in check mode).
  returned: success
  type: list
  elements: str
  sample: [replication_password]
rotated:
  description: Keys that had a value and got a new one (or would, in check mode).
  returned: success
  type: list
  elements: str
  sample: []
version:
  description: Version of the secret after the task.
  returned: success
  type: int
  sample: 2
"""

import secrets  # noqa: E402
import string  # noqa: E402

from ansible_collections.msa.platform.plugins.module_utils._vault_client import (  # noqa: E402
    VaultError,
    VaultModule,
)
from ansible_collections.msa.platform.plugins.module_utils._vault_kv import KV2, key_diff  # noqa: E402

CHARSETS = {
    "alphanumeric": string.ascii_letters + string.digits,
    "hex": "0123456789abcdef",
    "urlsafe": string.ascii_letters + string.digits + "-_",
    "printable": string.ascii_letters + string.digits + "!#$%&()*+,-./:;<=>?@[]^_{|}~",
}
LENGTH_RANGE = (16, 1024)


def generate(length, charset):
    alphabet = CHARSETS[charset]
    return "".join(secrets.choice(alphabet) for _index in range(length))


def option_problems(params):
    problems = []
    if not params["keys"] or any(not key for key in params["keys"]):
        problems.append("keys must name at least one key, and no key may be empty")
    if not LENGTH_RANGE[0] <= params["length"] <= LENGTH_RANGE[1]:
        problems.append("length must be between %d and %d (characters), got %r" % (LENGTH_RANGE + (params["length"],)))
    unknown = sorted(set(params["rotate"]) - set(params["keys"] or []))
    if unknown:
        problems.append("rotate names keys that are not in keys: %s" % ", ".join(unknown))
    return problems


def ensure(module, conn):
    params = module.params
    kv = KV2(conn, params["mount"], params["path"])
    current, meta = kv.read()
    current = current or {}
    version = meta.get("version") or 0
    keys = list(dict.fromkeys(params["keys"]))
    missing = [key for key in keys if key not in current or current[key] in (None, "")]
    rotate = [key for key in keys if key not in missing and (params["rotate_all"] or key in params["rotate"])]
    result = {"changed": bool(missing or rotate), "generated": missing, "rotated": rotate, "version": version}
    desired = dict(current)
    if result["changed"]:
        if module.check_mode:
            for key in missing + rotate:
                desired[key] = None
        else:
            for key in missing + rotate:
                desired[key] = generate(params["length"], params["charset"])
            try:
                result["version"] = kv.write(desired, cas=version)
            except VaultError:
                module.hide(*(desired[key] for key in missing + rotate))
                raise
        result["diff"] = key_diff(current, desired, kv.where)
    if params["return_secret"]:
        # Not masked here (the caller needs the values): the action plugin marks the result no_log.
        result["secret"] = {key: desired[key] for key in keys if desired.get(key) is not None}
    return result


def main():
    argument_spec = VaultModule.generate_argspec(
        mount={"type": "str", "default": "secret"},
        path={"type": "str", "required": True},
        keys={"type": "list", "elements": "str", "required": True, "no_log": False},
        length={"type": "int", "default": 32},
        charset={"type": "str", "default": "alphanumeric", "choices": sorted(CHARSETS)},
        rotate={"type": "list", "elements": "str", "default": []},
        rotate_all={"type": "bool", "default": False},
        return_secret={"type": "bool", "default": True, "no_log": False},
    )
    module = VaultModule(argument_spec=argument_spec, supports_check_mode=True)
    problems = option_problems(module.params)
    if problems:
        module.fail_json(msg="; ".join(problems) + "; nothing was changed")
    module.run(lambda conn: ensure(module, conn), mount=module.params["mount"], path=module.params["path"])


if __name__ == "__main__":
    main()
