"""Real-browser smoke test: `streamlit run app.py` driven by Debian's headless Chromium.

Visits the landing page and every page under pages/, checks the content is there and no
exception is shown, and saves a screenshot of each to test-artifacts/.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
                       reason="Debian chromium and chromium-driver are not installed "
                              "(apt-get install chromium chromium-driver; .ci/run does this)"),
    # selenium's own housekeeping warnings are not ours
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = _free_port()
    env = {**os.environ, "AUDITKIT_AUDITS": str(tmp_path_factory.mktemp("audits"))}
    log = open(tmp_path_factory.mktemp("log") / "streamlit.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(REPO / "app.py"), "--server.headless",
         "true", "--server.port", str(port), "--server.address", "127.0.0.1",
         "--browser.gatherUsageStats", "false"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
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
    yield url
    proc.terminate()
    proc.wait(timeout=20)
    log.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1400,1800",
                 "--disable-dev-shm-usage"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    yield driver
    driver.quit()


def _wait_for_text(driver: object, needle: str, timeout: float = 90) -> str:
    deadline = time.time() + timeout
    body = ""
    while time.time() < deadline:
        body = driver.find_element("tag name", "body").text  # type: ignore[attr-defined]
        running = driver.find_elements(  # type: ignore[attr-defined]
            "css selector", '[data-testid="stStatusWidget"]')
        if needle in body and not running:
            return body
        time.sleep(1)
    return body


def _page_paths() -> list[tuple[str, str]]:
    pages = []
    for f in sorted((REPO / "pages").glob("*.py")):
        name = re.sub(r"^\d+_", "", f.stem)
        pages.append((f.stem, name))
    return pages


def test_landing_page_lists_models(server: str, browser: object) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    browser.get(server)  # type: ignore[attr-defined]
    body = _wait_for_text(browser, "Audits on file")
    for model in ("derm-lesion v1", "derm-lesion v2", "cxr-covid v1", "mri-tumor v1"):
        assert model in body
    assert "weights match the card" in body
    assert not browser.find_elements("css selector", '[data-testid="stException"]')  # type: ignore[attr-defined]
    browser.save_screenshot(str(ARTIFACTS / "landing.png"))  # type: ignore[attr-defined]


@pytest.mark.parametrize(("stem", "path"), _page_paths())
def test_every_page_opens_without_error(server: str, browser: object, stem: str,
                                        path: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    browser.get(f"{server}/{path}")  # type: ignore[attr-defined]
    body = _wait_for_text(browser, "Model", timeout=90)
    assert "Model" in body, body[:500]
    assert not browser.find_elements("css selector", '[data-testid="stException"]'), body[:2000]  # type: ignore[attr-defined]
    assert "Traceback" not in body
    browser.save_screenshot(str(ARTIFACTS / f"page_{stem}.png"))  # type: ignore[attr-defined]
