"""The committee's journey in a real browser (headless Chromium against `streamlit run`).

An engineer signs in, runs and registers an audit; two reviewers sign in in turn and
answer every question; the chair records the decision and downloads the decision
record and the committee's report, whose texts must each hold the decision, the names, the
date and the chain head.
"""

from __future__ import annotations

import contextlib
import html
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from auditkit.store import QUESTION_IDS, ReviewStore
from tests._browser import ARTIFACTS, BROWSER_MARKS, CHROMEDRIVER, CHROMIUM, streamlit_server
from tests._browser import free_port as _free_port

pytestmark = BROWSER_MARKS
PASSWORD = "correct horse battery"
PEOPLE = [("eve", "Eve Engineer", "engineer"), ("rita", "Rita Reviewer", "reviewer"),
          ("rob", "Rob Reviewer", "reviewer"), ("carl", "Carl Chair", "chair")]


def _streamlit(root: Path, env: dict[str, str], *extra: str, port: int | None = None
               ) -> Iterator[str]:
    """``streamlit run app.py`` on ``port`` (default a free one); yields its address
    (tests/_browser.py ``streamlit_server``, the one way the browser tests start a server)."""
    with streamlit_server(env, root / "streamlit.log", *extra, port=port) as url:
        yield url


@pytest.fixture(scope="module")
def review_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    root = tmp_path_factory.mktemp("review-browser")
    url = f"sqlite:///{root / 'review.db'}"
    store = ReviewStore(url)
    for name, full, role in PEOPLE:
        store.add_user(name, full_name=full, roles=[role], password=PASSWORD,
                       actor="system:test")
    store.close()
    env = {"AUDITKIT_AUDITS": str(root / "audits"), "AUDITKIT_DB_URL": url,
           "AUDITKIT_CACHE": str(root / "cache")}
    for server in _streamlit(root, env):
        yield server, url


@pytest.fixture(scope="module")
def chrome(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[object, Path]]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    downloads = tmp_path_factory.mktemp("downloads")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1400,2400",
                 "--disable-dev-shm-usage"):
        opts.add_argument(flag)
    opts.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                           "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.execute_cdp_cmd("Browser.setDownloadBehavior",
                           {"behavior": "allow", "downloadPath": str(downloads)})
    yield driver, downloads
    driver.quit()


def _idle(driver, needle: str, timeout: float = 120, absent: str | None = None) -> str:
    """Wait until ``needle`` is on the page (``absent`` is not) and the app is idle."""
    deadline = time.time() + timeout
    body = ""
    while time.time() < deadline:
        body = driver.find_element("tag name", "body").text
        running = driver.find_elements("css selector", '[data-testid="stStatusWidget"]')
        if needle in body and not running and not (absent and absent in body):
            time.sleep(0.5)
            return driver.find_element("tag name", "body").text
        time.sleep(0.5)
    raise AssertionError(f"{needle!r} did not appear within {timeout} s:\n{body[-3000:]}")


def _in(driver, key: str, css: str, timeout: float = 60):
    """The element once drawn (under load a widget can be drawn a while after the text)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.2).until(
        expected_conditions.presence_of_element_located(
            (By.CSS_SELECTOR, f".st-key-{key} {css}")),
        message=f".st-key-{key} {css} not shown within {timeout} s at {driver.current_url}")


def _click(driver, key: str) -> None:
    el = _in(driver, key, "button")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", el)
    driver.execute_script("arguments[0].click();", el)  # not intercepted by open popovers


def _choose(driver, key: str, option: str) -> None:
    """Pick a radio option, and check it took (a click during a redraw can be lost)."""
    _in(driver, key, "label")
    for _attempt in range(4):
        labels = [lb for lb in driver.find_elements("css selector", f".st-key-{key} label")
                  if lb.text.strip() == option]
        if not labels:
            raise AssertionError(f"no option {option!r} in {key}")
        with contextlib.suppress(Exception):  # redrawn between finding and clicking
            driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", labels[0])
            labels[0].click()
        time.sleep(0.3)
        for label in driver.find_elements("css selector", f".st-key-{key} label"):
            if label.text.strip() == option and any(
                    box.is_selected() for box in label.find_elements("css selector", "input")):
                return
    raise AssertionError(f"option {option!r} of {key} did not stay selected")


def _type(driver, key: str, text: str, css: str = "input") -> None:
    from selenium.webdriver.common.keys import Keys

    box = _in(driver, key, css)
    box.clear()
    box.send_keys(text)
    # Enter commits a text input (a password box keeps focus on its eye icon on Tab);
    # a text area commits on leaving it
    box.send_keys(Keys.TAB if css == "textarea" else Keys.ENTER)
    time.sleep(0.5)


def _wait_for_reviews(url: str, reviewer: str, timeout: float = 60) -> None:
    store = ReviewStore(url)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if reviewer in store.complete_reviewers(1):
            break
        time.sleep(0.5)
    store.close()
    assert time.time() < deadline, f"{reviewer}'s answers were not saved"


def _sign_in(driver, server: str, name: str) -> str:
    driver.get(f"{server}/Review")
    _idle(driver, "Account name")
    _type(driver, "signin_name", name)
    _idle(driver, "Account name")
    _type(driver, "signin_password", PASSWORD)
    _idle(driver, "Account name")
    _click(driver, "signin_submit")
    return _idle(driver, "Signed in as", timeout=60, absent="Account name")


def _sign_out(driver) -> None:
    for _attempt in range(3):  # a click that lands during a redraw is lost: click again
        with contextlib.suppress(Exception):
            _click(driver, "signout")
        with contextlib.suppress(AssertionError):
            _idle(driver, "Account name", timeout=40)
            return
    _idle(driver, "Account name")


def test_three_roles_review_and_decide_then_download_the_record_and_report(review_server, chrome) -> None:
    server, url = review_server
    driver, downloads = chrome
    ARTIFACTS.mkdir(exist_ok=True)
    # the engineer runs and registers an audit of the cxr model
    body = _sign_in(driver, server, "eve")
    assert "Or run a new audit of cxr-covid@v1 on covid_cxr" in body  # the first model
    _click(driver, "register_run")
    _idle(driver, "Registered as audit #1", timeout=240)
    driver.save_screenshot(str(ARTIFACTS / "review_engineer.png"))
    _sign_out(driver)
    # two reviewers answer every question
    for reviewer, doubtful in [("rita", None), ("rob", "fairness")]:
        _sign_in(driver, server, reviewer)
        for qid in QUESTION_IDS:
            _choose(driver, f"answer_{qid}",
                    "needs more evidence" if qid == doubtful else "agree")
            time.sleep(0.3)
        _type(driver, f"comment_{QUESTION_IDS[1]}", f"{reviewer}: group sizes checked")
        _click(driver, "save_review")
        try:
            _wait_for_reviews(url, reviewer, timeout=40)
        except AssertionError:  # under load a click during a redraw can be lost: once more
            _click(driver, "save_review")
            _wait_for_reviews(url, reviewer)
        driver.save_screenshot(str(ARTIFACTS / f"review_{reviewer}.png"))
        _sign_out(driver)
    store = ReviewStore(url)
    assert store.complete_reviewers(1) == ["rita", "rob"]
    # the chair decides
    _sign_in(driver, server, "carl")
    _choose(driver, "decision_choice", "approve with conditions")
    _type(driver, "decision_conditions", "Adults only; re-check women's sensitivity",
          css="textarea")
    _click(driver, "decision_submit")
    body = _idle(driver, "by carl on")
    assert "approve with conditions" in body
    driver.save_screenshot(str(ARTIFACTS / "review_chair.png"))
    seq, head = store.head()
    decision = store.decisions(1)[-1]
    assert decision.event_hash == head
    today = datetime.now(UTC).date().isoformat()
    needles = ["approve with conditions", "Adults only; re-check women's sensitivity",
               "Carl Chair", "Rita Reviewer", "Rob Reviewer", today,
               head]
    # the decision record, then the committee's report with its signature block filled in
    for key, name, extra in [
            ("download_record", "decision-record-audit-1.html",
             [f"event #{seq}"]),
            ("download_report", "report-audit-1.html",
             [f"event {seq}, hash", "Chain head at the decision"])]:
        _click(driver, key)
        path = downloads / name
        deadline = time.time() + 90  # the report is written on demand
        while not path.exists() and time.time() < deadline:
            time.sleep(0.5)
        assert path.exists(), f"{name} was not downloaded"
        text = html.unescape(path.read_text(encoding="utf-8"))
        for needle in needles + extra:
            assert needle in text, (name, needle)
    assert store.verify_trail().ok
    assert not driver.find_elements("css selector", '[data-testid="stException"]')
    store.close()


@pytest.fixture(scope="module")
def sso_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, str]]:
    """auditkit with Streamlit's OIDC settings, against a real OIDC provider on this machine.

    The provider is ``oidc-provider-mock`` (a test OpenID Connect provider built on authlib):
    discovery document, authorization-code flow, signed ID tokens, userinfo, over HTTP on
    127.0.0.1 (hence ``AUTHLIB_INSECURE_TRANSPORT``). Its sign-in form takes a subject; an
    unknown subject gets the claim ``email = subject``.
    """
    from oidc_provider_mock import User, run_server_in_thread

    root = tmp_path_factory.mktemp("sso-browser")
    url = f"sqlite:///{root / 'review.db'}"
    store = ReviewStore(url)
    store.add_user("carl", full_name="Carl Chair", roles=["chair"], email="carl@hospital.example",
                   actor="system:test")  # no password: a single-sign-on-only account
    store.close()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AUTHLIB_INSECURE_TRANSPORT", "1")
        with run_server_in_thread(user_claims=[User(sub="carl.c", claims={
                "email": "carl@hospital.example", "name": "Dr Carl Chair"})]) as provider:
            issuer = f"http://127.0.0.1:{provider.server_port}"
            port = _free_port()
            secrets = root / "secrets.toml"
            secrets.write_text(
                "[auth]\n"
                f'redirect_uri = "http://127.0.0.1:{port}/oauth2callback"\n'
                f'cookie_secret = "{"s3cr3t" * 6}"\n'
                'client_id = "auditkit"\nclient_secret = "auditkit-secret"\n'
                f'server_metadata_url = "{issuer}/.well-known/openid-configuration"\n',
                encoding="utf-8")
            env = {"AUDITKIT_AUDITS": str(root / "audits"), "AUDITKIT_DB_URL": url,
                   "AUDITKIT_CACHE": str(root / "cache"), "AUTHLIB_INSECURE_TRANSPORT": "1"}
            for server in _streamlit(root, env, "--secrets.files", str(secrets), port=port):
                yield server, url, issuer


def _wait_css(driver, selector: str, timeout: float = 60):  # noqa: ANN202
    """The element once the (possibly slow, under load) page has drawn it."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.2).until(
        expected_conditions.element_to_be_clickable((By.CSS_SELECTOR, selector)),
        message=f"{selector!r} not shown within {timeout} s at {driver.current_url}")


def _sso_sign_in(driver, server: str, issuer: str, subject: str) -> str:
    driver.get(f"{server}/Review")
    _idle(driver, "Sign in with single sign-on")
    _click(driver, "signin_sso")
    deadline = time.time() + 60  # Streamlit sends the browser to the provider
    while not driver.current_url.startswith(issuer) and time.time() < deadline:
        time.sleep(0.3)
    assert driver.current_url.startswith(f"{issuer}/oauth2/authorize"), driver.current_url
    box = _wait_css(driver, 'input[name="sub"]')
    box.send_keys(subject)
    box.submit()  # the provider redirects back to Streamlit's /oauth2callback
    deadline = time.time() + 60
    while not driver.current_url.startswith(server) and time.time() < deadline:
        time.sleep(0.3)
    driver.get(f"{server}/Review")
    return _idle(driver, "Sign in" if subject.startswith("nobody") else "Signed in as",
                 timeout=60)


def test_single_sign_on_round_trip_picks_the_account_by_email(sso_server, chrome) -> None:
    server, url, issuer = sso_server
    driver, _ = chrome
    driver.delete_all_cookies()
    # a real authorization-code round trip: provider form, ID token, Streamlit's st.user
    body = _sso_sign_in(driver, server, issuer, "carl.c")
    assert "Signed in as Carl Chair (carl): chair" in body  # the auditkit account's name
    assert "Account name" not in body
    driver.save_screenshot(str(ARTIFACTS / "review_sso.png"))
    # st.logout(): the provider's end-session page, then back. Under load a click that lands
    # while the page is still redrawing is lost (the button is replaced), so click again.
    for _attempt in range(4):
        if driver.current_url.startswith(issuer):
            break
        with contextlib.suppress(Exception):  # the button is being redrawn: next attempt
            _click(driver, "signout")
        deadline = time.time() + 30
        while not driver.current_url.startswith(f"{issuer}/oauth2/end_session") \
                and time.time() < deadline:
            time.sleep(0.3)
    assert driver.current_url.startswith(f"{issuer}/oauth2/end_session"), driver.current_url
    _wait_css(driver, 'form button[type="submit"]').click()
    deadline = time.time() + 60
    while not driver.current_url.startswith(server) and time.time() < deadline:
        time.sleep(0.3)
    driver.get(f"{server}/Review")
    _idle(driver, "Sign in with single sign-on", absent="Signed in as")
    # someone the provider knows but auditkit does not: told so, not signed in
    body = _sso_sign_in(driver, server, issuer, "nobody@hospital.example")
    assert ("nobody@hospital.example signed in through single sign-on but has no active "
            "auditkit account") in body
    assert "Signed in as" not in body
    assert not driver.find_elements("css selector", '[data-testid="stException"]')
