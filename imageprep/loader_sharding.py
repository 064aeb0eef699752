"""Which rows of a table one reader takes in an epoch, and in which order. Index arithmetic only.

A reader is one (rank, DataLoader worker) pair. The unit of reading is a row group ("unit").

1. The epoch's sequence: the units in table order, or permuted by `(seed, epoch)` with
   shuffle, each unit's rows in stored order. Every rank computes the same sequence.
2. Ranks: the sequence is cut into `world_size` contiguous spans of equal length, as
   `DistributedSampler` does it: with `remainder="pad"` the sequence is extended by
   repeating its first rows until it divides evenly, with `"drop"` its last rows (fewer than
   `world_size`) are left out. Equal spans give every rank the same number of batches.
3. Workers: a rank's span is cut into `workers` contiguous parts whose sizes depend only on
   the span's length, so worker w of every rank has as many rows as worker w of any other.
4. Order: a part's rows are grouped into blocks of whole pieces (a piece is the part's share
   of one unit). Without shuffle a block is one piece, read in stored order; with shuffle a
   block holds pieces until it has `buffer_rows` rows and is permuted with a seed of its own,
   so any block's order is known without reading the blocks before it: that is what lets a
   reader resume mid-epoch by skipping rows without reading them.

Contiguous spans mean a reader opens only its own units (plus at most two shared at its
edges) instead of reading every row group and discarding most rows.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

REMAINDERS = ("pad", "drop")


@dataclass(frozen=True)
class Shard:
    """One reader's place: rank of world_size, DataLoader worker of workers."""

    rank: int = 0
    world_size: int = 1
    worker: int = 0
    workers: int = 1
    remainder: str = "pad"

    def __post_init__(self):
        for name, value, low in (("world_size", self.world_size, 1), ("workers", self.workers, 1),
                                 ("rank", self.rank, 0), ("worker", self.worker, 0)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if self.rank >= self.world_size:
            raise ValueError(f"rank must be below world_size, got rank={self.rank}, world_size={self.world_size}")
        if self.worker >= self.workers:
            raise ValueError(f"worker {self.worker} of {self.workers} workers")
        if self.remainder not in REMAINDERS:
            raise ValueError(f"shard_remainder must be one of {', '.join(REMAINDERS)}, got {self.remainder!r}")


@dataclass(frozen=True)
class Piece:
    """Rows start..stop-1 of unit `unit` (an index into the table's units)."""

    unit: int
    start: int
    stop: int

    @property
    def rows(self) -> int:
        return self.stop - self.start


def unit_order(n_units: int, shuffle: bool, seed: int, epoch: int) -> np.ndarray:
    """The epoch's order of the units: the same on every rank and worker."""
    if not shuffle:
        return np.arange(n_units)
    return np.random.default_rng([seed, epoch]).permutation(n_units)


def rows_per_rank(total: int, world_size: int, remainder: str) -> int:
    return -(-total // world_size) if remainder == "pad" else total // world_size


def reader_span(total: int, shard: Shard) -> tuple[int, int]:
    """The reader's positions `[begin, end)` in the epoch's sequence; positions from `total` on
    stand for the repeated first rows (padding)."""
    per_rank = rows_per_rank(total, shard.world_size, shard.remainder)
    base, extra = divmod(per_rank, shard.workers)
    begin = shard.rank * per_rank + shard.worker * base + min(shard.worker, extra)
    return begin, begin + base + (shard.worker < extra)


def pieces(unit_rows: Sequence[int], order: np.ndarray, begin: int, end: int) -> list[Piece]:
    """The units' rows at positions `[begin, end)` of the sequence `order` makes, as pieces."""
    total = int(sum(unit_rows))
    if begin >= end or not total:
        return []
    sizes = np.asarray(unit_rows, dtype=np.int64)[order]
    starts = np.concatenate([[0], np.cumsum(sizes)])
    out: list[Piece] = []
    pos = begin
    while pos < end:  # padding wraps around to the start of the sequence
        lap, at = divmod(pos, total)
        stop = min(end - lap * total, total)
        first = int(np.searchsorted(starts, at, side="right")) - 1
        for k in range(first, len(sizes)):
            if starts[k] >= stop:
                break
            a, b = max(at, starts[k]), min(stop, starts[k + 1])
            if b > a:
                out.append(Piece(int(order[k]), int(a - starts[k]), int(b - starts[k])))
        pos = lap * total + stop
    return out


class Plan:
    """One reader's rows in one epoch: blocks of pieces, each emitted in stored or permuted order."""

    def __init__(self, pieces_: list[Piece], shuffle: bool, buffer_rows: int, rng_key: Sequence[int]):
        self.shuffle = shuffle
        self.rng_key = [int(k) for k in rng_key]
        self.blocks: list[list[Piece]] = []
        block: list[Piece] = []
        rows = 0
        for piece in pieces_:
            block.append(piece)
            rows += piece.rows
            if not shuffle or rows >= buffer_rows:
                self.blocks.append(block)
                block, rows = [], 0
        if block:
            self.blocks.append(block)
        self.block_rows = [sum(p.rows for p in b) for b in self.blocks]
        self.first_row = np.concatenate([[0], np.cumsum(self.block_rows, dtype=np.int64)])

    @property
    def rows(self) -> int:
        return int(self.first_row[-1])

    def order(self, block: int) -> np.ndarray | None:
        """The order in which block `block` emits its rows (indices into the block's rows, pieces
        concatenated), or None for stored order."""
        if not self.shuffle:
            return None
        return np.random.default_rng([*self.rng_key, block]).permutation(self.block_rows[block])

    def locate(self, row: int) -> tuple[int, int]:
        """(block, row within it) of the reader's `row`-th row; (len(blocks), 0) at the end."""
        if row >= self.rows:
            return len(self.blocks), 0
        block = int(np.searchsorted(self.first_row, row, side="right")) - 1
        return block, row - int(self.first_row[block])
