"""A run's own CPU and memory: Kubernetes quantities, checked against the server's limits."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from api.resources import RunResources


def test_values_over_the_servers_limits_are_named() -> None:
    assert RunResources(cpu="500m", memory="1Gi").over_limits({"cpu": "2", "memory": "4Gi"}) == []
    assert RunResources(memory="5Gi").over_limits({"memory": "4Gi"}) == [("memory", "4Gi")]


@pytest.mark.parametrize("value", ["lots", "1e", "-", "2 Gi"])
def test_resources_must_be_quantities(value: str) -> None:
    with pytest.raises(ValidationError, match="is not a Kubernetes quantity"):
        RunResources(memory=value)
