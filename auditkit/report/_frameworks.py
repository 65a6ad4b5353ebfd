"""The framework items a committee is asked about, and which survey answers evidence them.

EU AI Act (Regulation (EU) 2024/1689) and the FUTURE-AI guideline (Lekadir et al., BMJ 2025).
An item is *covered* when at least one of its survey answers was assessed (any verdict but
"not assessed"); otherwise the report says "not covered by this audit" and why.
"""

from __future__ import annotations

from typing import Any

__all__ = ["FRAMEWORK_ITEMS", "framework_mapping"]

#: (framework, item, what it asks, survey answer keys that evidence it, note when uncovered)
FRAMEWORK_ITEMS: tuple[tuple[str, str, str, tuple[str, ...], str], ...] = (
    ("EU AI Act", "Art. 10(2)(f)",
     "examination of training, validation and testing data in view of possible biases",
     ("fairness", "evidence"), "run the fairness check on data with patient attributes"),
    ("EU AI Act", "Art. 10(2)(g)",
     "measures to detect, prevent and mitigate the biases identified",
     ("fairness",), "run the fairness check (it includes a threshold-mitigation what-if)"),
    ("EU AI Act", "Art. 13(3)(b)(ii)",
     "the level of accuracy and robustness against which the system was tested",
     ("accuracy", "robustness"), "run the performance and robustness checks"),
    ("EU AI Act", "Art. 13(3)(b)(v)",
     "performance regarding specific persons or groups of persons",
     ("fairness",), "run the fairness check on data with patient attributes"),
    ("EU AI Act", "Art. 15(1)–(3)", "an appropriate level of accuracy, declared with its metrics",
     ("accuracy",), "run the performance check"),
    ("EU AI Act", "Art. 15(4)", "robustness to errors, faults and inconsistencies",
     ("robustness",), "run the robustness check (image corruptions)"),
    ("EU AI Act", "Art. 15(5)",
     "resilience to adversarial examples and confidentiality attacks",
     ("robustness", "privacy"), "run the robustness and privacy checks"),
    ("EU AI Act", "Annex IV §2(g)",
     "validation and testing procedures, with test reports dated and signed",
     ("accuracy",), "run an audit; this report must then be dated and signed"),
    ("FUTURE-AI", "Fairness", "equal performance across patient groups",
     ("fairness", "evidence"), "run the fairness check"),
    ("FUTURE-AI", "Universality", "generalisation beyond the development setting",
     (), "needs an external validation on data from other sites, which this audit is not"),
    ("FUTURE-AI", "Traceability", "documented, versioned models, data and evaluations",
     ("accuracy",), "run an audit"),
    ("FUTURE-AI", "Usability", "usable and useful in the clinical workflow",
     (), "needs a usability study with the intended users, which this audit is not"),
    ("FUTURE-AI", "Robustness", "stable under real-world variation and attacks",
     ("robustness",), "run the robustness check"),
    ("FUTURE-AI", "Explainability", "explanations that are meaningful and trustworthy",
     ("explain",), "run the explain check"),
)


def framework_mapping(answers: list[Any], *, section_numbers: dict[str, int]
                      ) -> list[dict[str, Any]]:
    """One row per framework item: the evidence in this report, or "not covered"."""
    by_key = {a.key: a for a in answers}
    rows = []
    for framework, item, asks, keys, missing in FRAMEWORK_ITEMS:
        covered = [by_key[k] for k in keys if k in by_key and by_key[k].verdict != "not assessed"]
        if covered:
            evidence = "; ".join(f"section {section_numbers[a.key]} ({a.label})" for a in covered)
            if item == "Annex IV §2(g)":
                evidence += "; this report is dated on its first page; signature block at the end"
            if item == "Traceability":
                evidence += "; weights, dataset and criteria hashes on the first page"
        else:
            evidence = f"not covered by this audit: {missing}"
        rows.append({"framework": framework, "item": item, "asks": asks,
                     "evidence": evidence, "covered": bool(covered)})
    return rows
