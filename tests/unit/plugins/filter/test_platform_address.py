import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.msa.platform.plugins.filter.platform_address import platform_address


def test_platform_address_comes_first():
    hv = {"inventory_hostname": "lb-1", "ansible_host": "lb-1.example", "msa_address": "10.0.0.5"}
    assert platform_address(hv) == "10.0.0.5"


def test_ansible_host_then_name():
    assert platform_address({"inventory_hostname": "lb-1", "ansible_host": "192.0.2.7"}) == "192.0.2.7"
    assert platform_address({"inventory_hostname": "lb-1"}) == "lb-1"
    assert platform_address({"inventory_hostname": "lb-1", "msa_address": ""}) == "lb-1"


def test_other_address_variable():
    hv = {"inventory_hostname": "a", "msa_address": "10.0.0.5", "backend_ip": "10.1.0.5"}
    assert platform_address(hv, "backend_ip") == "10.1.0.5"
    assert platform_address({"inventory_hostname": "a", "msa_address": "10.0.0.5"}, "backend_ip") == "a"


def test_not_host_variables():
    with pytest.raises(AnsibleFilterError, match="hostvars"):
        platform_address("lb-1")
