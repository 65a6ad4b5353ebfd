"""Real-browser check of the Overview on a stored audit of the real cxr-covid v1 model.

Writes an audit (performance, fairness, privacy) into the server's audits folder, opens the
Overview in headless Chromium, checks the concern sentence and the seven answers are on the
screen, and saves ``test-artifacts/overview_cxr-covid.png``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from auditkit.cli import main
from auditkit.overview import QUESTIONS
from tests.test_browser import (  # noqa: F401  (the browser fixture is used by name)
    ARTIFACTS,
    CHROMEDRIVER,
    CHROMIUM,
    REPO,
    _free_port,
    _wait_for_text,
    browser,
)

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
def server_with_audit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from tests.conftest import real_data_root

    root = real_data_root()
    if root is None:
        pytest.skip("real datasets not found (expected ../shared/datasets or $AUDITKIT_DATASETS)")
    audits = tmp_path_factory.mktemp("audits")
    assert main(["audit", "--model", "cxr-covid@v1", "--dataset", "covid_cxr", "--checks",
                 "fairness,privacy", "--n-boot", "200", "--device", "cpu", "--data-root",
                 str(root), "--out", str(audits / "cxr-covid@v1__covid_cxr__browser"),
                 "--cache-dir", str(tmp_path_factory.getbasetemp() / "demo-prediction-cache")]
                ) == 0
    port = _free_port()
    env = {**os.environ, "AUDITKIT_AUDITS": str(audits), "AUDITKIT_DATASETS": str(root)}
    log = open(tmp_path_factory.mktemp("log") / "streamlit.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(REPO / "app.py"), "--server.headless",
         "true", "--server.port", str(port), "--server.address", "127.0.0.1",
         "--browser.gatherUsageStats", "false"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    import socket

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


def test_overview_of_cxr_covid_shows_the_concern(server_with_audit: str,
                                                 browser: object) -> None:  # noqa: F811
    ARTIFACTS.mkdir(exist_ok=True)
    browser.get(f"{server_with_audit}/Overview")  # type: ignore[attr-defined]
    body = _wait_for_text(browser, "no earlier version compared", timeout=120)
    assert ("This model is right on 59% of test images; answering 'covid' for every image "
            "would be right on 66%.") in body
    for _, question, _, _ in QUESTIONS:
        assert question in body
    assert "▲ concern" in body
    assert not browser.find_elements(  # type: ignore[attr-defined]
        "css selector", '[data-testid="stException"]')
    browser.save_screenshot(str(ARTIFACTS / "overview_cxr-covid.png"))  # type: ignore[attr-defined]
