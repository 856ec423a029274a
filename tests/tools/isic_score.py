"""Score a folder of predicted masks with the official ISIC challenge scorer; print JSON.

Runs inside the scorer's own virtual environment (``isic-challenge-scoring`` pins its own pandas
and scikit-learn), so it imports nothing from tiledseg. Per-image values are computed exactly as
``isic_challenge_scoring.segmentation.SegmentationScore.__init__`` computes them (it keeps them in
a local DataFrame and exposes only the macro average), using the scorer's own image loader,
confusion matrix and ``metrics.binary_*`` functions; the macro average comes from
``SegmentationScore.from_dir`` itself.

Usage:
    .venv-isic/bin/python tests/tools/isic_score.py TRUTH_DIR PREDICTION_DIR

Output (stdout): {"version": ..., "per_image": {id: {metric: value}}, "macro_average": {...}}
Truth files are named ``ISIC_<7 digits>_segmentation.png`` and predictions ``ISIC_<7 digits>.png``.
"""

import json
import pathlib
import sys
from importlib.metadata import version

from isic_challenge_scoring import metrics
from isic_challenge_scoring.confusion import create_binary_confusion_matrix
from isic_challenge_scoring.load_image import iter_image_pairs
from isic_challenge_scoring.segmentation import SegmentationScore


def main(truth_dir: str, prediction_dir: str) -> None:
    truth_path, prediction_path = pathlib.Path(truth_dir), pathlib.Path(prediction_dir)
    per_image = {}
    for pair in iter_image_pairs(truth_path, prediction_path):
        # Same binarisation and metric calls as SegmentationScore.__init__ (version 5.6.0).
        cm = create_binary_confusion_matrix(
            truth_binary_values=pair.truth_image > 128,
            prediction_binary_values=pair.prediction_image > 128,
            name=pair.image_id,
        )
        per_image[pair.image_id] = {
            "accuracy": float(metrics.binary_accuracy(cm)),
            "sensitivity": float(metrics.binary_sensitivity(cm)),
            "specificity": float(metrics.binary_specificity(cm)),
            "jaccard": float(metrics.binary_jaccard(cm)),
            "threshold_jaccard": float(metrics.binary_threshold_jaccard(cm, threshold=0.65)),
            "dice": float(metrics.binary_dice(cm)),
            "precision": float(metrics.binary_ppv(cm)),
        }
    score = SegmentationScore.from_dir(truth_path, prediction_path)
    macro = {name: float(value) for name, value in score.macro_average.items()}
    result = {
        "version": version("isic-challenge-scoring"),
        "per_image": per_image,
        "macro_average": macro,
    }
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(f"usage: {sys.argv[0]} TRUTH_DIR PREDICTION_DIR")
    main(sys.argv[1], sys.argv[2])
