"""Resuming the training loader mid-epoch (state_dict / load_state_dict) and the table versions it reads.

Tables are published as a build publishes them: a version folder under `_versions/<name>/`,
the catalog `_catalog.json` naming it, and the `<name>` link. Row i of a version made with
first id f has `label_index` f + i and `feature` [f + i], in row groups of uneven sizes.
"""
from __future__ import annotations

import json
import os
from types import SimpleNamespace

import numpy as np
import pytest

from imageprep.training import make_torch_dataset, numpy_batches
from runner_helpers import write_id_row_groups

torch = pytest.importorskip("torch", reason="PyTorch is optional: pip install torch to run these tests")
from torch.utils.data import DataLoader  # noqa: E402

ROW_GROUPS = [[4, 7, 1], [5, 3], [9]]  # per file: 29 rows
N = 29
COLUMNS = ("feature", "label_index")


def publish(warehouse, version: str, first_id: int = 0, *, switch_link: bool = True, name: str = "ids"):
    """Write a version of table `name` and commit it to the catalog (and the link, unless told not to)."""
    folder = warehouse / "_versions" / name / version
    folder.mkdir(parents=True)
    write_id_row_groups(folder, ROW_GROUPS, first_id, with_path=False, file_suffix=f"-{version}")
    catalog_file = warehouse / "_catalog.json"
    catalog = json.loads(catalog_file.read_text()) if catalog_file.exists() else {}
    catalog[name] = {"kind": "table", "version": f"_versions/{name}/{version}"}
    catalog_file.write_text(json.dumps(catalog))
    if switch_link:
        tmp = warehouse / f".{name}.tmp"
        os.symlink(f"_versions/{name}/{version}", tmp)
        os.replace(tmp, warehouse / name)
    return warehouse / name


@pytest.fixture
def warehouse(tmp_path):
    root = tmp_path / "target" / "warehouse"
    root.mkdir(parents=True)
    publish(root, "v1")
    return root


def ids(items) -> list[list[int]]:
    """Batches as lists of row ids, each row checked whole."""
    out = []
    for x, y in items:
        y = y.tolist() if isinstance(y, torch.Tensor) else [y]
        np.testing.assert_array_equal(np.asarray(x).reshape(len(y), -1)[:, 0], y)
        out.append(y)
    return out


def as_worker(monkeypatch, worker, workers):
    """Make the dataset believe it runs in DataLoader worker `worker` of `workers`."""
    import imageprep.loader_torch as loader_torch

    info = None if workers is None else SimpleNamespace(id=worker, num_workers=workers)
    monkeypatch.setattr(loader_torch, "get_worker_info", lambda: info)


# --- resuming ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("batch_size", [None, 4])  # rows batched by the DataLoader, or batches from the dataset
def test_a_restored_state_yields_the_rest_of_the_epoch(warehouse, shuffle, batch_size):
    def make():
        return make_torch_dataset(warehouse / "ids", columns=COLUMNS, shuffle=shuffle, seed=7, shuffle_buffer=6,
                                  rank=rank, world_size=world_size, batch_size=batch_size)

    def loader(dataset):
        return DataLoader(dataset, batch_size=None if batch_size else 4)

    for world_size in (1, 3):
        for rank in range(world_size):
            dataset = make()
            dataset.set_epoch(2)
            full = ids(loader(dataset))
            for stop in range(len(full) + 1):
                dataset = make()
                dataset.set_epoch(2)
                batches = iter(loader(dataset))
                head = ids(next(batches) for _ in range(stop))
                state = json.loads(json.dumps(dataset.state_dict()))  # plain data
                assert state["rows"] == sum(map(len, head)) and state["epoch"] == 2
                restored = make()  # a new process would make it anew
                restored.load_state_dict(state)
                assert restored.state_dict() == state
                assert head + ids(loader(restored)) == full, (world_size, rank, stop)
                assert ids(loader(restored)) == full  # the next pass starts the epoch over


def test_each_worker_resumes_its_own_part(warehouse, monkeypatch):
    def make():
        return make_torch_dataset(warehouse / "ids", columns=COLUMNS, shuffle=True, seed=1, shuffle_buffer=5,
                                  rank=1, world_size=2)

    for worker in range(3):
        as_worker(monkeypatch, worker, 3)
        full = [y for _, y in make()]
        for stop in (0, 1, len(full) // 2, len(full)):
            dataset = make()
            rows = iter(dataset)
            head = [next(rows)[1] for _ in range(stop)]
            state = dataset.state_dict()
            assert (state["worker"], state["workers"]) == (worker, 3)
            restored = make()
            restored.load_state_dict(state)
            assert head + [y for _, y in restored] == full
    dataset = make()
    dataset.load_state_dict(state)  # saved by worker 2 of 3
    as_worker(monkeypatch, 0, 2)
    with pytest.raises(ValueError, match="worker 2 of 3 DataLoader workers.*resume with num_workers=3"):
        iter(dataset)


@pytest.mark.filterwarnings("ignore:'set_vital' is deprecated")  # torchdata 0.11 on newer torch
@pytest.mark.parametrize("num_workers,batch_size", [(0, 3), (2, None), (2, 3)])
def test_stateful_dataloader_resumes_with_ranks_and_workers(warehouse, num_workers, batch_size):
    stateful = pytest.importorskip("torchdata.stateful_dataloader",
                                   reason="torchdata is optional: pip install torchdata to run this test")

    def loader(rank):
        dataset = make_torch_dataset(warehouse / "ids", columns=COLUMNS, shuffle=True, seed=3, shuffle_buffer=4,
                                     rank=rank, world_size=2, batch_size=batch_size)
        return stateful.StatefulDataLoader(dataset, batch_size=None if batch_size else 2, num_workers=num_workers)

    for rank in range(2):
        full = ids(loader(rank))
        first = loader(rank)
        batches = iter(first)
        head = ids(next(batches) for _ in range(3))
        saved = first.state_dict()
        del batches
        again = loader(rank)
        again.load_state_dict(saved)
        assert head + ids(again) == full


# --- versions ---------------------------------------------------------------------------------------

def test_a_state_refuses_another_version_and_says_where_its_own_is(warehouse):
    def make(table=warehouse / "ids"):
        return make_torch_dataset(table, columns=COLUMNS, shuffle=True, seed=0, batch_size=4)

    full = ids(make())
    dataset = make()
    batches = iter(dataset)
    head = ids([next(batches), next(batches)])
    state = dataset.state_dict()
    assert state["table"] == "_versions/ids/v1"
    publish(warehouse, "v2", first_id=100)
    with pytest.raises(ValueError, match=r"saved on version _versions/ids/v1 .*now is version _versions/ids/v2"
                                         r".*Start the epoch over.*still at .*v1: pass that folder"):
        make().load_state_dict(state)
    old = make(warehouse / "_versions" / "ids" / "v1")  # the saved version itself resumes
    old.load_state_dict(state)
    assert head + ids(old) == full


def test_a_state_loaded_before_a_build_is_refused_on_the_new_version(warehouse):
    dataset = make_torch_dataset(warehouse / "ids", columns=COLUMNS, batch_size=4)
    batches = iter(dataset)
    next(batches)
    state = dataset.state_dict()
    restored = make_torch_dataset(warehouse / "ids", columns=COLUMNS, batch_size=4)
    restored.load_state_dict(state)
    publish(warehouse, "v2", first_id=100)
    restored.set_epoch(0)  # the same epoch: the state stays, the version moves on
    with pytest.raises(ValueError, match="cannot resume on another"):
        iter(restored)


def test_a_state_refuses_other_settings(warehouse):
    dataset = make_torch_dataset(warehouse / "ids", columns=COLUMNS, shuffle=True, seed=1, rank=0, world_size=2)
    state = dataset.state_dict()
    with pytest.raises(ValueError, match=r"seed=1 \(this dataset: 2\)"):
        make_torch_dataset(warehouse / "ids", columns=COLUMNS, shuffle=True, seed=2, rank=0,
                           world_size=2).load_state_dict(state)
    with pytest.raises(ValueError, match=r"world_size=2 \(this dataset: 4\)"):
        make_torch_dataset(warehouse / "ids", columns=COLUMNS, shuffle=True, seed=1, rank=0,
                           world_size=4).load_state_dict(state)
    with pytest.raises(ValueError, match="not a reading state"):
        dataset.load_state_dict({"rows": 3})


def test_set_epoch_to_another_epoch_drops_a_loaded_state(warehouse):
    dataset = make_torch_dataset(warehouse / "ids", columns=COLUMNS, shuffle=True, batch_size=5)
    batches = iter(dataset)
    next(batches)
    restored = make_torch_dataset(warehouse / "ids", columns=COLUMNS, shuffle=True, batch_size=5)
    restored.load_state_dict(dataset.state_dict())
    restored.set_epoch(1)
    fresh = make_torch_dataset(warehouse / "ids", columns=COLUMNS, shuffle=True, batch_size=5)
    fresh.set_epoch(1)
    assert ids(restored) == ids(fresh)


def test_a_state_after_set_epoch_is_the_start_of_that_epoch(warehouse):
    dataset = make_torch_dataset(warehouse / "ids", columns=COLUMNS, shuffle=True, batch_size=5)
    assert len(ids(dataset)) == 6 and dataset.state_dict()["rows"] == N  # the epoch read to its end
    dataset.set_epoch(1)
    assert (dataset.state_dict()["epoch"], dataset.state_dict()["rows"]) == (1, 0)


def test_a_pass_reads_one_version_and_set_epoch_moves_to_the_new_one(warehouse):
    dataset = make_torch_dataset(warehouse / "ids", columns=COLUMNS, batch_size=10)
    batches = iter(dataset)
    first = ids([next(batches)])
    publish(warehouse, "v2", first_id=100)
    assert first + ids(batches) == [list(range(0, 10)), list(range(10, 20)), list(range(20, 29))]
    dataset.set_epoch(1)
    assert sum(ids(dataset), []) == list(range(100, 129))


def test_readers_follow_the_catalog_when_the_link_lags(warehouse):
    publish(warehouse, "v2", first_id=100, switch_link=False)  # committed; the link not yet switched
    assert os.readlink(warehouse / "ids") == "_versions/ids/v1"
    ys = [y.tolist() for _, y in numpy_batches(warehouse / "ids", batch_size=50, columns=COLUMNS)]
    assert ys == [list(range(100, 129))]
    assert make_torch_dataset(warehouse / "ids", columns=COLUMNS).state_dict()["table"] == "_versions/ids/v2"
