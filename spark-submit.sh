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
[ -f "$JOB" ] || JOB="$HERE/$JOB"

export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 ECOMINE_SUBMITTED=1 TRANSFORMERS_VERBOSITY="${TRANSFORMERS_VERBOSITY:-error}"
export PYSPARK_PYTHON="${PYSPARK_PYTHON:-$PY}"
export PYSPARK_DRIVER_PYTHON="${PYSPARK_DRIVER_PYTHON:-$PY}"

DELTA_PKG="$("$PY" -c 'from ecomine.session import delta_maven_coordinate as d; print(d())')"

# The library as a zip for executors that do not have it installed (clusters).
mkdir -p "$HERE/build"
(cd "$HERE" && "$PY" -c 'import shutil; shutil.make_archive("build/ecomine", "zip", ".", "ecomine")')

args=(
  --master "${SPARK_MASTER:-local[*]}"
  --deploy-mode "${SPARK_DEPLOY_MODE:-client}"
  --name "ecomine-$(basename "$JOB" .py)"
  --driver-memory "${DRIVER_MEMORY:-6g}"
  --packages "$DELTA_PKG"
  --conf spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension
  --conf spark.sql.catalog.spark_catalog=org.apache.spark.sql.delta.catalog.DeltaCatalog
  --conf spark.python.worker.reuse=true
  --conf spark.ui.showConsoleProgress=false
  --driver-java-options "-Dlog4j2.configurationFile=file:${ECOMINE_LOG4J:-$HERE/conf/log4j2.properties}"
  --py-files "$HERE/build/ecomine.zip"
)
if [ "${SPARK_MASTER:-local[*]}" = "local[*]" ] || [[ "${SPARK_MASTER:-local}" == local* ]]; then
  args+=(--conf spark.driver.bindAddress=127.0.0.1 --conf spark.driver.host=127.0.0.1)
fi
if [ -n "${ECOMINE_ENV_ARCHIVE:-}" ]; then
  args+=(--archives "${ECOMINE_ENV_ARCHIVE}#environment"
         --conf spark.pyspark.python=./environment/bin/python
         --conf spark.executorEnv.HF_HUB_OFFLINE=1)
fi
# shellcheck disable=SC2206
extra=(${SPARK_SUBMIT_EXTRA:-})

exec "$SUBMIT" "${args[@]}" "${extra[@]}" "$JOB" --conf-dir "${ECOMINE_CONF_DIR:-$HERE/conf}" "$@"
