"""Compare model versions: paired, per-group differences with honest intervals.

Two versions of a model are compared on the **same images** — those held out from
both versions' training (the intersection of their ``split.csv`` test sets) — so
every difference is paired: a bootstrap that resamples *patients* once for both
versions, McNemar's exact test on the images whose answer flipped, the change in
the worst-vs-best group gap, and non-inferiority per group against a margin δ.
Multiplicity: Westfall & Young's step-down (:func:`auditkit.stats.bootstrap_stepdown`)
over every (group, metric) difference.

::

    from auditkit.compare import compare_audits, write_comparison
    doc, paired = compare_audits("audits/derm-v1", "audits/derm-v2")
    write_comparison(doc, paired, "audits/derm-v1-vs-v2")

The schema of ``comparison.json`` is in ``docs/compare.md``.
"""

from ._core import (
    COMPARED_METRICS,
    DEFAULT_MARGIN,
    DEFAULT_NI_METRICS,
    OVERALL,
    compare_predictions,
)
from ._families import previous_version_comparison, version_trend
from ._from_audits import from_audits
from ._inputs import (
    COMPARISON_SCHEMA_VERSION,
    CompareSettings,
    compare_audits,
    compare_models,
    find_audits,
    write_comparison,
)
from ._paired import PAIRED_METRICS, paired_bootstrap
from ._tables import family_versions, flip_table, forest_table, gap_table, trend_table

__all__ = [
    "COMPARED_METRICS",
    "COMPARISON_SCHEMA_VERSION",
    "DEFAULT_MARGIN",
    "DEFAULT_NI_METRICS",
    "OVERALL",
    "PAIRED_METRICS",
    "CompareSettings",
    "compare_audits",
    "compare_models",
    "compare_predictions",
    "family_versions",
    "find_audits",
    "flip_table",
    "forest_table",
    "from_audits",
    "gap_table",
    "paired_bootstrap",
    "previous_version_comparison",
    "trend_table",
    "version_trend",
    "write_comparison",
]
