"""Session resources: things a test sets up on a session and wants torn down with it.

Users subclass :class:`SessionResource`, set ``resource_id`` and ``resource_type`` and override
:meth:`~SessionResource.initialize` and :meth:`~SessionResource.cleanup`. Every attribute has
a class-level default, so a subclass whose ``__init__`` never calls ``super().__init__()``
still works.
"""

from __future__ import annotations

from enum import Enum

from pytest_mpsession.session.interfaces import SessionLike

__all__ = ["ResourceState", "SessionResource"]


class ResourceState(str, Enum):
    """Where a :class:`SessionResource` is in its life."""

    CREATED = "created"  #: not registered yet
    INITIALIZING = "initializing"  #: ``initialize()`` runs
    ACTIVE = "active"  #: initialized and registered with a session
    CLEANING_UP = "cleaning_up"  #: ``cleanup()`` runs
    CLEANED_UP = "cleaned_up"  #: ``cleanup()`` returned
    FAILED = "failed"  #: ``initialize()`` or ``cleanup()`` raised

    def __str__(self) -> str:
        return self.value


class SessionResource:
    """Base class of a resource registered with
    :meth:`DeviceSession.register_resource() <pytest_mpsession.DeviceSession.register_resource>`.

    ``register_resource`` calls :meth:`initialize` at once (a resource whose ``initialize``
    raises is not registered, and its error propagates); the session's cleanup calls
    :meth:`cleanup`, newest resource first. ``state`` follows along (:class:`ResourceState`).

    ``resource_id`` defaults to ``"<ClassName>@<hex id>"`` and ``resource_type`` to the class
    name when a subclass leaves them empty.
    """

    resource_id: str = ""
    resource_type: str = ""
    state: ResourceState = ResourceState.CREATED

    def __init__(self) -> None:
        # Nothing is required here: the class attributes above are the defaults, so
        # subclasses that skip super().__init__() behave the same.
        self.state = ResourceState.CREATED

    def initialize(self, session: SessionLike) -> None:
        """Set the resource up on ``session`` (runs inside ``register_resource``)."""

    def cleanup(self, session: SessionLike) -> None:
        """Tear the resource down; runs once, at the end of ``session``."""

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} id={describe_id(self)!r} "
            f"type={describe_type(self)!r} state={self.state.value}>"
        )


def describe_id(resource: SessionResource) -> str:
    """The resource's id, or a stable default when the subclass set none."""
    rid = getattr(resource, "resource_id", "")
    return rid if rid else f"{type(resource).__name__}@{id(resource):x}"


def describe_type(resource: SessionResource) -> str:
    """The resource's type, or its class name when the subclass set none."""
    rtype = getattr(resource, "resource_type", "")
    return rtype if rtype else type(resource).__name__
