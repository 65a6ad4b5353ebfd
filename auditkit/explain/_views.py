"""Figures for the Explanations page (plotly, imported lazily).

The library builds the figures so that the page stays a description of the screen.
One colour scale serves the whole page: red is evidence *for* the explained class,
blue evidence *against*, and the same colour means the same amount on every image.
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..wording import fmt_pct
from ._check import ATTRIBUTIONS_FILE, load_attributions


def _plain(value: Any) -> str:
    """Text shown in a plotly label as written (``<``, ``>``, ``&`` escaped)."""
    return html.escape(str(value), quote=False)

__all__ = [
    "ImageView",
    "curves_figure",
    "gallery_figure",
    "image_views",
    "page_colour_limit",
    "sanity_figure",
    "shares_figure",
]

REGION_LABELS = {"border": "Border", "corners": "Corners", "outside_center": "Outside the centre"}


class ImageView(dict):
    """One image to show: ``entry`` (from ``audit.json``), ``pixels`` ``(H, W, C)`` uint8 or
    None when the image file is not at hand, ``map`` ``(H, W)`` predicted-class attribution."""


def image_views(result: dict[str, Any], folder: str | os.PathLike[str] | None,
                paths: dict[str, str] | None = None, *, input_size: list[int] | None = None,
                channels: int = 3) -> list[ImageView]:
    """The explained images with their maps, read from ``folder/attributions.npz``.

    ``paths`` maps image ids to files (from the dataset) so the photographs can be shown;
    images without a file are shown as maps only.
    """
    stored: dict[str, np.ndarray] = {}
    if folder is not None and (Path(folder) / ATTRIBUTIONS_FILE).is_file():
        stored = load_attributions(Path(folder) / ATTRIBUTIONS_FILE)
    views = []
    for entry in result.get("images", []):
        arr = stored.get(entry["image"])
        amap = None if arr is None else arr[0].sum(axis=0)
        pixels = None
        if paths and entry["image"] in paths and input_size is not None:
            from ..predict import load_image_tensor

            try:
                t = load_image_tensor(paths[entry["image"]], input_size=input_size,
                                      channels=channels)
                pixels = t.permute(1, 2, 0).numpy()
                if pixels.shape[2] == 1:
                    pixels = np.repeat(pixels, 3, axis=2)
            except OSError:
                pixels = None
        views.append(ImageView(entry=entry, pixels=pixels, map=amap))
    return views


def page_colour_limit(views: list[ImageView]) -> float:
    """One symmetric colour limit for every map on the page (99th percentile of |map|)."""
    maps = [np.abs(v["map"]).ravel() for v in views if v["map"] is not None]
    if not maps:
        return 1.0
    lim = float(np.percentile(np.concatenate(maps), 99))
    return lim if lim > 0 else 1.0


def gallery_figure(views: list[ImageView], *, attribute: str, limit: float,
                   per_group: int = 3) -> Any:
    """Side by side across groups: one column per group, each image with its overlay."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    groups: dict[str, list[ImageView]] = {}
    for v in views:
        groups.setdefault(v["entry"]["groups"].get(attribute, "?"), []).append(v)
    names = list(groups)
    rows = max(1, min(per_group, max((len(g) for g in groups.values()), default=1)))
    titles = []
    for r in range(rows):
        for g in names:
            items = groups[g]
            if r < len(items):
                e = items[r]["entry"]
                # group names are data: escaped, as plotly renders <a>, <b> in titles
                # short lines in a small font: long titles of neighbouring columns
                # overlapped, and a two-line title of the first row was clipped at the top
                titles.append(f"{_plain(g)}<br>says {_plain(e['predicted'])} "
                              f"{fmt_pct(e['confidence'])}<br>truth {_plain(e['label'])}")
            else:
                titles.append("")
    fig = make_subplots(rows=rows, cols=max(1, len(names)), subplot_titles=titles,
                        horizontal_spacing=0.03, vertical_spacing=0.16 if rows > 1 else 0.08)
    fig.update_annotations(font={"size": 11})
    for c, g in enumerate(names, start=1):
        for r, v in enumerate(groups[g][:rows], start=1):
            if v["pixels"] is not None:
                fig.add_trace(go.Image(z=v["pixels"], hoverinfo="skip"), row=r, col=c)
            if v["map"] is not None:
                fig.add_trace(go.Heatmap(
                    z=v["map"], zmin=-limit, zmax=limit, zmid=0, colorscale="RdBu_r",
                    opacity=0.55 if v["pixels"] is not None else 1.0,
                    showscale=(r == 1 and c == 1), hovertemplate="attribution %{z:.3g}<extra></extra>",
                    colorbar={"title": "evidence<br>for (red) /<br>against (blue)"}),
                    row=r, col=c)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False, autorange="reversed", scaleanchor="x")
    fig.update_layout(height=300 * rows + 90, margin={"l": 10, "r": 10, "t": 90, "b": 10},
                      title={"text": f"columns: {_plain(attribute)}", "font": {"size": 13},
                             "y": 0.995, "yanchor": "top"})
    return fig


def curves_figure(result: dict[str, Any]) -> Any:
    """Mean deletion and insertion curves: explanation order against random order."""
    import plotly.graph_objects as go

    faith = result["trust"]["faithfulness"]
    curves = faith["mean_curves"]
    fig = go.Figure()
    styles = {"deletion_curve": ("Deletion, explanation order", "firebrick", "solid"),
              "deletion_curve_random": ("Deletion, random order", "firebrick", "dot"),
              "insertion_curve": ("Insertion, explanation order", "royalblue", "solid"),
              "insertion_curve_random": ("Insertion, random order", "royalblue", "dot")}
    for key, (name, colour, dash) in styles.items():
        fig.add_trace(go.Scatter(x=curves["fraction"], y=curves[key], name=name,
                                 line={"color": colour, "dash": dash}))
    fig.update_layout(xaxis_title="share of pixels removed / inserted",
                      yaxis_title="probability of the predicted class", yaxis_range=[0, 1],
                      height=360, margin={"t": 30})
    return fig


def shares_figure(result: dict[str, Any], attribute: str) -> Any:
    """Share of attribution per region and group, with intervals and the area reference."""
    import plotly.graph_objects as go

    sc = result["shortcuts"]
    entries = [g for g in sc["by_group"] if g["attribute"] == attribute]
    fig = go.Figure()
    for region, label in REGION_LABELS.items():
        xs, ys, lo, hi, text = [], [], [], [], []
        for g in entries:
            val = g.get(region) or {}
            if val.get("value") is None:
                continue
            ci = val.get("ci") or [None, None]
            xs.append(f"{_plain(g['group'])}{' *' if g.get('too_few') else ''}")
            ys.append(val["value"])
            lo.append(val["value"] - ci[0] if ci[0] is not None else 0)
            hi.append(ci[1] - val["value"] if ci[1] is not None else 0)
            text.append(f"n = {g['n']}")
        fig.add_trace(go.Bar(x=xs, y=ys, name=label, text=text, error_y={
            "type": "data", "symmetric": False, "array": hi, "arrayminus": lo}))
        area = sc["regions"][region]["area_share"]
        fig.add_hline(y=area, line_dash="dot", annotation_text=f"{label}: even spread",
                      annotation_position="top left")
    fig.update_layout(barmode="group", yaxis_title="share of the explanation",
                      yaxis_tickformat=".0%", xaxis_title=f"{attribute} (* too few to judge)",
                      height=380, margin={"t": 30})
    return fig


def sanity_figure(result: dict[str, Any]) -> Any:
    """Similarity of the maps as more layers are randomized (1 = unchanged)."""
    import plotly.graph_objects as go

    sanity = result["trust"]["sanity"]
    fig = go.Figure()
    if sanity.get("status") != "assessed":
        return fig
    for key, name in (("similarity", "signed maps"), ("similarity_abs", "absolute maps")):
        xs, ys, lo, hi = [], [], [], []
        for s in sanity["steps"]:
            val = s.get(key) or {}
            if val.get("value") is None:
                continue
            ci = val.get("ci") or [None, None]
            xs.append(s["fraction_of_layers"])
            ys.append(val["value"])
            lo.append(val["value"] - ci[0] if ci[0] is not None else 0)
            hi.append(ci[1] - val["value"] if ci[1] is not None else 0)
        fig.add_trace(go.Scatter(x=xs, y=ys, name=name, mode="lines+markers", error_y={
            "type": "data", "symmetric": False, "array": hi, "arrayminus": lo}))
    fig.add_hline(y=sanity["threshold"], line_dash="dot", annotation_text="flag threshold")
    fig.update_layout(xaxis_title="share of layers randomized (from the output down)",
                      yaxis_title="rank similarity to the trained model's map",
                      yaxis_range=[-1, 1.05], xaxis_tickformat=".0%", height=340,
                      margin={"t": 30})
    return fig
