"""Plotly figures for the pages: probability heatmaps, per-image scores, curves, history."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

__all__ = [
    "HEATMAP_MAX_SIDE",
    "curves_figure",
    "history_figure",
    "per_image_figure",
    "probability_figure",
]

# The heatmap is sent to the browser as numbers (for hover values): keep it small.
HEATMAP_MAX_SIDE = 480
_LAYOUT = {"margin": {"l": 10, "r": 10, "t": 40, "b": 10}, "height": 420}


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
            colorscale="Viridis",
            colorbar={"title": "p"},
            hovertemplate="x %{x}, y %{y}: p = %{z}<extra></extra>",
        )
    )
    figure.update_yaxes(autorange="reversed", scaleanchor="x", showticklabels=False)
    figure.update_xaxes(showticklabels=False)
    figure.update_layout(title=title, **_LAYOUT)
    return figure


def per_image_figure(names: Sequence[str], values: Sequence[float], metric: str) -> go.Figure:
    """A bar per image (e.g. its Dice), in upload order."""
    figure = go.Figure(go.Bar(x=list(names), y=list(values), marker_color="#C8102E"))
    figure.update_layout(title=f"{metric} per image", yaxis_title=metric, **_LAYOUT)
    figure.update_yaxes(range=[0, 1])
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
