#!/usr/bin/env bash
# Issue 7's GPU benchmark in one command: JAX rows, then PyTorch rows (with MONAI), then one table.
#
#   bash benchmarks/fetch_wheels.sh                    # once, where PyPI is reachable
#   bash benchmarks/device_run.sh [bench_gpu.py arguments, e.g. --levels 8]
#
# Installs the carried wheels (.whl/, see fetch_wheels.sh) into /tmp/site unless
# TILEDSEG_NO_WHEELS=1 or there are none, runs `python -m benchmarks.bench_gpu` with
# KERAS_BACKEND=jax and again with KERAS_BACKEND=torch, and prints the merged table and the
# target ratios (benchmarks/report.py). Writes into "${OUT:-benchmarks/out}": bench_jax.json,
# bench_torch.json, bench_gpu.json (merged), their logs and report.txt.
#
# Time: the device allows 10 minutes a command. TILEDSEG_BENCH_BUDGET_S (default 560, counted
# from this script's start) is shared: JAX may start new rows for 55 % of it and is stopped 90 s
# later; PyTorch may start rows until 85 s before the end and is stopped 25 s before it, which
# leaves time for the report. Rows not started are listed as skipped; each JSON is rewritten
# after every row, so a stopped run keeps what it measured.
# TILEDSEG_BENCH_QUICK=1 runs bench_gpu.py --quick instead (a tiny CPU smoke run, no budget).
set -uo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS
OUT_DIR="${OUT:-benchmarks/out}"
mkdir -p "$OUT_DIR"
rm -f "$OUT_DIR"/bench_jax.json "$OUT_DIR"/bench_torch.json "$OUT_DIR"/bench_gpu.json

if [ "${TILEDSEG_NO_WHEELS:-0}" != 1 ] && compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2

if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader |
    tee "$OUT_DIR/nvidia-smi.txt"
fi
KERAS_BACKEND=jax python3 -c 'import sys, keras, numpy; print("python", sys.version.split()[0], "keras", keras.__version__, "numpy", numpy.__version__)'

args=("$@")
budget=${TILEDSEG_BENCH_BUDGET_S:-560}
quick=${TILEDSEG_BENCH_QUICK:-0}
[ "$quick" = 1 ] && args=(--quick "${args[@]}")

run_backend() {  # backend, seconds to start new rows, seconds before it is stopped, methods...
  local backend=$1 soft=$2 hard=$3
  shift 3
  local limit=() stop=()
  if [ "$quick" != 1 ]; then
    soft=$((soft > 10 ? soft : 10)) hard=$((hard > 30 ? hard : 30))
    limit=(--budget-s "$soft")
    stop=(timeout -k 10 "$hard")
    echo "== $backend: new rows for ${soft} s, stopped after ${hard} s"
  fi
  KERAS_BACKEND=$backend "${stop[@]}" python3 -m benchmarks.bench_gpu "${limit[@]}" \
    --methods "$@" --no-table --json "$OUT_DIR/bench_$backend.json" "${args[@]}" 2>&1 |
    grep -v -e '^I0000' -e '^WARNING: All log messages' | tee "$OUT_DIR/bench_$backend.log"
  local status=${PIPESTATUS[0]}
  [ "$status" = 0 ] || echo "== $backend run ended with status $status (124: stopped at its limit)"
}

left() { echo $((budget - (SECONDS - started))); }
share=$(($(left) * 55 / 100))
run_backend jax "$share" $((share + 90)) tiledseg model-only whole-image tiledseg-auto seeds
run_backend torch $(($(left) - 85)) $(($(left) - 25)) \
  tiledseg model-only monai tiledseg-auto whole-image

python3 -m benchmarks.report "$OUT_DIR/bench_jax.json" "$OUT_DIR/bench_torch.json" \
  --json "$OUT_DIR/bench_gpu.json" | tee "$OUT_DIR/report.txt"
echo "total $((SECONDS - started)) s; results in $OUT_DIR"
