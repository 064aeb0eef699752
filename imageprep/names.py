"""Names that compiled SQL uses for relations the runner registers while a node runs.

The renderer writes these names into a node's SQL, and the code that runs the node registers
them in Spark. Both import them from here, so rendering needs none of the code that runs a build.
"""
from __future__ import annotations


def new_rows_view(node_name: str, relation: str) -> str:
    """The temporary view a node's SQL reads for new_rows(relation): one per node, as nodes may
    run at the same time and each has its own rows it has not read."""
    return f"__new_rows__{node_name}__{relation}"
