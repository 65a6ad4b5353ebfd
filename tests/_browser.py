"""What every real-browser test shares: the Chromium driver, a `streamlit run app.py` server,
waiting for a page to settle, and full-page screenshots.

The browser tests (tests/test_browser*.py) start servers only through :func:`streamlit_server`
and drivers only through :func:`chrome`, so the flags, the start-up wait and the clean-up are
the same everywhere.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"

#: The marks of every browser test module (``pytestmark = BROWSER_MARKS``).
BROWSER_MARKS = [
    pytest.mark.browser,
    pytest.mark.skipif(not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
                       reason="Debian chromium and chromium-driver are not installed "
                              "(apt-get install chromium chromium-driver; .ci/run does this)"),
    # selenium's own housekeeping warnings are not ours
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def streamlit_server(env: dict[str, str], log_file: Path, *extra: str, port: int | None = None,
                     start_timeout: float = 60) -> Iterator[str]:
    """``streamlit run app.py`` with ``env`` added to this process's environment; yields its URL.

    ``extra`` are more ``streamlit run`` options; ``port`` defaults to a free one. The
    server is stopped (and waited for) on exit; its output goes to ``log_file``.
    """
    port = port or free_port()
    with open(log_file, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(REPO / "app.py"),
             "--server.headless", "true", "--server.port", str(port),
             "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false", *extra],
            cwd=REPO, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.time() + start_timeout
            while time.time() < deadline:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=1):
                        break
                except OSError:
                    time.sleep(0.5)
            else:
                pytest.fail(f"streamlit did not start within {start_timeout:.0f} s "
                            f"(log: {log_file})")
            yield f"http://127.0.0.1:{port}"
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=20)


@contextmanager
def chrome(*, height: int = 1800, downloads: Path | None = None) -> Iterator[Any]:
    """Headless Debian Chromium, 1400 px wide (downloads saved to ``downloads`` when given)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", f"--window-size=1400,{height}",
                 "--disable-dev-shm-usage"):
        opts.add_argument(flag)
    if downloads is not None:
        opts.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                               "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    if downloads is not None:
        driver.execute_cdp_cmd("Browser.setDownloadBehavior",
                               {"behavior": "allow", "downloadPath": str(downloads)})
    try:
        yield driver
    finally:
        driver.quit()


def wait_for_text(driver: Any, needle: str, timeout: float = 90) -> str:
    """The page's text once ``needle`` is on it and the app is idle (or the last text seen)."""
    deadline = time.time() + timeout
    body = ""
    while time.time() < deadline:
        body = driver.find_element("tag name", "body").text
        running = driver.find_elements("css selector", '[data-testid="stStatusWidget"]')
        if needle in body and not running:
            return body
        time.sleep(1)
    return body


def full_page_screenshot(driver: Any, path: Path) -> None:
    """The whole page, not just the window: Streamlit scrolls inside its main block, so the
    window is made as tall as that block for the capture, then put back."""
    size = driver.get_window_size()
    height = driver.execute_script(
        "const m = document.querySelector('[data-testid=\"stMain\"]') || document.body;"
        "return Math.max(m.scrollHeight, document.body.scrollHeight);")
    driver.set_window_size(size["width"], min(int(height) + 200, 16000))
    time.sleep(1.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(path))
    driver.set_window_size(size["width"], size["height"])


_READY_JS = """
const needle = arguments[0];
const shown = [...document.querySelectorAll('h1, h2, h3')].some(
    h => h.textContent.includes(needle));
const app = document.querySelector('[data-testid="stApp"]');
const state = app === null ? null : app.getAttribute('data-test-script-state');
return shown && state === 'notRunning'
    && document.querySelector('[data-testid="stStatusWidget"]') === null;"""


def time_until_idle(driver: Any, url: str, needle: str, timeout: float = 180,
                    settle: float = 1.0, *, click: Any = None) -> tuple[float, str]:
    """Open ``url``; seconds until heading ``needle`` shows and Streamlit has finished.

    Finished means: a heading holding ``needle`` is on the page, the app's root says its
    script is not running (Streamlit's ``data-test-script-state`` attribute) and no status
    widget ("Running…") is shown, and that stays so for ``settle`` seconds (a rerun can
    start a moment after a run ends, so one idle look is not proof). The time
    returned is the start of that quiet window, measured from just before navigation,
    polled every 0.05 s with a small script that reads the DOM without laying the page out
    (reading the whole page's text each poll cost the browser tenths of a second on a long
    page); it is ``timeout`` (with the last text seen) when the page never settles.

    ``click``: a link element to click instead of loading ``url`` (navigation inside the
    running app, as a reviewer moves between pages in the sidebar: no new session, no
    front-end start-up).
    """
    start = time.perf_counter()
    if click is None:
        driver.get(url)
    else:
        driver.execute_script("arguments[0].click();", click)
    quiet_since: float | None = None
    while time.perf_counter() - start < timeout:
        ready = driver.execute_script(_READY_JS, needle)
        now = time.perf_counter()
        if ready:
            quiet_since = quiet_since if quiet_since is not None else now
            if now - quiet_since >= settle:
                return quiet_since - start, driver.find_element("tag name", "body").text
        else:
            quiet_since = None
        time.sleep(0.05)
    return timeout, driver.find_element("tag name", "body").text
