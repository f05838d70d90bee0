"""The shipped inventories name each host's address without inventory_hostname.

Ansible templates a delegated task's connection variables with the delegating
host's variables, so ``ansible_host: "...{{ inventory_hostname }}"`` set for a group
sends a task delegated to the primary back to the standby itself (this broke the
demo's replication slot). Each host must carry its own literal address.
"""

from __future__ import annotations

import json
import subprocess
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
INVENTORIES = sorted(p for p in (ROOT / "inventories").iterdir() if p.is_dir())
CONNECTION_VARS = ("ansible_host", "ansible_port", "ansible_user", "ansible_connection")


@cache
def hostvars(inventory: Path) -> dict:
    listing = subprocess.run(
        ["ansible-inventory", "-i", str(inventory), "--list"], capture_output=True, text=True, check=True
    )
    return json.loads(listing.stdout)["_meta"]["hostvars"]


@pytest.mark.parametrize("inventory", INVENTORIES, ids=lambda p: p.name)
def test_connection_vars_do_not_depend_on_the_current_host(inventory: Path) -> None:
    offenders = {
        f"{host}.{name}": hvars[name]
        for host, hvars in hostvars(inventory).items()
        for name in CONNECTION_VARS
        if "inventory_hostname" in str(hvars.get(name, ""))
    }
    assert offenders == {}


@pytest.mark.parametrize("inventory", INVENTORIES, ids=lambda p: p.name)
def test_every_host_has_its_own_address(inventory: Path) -> None:
    addresses = [hvars.get("ansible_host") for hvars in hostvars(inventory).values()]
    assert None not in addresses
    assert len(set(addresses)) == len(addresses)
