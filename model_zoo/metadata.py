"""``tiledseg.json``, re-exported: the inference contract lives in :mod:`tiledseg.contract`.

The zoo builds on it (staging writes it, cards and ``list`` read it); the names stay importable
from here, as before the contract moved into the core.
"""

from __future__ import annotations

from tiledseg.contract import (
    BLEND_MODES,
    FORMAT_VERSION,
    POSTPROCESS_KEYS,
    SUPPORTED_MAJOR_VERSIONS,
    TTA_MODES,
    ModelMeta,
    load_meta,
    utc_timestamp,
)

__all__ = [
    "BLEND_MODES",
    "FORMAT_VERSION",
    "POSTPROCESS_KEYS",
    "SUPPORTED_MAJOR_VERSIONS",
    "TTA_MODES",
    "ModelMeta",
    "load_meta",
    "utc_timestamp",
]
