"""The Hugging Face Hub side of the zoo: download a pinned snapshot, upload a staged folder.

Everything goes through huggingface_hub, which already honours ``HF_ENDPOINT``, ``HF_HOME``,
``HF_HUB_CACHE``, ``HF_HUB_OFFLINE`` and the token locations (``HF_TOKEN``, ``hf auth login``).
This module only turns its exceptions into messages that say what to do.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path
from typing import Any

from model_zoo.errors import (
    HubUnreachableError,
    ModelNotFoundError,
    ModelTooLargeError,
    NotCachedError,
)
from model_zoo.layout import HUB_ALLOW_PATTERNS

__all__ = ["hub_cache_dir", "hub_endpoint", "is_offline", "snapshot", "upload_folder"]

_PIP_HINT = "pip install 'huggingface-hub>=0.30'"


def _hf() -> Any:
    # Imported lazily: the app and CLI run on bundled models without huggingface_hub.
    try:
        # The submodules are named: huggingface_hub loads its attributes lazily.
        import huggingface_hub
        import huggingface_hub.constants
        import huggingface_hub.errors
        import huggingface_hub.file_download
        import huggingface_hub.utils
    except ImportError as error:  # pragma: no cover - installed in every supported setup
        raise ImportError(f"Hub models need the huggingface_hub package: `{_PIP_HINT}`.") from error
    return huggingface_hub


def hub_endpoint() -> str:
    """The Hub URL in use (``HF_ENDPOINT`` or https://huggingface.co)."""
    return _hf().constants.ENDPOINT


def hub_cache_dir() -> str:
    """The local Hub cache (``HF_HUB_CACHE``, else ``$HF_HOME/hub``)."""
    return _hf().constants.HF_HUB_CACHE


def is_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` is set (read by huggingface_hub at import)."""
    constants = _hf().constants
    check = getattr(constants, "is_offline_mode", None)
    return bool(check() if callable(check) else constants.HF_HUB_OFFLINE)


def snapshot(
    repo_id: str,
    revision: str | None = None,
    *,
    local_files_only: bool = False,
    max_bytes: int | None = None,
) -> Path:
    """Download (or find in the cache) the zoo files of ``repo_id`` at ``revision``.

    Only the repository layout's files are fetched (``HUB_ALLOW_PATTERNS``).

    Args:
        repo_id: str, ``ORG/NAME``.
        revision: str or None, a branch, tag or commit hash; None means ``main``.
        local_files_only: bool, default False. True looks in the cache only.
        max_bytes: int >= 1 or None (no limit). The most bytes the download may take: the
            file sizes the Hub declares are added up before anything is downloaded, and the
            bytes received are counted while downloading (a server sending more than it
            declared is cut off). Files already in the cache count too.

    Returns:
        Path of the snapshot folder; its name is the commit hash it holds.

    Raises:
        NotCachedError: offline (or ``local_files_only``) and the revision is not cached.
        ModelNotFoundError: the repository or revision does not exist (or is not visible).
        HubUnreachableError: the endpoint cannot be reached and nothing is cached.
        ModelTooLargeError: the files are (or turn out to be) larger than ``max_bytes``; the
            partial download is removed.

    Example:
        >>> path = snapshot("tiledseg/unet-isic2017", "main")  # doctest: +SKIP
    """
    if max_bytes is not None and (not isinstance(max_bytes, int) or max_bytes < 1):
        raise ValueError(f"`max_bytes` must be an int >= 1 or None. Received: {max_bytes!r}")
    hf = _hf()
    label = f"{repo_id}@{revision or 'main'}"
    bounded = max_bytes is not None and not local_files_only
    try:
        options = {}
        if bounded:
            _check_declared_size(hf, repo_id, revision, max_bytes, label)
            options["tqdm_class"] = _byte_budget(hf, max_bytes, label)
        folder = hf.snapshot_download(
            repo_id=repo_id,
            revision=revision,
            allow_patterns=HUB_ALLOW_PATTERNS,
            local_files_only=local_files_only,
            library_name="tiledseg",
            **options,
        )
    except ModelTooLargeError:
        _remove_partial_downloads(hf, repo_id)
        raise
    except Exception as error:
        if bounded:
            _remove_partial_downloads(hf, repo_id)
        raise _translate(error, label, local_files_only=local_files_only) from None
    return Path(folder)


def _check_declared_size(hf: Any, repo_id: str, revision: str | None, limit: int, label: str):
    """Refuse before downloading when the layout's files, as the Hub lists them, are too big."""
    info = hf.HfApi(library_name="tiledseg").model_info(
        repo_id, revision=revision or "main", files_metadata=True
    )
    names = list(
        hf.utils.filter_repo_objects(
            [s.rfilename for s in info.siblings or []], allow_patterns=HUB_ALLOW_PATTERNS
        )
    )
    sizes = {s.rfilename: s.size for s in info.siblings or [] if s.rfilename in names}
    for name, size in sizes.items():
        if size is None:  # not listed: ask for the file's own headers
            url = hf.hf_hub_url(repo_id, name, revision=info.sha)
            sizes[name] = hf.get_hf_file_metadata(url).size
    unknown = sorted(name for name, size in sizes.items() if size is None)
    if unknown:
        raise ModelTooLargeError(
            f"{label}: the Hub does not say how large {', '.join(unknown)} is, so the download "
            f"cannot be kept under its limit of {_megabytes(limit)}; nothing was downloaded."
        )
    total = sum(sizes.values())
    if total > limit:
        largest = max(sizes, key=sizes.get)
        raise ModelTooLargeError(
            f"{label} is {_megabytes(total)} to download ({len(sizes)} files, the largest "
            f"{largest} at {_megabytes(sizes[largest])}), above the limit of {_megabytes(limit)}; "
            "nothing was downloaded."
        )


def _byte_budget(hf: Any, limit: int, label: str) -> type:
    """A tqdm class for ``snapshot_download`` that stops the download past ``limit`` bytes.

    huggingface_hub reports every chunk it receives to the snapshot's byte progress bars
    before writing it, so raising from ``update`` stops each file's download at that chunk.
    """
    counted = {"bytes": 0}
    lock = threading.Lock()

    class ByteBudget(hf.utils.tqdm):
        def __init__(self, *args: Any, **kwargs: Any):
            self._bytes = kwargs.get("unit") == "B"
            super().__init__(*args, **kwargs)

        def update(self, n: float | None = 1) -> bool | None:
            if self._bytes and n:
                with lock:
                    # Each byte bar (received, written) sees every byte: keep the largest count.
                    self._seen = getattr(self, "_seen", 0) + int(n)
                    counted["bytes"] = max(counted["bytes"], self._seen)
                    over = counted["bytes"] > limit
                if over:
                    raise ModelTooLargeError(
                        f"{label} sent more than the limit of {_megabytes(limit)} (more than it "
                        "declared); the download was stopped and its partial files removed."
                    )
            return super().update(n)

    return ByteBudget


def _remove_partial_downloads(hf: Any, repo_id: str) -> None:
    folder = Path(hub_cache_dir()) / hf.file_download.repo_folder_name(
        repo_id=repo_id, repo_type="model"
    )
    for partial in (folder / "blobs").glob("*.incomplete"):
        with contextlib.suppress(OSError):  # already gone
            os.remove(partial)


def _megabytes(size: int) -> str:
    return f"{size / 1024**2:.1f} MB"


def upload_folder(
    folder: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    commit_message: str = "Upload model with tiledseg model_zoo",
    repo_type: str = "model",
    space_sdk: str | None = None,
) -> Any:
    """Create ``repo_id`` if needed, then upload ``folder`` to it in one commit.

    Args:
        folder: str or Path, the staged folder.
        repo_id: str, ``ORG/NAME``.
        private: bool, default False; only applies when the repository is created.
        commit_message: str.
        repo_type: str, ``"model"`` or ``"space"``.
        space_sdk: str or None, e.g. ``"docker"`` when creating a Space.

    Returns:
        huggingface_hub.CommitInfo, with ``commit_url`` and ``oid`` (the commit hash).

    Raises:
        HubUnreachableError: the endpoint cannot be reached, refuses the upload, or the token
            is missing or lacks write access.
    """
    hf = _hf()
    api = hf.HfApi(library_name="tiledseg")
    try:
        api.create_repo(
            repo_id, private=private, exist_ok=True, repo_type=repo_type, space_sdk=space_sdk
        )
        return api.upload_folder(
            repo_id=repo_id,
            folder_path=str(folder),
            commit_message=commit_message,
            repo_type=repo_type,
        )
    except Exception as error:
        status = _status_code(error)
        if status in (401, 403):
            raise HubUnreachableError(
                f"{hub_endpoint()} refused the upload to {repo_id} (HTTP {status}): set HF_TOKEN "
                "to a token with write access (or run `hf auth login`) and check that you may "
                "write to that organisation."
            ) from None
        if _is_hub_error(error) or _is_connection_error(error):
            raise HubUnreachableError(
                f"Upload to {repo_id} on {hub_endpoint()} failed: {_first_line(error)}. Check "
                "your network and HF_ENDPOINT; the staged folder is intact and can be uploaded "
                f"again: {folder}"
            ) from None
        raise


def _translate(error: Exception, label: str, *, local_files_only: bool) -> Exception:
    """Map a huggingface_hub exception to a zoo error that says what to do."""
    hf = _hf()
    errors = hf.errors
    endpoint = hub_endpoint()
    chain = _cause_chain(error)
    pull_hint = f"`python -m model_zoo pull {label}` while online"
    if any(isinstance(e, errors.OfflineModeIsEnabled) for e in chain) or (
        isinstance(error, errors.LocalEntryNotFoundError) and (local_files_only or is_offline())
    ):
        return NotCachedError(
            f"{label} is not in the Hugging Face cache ({hub_cache_dir()}) and "
            f"{'HF_HUB_OFFLINE is set' if is_offline() else 'only cached files were allowed'}. "
            f"Download it first with {pull_hint}, or use a bundled model "
            "(`python -m model_zoo list`)."
        )
    if any(isinstance(e, errors.RevisionNotFoundError) for e in chain) or any(
        isinstance(e, errors.EntryNotFoundError) and _status_code(e) == 404 for e in chain
    ):
        return ModelNotFoundError(
            f"Revision not found: {label} on {endpoint}. Give a branch, tag or commit hash "
            "that exists in the repository."
        )
    if any(isinstance(e, errors.RepositoryNotFoundError) for e in chain):
        return ModelNotFoundError(
            f"No model repository {label.split('@')[0]} on {endpoint}, or it is private or "
            "gated: check the id, and for a private repository set HF_TOKEN or run "
            "`hf auth login`."
        )
    if any(_is_connection_error(e) for e in chain) or any(_is_hub_error(e) for e in chain):
        detail = _first_line(chain[-1])
        return HubUnreachableError(
            f"Cannot reach the Hugging Face Hub at {endpoint} ({detail}) and {label} is not in "
            f"the cache ({hub_cache_dir()}). Check your network or HF_ENDPOINT, or use a "
            "bundled model (`python -m model_zoo list`)."
        )
    return error


def _cause_chain(error: BaseException) -> list[BaseException]:
    chain, seen = [], set()
    while error is not None and id(error) not in seen:
        chain.append(error)
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return chain


def _is_connection_error(error: BaseException) -> bool:
    if isinstance(error, (ConnectionError, TimeoutError)):
        return True
    # httpx (and huggingface_hub's vendored httpx2) name them ConnectError / *Timeout*.
    name = type(error).__name__
    return name in {"ConnectError", "ConnectTimeout", "ReadTimeout", "TimeoutException"} or (
        "Connect" in name and "Error" in name
    )


def _is_hub_error(error: BaseException) -> bool:
    return isinstance(error, _hf().errors.HfHubHTTPError)


def _status_code(error: BaseException) -> int | None:
    response = getattr(error, "response", None)
    return getattr(response, "status_code", None)


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__
