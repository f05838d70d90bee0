# Copyright: msa.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# FOR INTERNAL COLLECTION USE ONLY
# The interfaces in this file serve the msa.platform blue/green modules and may change in any
# release, even a bugfix release. The contract with the roles is docs/design/bluegreen.md.

"""The state document ``<state_dir>/<svc>.json``: reading (with validation), writing, history records.

A document that is not exactly what the contract describes is refused whole, naming the file and
every problem found, before anything changes: the flip never guesses from a damaged file.
Managed-node code: Python 3.9 or later (tests/config.yml).
"""

from __future__ import annotations

import datetime
import json
import os
import pwd
import re

from ansible_collections.msa.platform.plugins.module_utils._atomic_file import write_atomic
from ansible_collections.msa.platform.plugins.module_utils._bluegreen_common import (
    COLORS,
    DEFAULT_COLOR,
    RUNTIME_STATES,
    SERVICE_NAME_RE,
    STATE_MODE,
    StateFileError,
    validate_service,
)

STATE_KEYS = ("service", "live", "versions", "history")
RECORD_KEYS = ("time", "operator", "balancer", "from", "to", "versions")
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
MAX_PROBLEMS_SHOWN = 10

# The audit login uid (pam_loginuid): the user who logged in, unchanged by sudo or su.
LOGINUID_PATH = "/proc/self/loginuid"
_LOGINUID_UNSET = 4294967295


# --------------------------------------------------------------------------------------------
# history records


def utc_now():
    # datetime.timezone.utc, not datetime.UTC (Python 3.11+): the managed-node floor is 3.9.
    return datetime.datetime.now(datetime.timezone.utc).strftime(TIME_FORMAT)


def _user_name(uid):
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:  # no passwd entry (minimal container, uid from a volume)
        return None


def _login_user():
    try:
        with open(LOGINUID_PATH) as handle:
            uid = int(handle.read().strip())
    except (OSError, ValueError):
        return None
    if uid == _LOGINUID_UNSET:
        return None
    return _user_name(uid)


def default_operator(environ=None):
    """Who runs the flip when the playbook does not say, in this order:

    ``MSA_OPERATOR``; the user who became root (``SUDO_USER``, ``DOAS_USER``); the user who logged
    in (audit login uid, which ``su`` keeps); ``LOGNAME``, ``USER``; the passwd name of the
    effective uid; ``uid <n>`` when there is none.
    """
    environ = os.environ if environ is None else environ
    for var in ("MSA_OPERATOR", "SUDO_USER", "DOAS_USER"):
        if environ.get(var):
            return environ[var]
    login = _login_user()
    if login:
        return login
    for var in ("LOGNAME", "USER"):
        if environ.get(var):
            return environ[var]
    uid = os.geteuid()
    return _user_name(uid) or "uid %d" % uid


def history_record(operator, balancer, from_color, to_color, versions, *, when=None):
    """One audit-trail entry, exactly the keys of the contract."""
    return {
        "time": when or utc_now(),
        "operator": operator,
        "balancer": balancer,
        "from": from_color,
        "to": to_color,
        "versions": dict(versions),
    }


# --------------------------------------------------------------------------------------------
# validation


# JSON's names for what json.load returns; bool before int (a bool is an int in Python).
_KINDS = ((type(None), "null"), (bool, "a boolean"), ((int, float), "a number"), (str, "a string"), (list, "a list"))


def _kind(value):
    for types, name in _KINDS:
        if isinstance(value, types):
            return name
    return "an object" if isinstance(value, dict) else "a %s" % type(value).__name__


def _shown(value):
    return repr(value) if isinstance(value, str) else _kind(value)


def _text(where, value, problems):
    if not isinstance(value, str):
        problems.append("%s is %s, expected a string" % (where, _kind(value)))
        return False
    if not value.strip():
        problems.append("%s is empty" % where)
        return False
    return True


def _choice(where, value, choices, problems):
    if not isinstance(value, str) or value not in choices:
        problems.append("%s is %s, expected one of %s" % (where, _shown(value), ", ".join(choices)))


def _versions(where, value, problems):
    if not isinstance(value, dict):
        problems.append("%s is %s, expected an object" % (where, _kind(value)))
        return
    for color, version in value.items():
        if color not in COLORS:
            problems.append("%s has an unknown color %r" % (where, color))
        else:
            _text("%s.%s" % (where, color), version, problems)


def _record(where, record, problems):
    if not isinstance(record, dict):
        problems.append("%s is %s, expected an object" % (where, _kind(record)))
        return
    missing = [key for key in RECORD_KEYS if key not in record]
    if missing:
        problems.append("%s lacks %s" % (where, ", ".join(missing)))
    problems.extend("%s has an unknown key %r" % (where, key) for key in record if key not in RECORD_KEYS)
    if "time" in record:
        stamp = record["time"]
        if not isinstance(stamp, str) or not TIME_RE.fullmatch(stamp):
            problems.append("%s.time is %s, expected UTC time as YYYY-MM-DDTHH:MM:SSZ" % (where, _shown(stamp)))
    for key in ("operator", "balancer"):
        if key in record:
            _text("%s.%s" % (where, key), record[key], problems)
    if "from" in record:
        _choice("%s.from" % where, record["from"], COLORS + RUNTIME_STATES, problems)
    if "to" in record:
        _choice("%s.to" % where, record["to"], COLORS, problems)
    if "versions" in record:
        _versions("%s.versions" % where, record["versions"], problems)


def state_problems(document, service):
    """Everything wrong with a parsed state document, as a list of short phrases (empty = valid).

    Keys may be left out (they take the contract's defaults); every key present must have the
    contract's type and values, and no other key may be present.
    """
    if not isinstance(document, dict):
        return ["the document is %s, expected an object" % _kind(document)]
    problems = [
        "unknown key %r (a state document has %s)" % (key, ", ".join(STATE_KEYS))
        for key in document
        if key not in STATE_KEYS
    ]
    if "service" in document and _text("service", document["service"], problems) and document["service"] != service:
        problems.append("service is %r but the file is for %s" % (document["service"], service))
    if "live" in document:
        _choice("live", document["live"], COLORS, problems)
    if "versions" in document:
        _versions("versions", document["versions"], problems)
    if "history" in document:
        history = document["history"]
        if not isinstance(history, list):
            problems.append("history is %s, expected a list" % _kind(history))
        else:
            for index, record in enumerate(history):
                _record("history[%d]" % index, record, problems)
    return problems


def parse_state(read, service, what, fix, **details):
    """The state document of ``service`` that ``read()`` returns as text, validated, with left-out
    keys filled in. Text that is not JSON, or a document with problems, is a StateFileError naming
    ``what`` (e.g. "state file <path>") and every problem, ending with ``fix`` (what to do)."""
    try:
        document = json.loads(read())
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise StateFileError(
            "%s is not valid JSON (%s); nothing was changed. %s; the flip will not guess" % (what, exc, fix), **details
        ) from exc
    problems = state_problems(document, service)
    if problems:
        shown = problems[:MAX_PROBLEMS_SHOWN]
        if len(problems) > len(shown):
            shown.append("and %d more" % (len(problems) - len(shown)))
        raise StateFileError(
            "%s is not a valid blue/green state document: %s; nothing was changed. %s (docs/design/bluegreen.md "
            "describes the document)" % (what, "; ".join(shown), fix),
            problems=problems,
            **details,
        )
    loaded = StateStore.empty(service)
    loaded.update(document)
    return loaded


# --------------------------------------------------------------------------------------------
# the store


class StateStore:
    """``<state_dir>/<svc>.json``: live color, versions per color, history. One writer (the flip)."""

    def __init__(self, state_dir):
        self.state_dir = state_dir

    def path(self, service):
        return os.path.join(self.state_dir, "%s.json" % validate_service(service))

    def exists(self, service):
        return os.path.exists(self.path(service))

    def known_services(self):
        try:
            names = os.listdir(self.state_dir)
        except FileNotFoundError:
            return []
        found = []
        for name in names:
            if name.endswith(".json") and not name.startswith("."):
                service = name[: -len(".json")]
                if SERVICE_NAME_RE.fullmatch(service):
                    found.append(service)
        return sorted(found)

    @staticmethod
    def empty(service):
        return {"service": service, "live": DEFAULT_COLOR, "versions": {}, "history": []}

    def load(self, service):
        """The service's document, validated, with left-out keys filled in; raises StateFileError."""
        path = self.path(service)

        def read():
            with open(path, encoding="utf-8") as handle:
                return handle.read()

        try:
            return parse_state(
                read,
                service,
                "state file %s" % path,
                "Fix the file or move it aside (the next flip then believes the balancer and writes a new one)",
                state_file=path,
            )
        except FileNotFoundError:
            return self.empty(service)

    def save(self, service, data):
        """Write atomically: temp file in the same directory, fsync, chmod 0640, rename, fsync dir."""
        os.makedirs(self.state_dir, mode=0o750, exist_ok=True)
        content = json.dumps(data, indent=2, sort_keys=False) + "\n"
        write_atomic(self.path(service), content, STATE_MODE, sync_dir=True)
        return self.path(service)
