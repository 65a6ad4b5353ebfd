"""Control models are listed apart from demo models and flagged on every page."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

REPO = Path(__file__).resolve().parents[2]
PAGES = [("1_Fairness.py", "fairness"), ("2_Explanations.py", "explain"),
         ("3_Robustness.py", "robustness"), ("4_Privacy.py", "privacy")]
BANNER = "Control model — not a model for patients"


def test_landing_page_separates_demo_and_control_models(data_root: Path) -> None:
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120).run()
    assert not at.exception and not at.error
    headers = [h.value for h in at.subheader]
    assert headers.index("Demo models") < next(
        i for i, h in enumerate(headers) if h.startswith("Control models"))
    text = "\n".join(m.value for m in at.markdown)
    # every demo model is listed before the first control model
    first_control = text.index("control-")
    for name in ("derm-lesion v1", "derm-lesion v2", "cxr-covid v1", "mri-tumor v1"):
        assert text.index(name) < first_control
    banners = [w.value for w in at.warning if BANNER in w.value]
    controls = ("control-group-failure", "control-shortcut", "control-fragile",
                "control-memoriser", "control-reference")
    assert len(banners) == len(controls)
    assert all("NEVER USE ON PATIENTS" in b for b in banners)
    assert any("Planted defect" in b and "I-II" in b for b in banners)


@pytest.mark.parametrize(("page", "key"), PAGES)
def test_every_page_warns_when_a_control_model_is_selected(page: str, key: str,
                                                           data_root: Path) -> None:
    at = AppTest.from_file(str(REPO / "pages" / page), default_timeout=120).run()
    assert not at.exception
    picker = at.sidebar.selectbox(key=f"{key}_model")
    assert not picker.value.startswith("control-")  # a demo model is the default
    assert not any(BANNER in w.value for w in at.warning)
    picker.set_value("control-shortcut@v1").run()
    assert not at.exception
    banners = [w.value for w in at.warning if BANNER in w.value]
    assert len(banners) == 1 and "magenta square" in banners[0]


def test_compare_page_warns_for_a_control_family(data_root: Path) -> None:
    at = AppTest.from_file(str(REPO / "pages" / "5_Compare_versions.py"),
                           default_timeout=120).run()
    assert not at.exception
    assert not at.sidebar.selectbox(key="compare_family").value.startswith("control-")
    assert not any(BANNER in w.value for w in at.warning)
    at.sidebar.selectbox(key="compare_family").set_value("control-memoriser").run()
    assert not at.exception
    assert any(BANNER in w.value and "150 photographs" in w.value for w in at.warning)
