# Copyright: msa.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# FOR INTERNAL COLLECTION USE ONLY
# The interfaces in this file serve the msa.platform modules and may change in any release,
# even a bugfix release.

"""How the msa.platform modules that talk to a server fail, written once for all of them.

* :class:`ExplainedError`: a failure worded for the operator, with details for the result;
  the Vault and Consul errors are kinds of it;
* :func:`redact`: secret values masked in a message, the last line of defence;
* :func:`fail_unexpected`: a bug reported as a failed task with its traceback, secrets masked;
* :class:`ServerModule`: ``AnsibleModule`` that runs ``work(connection)`` and turns every
  failure into one of the two above, saying what changed before it (or that nothing did).

Managed-node code: Python 3.9 or later (tests/config.yml).
"""

from __future__ import annotations

import traceback

from ansible.module_utils.basic import AnsibleModule

NOTHING_CHANGED = "nothing was changed"
HIDDEN = "********"


class ExplainedError(Exception):
    """A failure explained for the operator; ``details`` go into the failed result as they are
    (``partial``: what changed before it; ``tail``: how the message ends instead)."""

    def __init__(self, msg, **details):
        super().__init__(msg)
        self.msg = msg
        self.details = details


def redact(text, secrets):
    """``text`` with every secret value in ``secrets`` replaced: the last line of defence for messages."""
    text = str(text)
    for value in sorted((str(s) for s in secrets if s not in (None, "") and len(str(s)) >= 3), key=len, reverse=True):
        text = text.replace(value, HIDDEN)
    return text


def fail_unexpected(module, exc, secrets=(), note=None, **result):
    """The catch-all: a bug, reported as a failed task with its traceback instead of a crash."""
    module.fail_json(
        msg=redact(
            "unexpected error: %s: %s%s. This is a bug in msa.platform; the traceback is in 'exception'"
            % (type(exc).__name__, exc, "; %s" % note if note else ""),
            secrets,
        ),
        exception=redact(traceback.format_exc(), secrets),
        **result,
    )


class ServerModule(AnsibleModule):
    """AnsibleModule for a module that works through one connection to a server.

    Subclasses name their ``SECRET_OPTIONS`` and ``ERROR`` (an :class:`ExplainedError` kind) and
    open the connection in :meth:`connection`."""

    SECRET_OPTIONS = ()
    ERROR = ExplainedError

    def connection(self):
        raise NotImplementedError

    def secrets(self):
        return [self.params.get(name) for name in self.SECRET_OPTIONS]

    def fail_explained(self, exc, **result):
        """Fail with ``exc``; the message ends with ``tail`` when the details carry one, else with what
        changed before the failure (``partial``, which also makes ``changed`` true), or says that
        nothing did."""
        details = dict(exc.details)
        details.update(result)
        partial = details.pop("partial", None)
        tail = details.pop("tail", None) or ("changed before the failure: %s" % partial if partial else NOTHING_CHANGED)
        self.fail_json(msg=redact("%s; %s" % (exc.msg, tail), self.secrets()), changed=bool(partial), **details)

    def run(self, work, **result):
        """``work(connection)`` -> result dict; exits with it, or fails explained. Diff only when asked."""
        try:
            outcome = work(self.connection())
        except self.ERROR as exc:
            self.fail_explained(exc, **result)
        except Exception as exc:  # noqa: BLE001 - house style: no Python exception escapes a module
            fail_unexpected(self, exc, self.secrets(), **result)
        diff = outcome.pop("diff", None)
        if self._diff and diff is not None:
            outcome["diff"] = diff
        self.exit_json(**outcome)
