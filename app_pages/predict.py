"""Predict: upload images (or pick a sample), segment them by tiles, inspect and download."""

from __future__ import annotations

import streamlit as st

from app_support import (
    applied_settings,
    charts,
    current_model,
    downloads,
    image_inputs,
    overlay_colors,
    postprocess_controls,
    result_store,
    scale_warning,
    set_applied_settings,
    settings_form,
    user_errors,
)
from app_support.guard import plain_name
from app_support.runs import default_settings, mask_key, mask_stats, postprocessed_mask, predict
from app_support.uploads import decode_image
from tiledseg import viz

PAGE = "predict"
DISPLAY_SIDE = 1200

st.title("Predict")
st.caption(
    "Upload one or many images; each is segmented by overlapped, blended tiles at the model's "
    "pixel scale. The threshold and post-processing apply instantly, without running the "
    "network again."
)
loaded = current_model()
if loaded is None:
    st.stop()
store = result_store()
meta = loaded.zoo.meta
defaults = default_settings(meta)
settings = applied_settings(PAGE, loaded.key, defaults)

inputs = image_inputs(PAGE, loaded, multiple=True)
with st.expander(
    "Inference settings (tile, overlap, blend, batch, precision, scale, test-time flips)"
):
    changed = settings_form(PAGE, loaded, settings, defaults)
    if changed is not None:
        set_applied_settings(PAGE, loaded.key, changed)
        settings = changed
scale = settings["scale"]
st.caption(
    f"Model **{loaded.zoo.id}** · tile {settings['tile']} · overlap {settings['overlap']:g} · "
    f"{settings['blend']} blend · scale {scale['mode']} {scale['value']:g}"
    + (" · test-time flips" if settings["tta"] else "")
    + (f" · {settings['precision']}" if settings.get("precision", "auto") != "auto" else "")
    + (f" · {settings['runtime']}" if settings.get("runtime", "auto") != "auto" else "")
)
if not inputs:
    st.info("Upload an image, or choose **Sample** above, to segment it.")
    st.stop()

controls, view = st.columns([1, 4])
with controls:
    threshold, options = postprocess_controls(PAGE, loaded)
    opacity = st.slider(
        "Overlay opacity",
        0.0,
        1.0,
        0.4,
        0.05,
        key=f"{PAGE}_opacity",
        help="How strongly the mask's colour covers the image (0: outline only).",
    )
    contour = st.checkbox(
        "Outline", value=True, key=f"{PAGE}_contour", help="Draw the mask's outline."
    )
    show_grid = st.toggle(
        "Show the tile grid",
        value=False,
        key=f"{PAGE}_grid",
        help="Draw the tiles the network ran on, each in its own colour and numbered.",
    )

results = []
with view:
    for item in inputs:
        name = item.image.name
        with user_errors(name):
            image = decode_image(store, item.image)
            label = f"Segmenting {plain_name(name)}"
            prediction = predict(loaded, store, image, item.image.sha256, settings, label=label)
            mask = postprocessed_mask(store, prediction, threshold, options)
            stats = mask_stats(mask_key(prediction, threshold, options), mask)
            results.append((name, image, prediction, mask, stats))
if not results:
    st.stop()

with view:
    names = [name for name, *_ in results]
    if len(results) > 1:
        st.dataframe(
            [
                {
                    "image": name,
                    "size (HxW)": f"{image.shape[0]}x{image.shape[1]}",
                    "area %": round(100 * stats["area_fraction"], 2),
                    "components": stats["n_components"],
                    "seconds": round(prediction.seconds, 2),
                    "tiles": prediction.tiles,
                }
                for name, image, prediction, _, stats in results
            ],
            hide_index=True,
        )
        # By position: two uploads may share a name (from two folders).
        shown = st.selectbox(
            "Show", range(len(names)), format_func=names.__getitem__, key=f"{PAGE}_shown"
        )
    else:
        shown = 0
    name, image, prediction, mask, stats = results[shown]
    scale_warning(loaded, scale, image.shape)
    with controls:
        color, outline = overlay_colors(PAGE, loaded, image, mask)
    picture = viz.overlay(
        image,
        mask,
        color=color,
        contour_color=outline,
        alpha=opacity,
        contour=contour,
        max_side=DISPLAY_SIDE,
    )
    if show_grid:
        grid = loaded.predictor(settings).grid(image.shape)
        picture = viz.draw_tiles(
            picture, grid.rectangles(), reference_shape=(grid.rows.length, grid.cols.length)
        )
    overlay_tab, mask_tab = st.tabs(["Overlay", "Mask"])
    overlay_tab.image(picture, caption=f"Overlay · {plain_name(name)}", width="stretch")
    mask_tab.image(
        viz.preview(mask, DISPLAY_SIDE).astype("uint8") * 255,
        caption=f"Mask · {plain_name(name)}",
        width="stretch",
    )
    if max(image.shape[:2]) > DISPLAY_SIDE:
        st.caption(
            f"Shown at most {DISPLAY_SIDE} px wide; downloads are full size "
            f"({image.shape[0]}x{image.shape[1]})."
        )

    area, components, timing = st.columns(3)
    area.metric(
        "Area",
        f"{100 * stats['area_fraction']:.2f} %",
        f"{stats['area_px']:,} px",
        delta_color="off",
        delta_arrow="off",
    )
    components.metric("Components", stats["n_components"])
    timing.metric(
        "Inference",
        f"{prediction.seconds:.2f} s",
        "cached" if prediction.cached else f"{prediction.megapixels_per_second:.2f} MP/s",
        delta_color="off",
        delta_arrow="off",
    )
    st.caption(
        f"{prediction.tiles} tile{'s' if prediction.tiles != 1 else ''} · "
        f"{image.shape[0] * image.shape[1] / 1e6:.2f} megapixels · "
        f"largest component {stats['largest_component_px']:,} px"
    )
    left, right = st.columns(2)
    # theme=None: plotly's own rendering, so the heatmaps keep their colour scales exactly.
    left.plotly_chart(
        charts.probability_figure(prediction.probabilities, "Probability map"), theme=None
    )
    right.plotly_chart(charts.uncertainty_figure(prediction.probabilities), theme=None)
    right.caption(
        "Uncertainty is the binary entropy of the probability, in bits: 0 where the model is "
        "sure (p near 0 or 1), 1 where p = 0.5. It comes from the same map, without running "
        "the network again (flip-TTA variance would take four runs)."
    )

    stem = name.rsplit(".", 1)[0]
    first, second, third, fourth = st.columns(4)
    first.download_button(
        "Mask PNG",
        data=lambda: downloads.mask_png(mask),
        file_name=f"{stem}_mask.png",
        mime="image/png",
        on_click="ignore",
        key=f"{PAGE}_download_mask",
    )
    thickness = max(2, max(image.shape[:2]) // 800)
    second.download_button(
        "Overlay PNG",
        data=lambda: downloads.image_png(
            viz.overlay(
                image,
                mask,
                color=color,
                contour_color=outline,
                alpha=opacity,
                contour_thickness=thickness,
            )
        ),
        file_name=f"{stem}_overlay.png",
        mime="image/png",
        on_click="ignore",
        key=f"{PAGE}_download_overlay",
    )
    third.download_button(
        "Probability PNG",
        data=lambda: downloads.probabilities_png(prediction.probabilities),
        file_name=f"{stem}_probabilities.png",
        mime="image/png",
        on_click="ignore",
        key=f"{PAGE}_download_probabilities",
    )
    if len(results) > 1:

        def batch_zip() -> bytes:
            files = []
            for item_name, item_image, item_prediction, item_mask, _ in results:
                item_stem = item_name.rsplit(".", 1)[0]
                files.append((f"masks/{item_stem}.png", lambda m=item_mask: downloads.mask_png(m)))
                files.append(
                    (
                        f"overlays/{item_stem}.jpg",
                        lambda i=item_image, m=item_mask: downloads.overlay_jpeg(
                            i, m, color=color, contour_color=outline, alpha=opacity
                        ),
                    )
                )
                files.append(
                    (
                        f"probabilities/{item_stem}.png",
                        lambda p=item_prediction: downloads.probabilities_png(p.probabilities),
                    )
                )
            rows = [
                {"image": n, **s, "seconds": p.seconds, "tiles": p.tiles}
                for n, _, p, _, s in results
            ]
            files.append(("summary.csv", lambda: downloads.rows_csv(rows)))
            return downloads.zip_of(files)

        fourth.download_button(
            f"All {len(results)} (ZIP)",
            data=batch_zip,
            file_name="tiledseg_masks.zip",
            mime="application/zip",
            on_click="ignore",
            key=f"{PAGE}_download_zip",
        )
