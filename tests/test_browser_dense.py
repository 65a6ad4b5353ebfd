"""Real-browser check: the Overview and Fairness pages on the multi-label and segmentation demos.

Writes audits of cxr-findings@v1 (covid_cxr_findings) and mri-tumor-seg@v1 (a slice of
lgg_mri) into the server's audits folder, picks each model in the sidebar of headless
Chromium, and checks the verdict words and the task's own measures are on the screen.
Screenshots: ``test-artifacts/overview_<model>.png``, ``fairness_<model>.png``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from auditkit.cli import main
from tests.test_browser import (  # noqa: F401  (the browser fixture is used by name)
    ARTIFACTS,
    CHROMEDRIVER,
    CHROMIUM,
    REPO,
    _free_port,
    _wait_for_text,
    browser,
)
from tests.test_dense_cli import _lgg_slice

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
                       reason="Debian chromium and chromium-driver are not installed "
                              "(apt-get install chromium chromium-driver; .ci/run does this)"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
]


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
    port = _free_port()
    env = {**os.environ, "AUDITKIT_AUDITS": str(audits), "AUDITKIT_DATASETS": str(root),
           "AUDITKIT_DATASET_REGISTRY": str(Path(slice_toml).parent)}
    log = open(tmp_path_factory.mktemp("log") / "streamlit.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(REPO / "app.py"), "--server.headless",
         "true", "--server.port", str(port), "--server.address", "127.0.0.1",
         "--browser.gatherUsageStats", "false"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("streamlit did not start within 60 s")
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=20)
    log.close()


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
                                                        browser: object) -> None:  # noqa: F811
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
                                                   browser: object) -> None:  # noqa: F811
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
