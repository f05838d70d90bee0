#!/usr/bin/python
# Copyright: msa.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: consul_config
short_description: Ensure a service's configuration in Consul KV holds the given values, or is gone
version_added: 0.1.0
author:
  - msa.platform maintainers (@msa)
description:
  - Keeps a service's configuration in the Consul KV store (the external configuration store pattern),
    one key per setting under O(prefix), for example C(msa/config/orders/db_host).
  - Reads every key under O(prefix), works out which keys to add, change and remove, and writes only
    those, so a second run with the same input reports no change and writes nothing.
  - Each write and delete is a check-and-set on the ModifyIndex read at the start. When someone changes
    a key between the read and the write, the task fails, and what it had already written in this run is
    put back (old values restored, added keys deleted again, removed keys re-created); the failure says
    what was put back and what could not be.
  - Bad input (a malformed O(prefix), a key or a value of the wrong kind) fails before the agent is
    contacted.
  - For configuration only. Secrets (passwords, API keys, certificates) belong in Vault, see
    M(msa.platform.vault_kv). Values here are stored in clear text and shown in the task's result and diff.
seealso:
  - module: msa.platform.vault_kv
  - name: Consul KV HTTP API
    description: The endpoints this module uses.
    link: https://developer.hashicorp.com/consul/api-docs/kv
extends_documentation_fragment:
  - msa.platform.attributes
  - msa.platform.consul
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying the target.
    support: full
    details:
      - Reads the keys and reports what would be added, changed and removed; writes nothing.
  diff_mode:
    description: Returns details on what has changed (or would change in check_mode) when in diff mode.
    support: full
    details:
      - "The keys under O(prefix) before and after, one C(key: value) line each, sorted by key."
options:
  prefix:
    description:
      - Path of the service's configuration in the KV store, for example V(msa/config/orders). The keys
        are C(<prefix>/<key>).
      - Segments separated by C(/), each of letters, digits, C(.), C(_) and C(-) (not C(.) or C(..)); no
        leading or trailing C(/), no empty segment.
    type: str
    required: true
  values:
    description:
      - The configuration for O(state=present), key to value. Required then; ignored with O(state=absent).
      - Each key is one segment as in O(prefix) (no C(/)).
      - Each value is a string, a number or a boolean, stored as text (booleans as C(true) and C(false)).
        A dictionary, a list or a null value fails naming its key.
      - Keys under O(prefix) that are not listed are kept, unless O(purge=true).
    type: dict
  purge:
    description:
      - With O(state=present), delete the keys under O(prefix) (nested ones too) that O(values) does not
        name, so the prefix holds exactly O(values).
    type: bool
    default: false
  state:
    description:
      - V(present) writes the keys of O(values) that are missing or differ.
      - V(absent) deletes every key under O(prefix), nested ones too.
    type: str
    default: present
    choices: [present, absent]
notes:
  - Keys nested deeper under O(prefix) (C(<prefix>/db/host)) show up in RV(values) and the diff by their
    path below O(prefix) (C(db/host)); this module does not set them but O(purge) and O(state=absent)
    delete them.
  - A folder marker for O(prefix) itself (the key C(<prefix>/), as the Consul UI creates) is left alone.
  - Values that are not UTF-8 text (binary data) under O(prefix) fail the task naming the key.
"""

EXAMPLES = r"""
- name: Store the orders service's configuration
  msa.platform.consul_config:
    prefix: msa/config/orders
    values:
      db_host: db1.internal
      db_port: 5432
      feature.new_checkout: true
      log_level: info

- name: Exactly these keys, deleting any other key under the prefix
  msa.platform.consul_config:
    host: consul.internal
    scheme: https
    port: 8501
    ca_path: /etc/ssl/msa/consul-ca.pem
    token: "{{ consul_config_token }}"
    prefix: msa/config/orders
    values: "{{ orders_config }}"
    purge: true

- name: Show what would change, without writing
  msa.platform.consul_config:
    prefix: msa/config/orders
    values:
      log_level: debug
  check_mode: true
  diff: true

- name: Remove a retired service's configuration
  msa.platform.consul_config:
    prefix: msa/config/legacy-billing
    state: absent
"""

RETURN = r"""
prefix:
  description: The O(prefix) the task worked on.
  returned: always
  type: str
  sample: msa/config/orders
added:
  description: Keys (below O(prefix)) that were created, or would be in check mode.
  returned: success
  type: list
  elements: str
  sample: ["db_port"]
updated:
  description: Keys whose value was changed, or would be in check mode.
  returned: success
  type: list
  elements: str
  sample: ["log_level"]
removed:
  description: Keys that were deleted (O(purge) or O(state=absent)), or would be in check mode.
  returned: success
  type: list
  elements: str
  sample: ["old_flag"]
values:
  description:
    - Every key under O(prefix) and its value after the task (in check mode, as it would be).
    - Empty after O(state=absent).
  returned: success
  type: dict
  sample: {"db_host": "db1.internal", "db_port": "5432", "log_level": "info"}
put_back:
  description:
    - On a failure in the middle of the writes, the keys this run had already written that were put back as
      they were, each with what was done.
  returned: failure while writing
  type: list
  elements: str
  sample: ["db_host (old value restored)", "db_port (deleted again)"]
not_put_back:
  description:
    - On a failure in the middle of the writes, the keys this run had written that could not be put back, each
      with why (usually someone else changed it meanwhile). Fix these by hand.
  returned: failure while writing
  type: list
  elements: str
  sample: []
"""

import json  # noqa: E402
import re  # noqa: E402

from ansible_collections.msa.platform.plugins.module_utils._consul_client import (  # noqa: E402
    NOTHING_CHANGED,
    ConsulError,
    ConsulModule,
)

SEGMENT = re.compile(r"^[A-Za-z0-9._-]+$")


def segment_problem(segment):
    """Why ``segment`` cannot be one segment of a key path, or None."""
    if segment == "":
        return "an empty segment"
    if set(segment) == {"."}:
        return "the segment %r (no . or .. segments)" % segment
    if not SEGMENT.match(segment):
        return "the segment %r (only letters, digits, '.', '_' and '-')" % segment
    return None


def prefix_problems(prefix):
    if not prefix:
        return ["prefix must not be empty, for example msa/config/orders"]
    if prefix.startswith("/") or prefix.endswith("/"):
        return ["prefix must not start or end with '/', got %r (for example msa/config/orders)" % prefix]
    problems = [segment_problem(s) for s in prefix.split("/")]
    return ["prefix %r has %s" % (prefix, p) for p in problems if p]


def as_text(value):
    """The stored text of a value of ``values``, or None when its kind is not allowed."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return str(value)
    return None


def desired_values(values):
    """``values`` with every value as text, and the problems with its keys and values."""
    desired, problems = {}, []
    for key in sorted(values, key=str):
        name = str(key)
        if "/" in name:
            problems.append("values key %r contains '/'; each key is one segment below prefix" % name)
        else:
            problem = segment_problem(name)
            if problem:
                problems.append("values key %r is not a valid key: it is %s" % (name, problem))
        value = values[key]
        text = as_text(value)
        if text is None:
            kind = "null" if value is None else type(value).__name__
            problems.append(
                "values[%r] is a %s; each value must be a string, a number or a boolean "
                "(store structured data as a JSON string, secrets in Vault)" % (name, kind)
            )
        else:
            desired[name] = text
    return desired, problems


def lines(tree):
    """The diff text of a tree: ``key: value`` lines, sorted; a value that spans lines is JSON-quoted."""
    out = []
    for key in sorted(tree):
        value = tree[key]
        out.append("%s: %s" % (key, json.dumps(value) if "\n" in value or "\r" in value else value))
    return "".join(line + "\n" for line in out)


class Writer:
    """Applies the plan key by key with check-and-set, remembering what it did so it can put it back."""

    def __init__(self, client, prefix):
        self.client = client
        self.prefix = prefix
        self.scope = prefix + "/"
        self.done = []  # (kind, key, old value or None, new value or None)

    def full(self, key):
        return "%s/%s" % (self.prefix, key)

    def add(self, key, value):
        self.client.put(self.full(key), value, 0, scope=self.scope)
        self.done.append(("add", key, None, value))

    def update(self, key, entry, value):
        self.client.put(self.full(key), value, entry["index"], scope=self.scope)
        self.done.append(("update", key, entry["value"], value))

    def remove(self, key, entry):
        self.client.delete(self.full(key), entry["index"], scope=self.scope)
        self.done.append(("remove", key, entry["value"], None))

    def put_back(self):
        """Undo ``done``, newest first; ``(put back, not put back)`` as ``"key (what)"`` lists. A key that
        no longer holds what this run wrote is left as it is: someone else's change wins."""
        restored, lost = [], []
        for kind, key, old, new in reversed(self.done):
            full = self.full(key)
            try:
                now = self.client.read_key(full)
                if kind == "remove":
                    if now is not None:
                        lost.append("%s (re-created by someone else meanwhile; left as it is)" % key)
                        continue
                    self.client.put(full, old, 0, scope=self.scope)
                    restored.append("%s (re-created)" % key)
                    continue
                if now is None or now["value"] != new:
                    lost.append("%s (changed by someone else meanwhile; left as it is)" % key)
                    continue
                if kind == "add":
                    self.client.delete(full, now["index"], scope=self.scope)
                    restored.append("%s (deleted again)" % key)
                else:
                    self.client.put(full, old, now["index"], scope=self.scope)
                    restored.append("%s (old value restored)" % key)
            except ConsulError as exc:
                lost.append("%s (%s)" % (key, exc.msg))
            except Exception as exc:  # noqa: BLE001 - keep putting the other keys back
                lost.append("%s (%s: %s)" % (key, type(exc).__name__, exc))
        return restored, lost


def failure(exc, writer):
    """The ConsulError for a failed write, after putting back what this run had written."""
    message = (
        exc.msg
        if isinstance(exc, ConsulError)
        else "unexpected error: %s: %s (a bug in msa.platform)" % (type(exc).__name__, exc)
    )
    details = dict(exc.details) if isinstance(exc, ConsulError) else {"reason": "bug"}
    if not writer.done:
        return ConsulError(message, **details)
    restored, lost = writer.put_back()
    tail = "put back what this run had already written: %s" % (", ".join(restored) or "none")
    if lost:
        tail += "; could NOT put back: %s; fix these keys by hand" % ", ".join(lost)
    else:
        tail += "; the keys under %s/ are as they were before the task" % writer.prefix
    details.update(tail=tail, put_back=restored, not_put_back=lost)
    if lost:
        details["partial"] = ", ".join(lost)
    return ConsulError(message, **details)


def ensure(module, client):
    params = module.params
    prefix = params["prefix"]
    cut = len(prefix) + 1
    tree = client.read_tree(prefix)
    # The prefix's own folder marker ("<prefix>/") is not a configuration key.
    entries = {full[cut:]: entry for full, entry in tree.items() if full[cut:]}
    current = {key: entry["value"] for key, entry in entries.items()}

    if params["state"] == "absent":
        desired, purge = {}, True
    else:
        desired, _problems = desired_values(params["values"] or {})
        purge = params["purge"]
    added = sorted(k for k in desired if k not in current)
    updated = sorted(k for k in desired if k in current and current[k] != desired[k])
    removed = sorted(k for k in current if k not in desired) if purge else []
    after = {k: v for k, v in current.items() if k not in removed}
    after.update(desired)

    changed = bool(added or updated or removed)
    if changed and not module.check_mode:
        writer = Writer(client, prefix)
        try:
            for key in sorted(added + updated):
                if key in current:
                    writer.update(key, entries[key], desired[key])
                else:
                    writer.add(key, desired[key])
            for key in removed:
                writer.remove(key, entries[key])
        except Exception as exc:  # noqa: BLE001 - every failure puts back what this run wrote
            raise failure(exc, writer) from None
    return {
        "changed": changed,
        "prefix": prefix,
        "added": added,
        "updated": updated,
        "removed": removed,
        "values": after,
        "diff": {
            "before_header": prefix + "/",
            "after_header": prefix + "/",
            "before": lines(current),
            "after": lines(after),
        },
    }


def main():
    argument_spec = ConsulModule.generate_argspec(
        prefix={"type": "str", "required": True},
        values={"type": "dict"},
        purge={"type": "bool", "default": False},
        state={"type": "str", "default": "present", "choices": ["present", "absent"]},
    )
    module = ConsulModule(
        argument_spec=argument_spec,
        supports_check_mode=True,
        required_if=[("state", "present", ["values"])],
    )
    params = module.params
    problems = prefix_problems(params["prefix"])
    if params["state"] == "present":
        problems += desired_values(params["values"] or {})[1]
    if problems:
        module.fail_json(msg="; ".join(problems) + "; " + NOTHING_CHANGED, prefix=params["prefix"])
    module.run(lambda client: ensure(module, client), prefix=params["prefix"])


if __name__ == "__main__":
    main()
