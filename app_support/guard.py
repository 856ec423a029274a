"""What a shared app server lets a visitor name, and what its messages may show.

The app runs for many users on one server, so a typed model reference must not:

- probe the server's disk: whether a path exists, or what it holds, must not change the answer.
  A reference is classified by its form alone (:func:`check_reference`), never by looking at
  the disk; every reference that is not a model id or a Hub repository gets one message.
- make the server download anything: a Hub repository may be limited to an allow-list
  (``$TILEDSEG_APP_ALLOWED_MODELS``) and every download is bounded in bytes
  (``$TILEDSEG_APP_MAX_MODEL_MB``, checked against the sizes the Hub declares before any
  download and enforced while downloading, in :func:`model_zoo.hub.snapshot`).
- see server paths in messages (:func:`redact`): the Hub cache, the bundled folder, a home.

And a visitor's file names are shown as typed (:func:`plain_name`, :func:`plain_names_in`):
Streamlit renders messages as Markdown, where a name such as ``*ink* [x](y).jpg`` would become
emphasis and a link.
"""

from __future__ import annotations

import difflib
import fnmatch
import os
import re

__all__ = [
    "ALLOWED_MODELS_ENV",
    "DEFAULT_MAX_MODEL_MB",
    "LOCAL_MODELS_ENV",
    "MAX_MODEL_MB_ENV",
    "REFUSED_REFERENCE",
    "allowed_patterns",
    "check_reference",
    "max_model_bytes",
    "plain_name",
    "plain_names_in",
    "redact",
]

# A hosted demo must not load arbitrary files from the server's disk by path.
LOCAL_MODELS_ENV = "TILEDSEG_APP_LOCAL_MODELS"
ALLOWED_MODELS_ENV = "TILEDSEG_APP_ALLOWED_MODELS"
MAX_MODEL_MB_ENV = "TILEDSEG_APP_MAX_MODEL_MB"
DEFAULT_MAX_MODEL_MB = 512
_DEFAULT_MODEL_ENV = "TILEDSEG_DEFAULT_MODEL"  # the operator's own choice is always allowed
_HIDDEN = "[server path]"

# The same text for every refused reference, whether or not such a path exists.
REFUSED_REFERENCE = (
    "This app loads the models in its list and Hub repositories written ORG/NAME, "
    "ORG/NAME@REVISION or hf://ORG/NAME[@REVISION]; other references (such as file paths) are "
    "refused. Pick a model in the sidebar's list, or enter a Hub repository."
)  # no command line or server setting here: a visitor can act on neither (issue 15, 7)
_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?"
_HUB_REF = re.compile(rf"^(?:hf://)?(?P<repo>{_NAME}/{_NAME})(?:@(?P<revision>[\w./-]+))?$")
_MODEL_ID = re.compile(rf"^{_NAME}$")
# An absolute or home path in a message: "/..." or "~/..." not inside a word, URL or ORG/NAME.
# Markdown's active characters in a name: emphasis, code, links, images, math ($), strikethrough,
# tables, HTML and headings; an underscore only where it can open or close emphasis (at a word's
# edge: "ISIC_0001.jpg" stays as it is).
_MARKDOWN_ACTIVE = re.compile(r"[\\`*\[\]$~|<>#!]|(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])")
_PATH = re.compile(r"(?<![\w:/.~@-])~?/[^\s'\"`()<>\[\]{},;]+")


def check_reference(ref: str) -> str:
    """The reference to load for a visitor's ``ref``, or a ModelLoadError saying why not.

    Args:
        ref: str, the model picker's choice or the typed reference.

    Returns:
        str: the id as given (bundled or registry ids), or ``hf://ORG/NAME[@REVISION]`` for a
        Hub repository, so the zoo never looks for a local path of that name.

    Raises:
        tiledseg.errors.ModelLoadError: empty, not an accepted form (:data:`REFUSED_REFERENCE`,
            whatever the disk holds), or a Hub repository outside the allow-list.
        model_zoo.ModelNotFoundError: a plain id that is neither bundled nor registered.
    """
    from model_zoo.errors import ModelNotFoundError
    from model_zoo.resolve import known_ids
    from tiledseg.errors import ModelLoadError

    if not isinstance(ref, str) or not ref.strip():
        raise ModelLoadError("No model was chosen: pick one in the sidebar.")
    ref = ref.strip()
    if os.environ.get(LOCAL_MODELS_ENV, "").strip() == "1":
        return ref  # the operator allows paths on this server
    ids = known_ids()
    if ref in ids:
        return ref
    hub = _HUB_REF.match(ref)
    if hub and ".." not in hub.group("repo"):
        repo = hub.group("repo")
        _check_allowed(repo, ref)
        revision = hub.group("revision")
        return f"hf://{repo}" + (f"@{revision}" if revision else "")
    if _MODEL_ID.match(ref):
        close = difflib.get_close_matches(ref, ids, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        listed = ", ".join(ids) if ids else "none"
        raise ModelNotFoundError(
            f"Unknown model id {ref!r}.{hint} Known ids: {listed}. A Hub model is written ORG/NAME."
        )
    raise ModelLoadError(REFUSED_REFERENCE)


def allowed_patterns() -> list[str] | None:
    """``$TILEDSEG_APP_ALLOWED_MODELS`` as patterns (``fnmatch``, e.g. ``tiledseg/*``).

    Returns:
        None when unset or empty (any Hub repository, within the size limit); ``[]`` for
        ``none`` (no typed Hub repository at all).
    """
    text = os.environ.get(ALLOWED_MODELS_ENV, "").strip()
    if not text:
        return None
    if text.lower() == "none":
        return []
    return [item for item in re.split(r"[\s,]+", text) if item]


def _check_allowed(repo: str, ref: str) -> None:
    from tiledseg.errors import ModelLoadError

    patterns = allowed_patterns()
    if patterns is None:
        return
    default = os.environ.get(_DEFAULT_MODEL_ENV, "").strip()
    default_repo = _HUB_REF.match(default)
    if default_repo and default_repo.group("repo").lower() == repo.lower():
        return
    if any(fnmatch.fnmatchcase(repo.lower(), pattern.lower()) for pattern in patterns):
        return
    which = ", ".join(patterns) if patterns else "none"
    raise ModelLoadError(
        f"This server loads only the models in its list and the Hub repositories matching "
        f"{which} ({ALLOWED_MODELS_ENV}); {repo} is not one of them. Pick a model in the list, "
        "or run the app yourself to use any Hub model."
    )


def max_model_bytes() -> int:
    """The most bytes one model download may take: ``$TILEDSEG_APP_MAX_MODEL_MB`` (512 MB)."""
    text = os.environ.get(MAX_MODEL_MB_ENV, "").strip()
    megabytes = int(text) if text.isdigit() and int(text) > 0 else DEFAULT_MAX_MODEL_MB
    return megabytes * 1024 * 1024


def redact(text: str) -> str:
    """``text`` with every absolute or home path on the server replaced by ``[server path]``.

    Example:
        >>> redact("not in the cache (/root/.cache/huggingface/hub); see hf://a/b")
        'not in the cache ([server path]); see hf://a/b'
    """
    return _PATH.sub(_HIDDEN, str(text))


def plain_name(name: str) -> str:
    r"""A visitor's file name for a Streamlit message: shown as typed, never as Markdown.

    Example:
        >>> plain_name("ISIC_0001 *ink* [x](y).jpg")
        'ISIC_0001 \\*ink\\* \\[x\\](y).jpg'
    """
    return _MARKDOWN_ACTIVE.sub(lambda match: "\\" + match.group(0), str(name))


def plain_names_in(text: str, names: list[str] | tuple[str, ...]) -> str:
    r"""``text`` (a library's message, plain) with each of ``names`` in it shown as typed.

    Example:
        >>> plain_names_in("Cannot read *a*.jpg: empty", ["*a*.jpg"])
        'Cannot read \\*a\\*.jpg: empty'
    """
    # Longest first, so a name that contains another is escaped whole.
    for name in sorted({str(n) for n in names if n}, key=len, reverse=True):
        text = text.replace(name, plain_name(name))
    return text
