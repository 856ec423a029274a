"""Model Zoo: every model's card, metrics and training curves; pull from the Hub; compare two."""

from __future__ import annotations

import streamlit as st

from app_support import (
    card_body,
    catalog,
    charts,
    image_inputs,
    load_model,
    model_details,
    overlay_colors,
    pull_model,
    refresh_zoo,
    result_store,
    selected_model,
    user_errors,
)
from app_support.runs import default_settings, metrics_row, postprocessed_mask, predict
from app_support.uploads import IMAGE_TYPES, Upload, decode_image, decode_mask
from tiledseg import viz

PAGE = "model_zoo"
PANEL_SIDE = 800

st.title("Model Zoo")
st.caption(
    "Bundled models work offline; Hub models are pinned to a commit and downloaded once into "
    "the Hugging Face cache."
)
entries = catalog()
if not entries:
    st.warning("The zoo is empty: this app's operator has not added a model yet.")
    st.stop()


def _size(entry: dict) -> str:
    size = entry["size_bytes"]
    if not size:
        return "-"
    return f"{size / 1e6:.1f} MB" if size >= 1e6 else f"{size / 1e3:.0f} kB"


st.dataframe(
    [
        {
            "model": e["id"],
            "source": e["source"],
            "offline": "yes" if e["offline"] else "no",
            "dataset": e["dataset"],
            "headline metric": e["metric"] or e["problem"],
            "size": _size(e),
            "repository": e["repo_id"] or "",
            "revision": (e["revision"] or "")[:12],
        }
        for e in entries
    ],
    hide_index=True,
)

by_id = {entry["id"]: entry for entry in entries}
# One model selector: the sidebar's. This page describes the model chosen there.
current, _ = selected_model()
chosen = current if current in by_id else next(iter(by_id))
st.subheader(f"Model: {chosen}")
st.caption(
    "Choose another model in the sidebar's **Model** list; every page then uses it."
    + ("" if current in by_id else f" ({current or 'nothing'} is not in the zoo's list.)")
)
entry = by_id[chosen]
details = model_details(chosen, entry["offline"])

if entry["source"] == "hub":
    label = "Pull again (refresh)" if entry["offline"] else "Pull from the Hub"
    if st.button(label, key=f"{PAGE}_pull"):
        with st.status(f"Downloading {chosen} ({entry['repo_id']})…", expanded=True) as status:
            with user_errors(f"Pull {chosen}") as outcome:
                st.write(f"Revision {entry['revision'] or 'main'} from {entry['repo_id']}")
                pull_model(chosen)
                st.write("Saved in the server's Hub cache")
            status.update(
                label="Download failed" if outcome.failed else f"{chosen} is ready offline",
                state="error" if outcome.failed else "complete",
            )
        if not outcome.failed:
            refresh_zoo()
            st.rerun()

if entry["source"] == "serving":
    st.info(
        f"{chosen} runs in {entry['description']}; its card and metrics come from the "
        "server's configuration."
    )
elif details.problem:
    if entry["offline"]:
        st.error(f"Cannot read {chosen}'s metadata: {details.problem}")
    else:
        st.info(
            f"{chosen} is not downloaded yet: pull it to see its card, metrics and curves "
            "(this needs access to the Hub; offline, only cached models are available)."
        )
else:
    meta = details.meta
    first, second, third, fourth = st.columns(4)
    first.metric("Source", entry["source"])
    second.metric("Size", _size(entry))
    third.metric("Parameters", f"{meta['parameter_count']:,}" if meta["parameter_count"] else "-")
    fourth.metric("Revision", (entry["revision"] or "bundled")[:12])
    for evaluation in meta["metrics"]:
        st.markdown(f"**Evaluation on {evaluation['split']}**")
        st.dataframe([{k: round(v, 4) for k, v in evaluation["values"].items()}], hide_index=True)
    history = details.history
    if history:
        left, right = st.columns(2)
        left.plotly_chart(charts.history_figure(history, ["loss", "val_loss"], "Loss"))
        right.plotly_chart(
            charts.history_figure(history, ["dice", "val_dice", "iou", "val_iou"], "Dice and IoU")
        )
    else:
        st.caption("No training history (history.csv) in this model's folder.")
    with st.expander("Model card", expanded=False):
        st.markdown(card_body(details.card) or "_This model has no card._")

st.subheader("Compare two models on one image")
ready = [e["id"] for e in entries if e["offline"] and not e["problem"]]
if len(ready) < 2:
    st.info(
        "Comparing needs two models available offline; "
        f"{len(ready)} {'is' if len(ready) == 1 else 'are'} here. Pull another from the Hub."
    )
    st.stop()
left, right = st.columns(2)
first_index = ready.index(chosen) if chosen in ready else 0
first_id = left.selectbox(
    "First model",
    ready,
    index=first_index,
    key=f"{PAGE}_first",
    help="Starts on the sidebar's model.",
)
second_id = right.selectbox(
    "Second model",
    ready,
    index=1 if first_index == 0 else 0,
    key=f"{PAGE}_second",
    help="The model to compare it with; each runs with its own recommended settings.",
)
store = result_store()
with user_errors("Models") as outcome:
    models = [load_model(first_id), load_model(second_id)]
if outcome.failed:
    st.stop()
inputs = image_inputs(f"{PAGE}_compare", models[0], multiple=False, label="Image")
mask_file = st.file_uploader(
    "Ground-truth mask (optional, same size as the image)",
    type=IMAGE_TYPES,
    key=f"{PAGE}_compare_mask",
    help="With a mask, each model's Dice is shown; a sample brings its own.",
)
if not inputs:
    st.stop()
item = inputs[0]
truth_upload = Upload.from_bytes(mask_file.name, mask_file.getvalue()) if mask_file else None
truth_upload = truth_upload or item.mask
panels, titles, results = [], [], []
with user_errors(item.image.name) as outcome:
    image = decode_image(store, item.image)
    truth = decode_mask(store, truth_upload, image.shape[:2]) if truth_upload else None
    color = outline = None
    for loaded in models:
        meta = loaded.zoo.meta
        prediction = predict(
            loaded,
            store,
            image,
            item.image.sha256,
            default_settings(meta),
            label=f"{loaded.zoo.id}",
        )
        mask = postprocessed_mask(store, prediction, meta.threshold, dict(meta.postprocess))
        dice = None
        if truth is not None:
            key = f"{prediction.key}|{meta.threshold}|{meta.postprocess}"
            dice = metrics_row(key, truth_upload.sha256, mask, truth)["dice"]
        if color is None:  # one colour for both panels, so they compare
            color, outline = overlay_colors(f"{PAGE}_compare", loaded, image, mask)
        panels.append(
            viz.overlay(image, mask, color=color, contour_color=outline, max_side=PANEL_SIDE)
        )
        titles.append(
            f"{loaded.zoo.id}: {prediction.seconds:.2f} s"
            + (f", Dice {dice:.3f}" if dice is not None else "")
        )
        results.append((loaded.zoo.id, prediction, dice))
if not outcome.failed:
    st.image(viz.side_by_side(panels, titles), width="stretch")
    for column, (model_id, prediction, dice) in zip(st.columns(2), results, strict=True):
        column.metric(
            f"{model_id} time",
            f"{prediction.seconds:.2f} s",
            f"{prediction.tiles} tile{'s' if prediction.tiles != 1 else ''}",
            delta_color="off",
            delta_arrow="off",
        )
        if dice is not None:
            column.metric(f"{model_id} Dice", f"{dice:.4f}")
    st.caption("Each model runs with its own recommended settings (scale, tile, threshold).")
