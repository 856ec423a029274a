"""Tiling Lab: the seeds' way of segmenting a large image against this engine's, and the seams."""

from __future__ import annotations

import numpy as np
import streamlit as st

from app_support import (
    applied_settings,
    charts,
    current_model,
    image_inputs,
    overlay_colors,
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
from tiledseg.postprocess import POSTPROCESS_DEFAULTS
from tiledseg.scale import scaled_shape
from tiledseg.tile_backend import is_tile_backend
from tiledseg.tiling import make_grid

PAGE = "tiling_lab"
PANEL_SIDE = 800
TILES = [64, 96, 128, 192, 256, 320, 384, 512, 768, 1024]
BLENDS = ("gaussian", "hann", "constant", "center")
# The seeds' native-resolution tiling runs one model.predict per tile: bound the work.
MAX_NATIVE_TILES = 256
NO_POSTPROCESS = dict(POSTPROCESS_DEFAULTS)

st.title("Tiling Lab")
st.caption(
    "The seed projects fed a large image to the network as it was: either squashed whole to "
    "the network's input size, or cut into tiles at the photo's own resolution, each run "
    "alone and pasted side by side. This engine first brings the image to the pixel scale the "
    "model was trained at, then runs overlapped tiles and blends them. Both are shown here on "
    "one image, with the model's raw probabilities (threshold only, no post-processing)."
)
loaded = current_model()
if loaded is None:
    st.stop()
store = result_store()
meta = loaded.zoo.meta
defaults = {"tile": int(meta.tile), "overlap": float(meta.overlap), "blend": meta.blend}
lab = applied_settings(PAGE, loaded.key, defaults)

inputs = image_inputs(PAGE, loaded, multiple=False, label="Image")
mask_file = st.file_uploader(
    "Ground-truth mask (optional, same size as the image)",
    type=IMAGE_TYPES,
    key=f"{PAGE}_mask",
    help="With a mask, each method's Dice is shown.",
)
key = f"{PAGE}_{loaded.zoo.id}"
with st.form(f"{key}_form"):
    first, second, third = st.columns(3)
    tiles = sorted({*TILES, lab["tile"]})
    tile = first.select_slider(
        "Tile (px)",
        tiles,
        lab["tile"],
        key=f"{key}_tile",
        help=(
            "The network's input: the seeds' tile (and the size they squashed whole images "
            "to), and the engine's tile at the model's scale."
        ),
    )
    overlap = second.slider(
        "Overlap",
        0.0,
        0.75,
        lab["overlap"],
        0.05,
        key=f"{key}_overlap",
        help="Share of a tile shared with its neighbour (the seeds' margin, the engine's blend).",
    )
    blend = third.selectbox(
        "Blend",
        BLENDS,
        BLENDS.index(lab["blend"]),
        key=f"{key}_blend",
        help="How the engine combines overlapping tiles (see Predict's settings).",
    )
    if st.form_submit_button("Compare", type="primary", help="Run the comparison again."):
        lab = {"tile": int(tile), "overlap": float(overlap), "blend": blend}
        set_applied_settings(PAGE, loaded.key, lab)
if not inputs:
    st.info("Upload an image, or choose **Sample** above, to compare the methods.")
    st.stop()

threshold = st.slider(
    "Threshold",
    0.0,
    1.0,
    float(meta.threshold),
    0.01,
    key=f"{key}_threshold",
    help="Foreground is probability above this, for every method alike.",
)
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

height, width = image.shape[:2]
factor = meta.scale.factor_for(height, width)
model_shape = scaled_shape(height, width, factor)
settings = {
    "tile": lab["tile"],
    "overlap": lab["overlap"],
    "blend": lab["blend"],
    "batch_size": None,
    "scale": meta.scale.to_dict(),
    "tta": None,
}
seeds_allowed = not is_tile_backend(loaded.zoo)  # the seeds' algorithm calls model.predict
native_tiles = make_grid(height, width, lab["tile"], lab["overlap"], int(meta.downsampling)).count
# Short names (panel titles, metric labels) and what each method does.
squashed, native, engine = "Seeds, squashed", "Seeds, native tiles", "tiledseg"
DESCRIPTIONS = {
    squashed: f"the whole image squashed to {lab['tile']}x{lab['tile']}, one pass",
    native: f"{lab['tile']} px tiles at the image's own resolution, pasted",
    engine: f"at the model's scale, {lab['tile']} px tiles overlapped and {lab['blend']}-blended",
}
methods = {}
with user_errors("Comparison") as outcome:
    methods[squashed] = predict_whole(
        loaded, store, image, item.image.sha256, input_size=lab["tile"], label="Squashed"
    )
    if seeds_allowed and native_tiles <= MAX_NATIVE_TILES:
        methods[native] = predict_seed_tiles(
            loaded,
            store,
            image,
            item.image.sha256,
            tile=lab["tile"],
            overlap=lab["overlap"],
            native=True,
            label="Native tiles",
        )
    methods[engine] = predict(loaded, store, image, item.image.sha256, settings, label="Engine")
if outcome.failed:
    st.stop()

masks = {
    name: postprocessed_mask(store, p, threshold, NO_POSTPROCESS) for name, p in methods.items()
}


def _dice(name: str, prediction, mask) -> float | None:
    if truth is None:
        return None
    key = f"{prediction.key}|{threshold}"
    return metrics_row(key, truth_upload.sha256, mask, truth)["dice"]


st.subheader("The seeds' way against this engine's")
scale_text = f"{meta.scale.value:g}x" if meta.scale.mode == "factor" else f"{meta.scale.value:g} px"
st.markdown(
    f"{loaded.zoo.id} was trained at {meta.scale.mode.replace('_', ' ')} {scale_text}: this "
    f"{width}x{height} image is {model_shape[1]}x{model_shape[0]} px at that scale, so at its "
    f"native resolution every structure is **{1 / factor:.2g}x** the size the model knows. "
    f"Squashing it to {lab['tile']}x{lab['tile']} changes the scale "
    f"({lab['tile'] / height:.2g}x vertically, {lab['tile'] / width:.2g}x horizontally) and "
    f"the aspect ratio ({width / height:.2f} to 1)."
)
if not seeds_allowed:
    st.info(
        "The seeds' tiling runs Keras' `model.predict` tile by tile, so it is shown for zoo "
        "models only, not for a model served by TensorFlow Serving."
    )
elif native not in methods:
    st.info(
        f"The seeds' native-resolution tiling would run {native_tiles} tiles of "
        f"{lab['tile']} px one by one here; it is skipped above {MAX_NATIVE_TILES}. Choose a "
        "larger tile to include it."
    )
color, outline = overlay_colors(PAGE, loaded, image, masks[engine])
panels, titles = [], []
for name, prediction in methods.items():
    panels.append(
        viz.overlay(image, masks[name], color=color, contour_color=outline, max_side=PANEL_SIDE)
    )
    dice = _dice(name, prediction, masks[name])
    titles.append(name + (f": Dice {dice:.3f}" if dice is not None else ""))
st.image(viz.side_by_side(panels, titles), width="stretch")
columns = st.columns(len(methods))
for column, (name, prediction) in zip(columns, methods.items(), strict=True):
    column.markdown(f"**{name}**: {DESCRIPTIONS[name]}")
    column.metric(
        f"{name} time",
        f"{prediction.seconds:.2f} s",
        f"{prediction.tiles} tile{'s' if prediction.tiles != 1 else ''}",
        delta_color="off",
        delta_arrow="off",
    )
    dice = _dice(name, prediction, masks[name])
    if dice is not None:
        column.metric(f"{name} Dice", f"{dice:.4f}")

st.subheader("Seams: pasted tiles against blended tiles, both at the model's scale")
grid = loaded.predictor(settings).grid(image.shape)
if grid.count == 1:
    st.info(
        f"At the model's scale this image is {model_shape[1]}x{model_shape[0]} px, which fits "
        f"in one {lab['tile']} px tile: the engine runs it whole, so there is nothing to "
        "blend and no seam. Choose a tile smaller than "
        f"{max(model_shape)} px above to see how tiles are joined."
    )
elif seeds_allowed:
    with user_errors("Seams") as outcome:
        whole = predict_whole(loaded, store, image, item.image.sha256, label="Whole image")
        pasted = predict_seed_tiles(
            loaded,
            store,
            image,
            item.image.sha256,
            tile=lab["tile"],
            overlap=lab["overlap"],
            label="Pasted tiles",
        )
    if not outcome.failed:
        seams = {
            "Pasted (the seeds' way)": np.abs(pasted.probabilities - whole.probabilities),
            f"Blended ({lab['blend']})": np.abs(
                methods[engine].probabilities - whole.probabilities
            ),
        }
        # One colour scale for both maps, up to the larger maximum: a 0.08 difference is
        # bright, not black, and the two maps' colours mean the same.
        top = max(0.01, *(float(diff.max()) for diff in seams.values()))
        left, right = st.columns(2)
        for column, (name, diff) in zip((left, right), seams.items(), strict=True):
            column.plotly_chart(
                charts.difference_figure(
                    diff, f"{name}: mean {diff.mean():.4f}, max {diff.max():.3f}", top
                ),
                theme=None,  # plotly's own rendering keeps the colour scale exact
            )
        scores = {}
        if truth is not None:
            for name, prediction in (("pasted", pasted), ("blended", methods[engine])):
                mask = postprocessed_mask(store, prediction, threshold, NO_POSTPROCESS)
                scores[name] = _dice(name, prediction, mask)
        score_text = (
            f" Here pasting scores Dice {scores['pasted']:.3f} and blending "
            f"{scores['blended']:.3f}."
            if scores
            else ""
        )
        st.caption(
            "Each map is |tiled probabilities - one whole-image pass|, at the model's scale. "
            "Pasting keeps only each tile's centre, so it jumps at every cell border; "
            "blending weighs tiles smoothly, so borders fade. Neither can see beyond its "
            "tile: with small tiles both lose context, and because blending also averages in "
            "the tiles' weaker borders it can score a little lower than pasting while "
            "leaving no seams. Larger tiles (the model's default) remove most of both "
            "effects." + score_text
        )

st.subheader("The grid")
rows, cols = len(grid.rows.starts), len(grid.cols.starts)
st.image(
    viz.draw_tiles(
        image,
        grid.rectangles(),
        reference_shape=(grid.rows.length, grid.cols.length),
        max_side=PANEL_SIDE,
    ),
    caption=(
        f"{grid.count} tile{'s' if grid.count != 1 else ''} ({rows} row"
        f"{'s' if rows != 1 else ''} x {cols} column{'s' if cols != 1 else ''}) of "
        f"{grid.tile_shape[1]}x{grid.tile_shape[0]} px at the model's scale, where the image "
        f"is {grid.cols.length}x{grid.rows.length} px; neighbours overlap by "
        f"{lab['overlap']:.0%}. Each tile has its own colour and number."
    ),
    width="stretch",
)
