"""`ImageTableDataset`: a built table as a PyTorch IterableDataset, sharded and resumable. Needs torch.

Made through `imageprep.training.make_torch_dataset`; the order, sharding, resumption and
versions it follows are described in that module's docstring.
"""
from __future__ import annotations

import torch
from torch.utils.data import IterableDataset, get_worker_info

from . import loader_state, loader_version
from .loader_sharding import Shard
from .table_reader import TableNotFoundError, TableReader, check_batch_size, check_seed, default_buffer


def distributed_place(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """(rank, world_size) as given, else torch.distributed's when initialised, else (0, 1)."""
    if rank is not None and world_size is not None:
        return rank, world_size
    if rank is not None or world_size is not None:
        raise ValueError("give both rank and world_size, or neither (then torch.distributed's are used)")
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class ImageTableDataset(IterableDataset):
    """Rows (or, with `batch_size`, batches) of a built table as tensors, for a DataLoader: x float32
    (normalized as the table records), or uint8 with `output="uint8"`; y the label.

    Each rank reads its share of the rows, split again between the DataLoader's workers;
    `set_epoch(e)` gives epoch e's order and picks up the table's current version;
    `state_dict()` / `load_state_dict()` save and restore the position within the epoch.
    """

    def __init__(self, table_path, columns=None, shuffle=False, seed=0, shuffle_buffer=None, read_batch_rows=32,
                 output="float32", normalization=None, *, batch_size=None, drop_last=False, rank=None,
                 world_size=None, shard_remainder="pad"):
        self.table_path = str(table_path)
        self.shuffle = bool(shuffle)
        self.seed = check_seed(seed)
        self.read_batch_rows = check_batch_size(read_batch_rows)
        self.batch_size = None if batch_size is None else check_batch_size(batch_size)
        self.drop_last = bool(drop_last)
        self.shuffle_buffer = default_buffer(shuffle_buffer, self.batch_size or self.read_batch_rows)
        self.output = output
        self.normalization = normalization
        self._distributed_default = rank is None and world_size is None
        self.rank, self.world_size = distributed_place(rank, world_size)
        self.shard_remainder = shard_remainder
        Shard(rank=self.rank, world_size=self.world_size, remainder=shard_remainder)  # checks them now
        self.epoch = 0
        self._pin()
        # fail now on a missing table or column; keep the columns it chose
        self.columns = TableReader(self.table_path, columns, output, normalization, version=self._version).columns
        self._rows = 0  # rows yielded in the current pass
        self._resume: dict | None = None  # a loaded state, for the next pass
        self._place = {"worker": 0, "workers": 1}
        self._read: tuple[loader_version.TableVersion, str] | None = None  # version and fingerprint of the pass

    # -- epochs and versions -------------------------------------------------------------

    def set_epoch(self, epoch: int) -> None:
        """Read epoch `epoch`'s order next (call before iterating, in the main process), on the table's
        current version. A loaded state for another epoch is dropped."""
        self.epoch = check_seed(epoch, "epoch")
        if self._resume is not None and self._resume["epoch"] != self.epoch:
            self._resume = None
        self._rows, self._read = 0, None  # at the start of the epoch until a pass begins
        self._pin()

    def _pin(self) -> None:
        # Pinned in the main process, so every worker (and the pickled copies of spawned
        # workers) reads the same version.
        self._version = loader_version.pin(self.table_path)
        if self._version is None:
            raise TableNotFoundError("table folder not found; build the table first: python runner.py build",
                                     path=self.table_path)

    def _reader(self) -> TableReader:
        return TableReader(self.table_path, self.columns, self.output, self.normalization, version=self._version)

    # -- resumption ----------------------------------------------------------------------

    def _plan_settings(self) -> dict:
        return {"seed": self.seed, "shuffle": self.shuffle, "shuffle_buffer": self.shuffle_buffer,
                "rank": self.rank, "world_size": self.world_size, "shard_remainder": self.shard_remainder}

    def state_dict(self) -> dict:
        """The position of this reader (this process, or this DataLoader worker) in the epoch."""
        if self._resume is not None:  # loaded and not yet resumed: still the same position
            return dict(self._resume)
        version, fingerprint = self._read or (self._version, self._reader().fingerprint)
        return loader_state.make(version, fingerprint, self.epoch, self._rows, self._plan_settings(), self._place)

    def load_state_dict(self, state: dict) -> None:
        """Resume at `state` on the next pass: its epoch, from the row after the last one it had yielded.
        ValueError if it was taken with other settings, or on another version of the table."""
        loader_state.check_plan(state, self._plan_settings())
        reader = self._reader()
        loader_state.check_version(state, reader.version, reader.fingerprint)
        self.epoch = state["epoch"]
        self._resume = dict(state)

    # -- iterating -----------------------------------------------------------------------

    def __iter__(self):
        # Not a generator: the position resets when iter() is called, as StatefulDataLoader
        # asks for a state right after it, before the first row.
        info = get_worker_info()
        place = {"worker": info.id, "workers": info.num_workers} if info is not None else {"worker": 0, "workers": 1}
        if info is None:
            self._check_distributed()
        reader = self._reader()
        start = 0
        if self._resume is not None:
            state, self._resume = self._resume, None
            loader_state.check_place(state, place)
            loader_state.check_version(state, reader.version, reader.fingerprint)
            start = state["rows"]
        self._place, self._read, self._rows = place, (reader.version, reader.fingerprint), start
        shard = Shard(self.rank, self.world_size, place["worker"], place["workers"], self.shard_remainder)
        plan = reader.plan(shuffle=self.shuffle, seed=self.seed, epoch=self.epoch,
                           buffer_rows=self.shuffle_buffer, shard=shard)
        if self.batch_size is not None:
            return self._batches(reader.batches(plan, self.batch_size, drop_last=self.drop_last, start_row=start))
        return self._items(reader.batches(plan, self.read_batch_rows, drop_last=False, start_row=start))

    def _batches(self, batches):
        # From a worker, torch copies each batch into shared memory to send it. Writing the batch
        # there in the first place was measured slower (page faults of shared memory in the
        # normalizing loop), so batches are ordinary arrays.
        for x, y in batches:
            self._rows += len(y)
            yield torch.from_numpy(x), torch.from_numpy(y)

    def _items(self, batches):
        for x, y in batches:
            xt = torch.from_numpy(x)
            for i in range(len(y)):
                self._rows += 1  # counted before the yield: a state taken now has this row as yielded
                yield xt[i], y[i].tolist()

    def _check_distributed(self) -> None:
        if not self._distributed_default:
            return
        place = distributed_place(None, None)
        if place != (self.rank, self.world_size):
            raise RuntimeError(f"this dataset was made as rank {self.rank} of {self.world_size}, but "
                               f"torch.distributed now runs rank {place[0]} of {place[1]}: make the dataset "
                               "after init_process_group, or pass rank= and world_size=")
