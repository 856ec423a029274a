"""Plotly figures for the pages: probability heatmaps, per-image scores, curves, history."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

__all__ = [
    "HEATMAP_MAX_SIDE",
    "colorscale",
    "curves_figure",
    "difference_figure",
    "history_figure",
    "per_image_figure",
    "probability_figure",
    "short_name",
    "uncertainty_figure",
]

# The heatmap is sent to the browser as numbers (for hover values): keep it small.
HEATMAP_MAX_SIDE = 480
_LAYOUT = {"margin": {"l": 10, "r": 10, "t": 40, "b": 10}, "height": 420}
# Streamlit's browser code swaps the colours #000001-#000040 in every Plotly figure for its
# theme's (its placeholders, even with theme=None); Magma and Inferno start at #000004, which
# then drew zero lavender. Such a colour becomes #000000, the same black to the eye.
_STREAMLIT_PLACEHOLDER = re.compile(r"^#0000(0[1-9]|[1-3][0-9]|40)$", re.IGNORECASE)


def colorscale(name: str) -> list[list]:
    """Plotly's named colour scale as ``[[position, colour], ...]``, safe inside Streamlit."""
    from plotly.colors import get_colorscale

    return [
        [position, "#000000" if _STREAMLIT_PLACEHOLDER.match(color) else color]
        for position, color in get_colorscale(name)
    ]


def probability_figure(probabilities: np.ndarray, title: str = "Probability") -> go.Figure:
    """A zoomable heatmap of a (downscaled) probability map, with values on hover."""
    from tiledseg.viz import preview

    small = preview(np.asarray(probabilities, np.float32), HEATMAP_MAX_SIDE)
    # Two decimals are all a person reads, and they halve the page's JSON.
    figure = go.Figure(
        go.Heatmap(
            z=np.round(np.clip(small, 0, 1), 2),
            zmin=0,
            zmax=1,
            colorscale=colorscale("Viridis"),
            colorbar={"title": "p"},
            hovertemplate="x %{x}, y %{y}: p = %{z}<extra></extra>",
        )
    )
    figure.update_yaxes(autorange="reversed", scaleanchor="x", showticklabels=False)
    figure.update_xaxes(showticklabels=False)
    figure.update_layout(title=title, **_LAYOUT)
    return figure


def _heatmap(values: np.ndarray, title: str, *, zmax: float, scale: str, unit: str) -> go.Figure:
    from tiledseg.viz import preview

    small = preview(np.asarray(values, np.float32), HEATMAP_MAX_SIDE)
    figure = go.Figure(
        go.Heatmap(
            z=np.round(np.clip(small, 0, zmax), 3),
            zmin=0,
            zmax=zmax,
            colorscale=colorscale(scale),
            colorbar={"title": unit},
            hovertemplate=f"x %{{x}}, y %{{y}}: {unit} = %{{z}}<extra></extra>",
        )
    )
    figure.update_yaxes(autorange="reversed", scaleanchor="x", showticklabels=False)
    figure.update_xaxes(showticklabels=False)
    figure.update_layout(title=title, **_LAYOUT)
    return figure


def uncertainty_figure(probabilities: np.ndarray, title: str = "Uncertainty") -> go.Figure:
    """The binary entropy of the probabilities (bits, 0 sure to 1 unsure) as a heatmap."""
    from tiledseg.uncertainty import binary_entropy

    return _heatmap(
        binary_entropy(np.clip(probabilities, 0, 1)),
        f"{title} (entropy, bits)",
        zmax=1.0,
        scale="Inferno",
        unit="bits",
    )


def difference_figure(difference: np.ndarray, title: str, zmax: float) -> go.Figure:
    """An absolute probability difference on a colour scale from 0 to ``zmax`` (shared by the
    maps shown together, so their colours compare), with the scale shown beside it."""
    return _heatmap(difference, title, zmax=zmax, scale="Magma", unit="|Δp|")


def short_name(name: str, limit: int = 22) -> str:
    """A file name cut to ``limit`` characters with an ellipsis in the middle."""
    if len(name) <= limit:
        return name
    keep = limit - 1
    return f"{name[: keep - keep // 2]}…{name[-(keep // 2) :]}"


def per_image_figure(names: Sequence[str], values: Sequence[float], metric: str) -> go.Figure:
    """A horizontal bar per image (e.g. its Dice), in upload order; long file names are
    shortened on the axis and shown in full on hover."""
    labels = [f"{index + 1}. {short_name(name)}" for index, name in enumerate(names)]
    figure = go.Figure(
        go.Bar(
            y=labels,
            x=list(values),
            orientation="h",
            marker_color="#C8102E",
            customdata=list(names),
            hovertemplate="%{customdata}: %{x:.4f}<extra></extra>",
        )
    )
    layout = dict(_LAYOUT, height=max(_LAYOUT["height"], 60 + 24 * len(labels)))
    figure.update_layout(title=f"{metric} per image", xaxis_title=metric, **layout)
    figure.update_xaxes(range=[0, 1])
    figure.update_yaxes(autorange="reversed", automargin=True)
    return figure


def curves_figure(
    x: Sequence[float],
    curves: dict[str, Sequence[float]],
    *,
    title: str,
    x_title: str,
    y_title: str,
    marker_x: float | None = None,
) -> go.Figure:
    """Lines sharing one x axis, with an optional vertical marker (the current threshold)."""
    figure = go.Figure()
    for name, values in curves.items():
        figure.add_trace(go.Scatter(x=list(x), y=list(values), mode="lines", name=name))
    if marker_x is not None:
        figure.add_vline(x=marker_x, line_dash="dash", line_color="grey")
    figure.update_layout(title=title, xaxis_title=x_title, yaxis_title=y_title, **_LAYOUT)
    return figure


def history_figure(history: dict[str, list[float]], names: Sequence[str], title: str) -> go.Figure:
    """Training curves (``history.csv`` columns) against the epoch."""
    epochs = history.get("epoch") or list(range(1, len(next(iter(history.values()), [])) + 1))
    figure = go.Figure()
    for name in names:
        values = history.get(name)
        if values and not all(math.isnan(v) for v in values):
            figure.add_trace(go.Scatter(x=epochs, y=values, mode="lines+markers", name=name))
    figure.update_layout(title=title, xaxis_title="epoch", **_LAYOUT)
    return figure
