"""Session-state keys shared across pages, and their initialisation.

``app.py`` calls :func:`init_session_state` on every rerun (it is the ``st.navigation`` frame),
so every page can rely on these keys. Each browser tab has its own session state; nothing in
it is shared with other sessions.
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


def init_session_state(default_model: str | None) -> None:
    """Set this session's keys that are not set yet (the default model, no settings)."""
    if MODEL_CHOICE not in st.session_state and default_model is not None:
        st.session_state[MODEL_CHOICE] = default_model
    st.session_state.setdefault(MODEL_REF, "")
    st.session_state.setdefault(MODEL_REVISION, "")
    st.session_state.setdefault(_APPLIED, {})


def selected_model() -> tuple[str, str | None]:
    """The (reference, revision) this session has chosen; ("", None) when none."""
    choice = st.session_state.get(MODEL_CHOICE) or ""
    if choice != CUSTOM_MODEL:
        return choice, None
    revision = (st.session_state.get(MODEL_REVISION) or "").strip() or None
    return (st.session_state.get(MODEL_REF) or "").strip(), revision


def applied_settings(page: str, model_key: str, defaults: dict[str, Any]) -> dict[str, Any]:
    """The settings a page last applied for this model, else the model's defaults."""
    saved = st.session_state.setdefault(_APPLIED, {}).get(page)
    if saved is None or saved["model"] != model_key:
        return dict(defaults)
    return dict(saved["settings"])


def set_applied_settings(page: str, model_key: str, settings: dict[str, Any]) -> None:
    """Remember the settings a page's form applied, for this model."""
    st.session_state.setdefault(_APPLIED, {})[page] = {"model": model_key, "settings": settings}
