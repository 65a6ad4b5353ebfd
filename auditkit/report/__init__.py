"""The committee's report: the Overview's survey as one self-contained HTML file or a PDF.

::

    from auditkit.report import write_report
    write_report("audits/cxr-covid@v1__covid_cxr__…", fmt="pdf")   # report.pdf + card.json

Built only from the stored ``audit.json`` (already under small-cell protection; patient
ids are never in it), the model card in the registry and the criteria. It never imports
torch or streamlit. Templates sit beside the code (``templates/``, jinja2).
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2

from .. import wording as w
from .._version import __version__
from ..criteria import Criteria
from ..exceptions import ConfigError
from ..overview import evaluate_audit, find_model_folder, list_evaluations, load_audit
from ._frameworks import FRAMEWORK_ITEMS, framework_mapping
from ._pdf import find_chromium, html_to_pdf
from ._svg import forest_svg

__all__ = [
    "FRAMEWORK_ITEMS",
    "applied_model_card",
    "build_report_html",
    "find_chromium",
    "find_model_card",
    "html_to_pdf",
    "write_report",
]

FORMATS = ("html", "pdf")


def find_model_card(name: str, version: str, registry: str | os.PathLike[str] | None = None
                    ) -> dict[str, Any] | None:
    """The ``card.json`` of ``name@version`` in the registry (read as JSON; no weights loaded)."""
    folder = find_model_folder(name, version, registry)
    if folder is None:
        return None
    try:
        return dict(json.loads((folder / "card.json").read_text(encoding="utf-8")))
    except (OSError, json.JSONDecodeError):
        return None


def _context(audit_dir: str | os.PathLike[str], criteria: Criteria | None,
             registry: str | os.PathLike[str] | None) -> dict[str, Any]:
    audit, audit_sha = load_audit(audit_dir)
    result, evaluation_path = evaluate_audit(audit_dir, criteria=criteria)
    evaluation = json.loads(evaluation_path.read_text(encoding="utf-8"))
    model = audit.get("model", {})
    card = find_model_card(model.get("name", ""), model.get("version", ""), registry) or {}
    card_matches = bool(card) and card.get("sha256") == model.get("sha256")
    sections = {a.key: i + 1 for i, a in enumerate(result.answers)}
    metric_names = sorted({m for m in ("accuracy", "balanced_accuracy", "sensitivity",
                                       "specificity", "auroc")
                           if m in ((audit.get("results", {}).get("performance") or {})
                                    .get("metrics") or {})})
    return {
        "survey": result,
        "audit": audit,
        "audit_dir": str(audit_dir),
        "audit_sha256": audit_sha,
        "card": card,
        "card_matches": card_matches,
        "evaluation": evaluation,
        "evaluation_file": f"evaluations/{evaluation_path.name}",
        "other_evaluations": [e for e in list_evaluations(audit_dir)
                              if e["criteria_hash"] != result.criteria["hash"]],
        "criteria_line": w.overview_criteria_line(
            result.criteria, recorded_in_audit=result.criteria_recorded_in_audit,
            audit_created_at=result.audit_created_at,
            evaluated_at=evaluation.get("evaluated_at")),
        "frameworks": framework_mapping(result.answers, section_numbers=sections),
        "sections": sections,
        "svgs": {a.key: [forest_svg(f) for f in a.figures if f.rows] for a in result.answers},
        "verdicts": w.VERDICTS,
        "interval_explanation": w.INTERVAL_EXPLANATION,
        "metric_meanings": [(w.metric_name(m), w.metric_meaning(m)) for m in metric_names],
        "auditkit_version": __version__,
        "report_date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "fmt_n": w.fmt_n,
        "fmt_count": w.fmt_count,
        "k": (audit.get("small_cell_protection") or {}).get("k",
                                                              audit.get("config", {})
                                                              .get("small_cell_k")),
    }


def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("auditkit.report", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def build_report_html(audit_dir: str | os.PathLike[str], *, criteria: Criteria | None = None,
                      registry: str | os.PathLike[str] | None = None,
                      signature: dict[str, Any] | None = None,
                      _ctx: dict[str, Any] | None = None) -> str:
    """The report as one self-contained HTML document (no network needed to open it).

    ``signature`` is the review store's signature block
    (:func:`auditkit.store.signature_block`): the reviewers, the chair's decision and the
    trail's chain head at the decision. Without it the signature block is left empty.
    """
    ctx = _ctx or _context(audit_dir, criteria, registry)
    return _env().get_template("report.html.j2").render(**ctx, signature=signature)


def applied_model_card(audit_dir: str | os.PathLike[str], *, criteria: Criteria | None = None,
                       registry: str | os.PathLike[str] | None = None,
                       _ctx: dict[str, Any] | None = None) -> dict[str, Any]:
    """A machine-readable card after the CHAI "applied model card" sections.

    Sections: uses and directions, warnings, trust ingredients, key metrics (usefulness,
    fairness, safety), filled from the model card and this audit's survey.
    """
    ctx = _ctx or _context(audit_dir, criteria, registry)
    s, card, audit = ctx["survey"], ctx["card"], ctx["audit"]

    def findings(*keys: str) -> list[dict[str, Any]]:
        return [{"question": a.question, "criterion": f.criterion, "verdict": f.verdict,
                 "evidence": f.evidence} for a in s.answers if a.key in keys for f in a.findings]

    return {
        "card_format": "CHAI applied model card (sections), filled by auditkit",
        "auditkit_version": __version__,
        "model_name": s.model.get("name"),
        "model_version": s.model.get("version"),
        "summary": card.get("task") or s.model.get("task"),
        "uses_and_directions": {
            "intended_use": card.get("intended_use") or "not stated in the model card",
            "out_of_scope_use": card.get("out_of_scope_use") or "not stated in the model card",
            "target_population": f"patients like those of the dataset {s.dataset.get('name')}",
        },
        "warnings": {
            "known_risks_and_limitations": card.get("limitations") or "not stated",
            "concerns_found_by_this_audit": [a.headline for a in s.answers
                                             if a.verdict == "concern"],
            "not_assessed_by_this_audit": [a.question for a in s.answers
                                           if a.verdict == "not assessed"],
        },
        "trust_ingredients": {
            "ai_system_facts": {
                "outputs": s.model.get("class_names"),
                "positive_class": s.model.get("positive_class"),
                "output_kind": s.model.get("output"),
                "weights_sha256": s.model.get("sha256"),
                "training_data": card.get("training_data") or "not stated",
                "card_matches_audited_weights": ctx["card_matches"],
            },
            "transparency_information": {
                "audit_created_at": s.audit_created_at,
                "audit_sha256": ctx["audit_sha256"],
                "dataset": {k: s.dataset.get(k) for k in ("name", "hash", "n_images",
                                                          "n_patients")},
                "criteria": {k: s.criteria[k] for k in ("name", "hash", "fixed_on", "fixed_by")},
                "criteria_recorded_in_audit_before_results": s.criteria_recorded_in_audit,
                "small_cell_k": ctx["k"],
            },
        },
        "key_metrics": {
            "usefulness_usability_efficacy": findings("accuracy"),
            "fairness_equity": findings("fairness", "evidence"),
            "safety_reliability": findings("robustness", "privacy", "explain"),
        },
        "verdicts": {a.key: a.verdict for a in s.answers},
        "framework_mapping": ctx["frameworks"],
        "generated_at": ctx["report_date"],
        "audit_config": audit.get("config", {}),
    }


def write_report(audit_dir: str | os.PathLike[str], *, fmt: str = "html",
                 out: str | os.PathLike[str] | None = None, criteria: Criteria | None = None,
                 registry: str | os.PathLike[str] | None = None,
                 signature: dict[str, Any] | None = None) -> list[Path]:
    """Write the report (``report.html`` / ``report.pdf``) and ``<stem>.card.json``.

    Returns the written paths (report first). Default ``out``: ``<audit_dir>/report.<fmt>``.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"Report format must be one of {list(FORMATS)}; got {fmt!r} instead.")
    target = Path(out) if out else Path(audit_dir) / f"report.{fmt}"
    ctx = _context(audit_dir, criteria, registry)
    html = build_report_html(audit_dir, signature=signature, _ctx=ctx)
    target.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "html":
        target.write_text(html, encoding="utf-8")
    else:
        html_to_pdf(html, target)
    card = applied_model_card(audit_dir, _ctx=ctx)
    card_path = target.with_name(target.stem + ".card.json")
    card_path.write_text(json.dumps(card, indent=2, allow_nan=False, default=str) + "\n",
                         encoding="utf-8")
    return [target, card_path]
