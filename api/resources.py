"""A run's own CPU and memory: what a request may ask for and a runner Job is given.

Apart from the Job manifest, so that request bodies and settings can name it without
importing a backend.
"""

from __future__ import annotations

import re

from kubernetes.utils import parse_quantity
from pydantic import BaseModel, ConfigDict, Field, field_validator

# The API server's own pattern for a resource quantity, as the OpenAPI document says it.
QUANTITY_PATTERN = (
    r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?[0-9]+)?$"
)
_QUANTITY = re.compile(QUANTITY_PATTERN)
# Declared, not enforced by pydantic: the validator's message says what a quantity is.
_DECLARED = {"pattern": QUANTITY_PATTERN}


class RunResources(BaseModel):
    """A run's own CPU and memory, as Kubernetes quantities ("500m", "2Gi")."""

    model_config = ConfigDict(extra="forbid")

    cpu: str | None = Field(
        None, max_length=32, examples=["500m", "2"], json_schema_extra=_DECLARED
    )
    memory: str | None = Field(
        None, max_length=32, examples=["512Mi", "4Gi"], json_schema_extra=_DECLARED
    )

    @field_validator("cpu", "memory")
    @classmethod
    def _quantity(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                if not _QUANTITY.fullmatch(value):
                    raise ValueError(value)
                parse_quantity(value)
            except ValueError as exc:
                raise ValueError(
                    f"{value!r} is not a Kubernetes quantity (e.g. 500m, 2Gi)"
                ) from exc
        return value

    def over_limits(self, limits: dict[str, str]) -> list[tuple[str, str]]:
        """(field, limit) for each value above the server's limit."""
        return [
            (name, limits[name])
            for name in ("cpu", "memory")
            if (value := getattr(self, name)) is not None
            and name in limits
            and parse_quantity(value) > parse_quantity(limits[name])
        ]
