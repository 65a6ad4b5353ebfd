"""The "I trust this model's code" switch: code-carrying models run only when it is on."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from ui.common import stored_audits

PAGE = str(Path(__file__).resolve().parents[2] / "pages" / "1_Fairness.py")


def test_untrusted_torchscript_is_not_run_until_the_switch_is_on(
        tiny_covid: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AUDITKIT_TRUST_MODEL_CODE", raising=False)
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    assert not at.exception
    switch = at.sidebar.toggle(key="trust_model_code__cxr-tiny@v1")
    assert switch.value is False
    assert any("carries code and is not trusted" in w.value for w in at.sidebar.warning)
    at.sidebar.button(key="fairness_run").click().run()
    assert not at.exception
    errors = " ".join(e.value for e in at.error)
    assert "was not loaded" in errors and "--trust-model-code" in errors
    assert stored_audits() == []  # nothing ran, nothing was written
    switch.set_value(True).run()
    at.sidebar.button(key="fairness_run").click().run()
    assert not at.exception and not at.error
    audits = stored_audits()  # (AppTest may replay the earlier click on the toggle's rerun)
    assert audits and all(a["audit"]["model"]["trust"]["trusted_by"] == "user" for a in audits)
    assert "cxr-tiny@v1" in " ".join(m.value for m in at.markdown)


def test_safe_and_bundled_models_show_no_switch(data_root: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AUDITKIT_TRUST_MODEL_CODE", raising=False)
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    for ref in ("derm-lesion@v1", "mri-tumor@v1", "cxr-covid@v1"):
        at.sidebar.selectbox(key="fairness_model").set_value(ref).run()
        assert not at.exception
        assert not [t for t in at.sidebar.toggle if t.key.startswith("trust_model_code")], ref
