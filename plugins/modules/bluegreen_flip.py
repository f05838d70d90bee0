#!/usr/bin/python
# Copyright: msa.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: bluegreen_flip
short_description: Move a service's traffic between its blue and green colors on one balancer
version_added: 0.1.0
author:
  - msa.platform maintainers (@msa)
description:
  - Sends all traffic of one service to the C(blue) or C(green) color on the balancer of the target host,
    or back to the previous color, or to the color that holds a named release.
  - Refuses to move traffic to a color whose servers are not all healthy; traffic then stays where it is.
  - On HAProxy the traffic share is the server weight in backend C(be_<service>) (live 100, idle 0), changed
    at runtime through the admin socket, optionally in steps (for example 10, 50, 100) with a pause and a
    health check between them; a target that turns unhealthy mid-way puts the traffic back and fails.
    The old color is then drained with a bounded wait, and the server state is dumped so a reload keeps it.
  - On NGINX the upstream file of the service is pointed at the other color's port, checked with
    C(nginx -t) (the previous file is restored when it fails) and NGINX is reloaded.
  - Every flip runs under the service's lock in O(state_dir) and is recorded in the state file with time (UTC),
    operator, balancer, from, to and the versions of both colors. That file is what the roles read, so a
    later C(site.yml) run keeps the live color.
  - The state file is written last. When anything fails after the balancer was changed (draining, saving the
    server state, writing the state file, or an unexpected error), the balancer is put back as it was first
    (weights and saved server state on HAProxy; upstream file, its mode and owner, and a reload on NGINX), and
    the failure says so. Nothing is recorded for a flip that did not stay.
  - Every option's range and format is checked before anything is read or changed, and the state file is
    validated as a whole when it is read; a state file that is not valid JSON or not exactly the documented
    document fails naming the file and every problem found, and nothing changes.
  - With O(balancer=consul) the flip changes the cluster, not one balancer. It turns on the new color's live
    query and waits at least 3 seconds, so that every balancer resolves it. Then it turns off the old color's
    query. So there is a moment when both colors take traffic, and never one when neither does. It flips in one
    step. Running it once is enough; a run on a second balancer finds the color already live and changes
    nothing.
  - With O(balancer=consul) on a balancer (O(haproxy_socket) exists), the module also watches that HAProxy. It
    waits for the new color's slots before the old color goes out. Then it drains, waiting at most
    O(drain_timeout), until the old color has no filled slot and no session. Elsewhere it cannot see any
    balancer, so it waits min(O(drain_timeout), 3) seconds.
  - Flipping to the color that is already live changes nothing.
  - "The result's C(msg) is a one-line summary, for example
    C(orders: blue -> green on lb1 (haproxy, weights 0/100, 3 steps, drained in 1.2 s))."
requirements:
  - Python 3.9 or later on the balancer host.
seealso:
  - module: msa.platform.bluegreen_info
extends_documentation_fragment:
  - msa.platform.attributes
  - msa.platform.attributes.action_group
  - msa.platform.bluegreen
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying the target.
    support: full
    details:
      - Reads the balancer and the state file, runs the health gate and reports the plan; sets no weight,
        writes no file and takes no lock.
  diff_mode:
    description: Returns details on what has changed (or would change in check_mode) when in diff mode.
    support: full
    details:
      - The live color, the weight of every server and the versions per color, before and after.
options:
  service:
    description: Name of the service, as in C(msa_services[].name).
    type: str
    required: true
  to:
    description:
      - Where the traffic goes. V(blue) or V(green) name the color.
      - V(previous) goes back to the color that was live before the last recorded flip (a rollback);
        it works when the current color's processes are dead, as long as the previous color is healthy.
      - V(release) goes to the color that holds O(release) according to the state file.
    type: str
    required: true
    choices: [blue, green, previous, release]
  release:
    description: Version to go back to with O(to=release) (at most 128 characters, no spaces).
    type: str
  versions:
    description:
      - Versions now deployed per color, recorded in the state file and in the history entry
        (each at most 128 characters, no spaces).
      - Colors left out keep the version recorded before.
    type: dict
    suboptions:
      blue:
        description: Version in the blue color.
        type: str
      green:
        description: Version in the green color.
        type: str
  steps:
    description:
      - Traffic share of the new color after each step, as integers from 1 to 100, increasing, ending with 100.
        The old color gets the rest (C(100 - step)). Only with O(balancer=haproxy).
    type: list
    elements: int
    default: [100]
  step_pause:
    description:
      - Seconds to wait after each step but the last, before the new color's health is checked again.
      - From 0 to 3600.
    type: int
    default: 10
  health_wait:
    description:
      - Seconds to wait for every server of the target color to pass its health check before the gate refuses,
        checking once a second (the flip holds the service's lock meanwhile). V(0) checks once. From 0 to 3600.
      - Not in check mode, which reports the health it finds at once.
    type: int
    default: 0
  drain_timeout:
    description:
      - Seconds to wait for the old color's current sessions to reach 0 after the flip (HAProxy), or for the
        NGINX workers of the old configuration to exit. From 0 to 3600.
      - When the wait ends with sessions left, the flip still succeeds and warns; the result says how many.
    type: int
    default: 60
  lock_timeout:
    description:
      - Seconds to wait for another flip of the same service to release the lock before failing. From 0 to 3600.
    type: int
    default: 30
  operator:
    description:
      - Who asked for the flip, for the history (at most 128 characters, not blank, no control characters).
        The playbooks pass C(bluegreen_operator) or the controller's C(USER).
      - When left out it is taken on the balancer host, first found of C(MSA_OPERATOR); the user who became root
        (C(SUDO_USER), C(DOAS_USER)), which is the remote user under C(become); the user who logged in (the
        audit login uid, which C(su) keeps); C(LOGNAME), C(USER); the name of the effective uid; C(uid <n>).
    type: str
  history_keep:
    description: Number of history entries kept in the state file, from 0 to 100000; V(0) keeps all.
    type: int
    default: 200
notes:
  - Run it on each balancer host (HAProxy, or the NGINX gateway when it routes straight to the colors).
    Each balancer keeps its own state file and history. With O(balancer=consul) the state and history live
    once in Consul for all balancers.
  - Needs root on the balancer (the HAProxy socket is mode 0600, the state directory belongs to root).
  - The names and files shared with the roles are described in C(docs/design/bluegreen.md) of the collection;
    the operator's runbook is C(docs/runbook-bluegreen.md).
"""

EXAMPLES = r"""
- name: Send orders traffic to green, recording what is deployed where
  msa.platform.bluegreen_flip:
    service: orders
    to: green
    versions:
      blue: 1.0.0
      green: 1.1.0
    operator: "{{ lookup('ansible.builtin.env', 'USER') }}"

- name: Shift payments gradually (10 %, 50 %, 100 %), a minute apart
  msa.platform.bluegreen_flip:
    service: payments
    to: blue
    steps: [10, 50, 100]
    step_pause: 60
    drain_timeout: 120

- name: Roll orders back to the color that was live before
  msa.platform.bluegreen_flip:
    service: orders
    to: previous

- name: Go back to whichever color still holds 1.0.0
  msa.platform.bluegreen_flip:
    service: orders
    to: release
    release: 1.0.0

- name: Flip orders through Consul, for every balancer that follows its live queries
  msa.platform.bluegreen_flip:
    service: orders
    balancer: consul
    to: green
    consul:
      token: "{{ consul_bluegreen_token }}"

- name: Flip the NGINX gateway that routes straight to the colors
  msa.platform.bluegreen_flip:
    service: orders
    balancer: nginx
    to: green
    ports:
      blue: 8101
      green: 8102
    health_path: /health
"""

RETURN = r"""
msg:
  description:
    - One line per balancer saying what happened; the structured values below carry the details.
    - Shown by the default callback on failures and with C(-v); register the result to print it otherwise.
  returned: always
  type: str
  sample: "orders: blue -> green on lb1 (haproxy, weights 0/100, 3 steps, drained in 1.2 s)"
service:
  description: The service.
  returned: always
  type: str
  sample: orders
balancer:
  description: The balancer kind that was changed.
  returned: success
  type: str
  sample: haproxy
from:
  description: Color that had the traffic before (V(mixed) when a shift had stopped half-way).
  returned: success
  type: str
  sample: blue
to:
  description: Color that has the traffic now (or would have, in check mode).
  returned: success
  type: str
  sample: green
versions:
  description: Versions per color as recorded in the state file.
  returned: success
  type: dict
  sample: {"blue": "1.0.0", "green": "1.1.0"}
health:
  description: Health of the target color's servers, checked before the flip. V(null) when nothing had to move.
  returned: success
  type: dict
  sample:
    healthy: true
    up: 2
    total: 2
    servers:
      - {name: app1-green, host: app1, color: green, weight: 0, status: DRAIN, healthy: true, sessions: 0,
         detail: L7OK}
plan:
  description: The weight steps applied (or planned in check mode); C(new) is the target color's weight.
  returned: success
  type: list
  elements: dict
  sample: [{"new": 10, "old": 90}, {"new": 50, "old": 50}, {"new": 100, "old": 0}]
drain:
  description:
    - How draining the old color ended. C(drained) is V(false) when sessions were still open at
      O(drain_timeout); the flip still succeeded and the sessions were left to finish.
    - On HAProxy C(sessions_left) counts the old color's current sessions (C(scur)); on NGINX it counts
      the workers of the old configuration still finishing requests after the graceful reload.
  returned: when traffic moved
  type: dict
  sample: {"color": "blue", "drained": true, "sessions_left": 0, "waited": 2.1}
weights:
  description: Server weights after the flip (before it, in check mode).
  returned: success
  type: dict
  sample: {"app1-blue": 0, "app1-green": 100}
record:
  description: The history entry written to the state file (or that would be written, in check mode).
  returned: success
  type: dict
  sample:
    time: "2026-11-22T03:00:00Z"
    operator: alice
    balancer: haproxy
    from: blue
    to: green
    versions: {"blue": "1.0.0", "green": "1.1.0"}
drift:
  description: V(true) when the state file named another live color than the balancer actually served.
  returned: success
  type: bool
  sample: false
state_file:
  description: Path of the service's state file on this host.
  returned: success
  type: str
  sample: /var/lib/msa/bluegreen/orders.json
health_failed:
  description: On a refused flip, the health of the target color that made the gate refuse it.
  returned: when the health gate refused the flip
  type: dict
  sample: {"healthy": false, "up": 1, "total": 2, "servers": []}
"""

from ansible_collections.msa.platform.plugins.module_utils._bluegreen import (  # noqa: E402 - after the docs, by convention
    BlueGreenModule,
)
from ansible_collections.msa.platform.plugins.module_utils._bluegreen_common import (  # noqa: E402
    BlueGreenError,
    HealthGateError,
)
from ansible_collections.msa.platform.plugins.module_utils._bluegreen_decision import run_flip  # noqa: E402


def main():
    argument_spec = BlueGreenModule.generate_argspec(
        service={"type": "str", "required": True},
        to={"type": "str", "required": True, "choices": ["blue", "green", "previous", "release"]},
        release={"type": "str"},
        versions={"type": "dict", "options": {"blue": {"type": "str"}, "green": {"type": "str"}}},
        steps={"type": "list", "elements": "int", "default": [100]},
        step_pause={"type": "int", "default": 10},
        drain_timeout={"type": "int", "default": 60},
        health_wait={"type": "int", "default": 0},
        lock_timeout={"type": "int", "default": 30},
        operator={"type": "str"},
        history_keep={"type": "int", "default": 200},
    )
    # Checks every option's range and format before anything is read or changed.
    module = BlueGreenModule(
        argument_spec=argument_spec,
        supports_check_mode=True,
        required_if=[("to", "release", ["release"]), ("balancer", "nginx", ["ports"])],
    )
    service = module.params["service"]
    try:
        backend = module.backend_for(service)
        result = run_flip(backend, module.store(), module.params, check_mode=module.check_mode, warn=module.warn)
    except HealthGateError as exc:
        module.fail_json(
            msg=exc.msg, service=service, health_failed=exc.details.get("health"), live=exc.details.get("live")
        )
    except BlueGreenError as exc:
        module.fail_bluegreen(exc, service=service)
    except OSError as exc:
        module.fail_os_error(exc, service=service)
    except Exception as exc:  # noqa: BLE001 - house style: no Python exception escapes a module
        module.fail_unexpected(exc, service=service)

    diff = result.pop("diff", None)
    if module._diff and diff is not None:
        result["diff"] = diff
    module.exit_json(**result)


if __name__ == "__main__":
    main()
