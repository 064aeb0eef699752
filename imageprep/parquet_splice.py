"""A Parquet file copied without some rows, its untouched row groups byte for byte.

A merge or a deletion copies each file that loses rows (parquet_rows.rewrite_without). Decoding
and encoding every row of such a file is most of what a build that deletes a few images costs:
image tables are large, and rows deleted across the folder touch nearly every file. A row group
that loses no row is the same bytes in the copy, so only the row groups that lose rows are
decoded and written again (by the caller, as one small Parquet file in memory), and the others
are copied as bytes.

Parquet's footer is Thrift. fastparquet reads it into objects and writes them again: the copy's
footer is the original's (schema, Spark's metadata, column orders), with the row groups' offsets
moved to where their bytes now lie and the rewritten groups' column chunks in place of the old.
Page indexes and bloom filters lie outside the row groups' bytes and are left out; readers read
those groups as they read files written without them.
"""
from __future__ import annotations

import struct
from typing import Callable

_MAGIC = b"PAR1"


def copy_without(parquet, source, target, positions: set[int], write_group: Callable) -> bool:
    """Write to the PyArrow output stream `target` the rows of the PyArrow input file `source`
    (open as the pq.ParquetFile `parquet`) but those at `positions`, when at least one row group
    loses no row (otherwise False, and nothing is written). `write_group(table)` returns the
    bytes of a Parquet file of those rows written as one row group. Also False, with nothing
    written, when a rewritten group's Thrift schema differs from the original's (its columns
    would not read the same)."""
    import pyarrow as pa
    from fastparquet import cencoding

    footer = _footer(source, cencoding)
    if footer is None:
        return False
    groups, first_row = [], 0
    for group in footer.row_groups:
        dropped = sorted(p - first_row for p in positions if first_row <= p < first_row + group.num_rows)
        groups.append((group, dropped))
        first_row += group.num_rows
    if all(dropped for _, dropped in groups):
        return False  # nothing to copy as bytes: one rewrite of the whole file is cheaper

    pieces: list[tuple[bytes, object]] = []  # (bytes of a row group, its Thrift RowGroup)
    for index, (group, dropped) in enumerate(groups):
        if not dropped:
            start, length = _span(group)
            pieces.append((source.read_at(length, start), group))
            continue
        table = without_rows(parquet.read_row_group(index, use_threads=False), dropped)
        if table.num_rows == 0:
            continue
        blob = write_group(table)
        written = _footer(pa.BufferReader(blob), cencoding)
        if written is None or not _same_layout(footer, written):
            return False
        for new_group in written.row_groups:
            start, length = _span(new_group)
            pieces.append((blob.slice(start, length), new_group))

    position, row_groups = len(_MAGIC), []
    target.write(_MAGIC)
    for ordinal, (data, group) in enumerate(pieces):
        _move(group, position, ordinal)
        target.write(data)
        position += len(data)
        row_groups.append(group)
    footer.row_groups = row_groups
    footer.num_rows = sum(group.num_rows for group in row_groups)
    encoded = bytes(footer.to_bytes())
    target.write(encoded + struct.pack("<i", len(encoded)) + _MAGIC)
    return True


def without_rows(table, positions):
    """A PyArrow table without the rows at `positions` (0-based)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    keep = pc.invert(pc.is_in(pa.array(range(table.num_rows), pa.int64()), pa.array(sorted(positions), pa.int64())))
    return table.filter(keep)


def _footer(file, cencoding):
    """The Thrift FileMetaData of a Parquet file (a PyArrow random-access file), or None when
    it is not a plain Parquet file (encrypted footers end in PARE)."""
    size = file.size()
    if size < 12:
        return None
    tail = bytes(file.read_at(8, size - 8))
    length = struct.unpack("<i", tail[:4])[0]
    if tail[4:] != _MAGIC or length <= 0 or length > size - 12:
        return None
    footer = cencoding.from_buffer(bytes(file.read_at(length, size - 8 - length)), "FileMetaData")
    return footer if footer.row_groups and footer.encryption_algorithm is None else None


def _chunk_start(column) -> int:
    meta = column.meta_data
    return meta.dictionary_page_offset or meta.data_page_offset  # 0 is "no dictionary" for some writers


def _span(group) -> tuple[int, int]:
    """Where a row group's column chunks lie in its file: first byte and length."""
    start = min(_chunk_start(column) for column in group.columns)
    end = max(_chunk_start(column) + column.meta_data.total_compressed_size for column in group.columns)
    return start, end - start


def _move(group, position: int, ordinal: int) -> None:
    """Point a row group's offsets at `position`, where its bytes are written in the copy."""
    shift = position - _span(group)[0]
    for column in group.columns:
        meta = column.meta_data
        meta.data_page_offset += shift
        if meta.dictionary_page_offset:
            meta.dictionary_page_offset += shift
        if meta.index_page_offset:
            meta.index_page_offset += shift
        meta.bloom_filter_offset = None
        column.offset_index_offset = column.offset_index_length = None
        column.column_index_offset = column.column_index_length = None
        if column.file_offset:
            column.file_offset += shift
    group.file_offset = position
    group.total_compressed_size = sum(column.meta_data.total_compressed_size for column in group.columns)
    group.ordinal = ordinal


def _same_layout(original, rewritten) -> bool:
    """Whether a rewritten file's column chunks read as the original's: the same leaves, physical
    types and repetitions (which fix how values and their levels are encoded), in the same order.
    The root's name and the logical annotations are the original footer's, which the copy keeps."""
    def shape(footer):
        return [(element.name, element.type, element.type_length, element.repetition_type, element.num_children)
                for element in footer.schema[1:]]

    if shape(original) != shape(rewritten):
        return False
    paths = [column.meta_data.path_in_schema for column in original.row_groups[0].columns]
    return all([column.meta_data.path_in_schema for column in group.columns] == paths
               for group in rewritten.row_groups)
