"""``fk.Model``: a registered model as a task input, and the model URIs (``churn@production``, ``churn:3``).

A definition, like ``fk.File``: it imports no runtime module at its top. What
it resolves to is asked of the registry (:mod:`flowkit.ml.registry`) when the
flow's keys are computed.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from flowkit.errors import RegistryError

__all__ = ["Model", "ModelRef", "Pin", "parse_uri"]


class ModelRef(NamedTuple):
    """A parsed model URI: a name and at most one of a version or an alias (neither: the latest)."""

    name: str
    version: int | None
    alias: str | None

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.name}:{self.version}"
        return f"{self.name}@{self.alias}" if self.alias is not None else self.name


def parse_uri(uri: str) -> ModelRef:
    """``"churn@production"`` → alias, ``"churn:3"`` → version, ``"churn"`` → the latest version.

    Raises:
        RegistryError: not a string, or not one of those shapes (the message shows them).
    """
    if not isinstance(uri, str) or not uri:
        raise RegistryError(f"a model URI is 'name', 'name:version' or 'name@alias', not {uri!r}")
    if "@" in uri:
        name, _, alias = uri.partition("@")
        if not name or not alias or "@" in alias or ":" in alias:
            raise RegistryError(f"model URI {uri!r}: write 'name@alias', e.g. 'churn@production'")
        return ModelRef(name, None, alias)
    if ":" in uri:
        name, _, version = uri.partition(":")
        if not name or not version.isdigit() or int(version) < 1:
            raise RegistryError(f"model URI {uri!r}: write 'name:version' with a version 1, 2, 3..., e.g. 'churn:3'")
        return ModelRef(name, int(version), None)
    return ModelRef(uri, None, None)


class Pin(NamedTuple):
    """What a :class:`Model` input resolved to for one run: the version, its artifact, the store to load it
    from, and the library versions it was registered with (to warn about on load)."""

    name: str
    version: int
    artifact_id: str
    store: Any
    library_versions: dict[str, str]
    serializer: str | None = None  # known with the resolution: loading needs no other query
    inline: bytes | None = None


class Model:
    """A registered model as a task input: ``score(fk.Model("churn@production"), df)``.

    When the flow runs, the URI is resolved in the run's store (``"churn@production"``,
    ``"churn:3"``, or ``"churn"`` for the latest version) and the task receives the
    loaded model. The task's cache key covers the version it resolved to, so moving
    the alias reruns exactly the tasks that take the model.

    Each use in a traced flow gets its own copy (:meth:`for_run`) that is resolved
    once, when the keys are computed, and keeps that answer (its *pin*): the task
    receives exactly the version its key names, on a Dask worker too, even if the
    alias moves while the run goes on. (A :class:`~flowkit.FlowGraph` run twice keeps
    the pins of its first run; flows trace afresh on every run, so they resolve afresh.)
    """

    __slots__ = ("uri", "ref", "pin")

    def __init__(self, uri: str) -> None:
        self.ref = parse_uri(uri)
        self.uri = uri
        self.pin: Pin | None = None

    def __repr__(self) -> str:
        if self.pin is None:
            return f"Model({self.uri!r})"
        return f"Model({self.uri!r} -> {self.pin.name}:{self.pin.version})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Model) and other.uri == self.uri

    def __hash__(self) -> int:
        return hash(("flowkit.Model", self.uri))

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (self.uri, self.pin))

    def for_run(self) -> Model:
        """A fresh, unresolved copy for one traced call (what tracing puts in the node)."""
        return Model(self.uri)

    def resolve(self, inputs: Any = None) -> Pin:
        """Resolve in ``inputs`` (the run's store; ``None``: the default store) once; later calls keep the answer."""
        if self.pin is None:
            from flowkit.ml import registry

            self.pin = registry.pin(self.uri, store=inputs)
        return self.pin

    def __flowkit_token__(self, inputs: Any) -> Any:
        """Its token in a cache key: the version it resolves to (and that version's artifact)."""
        from flowkit.hashing import Resolved

        pin = self.resolve(inputs)
        return Resolved(("flowkit.Model", pin.name, pin.version, pin.artifact_id))

    def __dask_tokenize__(self) -> Any:
        return self.__flowkit_token__(None).token

    def value(self) -> Any:
        """The model object this input stands for: the pinned version, loaded (memoized per process)."""
        from flowkit.ml import registry

        pin = self.resolve()
        return registry.load_pinned(pin)


def _rebuild(uri: str, pin: Pin | None) -> Model:
    model = Model(uri)
    model.pin = pin
    return model
