"""Shared pydantic configuration and the small types every kind uses."""

from __future__ import annotations

from datetime import datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

Timestamp = AwareDatetime
"""An RFC 3339 time with an offset, as the CRD's `format: date-time` requires."""


class ApiModel(BaseModel):
    """Base of every model mirroring a CRD schema.

    camelCase on the wire, snake_case in Python. Unknown fields are ignored
    rather than rejected: the API server already validated the object, and a
    newer CRD (one more status field) must not make an older operator fail to
    parse what it reads during an upgrade.
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        validate_assignment=False,
    )


class LocalObjectReference(ApiModel):
    """The name of an object in the same namespace."""

    name: str = Field(min_length=1, max_length=253)


class OwnerReference(ApiModel):
    """metav1.OwnerReference, as far as the operator reads it."""

    api_version: str
    kind: str
    name: str
    uid: str
    controller: bool | None = None
    block_owner_deletion: bool | None = None


class ObjectMeta(ApiModel):
    """The parts of metav1.ObjectMeta the operator uses; the rest is ignored."""

    name: str | None = None
    generate_name: str | None = None
    namespace: str | None = None
    uid: str | None = None
    resource_version: str | None = None
    generation: int | None = None
    creation_timestamp: datetime | None = None
    deletion_timestamp: datetime | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    owner_references: list[OwnerReference] = Field(default_factory=list)
    finalizers: list[str] = Field(default_factory=list)
