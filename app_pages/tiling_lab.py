"""Tiling Lab: whole-image inference, the seeds' tiling and blended tiling, side by side."""

from __future__ import annotations

import numpy as np
import streamlit as st

from app_support import (
    applied_settings,
    current_model,
    image_inputs,
    result_store,
    set_applied_settings,
    user_errors,
)
from app_support.runs import (
    metrics_row,
    postprocessed_mask,
    predict,
    predict_seed_tiles,
    predict_whole,
)
from app_support.uploads import IMAGE_TYPES, Upload, decode_image, decode_mask
from tiledseg import viz
from tiledseg.tile_backend import is_tile_backend

PAGE = "tiling_lab"
PANEL_SIDE = 800
TILES = [64, 96, 128, 192, 256, 320, 384, 512, 768, 1024]
BLENDS = ("gaussian", "hann", "constant", "center")
WHOLE_MODES = {
    "scale": "at the model's pixel scale (one pass, no tiles)",
    "squash": "squashed to tile x tile, as the seed projects did",
}
NO_POSTPROCESS = {
    "opening": 0,
    "closing": 0,
    "fill_holes": False,
    "min_size": 0,
    "keep_largest": False,
}

st.title("Tiling Lab")
st.caption(
    "The seed projects cut large images into tiles, ran each alone and pasted the results "
    "side by side, which leaves seams where a lesion crosses a tile border. Compare that with "
    "one whole-image pass and with overlapped tiles blended by a smooth window."
)
loaded = current_model()
if loaded is None:
    st.stop()
store = result_store()
meta = loaded.zoo.meta
defaults = {"tile": int(meta.tile), "overlap": float(meta.overlap), "blend": meta.blend}
defaults["whole"] = "scale"
lab = applied_settings(PAGE, loaded.key, defaults)

inputs = image_inputs(PAGE, loaded, multiple=False, label="Image")
mask_file = st.file_uploader(
    "Ground-truth mask (optional, same size as the image)", type=IMAGE_TYPES, key=f"{PAGE}_mask"
)
key = f"{PAGE}_{loaded.zoo.id}"
with st.form(f"{key}_form"):
    first, second, third = st.columns(3)
    tiles = sorted({*TILES, lab["tile"]})
    tile = first.select_slider("Tile (px at model scale)", tiles, lab["tile"], key=f"{key}_tile")
    overlap = second.slider("Overlap", 0.0, 0.75, lab["overlap"], 0.05, key=f"{key}_overlap")
    blend = third.selectbox("Blend", BLENDS, BLENDS.index(lab["blend"]), key=f"{key}_blend")
    whole_mode = st.radio(
        "Whole image",
        list(WHOLE_MODES),
        index=list(WHOLE_MODES).index(lab["whole"]),
        format_func=WHOLE_MODES.get,
        horizontal=True,
        key=f"{key}_whole",
    )
    if st.form_submit_button("Compare", type="primary"):
        lab = {"tile": int(tile), "overlap": float(overlap), "blend": blend, "whole": whole_mode}
        set_applied_settings(PAGE, loaded.key, lab)
if not inputs:
    st.info("Upload an image, or choose **Sample** above, to compare the three methods.")
    st.stop()

threshold = st.slider("Threshold", 0.0, 1.0, float(meta.threshold), 0.01, key=f"{key}_threshold")
item = inputs[0]
with user_errors(item.image.name) as outcome:
    image = decode_image(store, item.image)
    truth = None
    truth_upload = Upload.from_bytes(mask_file.name, mask_file.getvalue()) if mask_file else None
    truth_upload = truth_upload or item.mask
    if truth_upload is not None:
        truth = decode_mask(store, truth_upload, image.shape[:2])
if outcome.failed:
    st.stop()

settings = {
    "tile": lab["tile"],
    "overlap": lab["overlap"],
    "blend": lab["blend"],
    "batch_size": None,
    "scale": meta.scale.to_dict(),
    "tta": None,
}
methods = {}
with user_errors("Comparison") as outcome:
    methods["Whole image"] = predict_whole(
        loaded,
        store,
        image,
        item.image.sha256,
        input_size=lab["tile"] if lab["whole"] == "squash" else None,
    )
    if not is_tile_backend(loaded.zoo):  # the seeds' algorithm calls Keras' model.predict
        methods["Seeds' tiling"] = predict_seed_tiles(
            loaded, store, image, item.image.sha256, tile=lab["tile"], overlap=lab["overlap"]
        )
    methods["Blended tiling"] = predict(
        loaded, store, image, item.image.sha256, settings, label="Blended tiling"
    )
if outcome.failed:
    st.stop()
if "Seeds' tiling" not in methods:
    st.info(
        "The seeds' tiling runs Keras' `model.predict` tile by tile, so it is shown for zoo "
        "models only, not for a model served by TensorFlow Serving."
    )

masks = {
    name: postprocessed_mask(store, p, threshold, NO_POSTPROCESS) for name, p in methods.items()
}
scores = {}
if truth is not None:
    for name, prediction in methods.items():
        scores[name] = metrics_row(
            f"{prediction.key}|{threshold}", truth_upload.sha256, masks[name], truth
        )["dice"]

color = tuple(meta.classes[-1]["color"])
panels, titles = [], []
for name, prediction in methods.items():
    panels.append(viz.overlay(image, masks[name], color=color, max_side=PANEL_SIDE))
    dice = f", Dice {scores[name]:.3f}" if name in scores else ""
    titles.append(f"{name}: {prediction.seconds:.2f} s{dice}")
st.image(viz.side_by_side(panels, titles), width="stretch")

columns = st.columns(len(methods))
for column, (name, prediction) in zip(columns, methods.items(), strict=True):
    column.metric(
        f"{name} time",
        f"{prediction.seconds:.2f} s",
        f"{prediction.tiles} tile{'s' if prediction.tiles != 1 else ''}",
        delta_color="off",
        delta_arrow="off",
    )
    if name in scores:
        column.metric(f"{name} Dice", f"{scores[name]:.4f}")

st.subheader("Seam maps")
st.caption(
    "Absolute difference between each tiled result and the whole-image probabilities. With "
    "the whole image at the model's scale, what remains are the tiles' border effects."
)
whole = methods["Whole image"].probabilities
seams = {
    name: np.abs(methods[name].probabilities - whole)
    for name in ("Seeds' tiling", "Blended tiling")
    if name in methods
}
st.image(
    viz.side_by_side(
        [
            viz.heatmap(np.clip(diff, 0, 1), colormap="magma", max_side=PANEL_SIDE)
            for diff in seams.values()
        ],
        [
            f"|{name} - whole|: mean {diff.mean():.4f}, max {diff.max():.3f}"
            for name, diff in seams.items()
        ],
    ),
    width="stretch",
)

st.subheader("The grid")
grid = loaded.predictor(settings).grid(image.shape)
st.image(
    viz.draw_tile_grid(
        image,
        grid.rectangles(),
        reference_shape=(grid.rows.length, grid.cols.length),
        max_side=PANEL_SIDE,
        thickness=2,
    ),
    caption=(
        f"{grid.count} tiles of {grid.tile_shape[0]}x{grid.tile_shape[1]} px at the model's "
        f"scale ({grid.rows.length}x{grid.cols.length}), overlap {lab['overlap']:g}"
    ),
    width="stretch",
)
