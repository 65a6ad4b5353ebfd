"""Explanations: SHAP attributions for image models, and whether they can be trusted.

* :class:`ImageExplainer` computes attributions with ``shap`` (expected gradients, or the
  model-agnostic Partition explainer).
* :func:`completeness`, :func:`deletion_insertion` and :func:`sanity_similarity` check
  them (Petsiuk et al., 2018; Adebayo et al., 2018).
* :func:`region_shares` measures how much of each explanation falls on the border, the
  corners and outside the centre, where rulers and watermarks sit.
* :func:`gallery_figure`, :func:`shares_figure`, :func:`curves_figure` and
  :func:`sanity_figure` draw the Explanations page (plotly).
* :func:`run_check` is the ``explain`` check of an audit (``--checks explain``).
"""

from ._base import METHODS, Explanations, ImageExplainer, ModelLogits, class_scores
from ._check import (
    ATTRIBUTIONS_FILE,
    DEFAULTS,
    load_attributions,
    outcomes,
    run_check,
    save_attributions,
    select_images,
)
from ._shortcuts import REGIONS, area_shares, region_masks, region_shares
from ._trust import (
    completeness,
    deletion_insertion,
    parameter_layers,
    randomized_copy,
    rank_similarity,
    sanity_similarity,
)
from ._views import (
    curves_figure,
    gallery_figure,
    image_views,
    page_colour_limit,
    sanity_figure,
    shares_figure,
)

__all__ = [
    "ATTRIBUTIONS_FILE",
    "DEFAULTS",
    "Explanations",
    "ImageExplainer",
    "METHODS",
    "ModelLogits",
    "REGIONS",
    "area_shares",
    "class_scores",
    "completeness",
    "curves_figure",
    "deletion_insertion",
    "gallery_figure",
    "image_views",
    "load_attributions",
    "outcomes",
    "page_colour_limit",
    "parameter_layers",
    "randomized_copy",
    "rank_similarity",
    "region_masks",
    "region_shares",
    "run_check",
    "sanity_figure",
    "sanity_similarity",
    "save_attributions",
    "select_images",
    "shares_figure",
]
