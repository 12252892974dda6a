"""The tools' output types, published by the SDK as each tool's output schema. The records inside
are the exports' own (``neuron-tui scan``, ``tokens``, ``activations``...): their main fields are
declared here, and the rest (statistics added to the column registry later) pass through."""

from __future__ import annotations

from pydantic import ConfigDict, with_config
from typing_extensions import NotRequired, TypedDict

_OPEN = ConfigDict(extra="allow")


class TokenScore(TypedDict):
    token_id: int
    token: str
    dot: float


@with_config(_OPEN)
class UnitRecord(TypedDict):
    """A neuron's (or a dictionary feature's) record as ``neuron-tui scan`` writes it."""

    model: str
    layer: int
    neuron: NotRequired[int]
    feature: NotRequired[int]
    expert: NotRequired[int | str]
    dictionary: NotRequired[str]
    max_dot: float
    top: list[TokenScore]
    promote: list[TokenScore]
    suppress: list[TokenScore]
    null_z: NotRequired[float]


class LayerEntry(TypedDict):
    layer: int
    units: int
    scanned: bool
    summary: dict | None  # the layer's row of `neuron-tui layers`, when its scan is cached
    experts: NotRequired[int]


class LayersAnswer(TypedDict):
    model: str
    fingerprint: str
    n_layers: int
    unit: str  # neuron, or feature (a dictionary's)
    dictionary: str | None
    model_loaded: bool
    cache: str | None  # where results are kept (None: --no-cache)
    layers: list[LayerEntry]


class LayerNeuronsAnswer(TypedDict):
    layer: int
    unit: str
    units: int
    matched: int
    sort: str
    filter: str
    offset: int
    records: list[UnitRecord]


class NeuronDetailAnswer(TypedDict):
    record: UnitRecord
    activations: dict | None  # the unit's record of `neuron-tui activations`
    evidence: dict | None  # which corpus, and how much of it the evidence read
    marked: bool
    note: str


@with_config(_OPEN)
class TokenHit(TypedDict):
    query: str
    token_id: int
    token: str
    exact: bool
    layer: int
    dot: float


class SearchAnswer(TypedDict):
    query: str
    layers: list[int]
    rows: list[TokenHit]


class ProbeAnswer(TypedDict):
    scale: str
    layers: list[int]
    tokens: list[dict]  # one per token: the rows of `neuron-tui probe`


class AttributionAnswer(TypedDict):
    layers: list[int]
    top: int
    target: str | None
    positions: list[dict]  # one per position: the records of `neuron-tui attribute`


class CoverageAnswer(TypedDict):
    null_p99: float
    layers: list[dict]
    overall: dict
    best: list[dict]
    worst: list[dict]


class CollectionAnswer(TypedDict):
    model: str
    unit: str
    file: str
    records: list[UnitRecord]


@with_config(_OPEN)
class MarkAnswer(TypedDict):
    layer: int
    marked: bool
    note: str
    collection_size: int


class ExportAnswer(TypedDict):
    path: str
    what: str
    count: int
