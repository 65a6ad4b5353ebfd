"""The committee's report: self-contained HTML, PDF text, machine-readable card, privacy."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import auditkit
from auditkit import wording
from auditkit.cli import main
from auditkit.criteria import default_criteria
from auditkit.overview import evaluate_audit, survey
from auditkit.report import FRAMEWORK_ITEMS, build_report_html, find_chromium, write_report

needs_chromium = pytest.mark.skipif(
    find_chromium() is None,
    reason="PDF output needs Debian's chromium (apt-get install chromium; .ci/run does this)")

PATIENT_IDS = [f"MRN-77{i:02d}-QX" for i in range(16)]
EMAIL = "jane.doe.planted@example.org"


def _pdf_text(path: Path) -> str:
    from pypdf import PdfReader

    return "\n".join(page.extract_text() or "" for page in PdfReader(str(path)).pages)


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


@pytest.fixture
def planted(tmp_path: Path, brightness_model_dir: Path) -> Path:
    """An audit of a dataset with planted patient ids, an e-mail column and a tiny group."""
    root = tmp_path / "planted"
    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(64):
        label = "malignant" if i % 2 else "benign"
        arr = np.clip(rng.normal(190 if i % 2 else 60, 25, (16, 16, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(arr).save(root / "images" / f"{i}.png")
        rows.append({"image": f"images/{i}.png", "label": label,
                     "patient_id": PATIENT_IDS[i // 4], "sex": "F" if (i // 4) % 2 else "M",
                     # 4 images of one patient form a group far below k = 10
                     "site": "rare" if i < 4 else ("a" if i < 34 else "b"),
                     "contact": EMAIL if i == 7 else ""})
    pd.DataFrame(rows).to_csv(root / "table.csv", index=False)
    (root / "auditkit.toml").write_text(
        'name = "planted"\ntable = "table.csv"\nimage_column = "image"\nlabel_column = "label"\n'
        'classes = ["benign", "malignant"]\npatient_column = "patient_id"\n'
        '[[attributes]]\nname = "sex"\ncolumn = "sex"\nkind = "sex"\n'
        '[[attributes]]\nname = "site"\ncolumn = "site"\nkind = "categorical"\n')
    model = auditkit.load_model(brightness_model_dir, device="cpu")
    dataset = auditkit.load_dataset(root / "auditkit.toml")
    out = tmp_path / "audit"
    auditkit.run_audit(model=model, dataset=dataset, out_dir=out,
                       config=auditkit.AuditConfig(checks=["performance", "fairness", "privacy"],
                                                   n_boot=100, device="cpu"))
    return out


def test_html_report_is_self_contained_and_answers_every_question(planted: Path) -> None:
    html = build_report_html(planted)
    assert "<script" not in html and "<link" not in html
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", html)
    audit = json.loads((planted / "audit.json").read_text())
    result = survey(audit)
    for answer in result.answers:
        assert answer.question.replace("'", "&#39;") in html
        assert wording.verdict_label(answer.verdict) in html
    # first page: identity, hashes, n, criteria, version
    for needle in (audit["model"]["sha256"], audit["dataset"]["hash"],
                   default_criteria("binary").hash, f"auditkit {auditkit.__version__}",
                   wording.fmt_n(audit["dataset"]["n_images"], audit["dataset"]["n_patients"])):
        assert needle in html
    for _, item, *_ in FRAMEWORK_ITEMS:
        assert item in html
    assert "not covered by this audit" in html  # explain never ran here
    assert "approve / approve with conditions / reject" in html
    assert "<svg" in html  # static figures


def test_no_patient_identifier_or_suppressed_value_reaches_the_report(planted: Path) -> None:
    paths = write_report(planted, fmt="html")
    texts = [p.read_text() for p in paths]
    audit = json.loads((planted / "audit.json").read_text())
    hidden = [g for g in audit["results"]["fairness"]["groups"] if g.get("suppressed")]
    assert any(g["group"] == "rare" for g in hidden)  # the planted small group was suppressed
    for text in texts:
        for pid in PATIENT_IDS:
            assert pid not in text
        assert EMAIL not in text and "jane.doe" not in text
        for g in hidden:  # listed by name at most, never with a number
            assert f"{g['group']} (n = " not in text
    assert "contact" in texts[0]  # the identifier scan names the column kind, never the value


@needs_chromium
def test_pdf_has_the_verdicts_hashes_and_n(planted: Path, tmp_path: Path) -> None:
    out = tmp_path / "r" / "committee.pdf"
    assert main(["report", str(planted), "--format", "pdf", "--out", str(out)]) == 0
    assert out.read_bytes()[:5] == b"%PDF-"
    text = _pdf_text(out)
    flat = _squash(text)
    audit = json.loads((planted / "audit.json").read_text())
    for answer in survey(audit).answers:
        assert wording.verdict_label(answer.verdict) in text
    assert audit["model"]["sha256"] in flat and audit["dataset"]["hash"] in flat
    assert default_criteria("binary").hash in flat
    assert _squash(wording.fmt_n(audit["results"]["performance"]["n"],
                                 audit["results"]["performance"]["n_patients"])) in flat
    for pid in PATIENT_IDS:
        assert pid not in flat
    assert EMAIL not in flat
    card = json.loads((out.parent / "committee.card.json").read_text())
    assert set(card) >= {"uses_and_directions", "warnings", "trust_ingredients", "key_metrics"}
    assert card["trust_ingredients"]["ai_system_facts"]["weights_sha256"] == \
        audit["model"]["sha256"]


def test_report_refuses_bad_input(tmp_path: Path, planted: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "must hold audit.json" in capsys.readouterr().err
    with pytest.raises(auditkit.ConfigError, match="one of \\['html', 'pdf'\\]; got 'docx'"):
        write_report(planted, fmt="docx")


def test_pdf_without_chromium_says_how_to_install(planted: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUDITKIT_CHROMIUM", str(tmp_path / "no-such-browser"))
    with pytest.raises(auditkit.ConfigError, match="apt-get install chromium"):
        write_report(planted, fmt="pdf")


DEMO = [("derm-lesion@v1", "fitzpatrick17k", "concern"),
        ("derm-lesion@v2", "fitzpatrick17k", "concern"),
        ("cxr-covid@v1", "covid_cxr", "concern"),
        ("mri-tumor@v1", "lgg_mri", None)]


@pytest.mark.slow
@needs_chromium
@pytest.mark.parametrize(("model", "dataset", "accuracy_verdict"), DEMO)
def test_demo_model_reports(tmp_path: Path, data_root: Path, model: str, dataset: str,
                            accuracy_verdict: str | None,
                            tmp_path_factory: pytest.TempPathFactory) -> None:
    out = tmp_path / "a"
    # one prediction cache for the session's demo-model tests: each model predicts once
    cache = tmp_path_factory.getbasetemp() / "demo-prediction-cache"
    assert main(["audit", "--model", model, "--dataset", dataset, "--out", str(out),
                 "--checks", "fairness,privacy", "--n-boot", "200", "--device", "cpu",
                 "--data-root", str(data_root), "--cache-dir", str(cache)]) == 0
    audit = json.loads((out / "audit.json").read_text())
    result = survey(audit)
    acc = result.answer("accuracy")
    majority = acc.findings[0]
    assert majority.source == "baseline"
    if accuracy_verdict:
        assert acc.verdict == accuracy_verdict
    else:  # mri-tumor: 90% against 68% for always 'no_tumor'
        assert majority.verdict == "meets"
    if model == "derm-lesion@v1":  # trained on skin types I-IV only (its card says so)
        result, _ = evaluate_audit(out)
        evidence = " ".join(f.evidence for f in result.answer("evidence").findings)
        assert "skin_type: never seen in training: V (57 test images), VI (29 test images)" \
            in evidence
        assert result.answer("evidence").verdict == "concern"
    for key in ("explain", "robustness"):  # not run in this audit
        assert result.answer(key).verdict == "not assessed"
    assert main(["report", str(out), "--format", "pdf"]) == 0
    text = _pdf_text(out / "report.pdf")
    flat = _squash(text)
    for answer in result.answers:
        assert wording.verdict_label(answer.verdict) in text
    assert "not assessed" in text and "no earlier version compared" in text
    assert audit["model"]["sha256"] in flat and audit["dataset"]["hash"] in flat
    assert result.criteria["hash"] in flat
    assert _squash(wording.fmt_n(audit["dataset"]["n_images"],
                                 audit["dataset"]["n_patients"])) in flat
    if model == "cxr-covid@v1":
        assert _squash("This model is right on 59% of test images; answering 'covid' for every "
                       "image would be right on 66%.") in flat
