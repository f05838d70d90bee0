"""Names and rules shared by every blue/green piece: service names, weight plans."""

from __future__ import annotations

import pytest
from ansible_collections.msa.platform.plugins.module_utils._bluegreen_common import (
    BlueGreenError,
    other_color,
    validate_service,
    weight_plan,
)


@pytest.mark.parametrize("name", ["../etc/passwd", "Orders", "", "a" * 40, "1abc", None, "orders\n"])
def test_service_names_are_validated(name):
    with pytest.raises(BlueGreenError, match="invalid service name"):
        validate_service(name)


def test_other_color():
    assert other_color("blue") == "green" and other_color("green") == "blue"


def test_weight_plan():
    assert weight_plan([100]) == [(100, 0)]
    assert weight_plan(None) == [(100, 0)]
    assert weight_plan([10, 50, 100]) == [(10, 90), (50, 50), (100, 0)]


@pytest.mark.parametrize(
    ("steps", "match"),
    [
        ([50], "last step must be 100"),
        ([50, 10, 100], "must increase"),
        ([0, 100], "between 1 and 100"),
        ([10, 150], "between 1 and 100"),
        ([100, 100], "must increase"),
    ],
)
def test_weight_plan_rejects(steps, match):
    with pytest.raises(BlueGreenError, match=match):
        weight_plan(steps)
