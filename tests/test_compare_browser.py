"""Real-browser check of the Compare versions page on two stored audits.

Builds a 40-image stand-in for covid_cxr and two versions of a tiny model (each with a
``split.csv``, 30 images held out from both), audits both, starts ``streamlit run app.py``
on that audits folder, opens "Compare versions" in headless Chromium and checks that the
summary, the verdict words, the forest plot, the flip table, the gap section and the trend
of every version are on the screen; saves ``test-artifacts/compare_versions.png``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from tests._browser import ARTIFACTS, BROWSER_MARKS, streamlit_server
from tests._browser import wait_for_text as _wait_for_text
from tests.conftest import BrightnessNet, write_model, write_tiny_covid
from tests.ui.test_compare_page import DarkerNet

pytestmark = BROWSER_MARKS


def _tiny_family(tmp: Path) -> dict[str, str]:
    """Data, registry and two stored audits; returns the environment the server needs."""
    import auditkit

    root = tmp / "data" / "covid_cxr"
    images = write_tiny_covid(root)
    for version, net, train in (("v1", BrightnessNet(1), images[:5]),
                                ("v2", DarkerNet(), images[5:10])):
        folder = write_model(tmp / "reg" / "cxr-tiny" / version, net, fmt="torchscript",
                             channels=1, size=8, name="cxr-tiny", version=version,
                             output="binary_logit", class_names=["not_covid", "covid"])
        card = json.loads((folder / "card.json").read_text())
        card["dataset"] = "covid_cxr"
        (folder / "card.json").write_text(json.dumps(card))
        pd.DataFrame({"image": images,
                      "split": ["train" if im in train else "test" for im in images]}).to_csv(
            folder / "split.csv", index=False)
    # the tiny TorchScript models are code this test wrote: trusted, as in tests/conftest.py
    env = {"AUDITKIT_MODELS": str(tmp / "reg"), "AUDITKIT_DATA_ROOT": str(tmp / "data"),
           "AUDITKIT_AUDITS": str(tmp / "audits"), "AUDITKIT_CACHE": str(tmp / "cache"),
           "AUDITKIT_TRUST_MODEL_CODE": "1"}
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        ds = auditkit.load_dataset("covid_cxr", data_root=tmp / "data")
        for version in ("v1", "v2"):
            model = auditkit.load_model(f"cxr-tiny@{version}", device="cpu")
            auditkit.run_audit(model=model, dataset=ds,
                               out_dir=tmp / "audits" / f"cxr-tiny@{version}__covid_cxr",
                               config=auditkit.AuditConfig(checks=["performance", "fairness"],
                                                           n_boot=100))
    return env


@pytest.fixture(scope="module")
def compare_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = _tiny_family(tmp_path_factory.mktemp("compare"))
    with streamlit_server(env, tmp_path_factory.mktemp("log") / "streamlit.log") as url:
        yield url


def test_compare_versions_page_shows_the_paired_comparison(compare_server: str,
                                                           browser: object) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    browser.get(f"{compare_server}/Compare_versions")  # type: ignore[attr-defined]
    body = _wait_for_text(browser, "Every version of the family", timeout=120)
    assert not browser.find_elements(  # type: ignore[attr-defined]
        "css selector", '[data-testid="stException"]'), body[:2000]
    assert "cxr-tiny: v2 against v1" in body, body[:2000]
    # the plain-language summary first, with the product's verdict words
    assert body.index("In plain words.") < body.index("1. Differences by group")
    assert "Compared on 30 of 40 images, held out from both versions" in body
    assert any(w in body for w in ("✔ meets", "▲ concern", "? cannot tell", "– not assessed"))
    assert "not worse than v1 by more than 5 points of accuracy" in body
    for section in ("2. Which images changed answer", "3. Did the gap between groups narrow?",
                    "4. Every version of the family"):
        assert section in body
    browser.save_screenshot(str(ARTIFACTS / "compare_versions.png"))  # type: ignore[attr-defined]
    # the forest plot and the trend of every version are drawn
    plots = browser.find_elements(  # type: ignore[attr-defined]
        "css selector", '[data-testid="stPlotlyChart"]')
    assert len(plots) == 2
