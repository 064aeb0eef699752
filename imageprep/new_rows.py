"""`new_rows(relation)`: the rows of a table that a node has not read before.

    select ... from {{ new_rows(ref('images_resized')) }} r     -- in an incremental model
    select ... from {{ new_rows(model) }} where ...              -- in a row-by-row data test

A table's Parquet files never change once written: a build writes its new rows (and any rows
it rewrites) to new files and hard-links the files it keeps (same names) into the table's next
version (table_writer). So the rows a node has not read are those of the files it has not seen.
The runner remembers, per node, the files of each table it read through new_rows(): a model in
the table version it wrote (Warehouse.seen_by), a data test beside its last pass
(fingerprint.TestState). A node with nothing remembered (a first build, --full-refresh, a model
or test whose logic changed, a test that did not pass) reads every row.

A file a merge copied without some rows (parquet_rows.rewrite_without) holds only rows of the
file it was copied from, so it is not new to a node that read that file. The rows may still
include some the node has seen: a file that gathered small ones holds them, and so does a file
Spark rewrote where PyArrow cannot reach the warehouse. An incremental model keeps its anti-join
on {{ this }} for them; a row-by-row test checks them again, which is harmless.

A folder of images (a source with `format: images`) is one row per file: its new rows are the
files whose (path, size, modification time) the node has not seen, and Spark opens no other.
Any other relation that is not a table of the warehouse (a view, another source, an ephemeral
model) is read whole.
"""
from __future__ import annotations

import hashlib

from .catalog import empty_frame, read_table, table_schema
from .names import new_rows_view
from .parquet_rows import origin_of
from .sources import read_image_folder
from .table_writer import data_files


def register(spark, warehouse, node, seen_before: dict[str, list[str]] | None,
             sources: dict | None = None, listings: dict | None = None) -> dict[str, list[str]]:
    """Register the node's new_rows views; return the files of each relation as they are now, which
    the node remembers once it succeeds. `seen_before`: the files it remembered (None: read every
    row). `sources`: the project's sources by relation name. `listings`: image folders as the build
    listed them, by relation name (listed again where missing)."""
    now: dict[str, list[str]] = {}
    catalog = warehouse.catalog()
    for relation in node.new_rows_of:
        name = new_rows_view(node.name, relation)
        seen = None if seen_before is None else seen_before.get(relation)
        source = (sources or {}).get(relation)
        if source is not None and source.format == "images":
            listed: list[str] = []

            def unseen(entry, seen=set(seen) if seen is not None else None, listed=listed) -> bool:
                listed.append(_file_key(entry))
                return seen is None or listed[-1] not in seen

            read_image_folder(spark, source, only=unseen,
                              listing=(listings or {}).get(relation)).createOrReplaceTempView(name)
            now[relation] = listed
            continue
        entry = catalog.get(relation)
        if entry is None or entry.get("kind") != "table":
            spark.sql(f"SELECT * FROM {relation}").createOrReplaceTempView(name)
            continue
        folder = warehouse.root / entry["version"]
        files = [str(f) for f in data_files(folder)]
        now[relation] = files
        if seen is None:
            frame = read_table(spark, warehouse, entry)
        else:
            # Only the unseen files are read (each read of files costs Spark a listing of them).
            unseen = unseen_files(files, seen)
            if unseen:
                # basePath keeps the partition columns of files read one by one.
                frame = (spark.read.schema(table_schema(entry)).option("basePath", str(folder))
                         .parquet(*[str(folder / f) for f in unseen]))
            else:
                frame = empty_frame(spark, table_schema(entry))
        frame.createOrReplaceTempView(name)
    return now


def unseen_files(files: list[str], seen: list[str]) -> list[str]:
    """Those of a table's `files` a node has not read, given the files it had (`seen`). A file a
    rewrite copied from one the node read holds only rows it read."""
    seen_origins = {origin_of(f) for f in seen}
    return [f for f in files if origin_of(f) not in seen_origins]


def _file_key(entry) -> str:
    """A short digest of a listed file's (uri, size, modification time): what tells it has changed."""
    uri, size, modified = entry.key
    return hashlib.blake2b(f"{uri}|{size}|{modified}".encode(), digest_size=8).hexdigest()


def drop(spark, node) -> None:
    """Remove the node's views once it ran: they are not tables of the project."""
    for relation in node.new_rows_of:
        spark.catalog.dropTempView(new_rows_view(node.name, relation))
