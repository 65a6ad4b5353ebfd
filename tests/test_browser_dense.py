"""Real-browser check: the Overview and Fairness pages on the multi-label and segmentation demos.

Writes audits of cxr-findings@v1 (covid_cxr_findings) and mri-tumor-seg@v1 (a slice of
lgg_mri) into the server's audits folder, picks each model in the sidebar of headless
Chromium, and checks the verdict words and the task's own measures are on the screen.
Screenshots: ``test-artifacts/overview_<model>.png``, ``fairness_<model>.png``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from auditkit.cli import main
from tests._browser import ARTIFACTS, BROWSER_MARKS, streamlit_server
from tests._browser import wait_for_text as _wait_for_text
from tests.test_dense_cli import _lgg_slice

pytestmark = [*BROWSER_MARKS, pytest.mark.slow]


@pytest.fixture(scope="module")
def server_with_dense_audits(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from tests.conftest import real_data_root

    root = real_data_root()
    if root is None:
        pytest.skip("real datasets not found (expected ../shared/datasets or $AUDITKIT_DATASETS)")
    audits = tmp_path_factory.mktemp("audits")
    slice_toml = _lgg_slice(root, tmp_path_factory.mktemp("data") / "lgg")
    for model, dataset in (("cxr-findings@v1", "covid_cxr_findings"),
                           ("mri-tumor-seg@v1", str(slice_toml))):
        assert main(["audit", "--model", model, "--dataset", dataset, "--checks",
                     "fairness,privacy", "--n-boot", "200", "--device", "cpu", "--data-root",
                     str(root), "--out", str(audits / model.replace("@", "_"))]) == 0
    env = {"AUDITKIT_AUDITS": str(audits), "AUDITKIT_DATASETS": str(root),
           "AUDITKIT_DATASET_REGISTRY": str(Path(slice_toml).parent)}
    with streamlit_server(env, tmp_path_factory.mktemp("log") / "streamlit.log") as url:
        yield url


def _pick(driver: object, label: str, value: str) -> None:
    """Choose ``value`` in the sidebar selectbox labelled ``label``, then let the page rerun.

    Streamlit redraws the sidebar while it reruns, so a box found mid-rerun may go stale:
    the pick is retried on a fresh one.
    """
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.keys import Keys

    for _attempt in range(5):
        try:
            for box in driver.find_elements(  # type: ignore[attr-defined]
                    "css selector", '[data-testid="stSidebar"] [data-testid="stSelectbox"]'):
                if box.text.startswith(label):
                    field = box.find_element("css selector", "input")
                    field.click()
                    field.send_keys(value)
                    field.send_keys(Keys.ENTER)
                    break
            else:
                raise AssertionError(f"no sidebar selectbox {label!r}")
        except StaleElementReferenceException:
            time.sleep(1)
            continue
        _wait_for_text(driver, value, timeout=60)  # and no rerun still running
        return
    raise AssertionError(f"the sidebar selectbox {label!r} kept going stale")


def test_overview_and_fairness_show_the_multilabel_demo(server_with_dense_audits: str,
                                                        browser: object) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    browser.get(f"{server_with_dense_audits}/Overview")  # type: ignore[attr-defined]
    _wait_for_text(browser, "Model", timeout=120)
    _pick(browser, "Model", "cxr-findings@v1")
    body = _wait_for_text(browser, "covid19: sensitivity at least 80%", timeout=120)
    assert "covid19: sensitivity at least 80%" in body, body[:3000]
    assert "▲ concern" in body
    assert not browser.find_elements(  # type: ignore[attr-defined]
        "css selector", '[data-testid="stException"]')
    browser.save_screenshot(str(ARTIFACTS / "overview_cxr-findings.png"))  # type: ignore[attr-defined]


def test_fairness_page_shows_the_segmentation_demo(server_with_dense_audits: str,
                                                   browser: object) -> None:
    browser.get(f"{server_with_dense_audits}/Fairness")  # type: ignore[attr-defined]
    _wait_for_text(browser, "Model", timeout=120)
    _pick(browser, "Model", "mri-tumor-seg@v1")
    _pick(browser, "Dataset", "lgg_mri_slice")
    body = _wait_for_text(browser, "Boundary error (HD95) is in pixels", timeout=120)
    assert "is a segmentation model" in body and "Dice gap" in body, body[:3000]
    assert "Boundary error (HD95) is in pixels of the reference mask." in body
    assert not browser.find_elements(  # type: ignore[attr-defined]
        "css selector", '[data-testid="stException"]')
    browser.save_screenshot(str(ARTIFACTS / "fairness_mri-tumor-seg.png"))  # type: ignore[attr-defined]
