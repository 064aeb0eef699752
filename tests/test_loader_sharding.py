"""Sharding the training loader across ranks and DataLoader workers (imageprep.loader_sharding, training).

The table: 29 rows in row groups of uneven sizes across three Parquet files; row i has
`label_index` i and `feature` [i], so every value says which row it came from.
"""
from __future__ import annotations

from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest

from imageprep.loader_sharding import Shard, pieces, reader_span, unit_order
from imageprep.training import make_torch_dataset, numpy_batches
from runner_helpers import write_id_row_groups

ROW_GROUPS = [[4, 7, 1], [5, 3], [9]]  # per file
N = sum(map(sum, ROW_GROUPS))
COLUMNS = ("feature", "label_index")


def write_ids(folder, first_id=0):
    """The row groups above, ids from first_id, as a Spark-like folder (with _SUCCESS and .crc)."""
    folder.mkdir(parents=True)
    write_id_row_groups(folder, ROW_GROUPS, first_id)
    (folder / "_SUCCESS").write_bytes(b"")
    (folder / ".part-00000.parquet.crc").write_bytes(b"not parquet")
    return folder


@pytest.fixture
def table(tmp_path):
    return write_ids(tmp_path / "ids")


def rows_of(batches):
    out = []
    for x, y in batches:
        np.testing.assert_array_equal(np.asarray(x)[:, 0], np.asarray(y))  # rows stay whole
        out.append(np.asarray(y).tolist())
    return out


# --- the plan alone -------------------------------------------------------------------------------

@pytest.mark.parametrize("remainder", ["pad", "drop"])
def test_spans_cover_the_epoch_once_with_equal_shares(remainder):
    unit_rows = [4, 7, 1, 5, 3, 9]
    order = unit_order(len(unit_rows), True, seed=3, epoch=1)
    sequence = [(int(u), r) for u in order for r in range(unit_rows[u])]  # the epoch's rows in order
    for world_size in (1, 2, 3, 4, 7, 40):
        for workers in (1, 2, 3):
            per_reader: dict[tuple[int, int], list] = {}
            for rank in range(world_size):
                for worker in range(workers):
                    shard = Shard(rank, world_size, worker, workers, remainder)
                    begin, end = reader_span(N, shard)
                    got = [(p.unit, r) for p in pieces(unit_rows, order, begin, end) for r in range(p.start, p.stop)]
                    assert len(got) == end - begin
                    per_reader[rank, worker] = got
            per_rank = [sum(len(per_reader[r, w]) for w in range(workers)) for r in range(world_size)]
            assert len(set(per_rank)) == 1  # equal shares
            for w in range(workers):  # worker w has as many rows on every rank
                assert len({len(per_reader[r, w]) for r in range(world_size)}) == 1
            everything = [row for r in range(world_size) for w in range(workers) for row in per_reader[r, w]]
            if remainder == "pad":
                assert per_rank[0] == -(-N // world_size)
                assert set(everything) == set(sequence)
                # the repeats are the epoch's first rows, as DistributedSampler pads
                extra = len(everything) - N
                assert Counter(everything) - Counter(sequence) == Counter((sequence * world_size)[:extra])
            else:
                assert per_rank[0] == N // world_size
                assert everything == sequence[:len(everything)]  # in order, the tail left out


def test_unit_order_is_the_same_everywhere_and_changes_with_seed_and_epoch():
    assert unit_order(6, False, 1, 1).tolist() == list(range(6))
    assert unit_order(50, True, 1, 2).tolist() == unit_order(50, True, 1, 2).tolist()
    assert unit_order(50, True, 1, 2).tolist() != unit_order(50, True, 1, 3).tolist()
    assert unit_order(50, True, 1, 2).tolist() != unit_order(50, True, 2, 2).tolist()


def test_bad_shards_are_refused():
    with pytest.raises(ValueError, match="rank must be below world_size"):
        Shard(rank=2, world_size=2)
    with pytest.raises(ValueError, match="shard_remainder must be one of pad, drop"):
        Shard(remainder="wrap")
    with pytest.raises(ValueError, match="world_size must be an integer >= 1"):
        Shard(world_size=0)


# --- numpy_batches --------------------------------------------------------------------------------

@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("remainder", ["pad", "drop"])
def test_ranks_read_every_row_once_in_equal_batches(table, shuffle, remainder):
    for world_size in (2, 3, 4):
        kw = dict(batch_size=4, columns=COLUMNS, shuffle=shuffle, seed=5, shuffle_buffer=6,
                  world_size=world_size, shard_remainder=remainder)
        ranks = [rows_of(numpy_batches(table, rank=r, **kw)) for r in range(world_size)]
        assert len({len(batches) for batches in ranks}) == 1  # every rank as many batches
        seen = Counter(i for batches in ranks for b in batches for i in b)
        if remainder == "pad":
            assert set(seen) == set(range(N)) and sum(seen.values()) == -(-N // world_size) * world_size
            assert max(seen.values()) <= 2
        else:
            assert max(seen.values()) == 1 and sum(seen.values()) == N // world_size * world_size
        again = [rows_of(numpy_batches(table, rank=r, **kw)) for r in range(world_size)]
        assert again == ranks  # deterministic from seed and epoch


def test_one_rank_reads_the_table_as_before(table):
    assert sum(rows_of(numpy_batches(table, batch_size=5, columns=COLUMNS)), []) == list(range(N))
    shuffled = sum(rows_of(numpy_batches(table, batch_size=5, columns=COLUMNS, shuffle=True, seed=1)), [])
    assert sorted(shuffled) == list(range(N)) and shuffled != list(range(N))


def test_epochs_reshuffle(table):
    kw = dict(batch_size=4, columns=COLUMNS, shuffle=True, seed=0, shuffle_buffer=8, rank=1, world_size=2)
    epochs = [sum(rows_of(numpy_batches(table, epoch=e, **kw)), []) for e in range(3)]
    assert epochs[0] != epochs[1] != epochs[2]
    assert epochs[0] == sum(rows_of(numpy_batches(table, epoch=0, **kw)), [])


# --- the PyTorch dataset --------------------------------------------------------------------------

def torch_or_skip():
    return pytest.importorskip("torch", reason="PyTorch is optional: pip install torch to run this test")


def as_worker(monkeypatch, worker, workers):
    """Make the dataset believe it runs in DataLoader worker `worker` of `workers`."""
    import imageprep.loader_torch as loader_torch

    info = None if workers is None else SimpleNamespace(id=worker, num_workers=workers)
    monkeypatch.setattr(loader_torch, "get_worker_info", lambda: info)


@pytest.mark.parametrize("batch_size", [None, 3])
def test_ranks_and_workers_simulated_in_one_process(table, monkeypatch, batch_size):
    torch_or_skip()
    world_size, workers = 3, 2
    per = {}
    for rank in range(world_size):
        dataset = make_torch_dataset(table, columns=COLUMNS, shuffle=True, seed=2, shuffle_buffer=5,
                                     rank=rank, world_size=world_size, batch_size=batch_size)
        for worker in range(workers):
            as_worker(monkeypatch, worker, workers)
            items = list(dataset)
            ids = [int(i) for _, y in items for i in (y.tolist() if batch_size else [y])]
            per[rank, worker] = ids
    for worker in range(workers):
        assert len({len(per[r, worker]) for r in range(world_size)}) == 1
    seen = Counter(i for ids in per.values() for i in ids)
    assert set(seen) == set(range(N)) and sum(seen.values()) == 30  # 29 rows padded to 3 x 10


def test_dataloader_workers_within_ranks(table):
    torch = torch_or_skip()
    from torch.utils.data import DataLoader

    ranks = []
    for rank in range(2):
        dataset = make_torch_dataset(table, columns=COLUMNS, shuffle=True, seed=4, rank=rank, world_size=2,
                                     batch_size=4, drop_last=True)
        batches = [y.tolist() for _, y in DataLoader(dataset, batch_size=None, num_workers=2)]
        assert all(len(b) == 4 for b in batches)
        ranks.append(batches)
        rows = [y for _, y in DataLoader(make_torch_dataset(table, columns=COLUMNS, rank=rank, world_size=2),
                                         batch_size=5, num_workers=2)]
        assert all(isinstance(y, torch.Tensor) for y in rows)
    assert len(ranks[0]) == len(ranks[1]) == 8 // 4 + 7 // 4  # 15 rows a rank: 8 and 7 a worker
    assert len(set(sum(ranks[0], [])) & set(sum(ranks[1], []))) <= 1  # at most the one padding row


def test_rank_and_world_size_come_from_torch_distributed(table, monkeypatch):
    torch = torch_or_skip()
    dist = torch.distributed
    monkeypatch.setattr(dist, "is_available", lambda: True)
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_rank", lambda group=None: 1)
    monkeypatch.setattr(dist, "get_world_size", lambda group=None: 3)
    dataset = make_torch_dataset(table, columns=COLUMNS)
    assert (dataset.rank, dataset.world_size) == (1, 3)
    assert [y for _, y in dataset] == list(range(10, 20))
    given = make_torch_dataset(table, columns=COLUMNS, rank=0, world_size=1)
    assert len(list(given)) == N  # given values win
    with pytest.raises(ValueError, match="give both rank and world_size"):
        make_torch_dataset(table, columns=COLUMNS, rank=0)


def test_a_dataset_made_before_init_process_group_is_refused(table, monkeypatch):
    torch = torch_or_skip()
    dataset = make_torch_dataset(table, columns=COLUMNS)  # not initialised yet: rank 0 of 1
    dist = torch.distributed
    monkeypatch.setattr(dist, "is_available", lambda: True)
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_rank", lambda group=None: 0)
    monkeypatch.setattr(dist, "get_world_size", lambda group=None: 2)
    with pytest.raises(RuntimeError, match="after init_process_group, or pass rank= and world_size="):
        iter(dataset)
