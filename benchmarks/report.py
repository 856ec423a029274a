"""The benchmark's table and the ratios issue 7's targets are about; merges backends' JSON.

Usage (after bench_gpu.py ran once per backend):
    python -m benchmarks.report benchmarks/out/bench_jax.json benchmarks/out/bench_torch.json \\
        --json benchmarks/out/bench_gpu.json

Ratios, per backend, model and image (medians; lower time is better):

- tiledseg / model-only, same precision and batch: target <= 1.10 (the engine's overhead);
- tiledseg / MONAI, PyTorch, same precision, batch, tile, overlap and Gaussian blend: <= 1.05;
- seeds / tiledseg, float32, tiledseg at its fastest batch: >= 5;
- tiledseg-auto / whole-image in auto's precision (bfloat16 on a GPU): <= 1.3;
- MONAI float32 at its fastest batch / tiledseg-auto: about 2, on the same backend and, when
  both runs are merged, MONAI on PyTorch against tiledseg-auto on JAX;
- max |bfloat16 - float32| of tiledseg's probabilities: <= 1e-2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

__all__ = ["format_row", "format_table", "merge", "ratios"]

_COLUMNS = (
    ("backend", "backend"),
    ("model", "model"),
    ("image", "image"),
    ("method", "method"),
    ("precision", "precision"),
    ("batch", "batch_size"),
    ("tiles", "tiles"),
    ("first s", "first_call_s"),
    ("median s", "median_s"),
    ("runs", "runs"),
    ("Mpx/s", "megapixels_per_s"),
    ("peak MB", "peak_memory_mb"),
)


def format_row(row: dict[str, Any]) -> str:
    """One progress line for a measured row."""
    text = (
        f"{row['backend']:<5} {row['model']:<15} {row['image']:>9} {row['method']:<13} "
        f"{row['precision'] or '':<8} batch={row['batch_size']!s:<4} tiles={row['tiles']!s:<4} "
        f"first={row['first_call_s']:8.3f}s median={row['median_s']:8.4f}s "
        f"{row['megapixels_per_s']:8.2f} Mpx/s peak={_number(row['peak_memory_mb'])} MB"
    )
    for key in ("max_abs_diff_vs_float32", "max_abs_diff_vs_tiledseg"):
        if key in row:
            text += f" {key}={row[key]:.2g}"
    return text


def format_table(rows: list[dict[str, Any]]) -> str:
    """All rows as one Markdown table."""
    lines = [
        "| " + " | ".join(title for title, _ in _COLUMNS) + " |",
        "|" + "---|" * len(_COLUMNS),
    ]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(key)) for _, key in _COLUMNS) + " |")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return _number(value)
    return str(value)


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    if value == 0 or abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"


def _ratio(name, group, value, target, relation, detail="") -> dict[str, Any]:
    backend, model, image = group
    met = None
    if relation == "<=":
        met = value <= target
    elif relation == ">=":
        met = value >= target
    verdict = {True: "met", False: "NOT met", None: "for reference"}[met]
    shown = f"{value:.3g}" if value < 0.01 else f"{value:.3f}"
    return {
        "name": name,
        "backend": backend,
        "model": model,
        "image": image,
        "value": value,
        "target": f"{relation} {target:g}",
        "met": met,
        "text": (
            f"{backend:<9} {model:<15} {image:>9}  {name}{detail} = {shown}"
            f"  (target {relation} {target:g}: {verdict})"
        ),
    }


def _fastest(rows: list[dict], method: str, precision: str | None = None) -> dict | None:
    found = [
        row
        for row in rows
        if row["method"] == method and (precision is None or row["precision"] == precision)
    ]
    return min(found, key=lambda row: row["median_s"]) if found else None


def _against_peer(group, members, peer: str, name: str, target: float) -> list[dict[str, Any]]:
    """tiledseg's time over ``peer``'s at the same precision and batch, in the peer's order."""
    tiledseg = {
        (row["precision"], row["batch_size"]): row for row in members if row["method"] == "tiledseg"
    }
    out = []
    for row in members:
        ours = tiledseg.get((row["precision"], row["batch_size"]))
        if row["method"] == peer and ours:
            detail = f" ({row['precision']}, batch {row['batch_size']})"
            value = ours["median_s"] / row["median_s"]
            out.append(_ratio(name, group, value, target, "<=", detail))
    return out


def ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The target ratios for every backend, model and image the rows cover."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        groups[(row["backend"], row["model"], row["image"])].append(row)
    out = []
    for group, members in groups.items():
        out += _against_peer(group, members, "model-only", "tiledseg / model-only", 1.10)
        out += _against_peer(group, members, "monai", "tiledseg / MONAI", 1.05)
        seeds, fastest = _fastest(members, "seeds"), _fastest(members, "tiledseg", "float32")
        if seeds and fastest:
            value = seeds["median_s"] / fastest["median_s"]
            detail = f" (float32, tiledseg batch {fastest['batch_size']})"
            out.append(_ratio("seeds / tiledseg", group, value, 5, ">=", detail))
        auto = _fastest(members, "tiledseg-auto")
        whole = auto and _fastest(members, "whole-image", auto["precision"])
        if auto and whole:
            value = auto["median_s"] / whole["median_s"]
            detail = f" ({auto['precision']})"
            out.append(_ratio("tiledseg-auto / whole-image", group, value, 1.3, "<=", detail))
        monai = _fastest(members, "monai", "float32")
        if auto and monai:
            value = monai["median_s"] / auto["median_s"]
            detail = f" (MONAI float32 batch {monai['batch_size']}, auto {auto['precision']})"
            out.append(_ratio("MONAI / tiledseg-auto", group, value, 2, "~", detail))
        low = [r["max_abs_diff_vs_float32"] for r in members if "max_abs_diff_vs_float32" in r]
        if low:
            out.append(_ratio("max |bf16 - fp32| (tiledseg)", group, max(low), 1e-2, "<="))
    out += _cross_backend(rows)
    return out


def _cross_backend(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """MONAI on PyTorch against tiledseg-auto on JAX, for the same model and image."""
    out = []
    pairs = {(r["model"], r["image"]) for r in rows if r["backend"] == "torch"}
    for model, image in sorted(pairs):
        same = [r for r in rows if r["model"] == model and r["image"] == image]
        monai = _fastest([r for r in same if r["backend"] == "torch"], "monai", "float32")
        auto = _fastest([r for r in same if r["backend"] == "jax"], "tiledseg-auto")
        if monai and auto:
            value = monai["median_s"] / auto["median_s"]
            detail = f" (MONAI float32 batch {monai['batch_size']}, auto {auto['precision']})"
            group = ("torch/jax", model, image)
            out.append(_ratio("MONAI (torch) / tiledseg-auto (jax)", group, value, 2, "~", detail))
    return out


def merge(paths: list[Path]) -> dict[str, Any]:
    """One document from several backends' JSON files (missing files are noted)."""
    merged: dict[str, Any] = {
        "machines": {},
        "models": {},
        "settings": {},
        "rows": [],
        "skipped": {},
        "failed": {},
        "missing": [],
    }
    for path in paths:
        if not path.is_file():
            merged["missing"].append(str(path))
            continue
        document = json.loads(path.read_text())
        backend = document["machine"]["backend"]
        merged["machines"][backend] = document["machine"]
        merged["models"].update(document["models"])
        merged["settings"][backend] = document["settings"]
        merged["rows"] += document["rows"]
        merged["skipped"][backend] = document.get("skipped", [])
        merged["failed"][backend] = document.get("failed", [])
    merged["ratios"] = ratios(merged["rows"])
    return merged


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="+", type=Path, help="bench_gpu.py JSON files")
    parser.add_argument("--json", type=Path, help="write the merged document here")
    args = parser.parse_args(argv)
    merged = merge(args.inputs)
    for backend, machine in merged["machines"].items():
        print(
            f"{backend}: {machine.get('device')}, {machine['platform']}, "
            f"versions {json.dumps({k: v for k, v in machine['versions'].items() if v})}, "
            f"float32 math {json.dumps(machine.get('float32_math'))}"
        )
    for label, model in merged["models"].items():
        print(f"{label}: {model['parameters']:,} parameters, downsampling {model['downsampling']}")
    print(format_table(merged["rows"]))
    print()
    for ratio in merged["ratios"]:
        print(ratio["text"])
    for backend, skipped in merged["skipped"].items():
        if skipped:
            print(f"{backend}: {len(skipped)} rows skipped over the time budget")
    for backend, failed in merged["failed"].items():
        for failure in failed:
            print(f"{backend}: FAILED {failure['row']}: {failure['error']}")
    for path in merged["missing"]:
        print(f"missing: {path} (that backend's run failed or was stopped; see its log)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(merged, indent=2))
    return 1 if not merged["rows"] else 0


if __name__ == "__main__":
    sys.exit(main())
