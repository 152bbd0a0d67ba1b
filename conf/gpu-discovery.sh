#!/usr/bin/env bash
# GPU discovery script for Spark's resource discovery contract.
#
# Spark (a standalone worker via spark.worker.resource.gpu.discoveryScript, or an
# executor via spark.executor.resource.gpu.discoveryScript) runs this script and
# reads ONE JSON object from its stdout:
#
#     {"name": "gpu", "addresses": ["0", "1"]}
#
# Where the addresses come from:
#   * ECOMINE_FAKE_GPUS set (e.g. "0" or "0,1"): those addresses, verbatim, and
#     nvidia-smi is not called. FOR TESTS ONLY: it lets a machine without GPUs run a
#     standalone cluster whose workers each own a distinct fake GPU, so that tests
#     can check that Spark hands every executor and task the address of its own
#     worker's GPU. Nothing is checked about the addresses; a task that then tries
#     to use CUDA on such a machine will fail, as it should.
#   * otherwise: the real GPU indices from
#     `nvidia-smi --query-gpu=index --format=csv,noheader`.
#   * no ECOMINE_FAKE_GPUS and no nvidia-smi (or it fails): an empty address list,
#     which Spark reports as too few GPUs when any were asked for.
set -euo pipefail

addresses=()
if [[ -n "${ECOMINE_FAKE_GPUS:-}" ]]; then
    IFS=',' read -r -a addresses <<<"${ECOMINE_FAKE_GPUS}"
elif command -v nvidia-smi >/dev/null 2>&1; then
    while IFS= read -r index; do
        addresses+=("${index}")
    done < <(nvidia-smi --query-gpu=index --format=csv,noheader 2>/dev/null || true)
fi

json=""
for address in "${addresses[@]+"${addresses[@]}"}"; do
    address="${address//[[:space:]]/}"
    [[ -z "${address}" ]] && continue
    json+="${json:+, }\"${address}\""
done
printf '{"name": "gpu", "addresses": [%s]}\n' "${json}"
