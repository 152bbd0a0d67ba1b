"""The Delta writer on a real local[2] Spark with Delta: idempotent MERGE, commit metadata, deletes."""

from __future__ import annotations

import json

from deltalake import DeltaTable as RsTable  # delta-rs: an independent reader of the same table

from ecomine import delta_io

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
    assert [(r.k, None if r.v != r.v else int(r.v), r.run_id) for r in rows] == [("a", 10, "r3"), ("b", 2, "r1"), ("c", None, "r3")]
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
