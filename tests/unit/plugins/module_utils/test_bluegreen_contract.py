"""The modules' blue/green defaults equal the contract the roles read (roles/_common).

The contract is defined once for roles and playbooks; the modules run on managed nodes
without the roles, so they carry their own copy. This keeps the two from drifting.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from ansible_collections.msa.platform.plugins.doc_fragments.bluegreen import ModuleDocFragment
from ansible_collections.msa.platform.plugins.module_utils import _bluegreen, _bluegreen_common, _bluegreen_consul

ROOT = Path(__file__).resolve().parents[4]
CONTRACT = yaml.safe_load((ROOT / "roles" / "_common" / "defaults" / "main.yml").read_text())[
    "_common_bluegreen_contract"
]


def test_colors_and_default_color_match():
    assert list(_bluegreen_common.COLORS) == CONTRACT["colors"]
    assert CONTRACT["default_color"] == _bluegreen_common.DEFAULT_COLOR


def test_service_name_pattern_matches():
    assert _bluegreen_common.SERVICE_NAME_RE.pattern == CONTRACT["service_name_pattern"]


def test_module_path_defaults_match():
    assert _bluegreen.SHARED_ARGSPEC["state_dir"]["default"] == CONTRACT["state_dir"]
    assert _bluegreen.SHARED_ARGSPEC["nginx_upstream_dir"]["default"] == CONTRACT["nginx_upstream_dir"]


def test_documented_defaults_match():
    options = yaml.safe_load(ModuleDocFragment.DOCUMENTATION)["options"]
    assert options["state_dir"]["default"] == CONTRACT["state_dir"]
    assert options["nginx_upstream_dir"]["default"] == CONTRACT["nginx_upstream_dir"]


def test_consul_prefix_and_query_names_match():
    assert CONTRACT["consul_prefix"] == _bluegreen_consul.DEFAULT_PREFIX
    assert _bluegreen.SHARED_ARGSPEC["consul"]["options"]["prefix"]["default"] == CONTRACT["consul_prefix"]
    options = yaml.safe_load(ModuleDocFragment.DOCUMENTATION)["options"]
    assert options["consul"]["suboptions"]["prefix"]["default"] == CONTRACT["consul_prefix"]
    assert _bluegreen_consul.query_name("orders", "green") == CONTRACT["consul_query_format"] % ("orders", "green")
