"""Evaluate: score the model's masks against ground truth, per image and for the set."""

from __future__ import annotations

import statistics

import streamlit as st

from app_support import (
    METRIC_LABELS,
    applied_settings,
    charts,
    current_model,
    domain_warning,
    downloads,
    error_legend,
    find_samples,
    model_dataset,
    pair_by_name,
    postprocess_controls,
    read_zip,
    result_store,
    scale_warning,
    set_applied_settings,
    settings_form,
    show_problems,
    user_errors,
)
from app_support.guard import plain_name
from app_support.runs import (
    default_settings,
    mask_key,
    metrics_row,
    postprocessed_mask,
    predict,
    threshold_curves,
)
from app_support.uploads import IMAGE_TYPES, Upload, decode_image, decode_mask, uploads_from_widget
from tiledseg import viz
from tiledseg.metrics import mean_metrics

PAGE = "evaluate"
DISPLAY_SIDE = 1200
HEADLINE = ("dice", "jaccard", "threshold_jaccard", "sensitivity", "specificity", "hd95")

st.title("Evaluate")
st.caption(
    "Upload images and their ground-truth masks (paired by name: `<stem>.png` or "
    "`<stem>_segmentation.png`), or one ZIP with `images/` and `masks/` folders. Metrics follow "
    "the ISIC challenge scorer; HD95 is in pixels of the uploaded image."
)
loaded = current_model()
if loaded is None:
    st.stop()
store = result_store()
meta = loaded.zoo.meta
defaults = default_settings(meta)
settings = applied_settings(PAGE, loaded.key, defaults)


def _names(names: list[str]) -> str:
    """File names for a message, shown as typed (never as Markdown)."""
    return ", ".join(map(plain_name, names))


def _inputs() -> tuple[list[Upload], list[Upload]]:
    trained = model_dataset(loaded)
    samples = [s for s in find_samples(dataset=trained) if s.mask is not None]
    sources = ["Images and masks", "ZIP archive"] + (["Samples"] if samples else [])
    source = st.radio(
        "Ground truth from",
        sources,
        horizontal=True,
        key=f"{PAGE}_source",
        help=(
            "Upload images and their masks, one ZIP holding both, or sample images of the "
            "model's data set with their ground truth."
        ),
    )
    if source == "Images and masks":
        left, right = st.columns(2)
        images = left.file_uploader(
            "Images", type=IMAGE_TYPES, accept_multiple_files=True, key=f"{PAGE}_images"
        )
        masks = right.file_uploader(
            "Ground-truth masks (PNG)",
            type=IMAGE_TYPES,
            accept_multiple_files=True,
            key=f"{PAGE}_masks",
        )
        return uploads_from_widget(images), uploads_from_widget(masks)
    if source == "ZIP archive":
        archive = st.file_uploader("ZIP with images/ and masks/", type=["zip"], key=f"{PAGE}_zip")
        if archive is None:
            return [], []
        with user_errors(archive.name):
            return read_zip(Upload.from_bytes(archive.name, archive.getvalue()))
        return [], []
    labels = [sample.label for sample in samples]
    chosen = st.multiselect(
        "Samples",
        labels,
        default=labels[:3],
        key=f"{PAGE}_samples",
        help=f"Sample images of the {trained or 'demo'} data set with ground-truth masks.",
    )
    picked = [samples[labels.index(label)] for label in chosen]
    for sample in picked:
        domain_warning(loaded, sample.dataset, f"**{sample.image.name}**")
    return [s.upload() for s in picked], [s.mask_upload() for s in picked]


images, masks = _inputs()
with st.expander(
    "Inference settings (tile, overlap, blend, batch, precision, scale, test-time flips)"
):
    changed = settings_form(PAGE, loaded, settings, defaults)
    if changed is not None:
        set_applied_settings(PAGE, loaded.key, changed)
        settings = changed
if not images and not masks:
    st.info("Upload images and masks (or choose a ZIP or samples) to evaluate the model.")
    st.stop()

pairing = pair_by_name(images, masks)
if (
    pairing.images_without_mask
    or pairing.masks_without_image
    or pairing.ambiguous_images
    or pairing.ambiguous_masks
):
    lines = []
    if pairing.images_without_mask:
        lines.append("Images without a mask: " + _names(pairing.images_without_mask))
    if pairing.masks_without_image:
        lines.append("Masks without an image: " + _names(pairing.masks_without_image))
    # A stem shared by two images (a.jpg, a.png) or two masks (two folders of a ZIP) cannot
    # say which mask is whose: those files are left out, never paired by chance.
    if pairing.ambiguous_images:
        lines.append(
            "Images left out, as their name matches more than one image or mask: "
            + _names(pairing.ambiguous_images)
        )
    if pairing.ambiguous_masks:
        lines.append(
            "Masks left out, as their name matches more than one mask or image: "
            + _names(pairing.ambiguous_masks)
        )
    st.warning(
        "\n\n".join(lines) + "\n\nA mask pairs with `<stem>.jpg` when it is named `<stem>.png` or "
        "`<stem>_segmentation.png`, and each stem names one image; rename the files and upload "
        "them again.",
        icon=":material/link_off:",
    )
if not pairing.pairs:
    st.stop()

controls, view = st.columns([1, 4])
with controls:
    threshold, options = postprocess_controls(PAGE, loaded)

rows, scored, problems, skipped_rows = [], [], [], []
with view:
    overall = st.progress(0.0, text="Scoring")
    for index, (image_upload, mask_upload) in enumerate(pairing.pairs):
        overall.progress(
            index / len(pairing.pairs), text=f"Image {index + 1} of {len(pairing.pairs)}"
        )
        with user_errors(
            f"{image_upload.name} + {mask_upload.name}",
            collect=problems,
            names=(image_upload.name, mask_upload.name),
        ) as outcome:
            image = decode_image(store, image_upload)
            truth = decode_mask(store, mask_upload, image.shape[:2])
            if not scored:
                scale_warning(loaded, settings["scale"], image.shape)
            prediction = predict(
                loaded,
                store,
                image,
                image_upload.sha256,
                settings,
                label=f"Segmenting {plain_name(image_upload.name)}",
            )
            mask = postprocessed_mask(store, prediction, threshold, options)
            key = mask_key(prediction, threshold, options)
            values = metrics_row(key, mask_upload.sha256, mask, truth)
            rows.append({"image": image_upload.name, "mask": mask_upload.name, **values})
            scored.append((image_upload, mask_upload, image, truth, prediction, mask))
        if outcome.failed:  # in the downloads too, so a mean never hides what it left out
            skipped_rows.append(
                {"image": image_upload.name, "mask": mask_upload.name, "skipped": outcome.message}
            )
    overall.empty()
if not rows:
    with view:
        show_problems(problems, f"None of the {len(pairing.pairs)} pairs could be scored:")
    st.stop()

means = mean_metrics(rows)
with view:
    skipped = len(pairing.pairs) - len(rows)
    st.subheader(
        f"Means over {len(rows)} image{'s' if len(rows) > 1 else ''}"
        + (f" ({skipped} of {len(pairing.pairs)} pairs skipped)" if skipped else "")
    )
    # The reasons sit right under the count they explain, not below the charts.
    show_problems(problems, f"Skipped {skipped} pair{'s' if skipped > 1 else ''}:")
    columns = [*st.columns(3), *st.columns(3)]
    for column, name in zip(columns, HEADLINE, strict=True):
        value = means.get(name, float("nan"))
        text = "n/a" if value != value else (f"{value:.1f}" if name == "hd95" else f"{value:.4f}")
        column.metric(METRIC_LABELS[name], text)
# The table has the page's full width, so every metric column (HD95 last) fits at 1400 px.
st.dataframe(
    [{"image": row["image"], **{METRIC_LABELS[k]: row[k] for k in METRIC_LABELS}} for row in rows],
    hide_index=True,
    width="stretch",
    column_config={
        "image": st.column_config.TextColumn("image", width="medium"),
        **{
            label: st.column_config.NumberColumn(
                label, format="%.1f" if key == "hd95" else "%.4f", width="small"
            )
            for key, label in METRIC_LABELS.items()
        },
    },
)
with view:
    curves = [threshold_curves(p.key, m.sha256, p.probabilities, t) for _, m, _, t, p, _ in scored]
    first, second, third = st.columns(3)
    names = [row["image"] for row in rows]
    first.plotly_chart(charts.per_image_figure(names, [row["dice"] for row in rows], "Dice"))
    thresholds = curves[0]["threshold"]

    def mean_of(key: str) -> list[float]:
        return [statistics.fmean(c[key][i] for c in curves) for i in range(len(thresholds))]

    second.plotly_chart(
        charts.curves_figure(
            thresholds,
            {"Dice": mean_of("dice")},
            title="Dice against threshold",
            x_title="threshold",
            y_title="mean Dice",
            marker_x=threshold,
        )
    )
    third.plotly_chart(
        charts.curves_figure(
            mean_of("recall"),
            {"precision": mean_of("precision")},
            title="Precision against recall",
            x_title="mean recall",
            y_title="mean precision",
        )
    )

    st.caption(
        "The curves are computed from the cached probabilities at 49 thresholds, before "
        "post-processing; the dashed line is the current threshold."
    )
    st.subheader("Errors on one image")
    shown = st.selectbox(
        "Image", names, key=f"{PAGE}_shown", help="The image whose errors are drawn below."
    )
    image_upload, _, image, truth, prediction, mask = scored[names.index(shown)]
    row = rows[names.index(shown)]
    st.image(
        viz.error_map(mask, truth, image=image, max_side=DISPLAY_SIDE),
        caption=f"{plain_name(shown)}: Dice {row['dice']:.4f}, Jaccard {row['jaccard']:.4f}",
        width="stretch",
    )
    error_legend()

    report = downloads.evaluation_report(
        {
            "model": loaded.zoo.id,
            "revision": loaded.zoo.revision,
            "settings": settings,
            "threshold": threshold,
            "postprocess": options,
        },
        means,
        rows,
        skipped_rows,
        {
            "images_without_mask": pairing.images_without_mask,
            "masks_without_image": pairing.masks_without_image,
            "ambiguous_images": pairing.ambiguous_images,
            "ambiguous_masks": pairing.ambiguous_masks,
        },
    )

    def masks_zip() -> bytes:
        files = []
        for image_upload, _, item_image, _, _, item_mask in scored:
            files.append(
                (f"masks/{image_upload.stem}.png", lambda m=item_mask: downloads.mask_png(m))
            )
            files.append(
                (
                    f"overlays/{image_upload.stem}.jpg",
                    lambda i=item_image, m=item_mask: downloads.overlay_jpeg(
                        i, m, color=viz.contrasting_color(i, m)
                    ),
                )
            )
        return downloads.zip_of(files)

    left, middle, right = st.columns(3)
    middle.download_button(
        f"Predicted masks ({len(scored)}, ZIP)",
        data=masks_zip,
        file_name="tiledseg_predicted_masks.zip",
        mime="application/zip",
        on_click="ignore",
        key=f"{PAGE}_download_masks",
        help="The masks scored above, full size (0/255 PNG), with their overlays.",
    )
    left.download_button(
        "Per-image metrics (CSV)",
        # Skipped pairs are rows too, their metrics empty and the reason last (as the CLI's).
        data=downloads.rows_csv([*rows, *skipped_rows]),
        file_name="tiledseg_evaluation.csv",
        mime="text/csv",
        on_click="ignore",
        key=f"{PAGE}_download_csv",
    )
    right.download_button(
        "Report (JSON)",
        data=downloads.rows_json(report),
        file_name="tiledseg_evaluation.json",
        mime="application/json",
        on_click="ignore",
        key=f"{PAGE}_download_json",
    )
