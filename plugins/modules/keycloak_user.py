#!/usr/bin/python
# Copyright: msa.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: keycloak_user
short_description: Ensure a Keycloak user exists with the given profile, groups and password, or is gone
version_added: 0.1.0
author:
  - msa.platform maintainers (@msa)
description:
  - Keeps one user of a Keycloak realm as code, through Keycloak's admin REST API.
  - Reads the user and the groups it names first, works out what differs, and writes only that, so a
    second run with the same input reports no change and writes nothing.
  - Check mode reads and reports, and writes nothing. M(community.general.keycloak_user) (11.x) updates
    and deletes users even in check mode; that is why this module exists.
  - Bad input and unknown groups fail before anything is written. When a write fails half-way, what the
    task had already changed is put back (a user it created is deleted again, the profile and groups
    restored), and the failure says so.
  - The password is never shown, not in the result, the diff or an error.
extends_documentation_fragment:
  - msa.platform.attributes
  - msa.platform.keycloak
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying the target.
    support: full
    details:
      - Reads the user and its groups and reports what would change; writes nothing.
  diff_mode:
    description: Returns details on what has changed (or would change in check_mode) when in diff mode.
    support: full
    details:
      - The user's profile fields and groups before and after; a password that is set shows as C(********).
options:
  realm:
    description: The realm the user belongs to. It must exist.
    type: str
    required: true
  username:
    description:
      - The user's login name. Keycloak stores user names in lower case, so V(Alice) is the user V(alice).
    type: str
    required: true
  state:
    description:
      - V(present) creates the user or brings the given fields in line.
      - V(absent) deletes the user when it exists.
    type: str
    default: present
    choices: [present, absent]
  enabled:
    description: Whether the user can log in.
    type: bool
    default: true
  email:
    description:
      - The user's address, stored in lower case. Left as it is when not given.
    type: str
  email_verified:
    description: Whether the address counts as verified. Left as it is when not given (false on creation).
    type: bool
  first_name:
    description: Given name. Left as it is when not given.
    type: str
  last_name:
    description: Family name. Left as it is when not given.
    type: str
  groups:
    description:
      - The groups the user is a member of, exactly; names of top-level groups (V(buyers)) or paths of
        sub-groups (V(/org/buyers)). Memberships not listed are removed.
      - Left as they are when not given. V([]) removes every membership.
      - A group that does not exist fails the task before anything is written.
    type: list
    elements: str
  password:
    description:
      - The user's password, set when the user is created (not temporary), and on later runs according
        to O(update_password).
      - Never shown in the output.
    type: str
  update_password:
    description:
      - V(on_create) sets O(password) only when the user is created, so users keep the password they
        chose; Keycloak cannot tell whether a given password matches the stored one.
      - V(always) sets it on every run, which then always reports a change.
    type: str
    default: on_create
    choices: [on_create, always]
notes:
  - The administrator needs the C(manage-users) and C(view-users) roles of the realm's
    C(realm-management) client (or of the C(master) realm's C(<realm>-realm) client), and
    C(query-groups).
  - Attributes, required actions, credentials other than the password and role mappings are left
    alone. For realm roles, use groups or M(community.general.keycloak_user_rolemapping).
seealso:
  - module: community.general.keycloak_user
  - name: Keycloak admin REST API
    description: The endpoints this module uses.
    link: https://www.keycloak.org/docs-api/latest/rest-api/index.html
"""

EXAMPLES = r"""
- name: Alice, a buyer, with her first password
  msa.platform.keycloak_user:
    url: https://kc-1.internal:8443
    ca_path: /etc/keycloak/tls/ca.crt
    auth_username: msa-admin
    auth_password: "{{ keycloak_admin_password }}"
    realm: msa
    username: alice
    email: alice@example.org
    email_verified: true
    first_name: Alice
    last_name: Liddell
    groups: [buyers]
    password: "{{ lookup('msa.platform.platform_secret', 'keycloak-user-alice') }}"

- name: The same connection for several tasks, through the action group
  module_defaults:
    group/msa.platform.keycloak:
      url: https://kc-1.internal:8443
      ca_path: /etc/keycloak/tls/ca.crt
      auth_username: msa-admin
      auth_password: "{{ keycloak_admin_password }}"
  block:
    - name: Lock Bob out, keeping his account
      msa.platform.keycloak_user:
        realm: msa
        username: bob
        enabled: false

    - name: Remove a leaver
      msa.platform.keycloak_user:
        realm: msa
        username: carol
        state: absent
"""

RETURN = r"""
id:
  description:
    - The user's ID in Keycloak.
    - Empty when there is no such user (after O(state=absent), or before creation in check mode).
  returned: success
  type: str
  sample: 0e2c6c7c-4b8f-4a55-b2cf-3f4d5f0a9b1e
user:
  description: The user as it is after the task (in check mode, as it would be); never the password.
  returned: success and O(state=present)
  type: dict
  sample: {"username": "alice", "enabled": true, "email": "alice@example.org", "email_verified": true,
           "first_name": "Alice", "last_name": "Liddell", "groups": ["/buyers"]}
changes:
  description: What was changed, or would be in check mode, in words.
  returned: success
  type: list
  elements: str
  sample: ["create the user", "join /buyers"]
put_back:
  description: On a failure half-way, what this run had changed and put back.
  returned: failure while writing
  type: list
  elements: str
  sample: ["deleted the user it had created"]
not_put_back:
  description: On a failure half-way, what this run had changed and could not put back; fix it by hand.
  returned: failure while writing
  type: list
  elements: str
  sample: []
"""

from urllib.parse import quote  # noqa: E402

from ansible_collections.msa.platform.plugins.module_utils._keycloak_client import (  # noqa: E402
    NOTHING_CHANGED,
    KeycloakError,
    KeycloakModule,
)
from ansible_collections.msa.platform.plugins.module_utils._module_failures import HIDDEN  # noqa: E402

# Module option: the field of Keycloak's UserRepresentation.
PROFILE_FIELDS = {
    "enabled": "enabled",
    "email": "email",
    "email_verified": "emailVerified",
    "first_name": "firstName",
    "last_name": "lastName",
}


def group_path(name):
    """The path Keycloak gives a group named ``name`` (a top-level name, or a path already)."""
    return name if name.startswith("/") else "/" + name


def desired_profile(params):
    """The profile fields the task sets (those given), as Keycloak stores them."""
    wanted = {}
    for option, field in PROFILE_FIELDS.items():
        value = params.get(option)
        if value is not None:
            wanted[field] = value.lower() if option == "email" else value
    return wanted


def summary(username, rep, groups):
    """The user as the result and the diff show it: the profile fields and the sorted group paths."""
    rep = rep or {}
    shown = {"username": username}
    for option, field in PROFILE_FIELDS.items():
        shown[option] = rep.get(field, False if option in ("enabled", "email_verified") else None)
    shown["groups"] = sorted(groups)
    return shown


def plan(current, current_groups, wanted, wanted_groups, password_change):
    """``(profile fields to write, group paths to join, group paths to leave, changes in words)``."""
    fields = {f: v for f, v in wanted.items() if (current or {}).get(f) != v}
    join = sorted(set(wanted_groups) - set(current_groups)) if wanted_groups is not None else []
    leave = sorted(set(current_groups) - set(wanted_groups)) if wanted_groups is not None else []
    words = ["create the user"] if current is None else ["set %s" % f for f in sorted(fields)]
    words += ["join %s" % p for p in join] + ["leave %s" % p for p in leave]
    if password_change:
        words.append("set the password")
    return fields, join, leave, words


class UserWriter:
    """Applies a plan to one user, remembering what it did so that a failure can put it back."""

    def __init__(self, client, realm, username):
        self.client = client
        self.base = "%s/users" % quote(realm, safe="")
        self.username = username
        self.undo = []  # (what putting it back did, what it failed to do, how to put it back)

    def create(self, fields, password):
        body = dict(fields, username=self.username)
        body.setdefault("enabled", True)
        if password is not None:
            body["credentials"] = [{"type": "password", "value": password, "temporary": False}]
        _answer, headers = self.client.call("POST", self.base, "create user %s" % self.username, body=body)
        user_id = (headers.get("Location") or "").rstrip("/").rsplit("/", 1)[-1]
        self.undo.append(
            ("deleted the user it had created", "delete the user it had created", lambda: self.delete(user_id))
        )
        return user_id

    def update(self, user_id, rep, fields):
        self.client.call(
            "PUT", "%s/%s" % (self.base, user_id), "update user %s" % self.username, body=dict(rep, **fields)
        )
        self.undo.append(
            (
                "restored the profile",
                "restore the profile",
                lambda: self.client.call(
                    "PUT", "%s/%s" % (self.base, user_id), "restore user %s" % self.username, body=rep
                ),
            )
        )

    def membership(self, user_id, group, verb):
        method, back = ("PUT", "DELETE") if verb == "join" else ("DELETE", "PUT")
        path = "%s/%s/groups/%s" % (self.base, user_id, group["id"])
        self.client.call(method, path, "%s %s for user %s" % (verb, group["path"], self.username))
        self.undo.append(
            (
                "undid %s %s" % (verb, group["path"]),
                "undo %s %s" % (verb, group["path"]),
                lambda: self.client.call(back, path, "undo %s %s for user %s" % (verb, group["path"], self.username)),
            )
        )

    def set_password(self, user_id, password):
        self.client.call(
            "PUT",
            "%s/%s/reset-password" % (self.base, user_id),
            "set the password of user %s" % self.username,
            body={"type": "password", "value": password, "temporary": False},
        )

    def delete(self, user_id):
        self.client.call("DELETE", "%s/%s" % (self.base, user_id), "delete user %s" % self.username)

    def put_back(self):
        restored, lost = [], []
        for done, to_do, action in reversed(self.undo):
            try:
                action()
                restored.append(done)
            except Exception as exc:  # noqa: BLE001 - keep putting the rest back
                lost.append("%s: %s" % (to_do, getattr(exc, "msg", exc)))
        return restored, lost


def failure(exc, writer):
    """The KeycloakError for a failed write, after putting back what this run had changed."""
    if not isinstance(exc, KeycloakError):
        exc = KeycloakError(
            "unexpected error: %s: %s (a bug in msa.platform)" % (type(exc).__name__, exc), reason="bug"
        )
    if not writer.undo:
        return exc
    restored, lost = writer.put_back()
    details = dict(exc.details, put_back=restored, not_put_back=lost)
    tail = "put back what this run had changed: %s" % (", ".join(restored) or "none")
    if lost:
        tail += "; could NOT put back: %s; fix the user by hand" % "; ".join(lost)
        details["partial"] = "; ".join(lost)
    else:
        tail += "; the user is as it was before the task"
    details["tail"] = tail
    return KeycloakError(exc.msg, **details)


def find_user(client, realm, username):
    """The user's full representation, or None; an unknown realm is an error."""
    base = "%s/users" % quote(realm, safe="")
    found, _headers = client.call(
        "GET",
        base,
        "look up user %s in realm %s" % (username, realm),
        query={"username": username, "exact": "true"},
        missing_ok=True,
    )
    # The users of a realm that does not exist are 404 (a realm without users answers []).
    if found is None:
        raise KeycloakError("realm %s does not exist in Keycloak at %s" % (realm, client.url), reason="not_found")
    for rep in found:
        if rep.get("username") == username:
            # The search answers a short form; an update sends back the whole user, attributes included.
            full, _headers = client.call("GET", "%s/%s" % (base, rep["id"]), "read user %s" % username)
            return full
    return None


def find_groups(client, realm, names):
    """``{path: group}`` of the named groups; any that does not exist is an error naming them all."""
    groups, missing = {}, []
    for name in names:
        path = group_path(name)
        group, _headers = client.call(
            "GET",
            "%s/group-by-path/%s" % (quote(realm, safe=""), quote(path.lstrip("/"), safe="/")),
            "look up group %s in realm %s" % (path, realm),
            missing_ok=True,
        )
        if group is None:
            missing.append(path)
        else:
            groups[group["path"]] = group
    if missing:
        raise KeycloakError(
            "realm %s has no group %s; create the group first (or fix groups)" % (realm, ", ".join(missing)),
            reason="not_found",
        )
    return groups


def user_groups(client, realm, user_id):
    answer, _headers = client.call(
        "GET",
        "%s/users/%s/groups" % (quote(realm, safe=""), user_id),
        "read the groups of user %s" % user_id,
        query={"briefRepresentation": "true", "max": "1000"},
    )
    return {g["path"]: g for g in answer or []}


def ensure(module, client):
    params = module.params
    realm, username = params["realm"], params["username"].lower()
    current = find_user(client, realm, username)
    user_id = current["id"] if current else ""
    member_of = user_groups(client, realm, user_id) if current else {}
    before = summary(username, current, member_of) if current else {}
    writer = UserWriter(client, realm, username)

    if params["state"] == "absent":
        changed = current is not None
        if changed and not module.check_mode:
            writer.delete(user_id)
        return {
            "changed": changed,
            "id": "",
            "changes": ["delete the user"] if changed else [],
            "diff": {"before": before, "after": {}},
        }

    wanted = desired_profile(params)
    wanted_groups = None
    named = {}
    if params["groups"] is not None:
        named = find_groups(client, realm, params["groups"])
        wanted_groups = list(named)
    password = params["password"]
    every_run = params["update_password"] == "always"  # noqa: S105 - a choice, not a password
    password_change = password is not None and (current is None or every_run)
    fields, join, leave, words = plan(current, list(member_of), wanted, wanted_groups, password_change)

    after_rep = dict(current or {"enabled": True, "emailVerified": False}, **wanted)
    after_groups = wanted_groups if wanted_groups is not None else list(member_of)
    after = summary(username, after_rep, after_groups)
    diff_before, diff_after = dict(before), dict(after)
    if password_change:
        diff_after["password"] = HIDDEN
    changed = bool(words)
    if changed and not module.check_mode:
        try:
            if current is None:
                user_id = writer.create(fields, password)
            elif fields:
                writer.update(user_id, current, fields)
            for path in join:
                writer.membership(user_id, named[path], "join")
            for path in leave:
                writer.membership(user_id, member_of[path], "leave")
            if password_change and current is not None:
                writer.set_password(user_id, password)
        except Exception as exc:  # noqa: BLE001 - every failure puts back what this run changed
            raise failure(exc, writer) from None
    return {
        "changed": changed,
        "id": user_id,
        "user": after,
        "changes": words,
        "diff": {"before": diff_before, "after": diff_after},
    }


def main():
    argument_spec = KeycloakModule.generate_argspec(
        realm={"type": "str", "required": True},
        username={"type": "str", "required": True},
        state={"type": "str", "default": "present", "choices": ["present", "absent"]},
        enabled={"type": "bool", "default": True},
        email={"type": "str"},
        email_verified={"type": "bool"},
        first_name={"type": "str"},
        last_name={"type": "str"},
        groups={"type": "list", "elements": "str"},
        password={"type": "str", "no_log": True},
        update_password={"type": "str", "default": "on_create", "choices": ["on_create", "always"], "no_log": False},
    )
    module = KeycloakModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
    problems = []
    if not params["realm"].strip():
        problems.append("realm must not be empty")
    if not params["username"].strip():
        problems.append("username must not be empty")
    if params["password"] == "":
        problems.append("password must not be empty (leave it out to keep the current one)")
    if any(not g.strip("/ ") for g in params["groups"] or []):
        problems.append("groups must not hold an empty name")
    if problems:
        module.fail_json(msg="; ".join(problems) + "; " + NOTHING_CHANGED)
    module.run(lambda client: ensure(module, client), realm=params["realm"], username=params["username"])


if __name__ == "__main__":
    main()
