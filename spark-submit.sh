#!/usr/bin/env bash
# Run an ecomine job with spark-submit against whatever master the environment gives.
#
#   ./spark-submit.sh jobs/nightly.py [--env local] [--set key=value ...]
#
# Environment (all optional):
#   SPARK_MASTER          --master for spark-submit (default: local[*]); yarn, k8s://..., spark://...
#   SPARK_DEPLOY_MODE     client (default) or cluster
#   SPARK_SUBMIT          the spark-submit to use (default: the one pyspark ships in .venv)
#   ECOMINE_VENV          the virtualenv with ecomine installed (default: ./.venv)
#   ECOMINE_ENV_ARCHIVE   a packed venv (venv-pack / conda-pack .tar.gz) shipped to executors with
#                         --archives ARCHIVE#environment; executors then run ./environment/bin/python
#   SPARK_SUBMIT_EXTRA    extra spark-submit flags, word-split (e.g. "--num-executors 8 --executor-cores 4")
#   DRIVER_MEMORY         --driver-memory (default 6g: the driver fine-tunes the model)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${ECOMINE_VENV:-$HERE/.venv}"
PY="$VENV/bin/python"
SUBMIT="${SPARK_SUBMIT:-$VENV/bin/spark-submit}"

if [ $# -lt 1 ]; then
  echo "usage: $0 JOB.py [job args]" >&2
  exit 2
fi
JOB="$1"; shift
MASTER="${SPARK_MASTER:-local[*]}"
[ -f "$JOB" ] || JOB="$HERE/$JOB"

export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 ECOMINE_SUBMITTED=1 TRANSFORMERS_VERBOSITY="${TRANSFORMERS_VERBOSITY:-error}"
export PYSPARK_PYTHON="${PYSPARK_PYTHON:-$PY}"
export PYSPARK_DRIVER_PYTHON="${PYSPARK_DRIVER_PYTHON:-$PY}"

# Delta's jar, plus the S3A connector when the job's config puts anything on s3a://
PACKAGES="$("$PY" -m ecomine.session packages --conf-dir "${ECOMINE_CONF_DIR:-$HERE/conf}" "$@")"

# The library as a zip for executors that do not have it installed (clusters).
mkdir -p "$HERE/build"
(cd "$HERE" && "$PY" -c 'import shutil; shutil.make_archive("build/ecomine", "zip", ".", "ecomine")')

args=(
  --master "$MASTER"
  --deploy-mode "${SPARK_DEPLOY_MODE:-client}"
  --name "ecomine-$(basename "$JOB" .py)"
  --driver-memory "${DRIVER_MEMORY:-6g}"
  --packages "$PACKAGES"
  --conf spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension
  --conf spark.sql.catalog.spark_catalog=org.apache.spark.sql.delta.catalog.DeltaCatalog
  --conf spark.python.worker.reuse=true
  --conf spark.ui.showConsoleProgress=false
  --driver-java-options "-Dlog4j2.configurationFile=file:${ECOMINE_LOG4J:-$HERE/conf/log4j2.properties}"
  --py-files "$HERE/build/ecomine.zip"
)
if [[ "$MASTER" == local* || "$MASTER" == spark://127.0.0.1:* || "$MASTER" == spark://localhost:* ]]; then
  # everything on this machine: the driver listens on loopback only
  args+=(--conf spark.driver.bindAddress=127.0.0.1 --conf spark.driver.host=127.0.0.1)
fi
# executors never reach the Hugging Face Hub: the model comes with the job (SparkContext.addArchive)
args+=(--conf spark.executorEnv.HF_HUB_OFFLINE=1 --conf spark.executorEnv.TRANSFORMERS_OFFLINE=1)
if [ -n "${ECOMINE_ENV_ARCHIVE:-}" ]; then
  args+=(--archives "${ECOMINE_ENV_ARCHIVE}#environment"
         --conf spark.pyspark.python=./environment/bin/python)
fi
# shellcheck disable=SC2206
extra=(${SPARK_SUBMIT_EXTRA:-})

exec "$SUBMIT" "${args[@]}" "${extra[@]}" "$JOB" --conf-dir "${ECOMINE_CONF_DIR:-$HERE/conf}" "$@"
