"""tiledseg's Streamlit app: the router and frame (``st.navigation``), the sidebar, and Home.

Run it with ``streamlit run app.py``. This file runs on every rerun of every page: it sets up
the session's keys, draws the sidebar (model picker, environment) and runs the chosen page.
The pages (``pages/``) hold UI only; the work is ``tiledseg`` and ``model_zoo``.
"""

from __future__ import annotations

import streamlit as st

from app_support import (
    CUSTOM_MODEL,
    METRIC_LABELS,
    MODEL_CHOICE,
    MODEL_REF,
    MODEL_REVISION,
    card_licence,
    catalog,
    current_model,
    default_model_id,
    environment_info,
    init_session_state,
    remember,
    saved,
)

# The URL's query parameter that holds the chosen model (the page is the URL's path).
MODEL_QUERY = "model"
PAGES = {
    "predict": ("app_pages/predict.py", "Predict", ":material/image_search:"),
    "evaluate": ("app_pages/evaluate.py", "Evaluate", ":material/fact_check:"),
    "tiling_lab": ("app_pages/tiling_lab.py", "Tiling Lab", ":material/grid_on:"),
    "model_zoo": ("app_pages/model_zoo.py", "Model Zoo", ":material/inventory_2:"),
}


def _model_label(entries: dict[str, dict]):
    def label(option: str) -> str:
        entry = entries.get(option)
        if entry is None:
            return option
        where = {"bundled": "bundled", "serving": "TF Serving"}.get(entry["source"], "Hub")
        ready = "" if entry["offline"] else ", not downloaded"
        return f"{option} ({where}{ready})"

    return label


def sidebar() -> None:
    """The model picker (the one place a model is chosen) and the environment, on every page.

    The choice is kept in the URL (``?model=ID``), so a reload or a shared link opens the same
    model on the same page; a link's model wins over the default when a session starts.
    """
    entries = {entry["id"]: entry for entry in catalog()}
    linked = (st.query_params.get(MODEL_QUERY) or "").strip()
    init_session_state(linked or default_model_id(list(entries)))
    options = [*entries, CUSTOM_MODEL]
    choice = saved(MODEL_CHOICE)
    if choice and choice not in options:  # e.g. $TILEDSEG_DEFAULT_MODEL names a Hub repository
        options.insert(0, choice)
    with st.sidebar:
        st.selectbox(
            "Model",
            options,
            index=options.index(choice) if choice in options else None,
            key=MODEL_CHOICE,
            format_func=_model_label(entries),
            on_change=remember,
            args=(MODEL_CHOICE,),
            help=(
                "The model every page uses. Bundled models work offline; Hub models are "
                "downloaded once. The choice is kept in the page's address."
            ),
        )
        if saved(MODEL_CHOICE) == CUSTOM_MODEL:
            st.text_input(
                "Hub repository",
                value=saved(MODEL_REF),
                key=MODEL_REF,
                on_change=remember,
                args=(MODEL_REF,),
                placeholder="ORG/NAME or hf://ORG/NAME",
            )
            st.text_input(
                "Revision (optional)",
                value=saved(MODEL_REVISION),
                key=MODEL_REVISION,
                on_change=remember,
                args=(MODEL_REVISION,),
                placeholder="main, a tag, a commit",
            )
        if not entries:
            st.warning("This app has no model yet: its operator has to add one to the zoo.")
        chosen = saved(MODEL_CHOICE)
        if chosen and chosen != CUSTOM_MODEL:
            st.query_params[MODEL_QUERY] = chosen
        elif MODEL_QUERY in st.query_params:
            del st.query_params[MODEL_QUERY]
        with st.expander("Environment"):
            for name, value in environment_info().items():
                st.markdown(f"**{name}**: {value}")


def home() -> None:
    """What the app does, the chosen model's summary, and the way to each page."""
    st.title("tiledseg")
    st.markdown(
        "Segment very large medical images (4K-7K dermoscopy photographs, 1600x1200 blood "
        "smears) with UNets from the tiledseg model zoo, by overlapped, blended tiles at the "
        "pixel scale each model was trained at. Upload an image to get a mask, score masks "
        "against ground truth, and see why scale-aware blended tiling beats the naive kind."
    )
    loaded = current_model()
    if loaded is not None:
        _model_summary(loaded)
    st.subheader("Pages")
    columns = st.columns(len(PAGES))
    blurbs = {
        "predict": "Upload images, get masks, overlays, probability and uncertainty maps.",
        "evaluate": "Score predictions against ground-truth masks (Dice, Jaccard, HD95).",
        "tiling_lab": "The seeds' ways (squashed, native tiles) against the engine's; seams.",
        "model_zoo": "Every model's card, metrics and training curves; compare two.",
    }
    for column, (name, (path, title, icon)) in zip(columns, PAGES.items(), strict=True):
        with column:
            st.page_link(path, label=title, icon=icon)
            st.caption(blurbs[name])


def _model_summary(loaded) -> None:
    meta, zoo = loaded.zoo.meta, loaded.zoo
    st.subheader(f"Model: {zoo.id}")
    if meta.description:
        st.markdown(meta.description)
    licence = card_licence(zoo.card)
    dataset = meta.dataset.get("name") or meta.dataset.get("id") or "not recorded"
    scale = meta.scale
    scale_text = (
        f"{scale.value:g}x" if scale.mode == "factor" else f"{scale.mode} {scale.value:g} px"
    )
    facts = {
        "Dataset": dataset,
        "Data licence": meta.dataset.get("licence", "not recorded"),
        "Weights licence": licence or "not recorded",
        "Scale": scale_text,
        "Tile": f"{meta.tile} px, overlap {meta.overlap:g}, {meta.blend}",
        "Source": zoo.source + (f" @ {zoo.revision[:12]}" if zoo.revision else ""),
    }
    st.table({"": list(facts), "value": [str(v) for v in facts.values()]})
    if meta.metrics:
        evaluation = meta.metrics[0]
        st.caption(f"Headline metrics on {evaluation['split']}")
        values = evaluation["values"]
        shown = [
            name for name in ("dice", "jaccard", "threshold_jaccard", "hd95") if name in values
        ]
        for column, name in zip(st.columns(max(1, len(shown))), shown, strict=False):
            text = f"{values[name]:.1f}" if name == "hd95" else f"{values[name]:.3f}"
            column.metric(METRIC_LABELS[name], text)
    else:
        st.info("This model has no recorded evaluation.")


st.set_page_config(page_title="tiledseg", page_icon=":material/biotech:", layout="wide")
sidebar()
navigation = st.navigation(
    [
        st.Page(home, title="Home", icon=":material/home:", default=True),
        *(st.Page(path, title=title, icon=icon) for path, title, icon in PAGES.values()),
    ]
)
navigation.run()
