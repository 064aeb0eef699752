"""duplicate_groups: connected components of pairs of paths, named by their smallest path, whatever
the order of the pairs; the kernel against a breadth-first search, and the SQL function in Spark."""
from __future__ import annotations

import random

from udfs.kernels.groups import duplicate_groups


def components_by_search(pairs) -> list[tuple[str, str]]:
    """The reference: (path, smallest path of its component) by breadth-first search."""
    neighbours: dict[str, set[str]] = {}
    for a, b in pairs:
        neighbours.setdefault(a, set()).add(b)
        neighbours.setdefault(b, set()).add(a)
    out = {}
    for start in neighbours:
        if start in out:
            continue
        seen, frontier = {start}, [start]
        while frontier:
            frontier = [n for p in frontier for n in neighbours[p] if n not in seen]
            seen.update(frontier)
        for path in seen:
            out[path] = min(seen)
    return sorted(out.items())


def test_a_chain_of_any_length_is_one_group_named_by_its_smallest_path():
    chain = [(f"img/{i:03d}.jpg", f"img/{i + 1:03d}.jpg") for i in range(40)]  # 41 images, 40 hops
    groups = duplicate_groups(chain)
    assert len(groups) == 41
    assert {group for _, group in groups} == {"img/000.jpg"}
    # from the far end too: the smallest path is found however the chain is written
    assert duplicate_groups(reversed([(b, a) for a, b in chain])) == groups


def test_two_groups_are_merged_by_a_later_pair():
    pairs = [("b", "c"), ("x", "y"), ("c", "d")]
    assert duplicate_groups(pairs) == [("b", "b"), ("c", "b"), ("d", "b"), ("x", "x"), ("y", "x")]
    merged = duplicate_groups(pairs + [("y", "d")])  # links the two groups, at neither group's smallest path
    assert merged == [(p, "b") for p in ("b", "c", "d", "x", "y")]
    # a smaller path joining later renames the merged group
    assert duplicate_groups(pairs + [("y", "d"), ("a", "y")]) == [(p, "a") for p in ("a", "b", "c", "d", "x", "y")]


def test_the_result_does_not_depend_on_the_order_of_pairs_or_of_their_ends():
    rng = random.Random(5)
    paths = [f"p{i:02d}" for i in range(30)]
    pairs = [tuple(rng.sample(paths, 2)) for _ in range(25)]
    expected = components_by_search(pairs)
    assert duplicate_groups(pairs) == expected
    for _ in range(20):
        shuffled = [(b, a) if rng.random() < 0.5 else (a, b) for a, b in rng.sample(pairs, len(pairs))]
        assert duplicate_groups(shuffled) == expected


def test_random_graphs_equal_a_breadth_first_search():
    rng = random.Random(11)
    for n_paths, n_pairs in [(2, 1), (10, 3), (50, 40), (200, 150), (200, 400)]:
        paths = [f"dir/{rng.getrandbits(32):08x}.png" for _ in range(n_paths)]
        pairs = [(rng.choice(paths), rng.choice(paths)) for _ in range(n_pairs)]
        assert duplicate_groups(pairs) == components_by_search(pairs)


def test_empty_input_self_pairs_and_missing_ends():
    assert duplicate_groups([]) == []
    assert duplicate_groups(iter(())) == []
    assert duplicate_groups([("a", "a")]) == [("a", "a")]
    assert duplicate_groups([None, ("a", None), (None, "b"), ("c", "d")]) == [("c", "c"), ("d", "c")]


def test_paths_are_ordered_as_spark_orders_strings():
    # Code point order is UTF-8 byte order: 'Z' < 'a' < 'é' < '中', as in Spark's min(path).
    pairs = [("中.jpg", "é.jpg"), ("é.jpg", "a.jpg"), ("a.jpg", "Z.jpg")]
    assert {group for _, group in duplicate_groups(pairs)} == {"Z.jpg"}


def test_the_sql_function_gives_the_kernels_groups_and_null_for_null(spark):
    pairs = [("b", "c"), ("x", "y"), ("c", "d"), ("y", "d"), ("m", "n")]
    spark.createDataFrame(pairs, "path_a STRING, path_b STRING").createOrReplaceTempView("group_pairs")
    rows = spark.sql("""
        SELECT inline(duplicate_groups(collect_list(named_struct('a', path_a, 'b', path_b)))) FROM group_pairs
    """).collect()
    assert [(r["path"], r["group_id"]) for r in rows] == duplicate_groups(pairs)
    row = spark.sql("""
        SELECT duplicate_groups(CAST(NULL AS ARRAY<STRUCT<a: STRING, b: STRING>>)) AS none,
               duplicate_groups(CAST(array() AS ARRAY<STRUCT<a: STRING, b: STRING>>)) AS empty,
               (SELECT duplicate_groups(collect_list(named_struct('a', path_a, 'b', path_b)))
                FROM group_pairs WHERE false) AS no_pairs
    """).first()
    assert row["none"] is None and row["empty"] == [] and row["no_pairs"] == []
