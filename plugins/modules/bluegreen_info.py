#!/usr/bin/python
# Copyright: msa.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: bluegreen_info
short_description: Show which color of a service is live on a balancer, the health of both colors and the flip history
version_added: 0.1.0
author:
  - msa.platform maintainers (@msa)
description:
  - For one service, or every service the balancer and the state directory know, reports the live color
    as the balancer actually serves it, the live color recorded in the state file (and whether they differ),
    the versions per color, the health and weight of every server of both colors, and the flip history.
  - On HAProxy, health is HAProxy's own check result from C(show stat); a server with weight 0 whose checks
    pass shows as C(DRAIN) and counts as healthy.
  - On NGINX, this module sends C(GET <health_path>) to each host of both colors and needs O(ports) to tell them apart.
  - The state file is validated as a whole when it is read. For one service, a state file that is not valid JSON
    or not exactly the documented document fails naming the file and every problem found; when reporting every
    service, that service gets an C(error) instead.
requirements:
  - Python 3.9 or later on the balancer host.
seealso:
  - module: msa.platform.bluegreen_flip
extends_documentation_fragment:
  - msa.platform.attributes.check_mode_read_only
  - msa.platform.attributes
  - msa.platform.attributes.action_group
  - msa.platform.bluegreen
options:
  service:
    description:
      - Name of the service. When left out, every service known to the balancer or to O(state_dir) is reported.
      - A name the balancer does not know fails and lists the known ones.
    type: str
  history_limit:
    description: Number of most recent history entries returned per service, from 0 to 100000; V(0) returns all.
    type: int
    default: 10
"""

EXAMPLES = r"""
- name: Which color of orders is live on this HAProxy?
  msa.platform.bluegreen_info:
    service: orders
  register: orders_bg

- name: Stop unless the idle color is healthy
  ansible.builtin.assert:
    that:
      - orders_bg.services.orders.health[idle].healthy
    fail_msg: "{{ orders_bg.services.orders.health[idle] }}"
  vars:
    idle: "{{ 'green' if orders_bg.services.orders.live == 'blue' else 'blue' }}"

- name: Everything this balancer carries, with the full history
  msa.platform.bluegreen_info:
    history_limit: 0
  register: all_bg

- name: The NGINX gateway's view of orders
  msa.platform.bluegreen_info:
    service: orders
    balancer: nginx
    ports:
      blue: 8101
      green: 8102
"""

RETURN = r"""
services:
  description: One entry per service, keyed by name.
  returned: always
  type: dict
  contains:
    live:
      description:
        - The color taking the traffic on this balancer; V(mixed) mid-shift, V(none) when no server has weight.
        - Falls back to the state file when the balancer cannot tell (NGINX without O(ports)).
      type: str
      sample: green
    runtime_live:
      description: What the balancer itself says (V(null) when it cannot tell).
      type: str
      sample: green
    state_live:
      description: Live color in the state file (V(blue) when there is no state file yet).
      type: str
      sample: green
    state_file_exists:
      description: Whether the state file exists (it does once a first flip happened).
      type: bool
      sample: true
    drift:
      description: V(true) when the balancer serves another color than the state file says.
      type: bool
      sample: false
    versions:
      description: Versions per color as recorded by the last flip.
      type: dict
      sample: {"blue": "1.0.0", "green": "1.1.0"}
    health:
      description: Per color, C(healthy) (every server healthy), C(up), C(total) and the servers.
      type: dict
      sample: {"blue": {"healthy": true, "up": 2, "total": 2, "servers": []}}
    weights:
      description: Weight of every server of the two colors.
      type: dict
      sample: {"app1-blue": 0, "app1-green": 100}
    fallback:
      description:
        - Whether the balancer sends the traffic to the idle color by itself because no server of the live color
          is up (HAProxy with the haproxy role's C(haproxy_fallback_to_idle), backend C(fb_<service>)).
        - C(configured) (the balancer has the fallback), C(active) (it is in use now) and C(serving) (the color
          answering instead, when one does).
        - While C(active), C(live) still names the color the weights give the traffic to; flip or roll back to
          make the answering color live, or bring the live color back.
        - Its record, from HAProxy's counters since the balancer's last start or reload, also once it is over
          (C(served), requests the fallback answered; C(last_served_ago), seconds since the last one, or null).
      type: dict
      sample: {"configured": true, "active": true, "serving": "blue", "served": 412, "last_served_ago": 0}
    servers:
      description: Every server of both colors with name, host, color, weight, status, healthy, sessions, detail.
      type: list
      elements: dict
      sample:
        - {name: app1-green, host: app1, color: green, weight: 100, status: UP, healthy: true, sessions: 3,
           detail: L7OK}
    history:
      description: The most recent flips, oldest first.
      type: list
      elements: dict
      sample:
        - time: "2026-11-22T03:00:00Z"
          operator: alice
          balancer: haproxy
          from: blue
          to: green
          versions: {"blue": "1.0.0", "green": "1.1.0"}
    error:
      description:
        - Why this service could not be read (only when reporting every service), for example the balancer does
          not know it, or its state file is not valid.
      type: str
      sample: "unknown service payments: HAProxy has no backend be_payments; known services: orders"
"""

from ansible_collections.msa.platform.plugins.module_utils._bluegreen import (  # noqa: E402 - after the docs, by convention
    BlueGreenModule,
)
from ansible_collections.msa.platform.plugins.module_utils._bluegreen_common import (  # noqa: E402
    BlueGreenError,
    StateFileError,
    UnknownServiceError,
    validate_service,
)
from ansible_collections.msa.platform.plugins.module_utils._bluegreen_decision import describe_service  # noqa: E402


def main():
    # Checks every option's range and format before anything is read.
    module = BlueGreenModule(
        argument_spec=BlueGreenModule.generate_argspec(
            service={"type": "str"},
            history_limit={"type": "int", "default": 10},
        ),
        supports_check_mode=True,
    )
    store = module.store()
    service = module.params["service"]
    limit = module.params["history_limit"]
    services = {}
    try:
        if service:
            validate_service(service)
            services[service] = describe_service(module.backend_for(service), store, service, limit)
        else:
            # Every service the balancer carries, plus those only the state directory remembers.
            names = set(module.backend_for("all").known_services()) | set(store.known_services())
            for name in sorted(names):
                try:
                    services[name] = describe_service(module.backend_for(name), store, name, limit)
                except (UnknownServiceError, StateFileError) as exc:
                    services[name] = {"service": name, "error": exc.msg}
    except BlueGreenError as exc:
        module.fail_bluegreen(exc, service=service)
    except OSError as exc:
        module.fail_os_error(exc, service=service)
    except Exception as exc:  # noqa: BLE001 - house style: no Python exception escapes a module
        module.fail_unexpected(exc, service=service)
    module.exit_json(changed=False, services=services)


if __name__ == "__main__":
    main()
