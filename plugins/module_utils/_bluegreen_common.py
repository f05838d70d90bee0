# Copyright: msa.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# FOR INTERNAL COLLECTION USE ONLY
# The interfaces in this file serve the msa.platform blue/green modules and may change in any
# release, even a bugfix release. The contract with the roles is docs/design/bluegreen.md.

"""Names, errors and small rules every blue/green piece shares (no I/O here).

Managed-node code: Python 3.9 or later (tests/config.yml).
"""

from __future__ import annotations

import re

COLORS = ("blue", "green")
DEFAULT_COLOR = "blue"  # missing state file = live is blue (contract)
# What a balancer can report besides a color: a gradual shift stopped half-way, or no weight at all.
RUNTIME_STATES = ("mixed", "none")
SERVICE_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
STATE_MODE = 0o640
LIVE_WEIGHT = 100
IDLE_WEIGHT = 0


class BlueGreenError(Exception):
    """A failure with a message meant for the operator, plus details for the result."""

    def __init__(self, msg, **details):
        super().__init__(msg)
        self.msg = msg
        self.details = details


class UnknownServiceError(BlueGreenError):
    pass


class HealthGateError(BlueGreenError):
    pass


class LockTimeoutError(BlueGreenError):
    pass


class BackendError(BlueGreenError):
    pass


class StateFileError(BlueGreenError):
    """The state file cannot be used as it is (not JSON, or not a state document)."""


def other_color(color):
    return "green" if color == "blue" else "blue"


def validate_service(name):
    if not isinstance(name, str) or not SERVICE_NAME_RE.fullmatch(name):
        raise BlueGreenError(
            "invalid service name %r: it must match %s (as in msa_services)" % (name, SERVICE_NAME_RE.pattern)
        )
    return name


def weight_plan(steps):
    """Turn target-color steps (e.g. [10, 50, 100]) into (new_weight, old_weight) pairs.

    The share moves in steps; each pair sums to 100 so the percentages read as traffic share.
    The last pair is always (100, 0). A plain flip is ``[100]`` -> ``[(100, 0)]``.
    """
    steps = list(steps or [LIVE_WEIGHT])
    previous = 0
    for step in steps:
        if not isinstance(step, int) or isinstance(step, bool) or not 1 <= step <= LIVE_WEIGHT:
            raise BlueGreenError("steps must be integers between 1 and 100, got %r" % (steps,))
        if step <= previous:
            raise BlueGreenError("steps must increase, got %r" % (steps,))
        previous = step
    if steps[-1] != LIVE_WEIGHT:
        raise BlueGreenError("the last step must be 100 (all traffic on the new color), got %r" % (steps,))
    return [(step, LIVE_WEIGHT - step) for step in steps]
