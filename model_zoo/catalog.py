"""What the zoo offers: bundled and registry models, with their headline metric and availability."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from model_zoo import hub
from model_zoo.errors import ModelLoadError
from model_zoo.registry import bundled_dir, bundled_ids, load_registry
from tiledseg.contract import load_meta

__all__ = ["CatalogEntry", "list_models"]


@dataclass(frozen=True)
class CatalogEntry:
    """One row of ``python -m model_zoo list``.

    Attributes:
        id: str, what to pass to ``model_zoo.load``.
        source: str, ``"bundled"`` or ``"hub"``.
        offline: bool, loadable without network (bundled, or the pinned revision is cached).
        task, dataset, description: str.
        metric: str, e.g. ``"dice 0.871 (isic2017/fullres)"``, or ``""`` when unknown.
        size_bytes: int or None, bytes on disk (None when not downloaded).
        repo_id, revision: str or None, the Hub repository and pinned commit.
        problem: str, why the metadata could not be read ("" when fine).
    """

    id: str
    source: str
    offline: bool
    task: str = ""
    dataset: str = ""
    description: str = ""
    metric: str = ""
    size_bytes: int | None = None
    repo_id: str | None = None
    revision: str | None = None
    problem: str = ""

    def to_dict(self) -> dict:
        """The JSON-ready form (``list --json``)."""
        return asdict(self)


def list_models() -> list[CatalogEntry]:
    """Bundled models first, then registry models not also bundled; each sorted by id.

    Returns:
        list of CatalogEntry. Never touches the network: registry models are reported
        available offline only when their pinned revision is in the Hugging Face cache.

    Example:
        >>> [entry.id for entry in list_models()]  # doctest: +SKIP
        ['unet-bloodcell', 'unet-isic2017']
    """
    root = bundled_dir()
    entries = [_describe(root / model_id, model_id, "bundled") for model_id in bundled_ids()]
    bundled = {entry.id for entry in entries}
    for item in sorted(load_registry(), key=lambda e: e.id):
        if item.id in bundled:
            continue
        try:
            folder = hub.snapshot(item.repo_id, item.revision, local_files_only=True)
        except (ModelLoadError, ImportError):
            folder = None
        if folder is not None:
            described = _describe(folder, item.id, "hub")
            entries.append(
                CatalogEntry(
                    **{**described.to_dict(), "repo_id": item.repo_id, "revision": item.revision}
                )
            )
        else:
            entries.append(
                CatalogEntry(
                    id=item.id,
                    source="hub",
                    offline=False,
                    task=item.task,
                    dataset=item.dataset,
                    description=item.description,
                    repo_id=item.repo_id,
                    revision=item.revision,
                )
            )
    return entries


def _describe(folder: Path, model_id: str, source: str) -> CatalogEntry:
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    try:
        meta = load_meta(folder)
    except ModelLoadError as error:
        return CatalogEntry(model_id, source, True, size_bytes=size, problem=str(error))
    headline = meta.headline_metric
    metric = f"{headline[0]} {headline[1]:.3f} ({headline[2]})" if headline else ""
    return CatalogEntry(
        id=model_id,
        source=source,
        offline=True,
        task=meta.task,
        dataset=str(meta.dataset.get("id") or meta.dataset.get("name") or ""),
        description=meta.description,
        metric=metric,
        size_bytes=size,
    )
