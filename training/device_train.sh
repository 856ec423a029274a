#!/usr/bin/env bash
# Train a zoo model on the device machine (JAX on its GPU) and pack the run into $OUT.
#
#   here:    python -m training.device prepare training/configs/isic2017.toml --slim
#   device:  bash training/device_train.sh training/configs/isic2017.toml [--minutes 7] [--set K=V]
#            (the run tool, carry: [".data", ".whl"]; the command's limit is 10 minutes, so keep
#            --minutes about 2.5 below it for start-up, selection on the valid split and packing)
#   here:    python -m training.device check FILES_AT/<run>.tar
#
# Installs the carried wheels (.whl/, from benchmarks/fetch_wheels.sh train) into /tmp/site
# unless TILEDSEG_NO_WHEELS=1 or there are none, then runs `python -m training.device train`
# with KERAS_BACKEND=jax (unless set) and the remaining arguments. See training/device.py.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR="${OUT:-device_out}"
mkdir -p "$OUT_DIR"

if [ "${TILEDSEG_NO_WHEELS:-0}" != 1 ] && compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
export KERAS_BACKEND="${KERAS_BACKEND:-jax}"

if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
fi
python3 -m training.device train "$@" --out "$OUT_DIR" 2>&1 | tee "$OUT_DIR/train.log"
exit "${PIPESTATUS[0]}"
