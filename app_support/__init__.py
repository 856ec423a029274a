"""UI support for the Streamlit app (app.py and pages/): caching, session state, shared widgets.

Nothing here segments or scores anything: inference, post-processing, metrics and pictures are
``tiledseg`` and models come from ``model_zoo``. This package decides what is cached where:

- models: one shared instance per (reference, revision), with a lock, in a process-wide store
  bounded by weight bytes (``$TILEDSEG_APP_MODEL_CACHE_MB``) and count;
- decoded images and probability maps: a process-wide :class:`ResultStore` (read-only arrays,
  bounded by ``$TILEDSEG_APP_CACHE_MB``), keyed on (model, image hash, settings);
- small results (metric rows, threshold curves, the catalog): ``st.cache_data(max_entries=...)``;
- per-tab choices: ``st.session_state`` (see :mod:`app_support.state`).

What visitors of a shared server may name as a model, and what messages may show, is
:mod:`app_support.guard`.
"""

from app_support.guard import ALLOWED_MODELS_ENV, MAX_MODEL_MB_ENV, check_reference, redact
from app_support.models import (
    DEFAULT_MODEL,
    DEFAULT_MODEL_ENV,
    LOCAL_MODELS_ENV,
    SERVED_PREFIX,
    SERVING_META_ENV,
    SERVING_URL_ENV,
    LoadedModel,
    ModelDetails,
    card_body,
    card_licence,
    catalog,
    clear_loaded_models,
    default_model_id,
    environment_info,
    load_model,
    model_details,
    model_store,
    pull_model,
    refresh_zoo,
)
from app_support.state import (
    CUSTOM_MODEL,
    MODEL_CHOICE,
    MODEL_REF,
    MODEL_REVISION,
    applied_settings,
    init_session_state,
    remember,
    saved,
    selected_model,
    set_applied_settings,
)
from app_support.store import ResultStore
from app_support.uploads import SAMPLE_DIR_ENV, Upload, find_samples, pair_by_name, read_zip
from app_support.widgets import (
    METRIC_LABELS,
    ImageInput,
    current_model,
    domain_warning,
    error_legend,
    image_inputs,
    model_dataset,
    overlay_colors,
    postprocess_controls,
    result_store,
    scale_warning,
    settings_form,
    show_error,
    show_problems,
    user_errors,
    web_message,
)

__all__ = [
    "ALLOWED_MODELS_ENV",
    "CUSTOM_MODEL",
    "DEFAULT_MODEL",
    "DEFAULT_MODEL_ENV",
    "LOCAL_MODELS_ENV",
    "MAX_MODEL_MB_ENV",
    "METRIC_LABELS",
    "MODEL_CHOICE",
    "MODEL_REF",
    "MODEL_REVISION",
    "SAMPLE_DIR_ENV",
    "SERVED_PREFIX",
    "SERVING_META_ENV",
    "SERVING_URL_ENV",
    "ImageInput",
    "LoadedModel",
    "ModelDetails",
    "ResultStore",
    "Upload",
    "applied_settings",
    "card_body",
    "card_licence",
    "catalog",
    "check_reference",
    "clear_loaded_models",
    "current_model",
    "default_model_id",
    "domain_warning",
    "environment_info",
    "error_legend",
    "find_samples",
    "image_inputs",
    "init_session_state",
    "load_model",
    "model_dataset",
    "model_details",
    "model_store",
    "overlay_colors",
    "pair_by_name",
    "postprocess_controls",
    "pull_model",
    "read_zip",
    "redact",
    "refresh_zoo",
    "remember",
    "result_store",
    "saved",
    "scale_warning",
    "selected_model",
    "set_applied_settings",
    "settings_form",
    "show_error",
    "show_problems",
    "user_errors",
    "web_message",
]
