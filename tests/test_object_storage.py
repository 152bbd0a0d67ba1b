"""The nightly job with everything on object storage: tables, model artifacts, run reports
and the writer lock under ``s3a://``, on an S3-compatible server (moto's server mode,
``tests/s3_server.py``) that the test starts on 127.0.0.1 and stops. No network beyond
loopback; the S3A connector comes from the Ivy cache filled by ``make setup``.

The job runs through ``spark-submit.sh`` as a user would; what it wrote is checked with
boto3 (objects, checksums) and delta-rs (tables), not with ecomine's own readers, and the
``ecomine`` console reads the same tables with the same storage settings.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from deltalake import DeltaTable
from s3_server import moto_s3, s3_env  # tests/s3_server.py (a site-package shadows 'tests')

from ecomine import config
from ecomine.io import fs

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def s3_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("s3")
    with moto_s3("shop-lake") as ep:
        sets = [
            f"storage.root={ep.uri('lake')}",
            f"storage.s3.endpoint={ep.endpoint_url}",
            f"storage.s3.region={ep.region}",
            "storage.s3.path_style_access=true",
        ]
        env = {
            **os.environ,
            **s3_env(ep),
            "SPARK_MASTER": "local[2]",
            "ECOMINE_CACHE": str(work / "driver-cache"),  # the driver's local copy of s3a artifacts
            "ECOMINE_VENV": str(Path(sys.executable).parent.parent),
        }
        log = work / "jobs.log"
        for job in ("load_demo_data", "nightly"):
            args = [str(ROOT / "spark-submit.sh"), f"jobs/{job}.py", "--env", "test"]
            args += [x for s in sets for x in ("--set", s)]
            with log.open("a") as out:
                rc = subprocess.run(args, cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT).returncode
            if rc != 0:
                pytest.fail(f"{job} on s3a failed (exit {rc}):\n" + log.read_text(errors="replace")[-6000:])
        cfg = config.load(ROOT / "conf", "test", sets)
        client = boto3.client(
            "s3",
            endpoint_url=ep.endpoint_url,
            aws_access_key_id=ep.access_key,
            aws_secret_access_key=ep.secret_key,
            region_name=ep.region,
        )
        yield {"ep": ep, "cfg": cfg, "env": env, "client": client, "work": work, "log": log}


def _table(run, name: str):
    opts = {**fs.delta_rs_options(run["cfg"].storage), **s3_env_keys(run["ep"])}
    return DeltaTable(run["cfg"].table(name), storage_options=opts).to_pandas()


def s3_env_keys(ep) -> dict[str, str]:
    return {"AWS_ACCESS_KEY_ID": ep.access_key, "AWS_SECRET_ACCESS_KEY": ep.secret_key}


def _keys(run, prefix: str) -> list[str]:
    listing = run["client"].list_objects_v2(Bucket=run["ep"].bucket, Prefix=prefix)
    return sorted(o["Key"] for o in listing.get("Contents", []))


def test_every_review_is_scored_or_rejected_once_on_s3(s3_run):
    reviews = _table(s3_run, "reviews")
    scores = _table(s3_run, "review_scores")
    rejects = _table(s3_run, "review_scores_rejects")
    assert len(reviews) == 160 + 60  # conf/test.yaml's demo slice
    assert scores["review_id"].is_unique and rejects["review_id"].is_unique
    assert set(scores["review_id"]).isdisjoint(rejects["review_id"])
    assert set(scores["review_id"]) | set(rejects["review_id"]) == set(reviews["review_id"])
    runs = _table(s3_run, "runs")
    assert set(runs["status"]) == {"succeeded"} and set(runs["job"]) == {"load_demo_data", "nightly"}


def test_the_artifact_lives_on_s3_with_checksums_that_match(s3_run):
    models = _table(s3_run, "models")
    (uri,) = models["artifact_path"]
    version = models["model_version"].iloc[0]
    assert uri == f"s3a://{s3_run['ep'].bucket}/lake/_artifacts/{version}"
    prefix = f"lake/_artifacts/{version}/"
    body = s3_run["client"].get_object(Bucket=s3_run["ep"].bucket, Key=prefix + "manifest.json")["Body"].read()
    manifest = json.loads(body)
    stored = set(_keys(s3_run, prefix))
    assert stored == {prefix + "manifest.json", *(prefix + f for f in manifest["files"])}
    heads = "en/heads.safetensors"
    blob = s3_run["client"].get_object(Bucket=s3_run["ep"].bucket, Key=prefix + heads)["Body"].read()
    assert hashlib.sha256(blob).hexdigest() == manifest["files"][heads]
    assert not any(".staging" in k for k in _keys(s3_run, "lake/_artifacts/"))


def test_report_on_s3_and_lock_released(s3_run):
    runs = _table(s3_run, "runs")
    nightly = runs[runs["job"] == "nightly"].iloc[0]
    key = f"lake/_reports/{nightly['run_id']}.html"
    assert _keys(s3_run, "lake/_reports/") == [key]
    html = s3_run["client"].get_object(Bucket=s3_run["ep"].bucket, Key=key)["Body"].read().decode()
    assert nightly["run_id"] in html
    # taken during each run, released after (S3A may leave an empty directory marker "lake/_locks/")
    assert [k for k in _keys(s3_run, "lake/_locks/") if not k.endswith("/")] == []
    assert not (s3_run["work"] / "lakehouse").exists()  # nothing fell back to a local folder


def test_console_reads_the_s3_lakehouse(s3_run):
    cfg = s3_run["cfg"]
    console = Path(sys.executable).parent / "ecomine"  # the installed console script
    args = [str(console), "runs", "--conf-dir", str(ROOT / "conf"), "--env", "test"]
    for k in ("root", "s3.endpoint", "s3.region", "s3.path_style_access"):
        value = cfg.storage.root if k == "root" else getattr(cfg.storage.s3, k.split(".")[1])
        args += ["--set", f"storage.{k}={str(value).lower() if isinstance(value, bool) else value}"]
    out = subprocess.run(args, env=s3_run["env"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    nightly = _table(s3_run, "runs").query("job == 'nightly'").iloc[0]
    assert nightly["run_id"] in out.stdout and "succeeded" in out.stdout


LOCK_PROBE = """
import json, sys, threading
from ecomine import config, session
from ecomine.errors import ConcurrentRunError
from ecomine.io import fs, lock

cfg = config.load(sys.argv[1], "test", sys.argv[2:])
spark = session.build("ecomine-lock-probe", cfg.spark, storage=cfg.storage)
root = cfg.storage.root
out = {}
uri = fs.join(root, "_locks", "probe.lock")
out["first"] = fs.create_new(spark, uri, "a")
out["second"] = fs.create_new(spark, uri, "b")
out["kept"] = fs.read_text(spark, uri)
# a race: two creators past the existence check at once; the store must refuse one
race = fs.join(root, "_locks", "race.lock")
hadoop, path = fs._hadoop(spark, race)
won = []
threads = [threading.Thread(target=lambda t=t: won.append(fs._create_if_absent(hadoop, path, race, t))) for t in "xy"]
[t.start() for t in threads]
[t.join() for t in threads]
out["race_winners"] = sum(won)
with lock.exclusive(root, "writer", "run-a", spark=spark):
    try:
        with lock.exclusive(root, "writer", "run-b", spark=spark):
            out["second_run"] = "started"
    except ConcurrentRunError as e:
        out["second_run"] = str(e)
out["released"] = not fs.exists(spark, fs.join(root, "_locks", "writer.lock"))
for u in (uri, race):
    fs.delete(spark, u)
spark.stop()
print("PROBE " + json.dumps(out))
"""


def test_writer_lock_on_s3_admits_one_run(s3_run):
    """The lock file is created with a conditional PUT: a second creator is refused, even
    one that raced past the existence check, and a second run fails fast naming the first."""
    sets = [f"storage.{k}={v}" for k, v in (
        ("root", s3_run["cfg"].storage.root), ("s3.endpoint", s3_run["ep"].endpoint_url),
        ("s3.region", s3_run["ep"].region), ("s3.path_style_access", "true"),
    )]  # fmt: skip
    args = [sys.executable, "-c", LOCK_PROBE, str(ROOT / "conf"), *sets]
    done = subprocess.run(args, env=s3_run["env"], capture_output=True, text=True, cwd=s3_run["work"], timeout=600)
    line = [x for x in done.stdout.splitlines() if x.startswith("PROBE ")]
    assert done.returncode == 0 and line, done.stderr[-4000:]
    got = json.loads(line[0][len("PROBE ") :])
    assert got["first"] is True and got["second"] is False and got["kept"] == "a"
    assert got["race_winners"] == 1
    assert "another ecomine run holds" in got["second_run"] and "run-a" in got["second_run"]
    assert got["released"] is True
