#!/usr/bin/env bash
# The prepared GPU run of issue #18 (see scripts/gpu_run.py and benchmarks/README.md, "The prepared GPU run").
#
# On the device machine (one device call, <= 9 minutes; the Omniglot zips travel in .gpu_data/):
#     bash scripts/gpu_run.sh            # writes $OUT/results.json, $OUT/log.txt, $OUT/weights/*
# Here, on the CPU, the same steps with tiny settings (< 2 minutes; tests/test_gpu_run.py):
#     bash scripts/gpu_run.sh --smoke
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT="${OUT:-$ROOT/gpu-run-out}"
mkdir -p "$OUT" 2>/dev/null || { echo "error: OUT=$OUT cannot be created" >&2; exit 2; }
# The data: the carried folder if there is one, else METALIB_DATA as set; a cache outside the tree.
if [ -d "$ROOT/.gpu_data/omniglot" ]; then export METALIB_DATA="$ROOT/.gpu_data"; fi
export METALIB_CACHE="${METALIB_CACHE:-/tmp/metalib-cache}"
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
PY="$(command -v python3 || command -v python)"
[ -x "$ROOT/.venv/bin/python" ] && [ "${1:-}" = "--smoke" ] && PY="$ROOT/.venv/bin/python"
"$PY" "$ROOT/scripts/gpu_run.py" --out "$OUT" "$@" 2>&1 | tee "$OUT/log.txt"
exit "${PIPESTATUS[0]}"
