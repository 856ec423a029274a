#!/usr/bin/env bash
# Download into .whl/ the wheels the GPU machine lacks, for one kind of device call:
#
#   bash benchmarks/fetch_wheels.sh [bench]   # benchmarks/device_run.sh: keras, namex, optree, monai
#   bash benchmarks/fetch_wheels.sh train     # training/device_train.sh: keras, namex, optree and
#                                             # albumentations with what it pulls in
#
# Run here (with PyPI reachable), from anywhere; the GPU machine has no network. It has Python
# 3.12 with JAX (CUDA), PyTorch (CUDA), numpy, OpenCV, Pillow, h5py, ml-dtypes, absl-py, rich,
# packaging, psutil, scipy, PyYAML, typing-extensions and huggingface_hub, but not Keras and what
# Keras, the MONAI peer and training's augmentation need beyond those. Nothing else that
# `import tiledseg`, `tiledseg.loading`, `model_zoo` (loading a bundled model) or `training`
# imports is missing there. .whl/ is git-ignored; the `run` call carries it (carry: [".whl"]).
# Only the chosen set is kept: every byte counts against the 64 MiB that travels.
set -euo pipefail
cd "$(dirname "$0")/.."

KERAS=(keras==3.15.1 namex==0.1.0 optree==0.20.0)
case "${1:-bench}" in
  bench) WHEELS=("${KERAS[@]}" monai==1.6.1) ;;
  # The versions requirements.txt pins, with pydantic's own dependencies.
  train) WHEELS=("${KERAS[@]}" albumentations==2.0.8 albucore==0.0.24 simsimd==6.5.16
           stringzilla==5.3.2 pydantic==2.13.4 pydantic-core==2.46.4 annotated-types==0.7.0
           typing-inspection==0.4.2) ;;
  *) echo "usage: $0 [bench|train]" >&2; exit 2 ;;
esac

# Only this set, one version of each package: two would stop the install on the device.
rm -rf .whl
mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform manylinux1_x86_64 -d .whl "${WHEELS[@]}"

ls -l .whl/*.whl
total=$(du -cb .whl/*.whl | tail -1 | cut -f1)
echo "total: $((total / 1024)) KiB in $(ls .whl/*.whl | wc -l) wheels"
if [ "$total" -gt $((40 * 1024 * 1024)) ]; then
  echo "error: .whl/ holds more than 40 MiB; the working tree that travels is limited to 64 MiB" >&2
  exit 1
fi
