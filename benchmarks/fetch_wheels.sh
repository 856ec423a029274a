#!/usr/bin/env bash
# Download into .whl/ the wheels the GPU machine lacks for benchmarks/device_run.sh.
#
# Run here (with PyPI reachable), from anywhere; the GPU machine has no network. It has Python
# 3.12 with JAX (CUDA), PyTorch (CUDA), numpy, OpenCV, Pillow, h5py, ml-dtypes, absl-py, rich,
# packaging, psutil, scipy and huggingface_hub, but not Keras and what Keras and the MONAI peer
# need beyond those: keras, namex, optree and monai. Nothing else that `import tiledseg`,
# `tiledseg.loading`, `model_zoo` (loading a bundled model) or `training.models` imports at module
# level is missing there (albumentations is imported only when training augments).
# .whl/ is git-ignored; the `run` call carries it (carry: [".whl"]).
set -euo pipefail
cd "$(dirname "$0")/.."

WHEELS=(keras==3.15.1 namex==0.1.0 optree==0.20.0 monai==1.6.1)

mkdir -p .whl
# One version of each package: two would stop the install on the device.
for spec in "${WHEELS[@]}"; do
  name=${spec%%==*}
  find .whl -maxdepth 1 -name "${name}-*.whl" ! -name "${name}-${spec##*==}-*" -delete
done
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
