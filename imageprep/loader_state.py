"""A reader's position in an epoch, as the plain dict `state_dict()` returns, and its checks.

The position is the number of rows the reader (one rank's DataLoader worker, or the process
itself) has yielded in the epoch. Rows follow a plan fixed by the table version, the seed, the
epoch, the shuffle buffer and the reader's place (loader_sharding), so a position means the
same rows only where all of those are the same: a state records them and `check` refuses,
naming what differs, to resume anywhere else. The DataLoader's batch size is not part of it:
the rows are the same whatever it is.
"""
from __future__ import annotations

from .loader_version import TableVersion

FORMAT = 1
# What the plan depends on besides the table: a state resumes only where all of them agree.
PLAN_KEYS = ("seed", "shuffle", "shuffle_buffer", "rank", "world_size", "shard_remainder")
PLACE_KEYS = ("worker", "workers")


def make(version: TableVersion, fingerprint: str, epoch: int, rows: int, plan: dict, place: dict) -> dict:
    return {"format": FORMAT, "table": version.label, "fingerprint": fingerprint, "epoch": int(epoch),
            "rows": int(rows), **{k: plan[k] for k in PLAN_KEYS}, **{k: place[k] for k in PLACE_KEYS}}


def check_plan(state: dict, plan: dict) -> None:
    """ValueError unless `state` is a state of this module taken with the same plan settings."""
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"not a reading state of this loader (format {FORMAT}): {state!r:.200}")
    missing = [k for k in ("table", "fingerprint", "epoch", "rows", *PLAN_KEYS, *PLACE_KEYS) if k not in state]
    if missing:
        raise ValueError(f"reading state lacks {', '.join(missing)}")
    differ = [f"{k}={state[k]!r} (this dataset: {plan[k]!r})" for k in PLAN_KEYS if state[k] != plan[k]]
    if differ:
        raise ValueError("the state was saved with " + ", ".join(differ) + ": a reading state resumes only "
                         "the same seed, shuffle buffer and ranks; make the dataset with those, or start the "
                         "epoch over")


def check_place(state: dict, place: dict) -> None:
    if any(state[k] != place[k] for k in PLACE_KEYS):
        raise ValueError(f"the state was saved by worker {state['worker']} of {state['workers']} DataLoader "
                         f"workers and is loaded into worker {place['worker']} of {place['workers']}: resume with "
                         f"num_workers={state['workers']}")


def check_version(state: dict, version: TableVersion, fingerprint: str) -> None:
    """ValueError unless `state` was taken on the table version being read."""
    if state["fingerprint"] == fingerprint:
        return
    saved = version.given.parent / state["table"] if version.entry is not None else None
    still = (f"; that version is still at {saved}: pass that folder as the table to finish its epoch"
             if saved is not None and saved.is_dir() else "")
    raise ValueError(f"{version.given}: the reading state was saved on version {state['table']} of the table, "
                     f"which now is version {version.label} (a build published a new one): a position counts "
                     f"rows of one version, so it cannot resume on another. Start the epoch over "
                     f"(set_epoch, without the state){still}")
