"""The Delta writer on a real local[2] Spark with Delta: idempotent MERGE, commit metadata, deletes."""

from __future__ import annotations

import json

from deltalake import DeltaTable as RsTable  # delta-rs: an independent reader of the same table

from ecomine.io import delta_io

DDL = "k string, v int, run_id string"


def test_merge_inserts_updates_and_is_idempotent(spark, tmp_path):
    path = str(tmp_path / "t")
    src = spark.createDataFrame([("a", 1, "r1"), ("b", 2, "r1"), ("b", 2, "r1")], DDL)  # duplicate source key
    m = delta_io.merge_into(spark, path, src, ["k"], compare=["v"], metadata={"run_id": "r1"})
    assert m["inserted"] == 2
    v1 = delta_io.table_version(spark, path)

    # Same values under another run id: compare=['v'] ignores run_id -> no row changes.
    same = spark.createDataFrame([("a", 1, "r2"), ("b", 2, "r2")], DDL)
    m = delta_io.merge_into(spark, path, same, ["k"], compare=["v"], metadata={"run_id": "r2"})
    assert m == {"inserted": 0, "updated": 0, "deleted": 0}

    changed = spark.createDataFrame([("a", 10, "r3"), ("c", None, "r3")], DDL)
    m = delta_io.merge_into(spark, path, changed, ["k"], compare=["v"], metadata={"run_id": "r3"})
    assert (m["inserted"], m["updated"]) == (1, 1)

    rows = sorted(RsTable(path).to_pandas().itertuples(index=False))
    assert [(r.k, None if r.v != r.v else int(r.v), r.run_id) for r in rows] == [
        ("a", 10, "r3"),
        ("b", 2, "r1"),
        ("c", None, "r3"),
    ]
    hist = spark.sql(f"DESCRIBE HISTORY delta.`{path}`").orderBy("version").collect()
    assert json.loads(hist[-1]["userMetadata"]) == {"run_id": "r3"}
    assert hist[-1]["version"] > v1


def test_txn_marker_makes_a_retried_write_a_no_op(spark, tmp_path):
    path = str(tmp_path / "t")
    first = spark.createDataFrame([("a", 1, "r1")], DDL)
    delta_io.merge_into(spark, path, first, ["k"], txn=("ecomine-test", 7))
    v = delta_io.table_version(spark, path)
    retry = spark.createDataFrame([("a", 99, "r1")], DDL)  # different content, same txn: skipped by Delta
    delta_io.merge_into(spark, path, retry, ["k"], txn=("ecomine-test", 7))
    assert delta_io.table_version(spark, path) == v
    assert RsTable(path).to_pandas()["v"].tolist() == [1]


def test_delete_keys(spark, tmp_path):
    path = str(tmp_path / "t")
    delta_io.merge_into(spark, path, spark.createDataFrame([("a", 1, "r"), ("b", 2, "r")], DDL), ["k"])
    v = delta_io.table_version(spark, path)
    delta_io.delete_keys(spark, path, spark.createDataFrame([("zzz",)], "k string"), "k")
    assert delta_io.table_version(spark, path) == v  # nothing matched: no empty commit
    delta_io.delete_keys(spark, path, spark.createDataFrame([("a",)], "k string"), "k")
    assert RsTable(path).to_pandas()["k"].tolist() == ["b"]


def test_merge_adds_a_new_column_then_is_idempotent_again(spark, tmp_path):
    """An upgrade that adds an output column (e.g. a new fraud signal) MERGEs into the old table."""
    path = str(tmp_path / "t")
    delta_io.merge_into(spark, path, spark.createDataFrame([("a", 1, "r1"), ("b", 2, "r1")], DDL), ["k"], compare=["v"])
    ddl2 = "k string, v int, w double, run_id string"
    new = spark.createDataFrame([("a", 1, 0.5, "r2"), ("b", 2, None, "r2"), ("c", 3, 1.5, "r2")], ddl2)
    m = delta_io.merge_into(spark, path, new, ["k"], compare=["v", "w"])
    # a and b exist without w: both updated once (b's w stays null, but its row is rewritten); c inserted
    assert (m["inserted"], m["updated"]) == (1, 2)
    got = {
        r.k: (int(r.v), None if r.w != r.w else r.w, r.run_id)
        for r in RsTable(path).to_pandas().itertuples(index=False)
    }
    assert got == {"a": (1, 0.5, "r2"), "b": (2, None, "r2"), "c": (3, 1.5, "r2")}
    v = delta_io.table_version(spark, path)
    m = delta_io.merge_into(spark, path, new, ["k"], compare=["v", "w"])
    assert m == {"inserted": 0, "updated": 0, "deleted": 0} and delta_io.table_version(spark, path) == v
    # the old job (no w) still writes: w stays as stored for updated rows, null for inserts
    old = spark.createDataFrame([("a", 9, "r3"), ("d", 4, "r3")], DDL)
    delta_io.merge_into(spark, path, old, ["k"], compare=["v"])
    got = {r.k: (int(r.v), None if r.w != r.w else r.w) for r in RsTable(path).to_pandas().itertuples(index=False)}
    assert got == {"a": (9, 0.5), "b": (2, None), "c": (3, 1.5), "d": (4, None)}
