"""Robustness: how much it takes to fool the model, and whether some groups are easier.

Two families, both measured overall and per patient group with bootstrap intervals:

* adversarial attacks from torchattacks (FGSM, PGD L∞/L2, CW, DeepFool, Square,
  AutoAttack) through one wrapper, :class:`AttackModel`;
* clinical corruptions (noise, blur, JPEG, exposure, rotation, crop, and by
  modality colour / white-balance shifts for skin photos and windowing for X-rays).

The audit check is :func:`run_check` (``--checks robustness``); see
``docs/robustness.md`` for the JSON it returns and the CSV it writes.
"""

from ._base import AttackModel, check_attackable
from ._check import (
    DEFAULT_OPTIONS,
    adversarial_examples,
    detect_modality,
    plain_summary,
    resolve_options,
    run_check,
    sample_images,
)
from ._tables import attack_table, corruption_table, min_perturbation_table
from .attacks import (
    ATTACKS,
    DEFAULT_ATTACKS,
    AdversarialAttack,
    AttackOutcome,
    AttackSpec,
    budget_label,
    predict_classes,
)
from .corruptions import CORRUPTIONS, SEVERITIES, CorruptionSpec, corrupt, corruptions_for

__all__ = [
    "ATTACKS",
    "CORRUPTIONS",
    "DEFAULT_ATTACKS",
    "DEFAULT_OPTIONS",
    "SEVERITIES",
    "AdversarialAttack",
    "AttackModel",
    "AttackOutcome",
    "AttackSpec",
    "CorruptionSpec",
    "adversarial_examples",
    "attack_table",
    "budget_label",
    "check_attackable",
    "corrupt",
    "corruption_table",
    "corruptions_for",
    "detect_modality",
    "min_perturbation_table",
    "plain_summary",
    "predict_classes",
    "resolve_options",
    "run_check",
    "sample_images",
]
