# Copyright: msa.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The one place that says which address other hosts reach a host on."""

from __future__ import annotations

DOCUMENTATION = r"""
name: platform_address
short_description: The address other platform hosts reach a host on
version_added: 0.1.0
description:
  - Given one host's variables (C(hostvars[host])), returns its platform address, which is the
    variable named by O(address_var) (C(msa_address) unless told otherwise), else C(ansible_host),
    else the inventory name.
  - Every role that listens for other hosts, every template that points at another host and the
    firewall's source lookups read it here, so the rule is written once.
options:
  _input:
    description: The host's variables, as C(hostvars[host]).
    type: dict
    required: true
  address_var:
    description: Variable that holds the platform address, tried first.
    type: str
    default: msa_address
"""

EXAMPLES = r"""
- name: Where the balancer reaches each application host
  ansible.builtin.debug:
    msg: "{{ groups['services'] | map('extract', hostvars) | map('msa.platform.platform_address') }}"

- name: A role default, the address this host listens on for others
  ansible.builtin.set_fact:
    example_bind_address: "{{ hostvars[inventory_hostname] | msa.platform.platform_address }}"
"""

RETURN = r"""
_value:
  description: The address, or host name when nothing else is set.
  type: str
"""

from ansible.errors import AnsibleFilterError  # noqa: E402 - after the documentation, as ansible-test expects


def platform_address(host_vars, address_var="msa_address"):
    try:
        name = host_vars["inventory_hostname"]
    except (KeyError, TypeError) as err:
        raise AnsibleFilterError("platform_address expects one host's variables, such as hostvars[host]") from err
    for key in (address_var, "ansible_host"):
        if key in host_vars and host_vars[key] not in (None, ""):
            return str(host_vars[key])
    return str(name)


class FilterModule:
    def filters(self):
        return {"platform_address": platform_address}
