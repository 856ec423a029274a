"""Session-state keys shared across pages, and their initialisation.

``app.py`` calls :func:`init_session_state` on every rerun (it is the ``st.navigation`` frame),
so every page can rely on these keys. Each browser tab has its own session state; nothing in
it is shared with other sessions.

The model picker's widgets are not the record of the choice: Streamlit drops a widget's state
when a run ends without drawing it (a page switch that interrupts a run can do that), and a
selectbox then falls back to its first option. Each picker widget copies its value into a plain
session key on change (:func:`remember`), and is drawn from that key (:func:`saved`).
"""

from __future__ import annotations

from typing import Any

import streamlit as st

__all__ = [
    "CUSTOM_MODEL",
    "MODEL_CHOICE",
    "MODEL_REF",
    "MODEL_REVISION",
    "applied_settings",
    "init_session_state",
    "remember",
    "saved",
    "selected_model",
    "set_applied_settings",
]

# Widget keys of the sidebar's model picker (rendered on every page, so they persist).
MODEL_CHOICE = "model_choice"
MODEL_REF = "model_custom_ref"
MODEL_REVISION = "model_custom_revision"
# The picker's entry that reveals the free-text Hub reference inputs.
CUSTOM_MODEL = "Another Hub model…"
_APPLIED = "applied_settings"
_SAVED = "saved_"


def init_session_state(default_model: str | None) -> None:
    """Set this session's keys that are not set yet (the default model, no settings)."""
    st.session_state.setdefault(_SAVED + MODEL_CHOICE, default_model)
    st.session_state.setdefault(_SAVED + MODEL_REF, "")
    st.session_state.setdefault(_SAVED + MODEL_REVISION, "")
    st.session_state.setdefault(_APPLIED, {})


def saved(widget_key: str) -> Any:
    """The value last chosen in the widget ``widget_key`` (see :func:`remember`)."""
    return st.session_state.get(_SAVED + widget_key)


def remember(widget_key: str) -> None:
    """``on_change`` callback: keep the widget's new value in a plain session key."""
    st.session_state[_SAVED + widget_key] = st.session_state[widget_key]


def selected_model() -> tuple[str, str | None]:
    """The (reference, revision) this session has chosen; ("", None) when none."""
    choice = saved(MODEL_CHOICE) or ""
    if choice != CUSTOM_MODEL:
        return choice, None
    revision = (saved(MODEL_REVISION) or "").strip() or None
    return (saved(MODEL_REF) or "").strip(), revision


def applied_settings(page: str, model_key: str, defaults: dict[str, Any]) -> dict[str, Any]:
    """The settings a page last applied for this model, else the model's defaults."""
    saved = st.session_state.setdefault(_APPLIED, {}).get(page)
    if saved is None or saved["model"] != model_key:
        return dict(defaults)
    return dict(saved["settings"])


def set_applied_settings(page: str, model_key: str, settings: dict[str, Any]) -> None:
    """Remember the settings a page's form applied, for this model."""
    st.session_state.setdefault(_APPLIED, {})[page] = {"model": model_key, "settings": settings}
