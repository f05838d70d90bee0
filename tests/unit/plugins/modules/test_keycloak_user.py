"""keycloak_user: input checked before any call, the plan, and the put-back order after a failed write.

The module's calls to a real Keycloak (check mode, idempotence, unknown group, a taken address, a
write failing half-way and put back, a wrong administrator password) are tested against the real
server by the keycloak molecule scenario (verify_user_module.yml); no Keycloak runs in the unit tests.
"""

from __future__ import annotations

import pytest
from ansible_collections.msa.platform.plugins.module_utils._keycloak_client import KeycloakError
from ansible_collections.msa.platform.plugins.modules import keycloak_user
from ansible_collections.msa.platform.tests.unit.plugins.lab_servers import free_port, run_module

SECRET = "admin-Canary-3e1f"


def args(**kw):
    base = {
        "url": "https://127.0.0.1:%d" % free_port(),
        "auth_username": "msa-admin",
        "auth_password": SECRET,
        "realm": "msa",
        "username": "alice",
    }
    base.update(kw)
    return base


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"url": "kc-1:8443"}, "url must be Keycloak's base URL"),
        ({"url": "https://kc-1:8443/?x=1"}, "url must be Keycloak's base URL"),
        ({"timeout": 0}, "timeout must be between 1 and 3600"),
        ({"username": "  "}, "username must not be empty"),
        ({"realm": ""}, "realm must not be empty"),
        ({"password": ""}, "password must not be empty"),
        ({"groups": ["buyers", "/"]}, "groups must not hold an empty name"),
    ],
)
def test_bad_input_fails_before_any_call(capsys, bad, message):
    out = run_module(keycloak_user, capsys, args(**bad))
    assert out["_rc"] == 1 and message in out["msg"] and "nothing was changed" in out["msg"]
    assert SECRET not in out["_raw"]


def test_unreachable_keycloak_is_named_and_nothing_changed(capsys):
    out = run_module(keycloak_user, capsys, args())
    assert out["_rc"] == 1 and out["reason"] == "unreachable"
    assert "cannot reach Keycloak at https://127.0.0.1:" in out["msg"] and "connection refused" in out["msg"]
    assert out["msg"].endswith("nothing was changed") and SECRET not in out["_raw"]


def test_desired_profile_keeps_given_fields_and_lowercases_the_address():
    params = {"enabled": True, "email": "Alice@Example.ORG", "email_verified": None, "first_name": "Alice"}
    assert keycloak_user.desired_profile(params) == {
        "enabled": True,
        "email": "alice@example.org",
        "firstName": "Alice",
    }


def test_plan_for_a_new_user():
    fields, join, leave, words = keycloak_user.plan(None, [], {"enabled": True}, ["/buyers"], True)
    assert fields == {"enabled": True} and join == ["/buyers"] and leave == []
    assert words == ["create the user", "join /buyers", "set the password"]


def test_plan_changes_only_what_differs_and_leaves_groups_alone_when_not_given():
    current = {"enabled": True, "email": "a@example.org", "firstName": "A"}
    wanted = {"enabled": True, "email": "b@example.org", "firstName": "A"}
    assert keycloak_user.plan(current, ["/x"], wanted, None, False) == (
        {"email": "b@example.org"},
        [],
        [],
        ["set email"],
    )
    assert keycloak_user.plan(current, ["/x"], current, ["/x"], False) == ({}, [], [], [])
    assert keycloak_user.plan(current, ["/x"], current, [], False)[2:] == (["/x"], ["leave /x"])


def test_summary_shows_no_credentials_and_sorted_groups():
    rep = {"username": "alice", "enabled": True, "credentials": [{"value": SECRET}], "email": "a@example.org"}
    shown = keycloak_user.summary("alice", rep, ["/z", "/a"])
    assert shown["groups"] == ["/a", "/z"] and shown["email_verified"] is False and shown["first_name"] is None
    assert SECRET not in str(shown)


class RecordingClient:
    """Stands in for the HTTP client only to fail the n-th write; records the calls made."""

    url = "https://kc.invalid"

    def __init__(self, fail_on):
        self.fail_on = fail_on
        self.calls = []

    def call(self, method, path, what, **_kw):
        self.calls.append((method, path))
        if len(self.calls) == self.fail_on:
            raise KeycloakError("Keycloak at %s answered 400 while trying to %s" % (self.url, what), reason="http")
        return None, {"Location": "https://kc.invalid/admin/realms/msa/users/u1"}


def test_a_failed_write_puts_back_in_reverse_order():
    client = RecordingClient(fail_on=4)
    writer = keycloak_user.UserWriter(client, "msa", "alice")
    with pytest.raises(KeycloakError):
        writer.update("u1", {"id": "u1", "email": "a@example.org"}, {"email": "b@example.org"})
        writer.membership("u1", {"id": "g1", "path": "/buyers"}, "join")
        writer.membership("u1", {"id": "g2", "path": "/old"}, "leave")
        writer.set_password("u1", SECRET)
    error = keycloak_user.failure(KeycloakError("set the password failed", reason="http"), writer)
    assert error.details["put_back"] == ["undid leave /old", "undid join /buyers", "restored the profile"]
    assert error.details["not_put_back"] == [] and "as it was before the task" in error.details["tail"]
    assert client.calls[4:] == [
        ("PUT", "msa/users/u1/groups/g2"),
        ("DELETE", "msa/users/u1/groups/g1"),
        ("PUT", "msa/users/u1"),
    ]


def test_a_user_created_before_the_failure_is_deleted_again():
    writer = keycloak_user.UserWriter(RecordingClient(fail_on=2), "msa", "alice")
    user_id = writer.create({"enabled": True}, SECRET)
    with pytest.raises(KeycloakError):
        writer.membership(user_id, {"id": "g1", "path": "/buyers"}, "join")
    error = keycloak_user.failure(KeycloakError("join failed", reason="http"), writer)
    assert user_id == "u1" and error.details["put_back"] == ["deleted the user it had created"]
