"""The elements of a project's graph. Each carries the file it came from so errors can name it.

What a node is (`ResourceType`) and how a model is stored (`Materialization`) are str enums: a
member equals its word (`ResourceType.MODEL == "model"`) and is printed and written to JSON as
that word, so manifests and output read the same as plain strings would.
"""
from __future__ import annotations

from dataclasses import FrozenInstanceError, dataclass, field
from enum import Enum
from typing import Any

try:
    from enum import StrEnum
except ImportError:  # Python 3.10
    class StrEnum(str, Enum):
        """A str enum whose members print and format as their values, as enum.StrEnum (3.11+)."""

        __str__ = str.__str__
        __format__ = str.__format__


class ResourceType(StrEnum):
    """What a node of the graph is."""

    MODEL = "model"
    SEED = "seed"
    SOURCE = "source"
    TEST = "test"


class Materialization(StrEnum):
    """How a node's result is stored: a model's `materialized` config, or `seed` for a seed.

    Node.materialized returns the config's value as written; it compares equal to these."""

    TABLE = "table"
    VIEW = "view"
    EPHEMERAL = "ephemeral"
    INCREMENTAL = "incremental"
    SEED = "seed"


# Shorthands used throughout the runner.
MODEL, SEED, SOURCE, TEST = ResourceType.MODEL, ResourceType.SEED, ResourceType.SOURCE, ResourceType.TEST


class ReadOnlyDict(dict):
    """A dict that refuses changes: a frozen node's config (still a dict to JSON and to readers)."""

    def _refuse(self, *args, **kwargs):
        raise TypeError("a rendered node's config is read-only")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _refuse  # type: ignore[assignment]
    __ior__ = _refuse  # type: ignore[assignment]


def _frozen_value(value: Any) -> Any:
    if isinstance(value, dict):
        return ReadOnlyDict({k: _frozen_value(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_frozen_value(v) for v in value)
    return value


@dataclass
class Node:
    """Something the graph orders: a model, a seed, a source or a data test.

    Loading and rendering fill a node in; `freeze()` ends that (compile_project calls it once
    every node is rendered), so the nodes a build schedules, fingerprints and runs cannot change
    under it: setting an attribute raises, and lists and dicts become tuples and read-only dicts."""

    unique_id: str
    name: str
    resource_type: ResourceType
    path: str  # file that defines it, relative to the project folder
    config: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    depends_on: list[str] = field(default_factory=list)  # unique ids, filled in when rendered
    tags: list[str] = field(default_factory=list)
    new_rows_of: list[str] = field(default_factory=list)  # relations read with new_rows(), when rendered

    @property
    def materialized(self) -> str | None:
        return self.config.get("materialized")

    def freeze(self) -> None:
        for name, value in vars(self).items():
            object.__setattr__(self, name, _frozen_value(value))
        object.__setattr__(self, "_frozen", True)

    def __setattr__(self, name: str, value: Any) -> None:
        if getattr(self, "_frozen", False):
            raise FrozenInstanceError(f"{self.unique_id} is rendered and frozen; cannot set {name}")
        object.__setattr__(self, name, value)


@dataclass
class Model(Node):
    raw_sql: str = ""
    folder_parts: tuple[str, ...] = ()  # folders under the model path, for folder configs and path:
    columns: dict[str, dict] = field(default_factory=dict)
    compiled_sql: str | None = None  # the model's own SQL, refs resolved, ephemeral CTEs not yet injected
    baseline_sql: str | None = None  # the same with is_incremental() false: what its fingerprint covers
    refs: list[str] = field(default_factory=list)
    sources: list[tuple[str, str]] = field(default_factory=list)
    used_vars: dict[str, Any] = field(default_factory=dict)
    used_macros: list[str] = field(default_factory=list)


@dataclass
class Seed(Node):
    column_types: dict[str, str] = field(default_factory=dict)


@dataclass
class Source(Node):
    source_name: str = ""
    table_name: str = ""
    format: str = "table"  # images | binaryFile | parquet | csv | json | table
    location: str | None = None  # rendered path or URI
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def relation(self) -> str:
        return f"{self.source_name}__{self.table_name}"


@dataclass
class DataTest(Node):
    """A generic test (a macro applied to a model/column) or a singular test (a .sql file)."""

    test_name: str = ""  # macro name (generic) or file stem (singular)
    attached_to: str | None = None  # unique id of the model/seed/source the test is declared on
    column_name: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    raw_sql: str = ""  # singular tests only
    compiled_sql: str | None = None
    native: dict[str, Any] | None = None  # a built-in test PyArrow may answer (native_tests), as it reads

    @property
    def severity(self) -> str:
        return str(self.config.get("severity", "error")).lower()
