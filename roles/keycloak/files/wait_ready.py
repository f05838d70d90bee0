# Copyright: msa.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Wait until Keycloak reports ready, or stop as soon as its unit has stopped or restarted.

Arguments: the unit, the readiness URL (plain HTTP on loopback), the seconds to wait at most.
Prints one JSON object ({"ready": bool, "reason": ..., "exit_status": ..., "invocation": the ID of
the unit's run the wait saw, whose journal holds that start's errors}); exit status 0 when ready.
Keycloak exits at once on a bad option value; polling only the URL would wait the whole timeout.
"""

import json
import subprocess
import sys
import time
import urllib.request


def unit_state(unit):
    shown = subprocess.run(
        ["systemctl", "show", unit, "--property=ActiveState,SubState,InvocationID,ExecMainStatus"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return dict(line.split("=", 1) for line in shown.splitlines() if "=" in line)


def is_ready(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:  # noqa: S310 - a fixed http URL on loopback
            return answer.status == 200
    except Exception:  # noqa: BLE001 - not ready yet, whatever the cause
        return False


def main(unit, url, timeout):
    """Ready, or the run this wait saw stopped; a unit still waiting to restart (a crash loop from
    before the new files) gets its next run, which reads them."""
    invocation = None
    deadline = time.monotonic() + float(timeout)
    while time.monotonic() < deadline:
        if is_ready(url):
            return {"ready": True, "invocation": invocation or ""}
        now = unit_state(unit)
        running = now.get("ActiveState") == "active" and now.get("SubState") == "running"
        if running and invocation is None:
            invocation = now.get("InvocationID")
        ran_and_stopped = invocation is not None and (not running or now.get("InvocationID") != invocation)
        if ran_and_stopped or now.get("ActiveState") in ("failed", "inactive"):
            return {
                "ready": False,
                "reason": "stopped",
                "exit_status": now.get("ExecMainStatus"),
                "invocation": invocation or "",
            }
        time.sleep(2)
    return {"ready": False, "reason": "timeout", "invocation": invocation or ""}


if __name__ == "__main__":
    result = main(*sys.argv[1:4])
    print(json.dumps(result))
    sys.exit(0 if result["ready"] else 1)
