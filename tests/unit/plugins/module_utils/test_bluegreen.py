"""Module glue: the shared argument spec and the option checks every blue/green module runs first."""

from __future__ import annotations

import pytest
from ansible_collections.msa.platform.plugins.module_utils._bluegreen import (
    NUMBER_RANGES,
    SHARED_ARGSPEC,
    BlueGreenModule,
    option_problems,
)
from ansible_collections.msa.platform.plugins.module_utils._bluegreen_backends import BACKENDS


def _defaults():
    return {name: spec.get("default") for name, spec in SHARED_ARGSPEC.items()}


def test_defaults_pass_the_checks():
    assert option_problems(_defaults()) == []
    flip = dict(_defaults(), service="orders", to="green", steps=[100], step_pause=10, drain_timeout=60)
    flip.update(lock_timeout=30, history_keep=200, versions={"blue": "1.0.0", "green": None}, operator="Alice Smith")
    assert option_problems(flip) == []
    info = dict(_defaults(), service=None, history_limit=10)
    assert option_problems(info) == []


@pytest.mark.parametrize("name", sorted(NUMBER_RANGES))
def test_every_number_has_a_range(name):
    lowest, highest, unit = NUMBER_RANGES[name]
    assert option_problems({name: lowest}) == [] and option_problems({name: highest}) == []
    for bad in (lowest - 1, highest + 1, float("nan"), float("inf")):
        assert option_problems({name: bad}) == [
            "%s must be between %s and %s (%s), got %r" % (name, lowest, highest, unit, bad)
        ]


@pytest.mark.parametrize(
    "host", ["app1", "app-1.example.com", "10.0.0.5", "[2001:db8::1]", "app_1"], ids=lambda host: host
)
def test_host_names_accepted(host):
    assert option_problems({"hosts": [host]}) == []


@pytest.mark.parametrize("host", ["", "app1 0", "app1;shutdown", "app1\n", "a/b", "-x", "app1:8101"])
def test_host_names_that_could_reach_the_runtime_api_are_refused(host):
    (problem,) = option_problems({"hosts": [host]})
    assert problem.startswith("hosts[0] %r is not a host name" % host)


def test_all_problems_are_reported_together():
    problems = option_problems({"step_pause": -1, "state_dir": "bg", "ports": {"blue": 1, "green": 1}})
    assert len(problems) == 3


def test_generate_argspec_lists_registered_balancers():
    spec = BlueGreenModule.generate_argspec(service={"type": "str"})
    assert spec["balancer"]["choices"] == sorted(BACKENDS)
    assert spec["service"] == {"type": "str"}
    assert SHARED_ARGSPEC["balancer"]["choices"] == ["consul", "haproxy", "nginx"]  # the shared spec is not modified
