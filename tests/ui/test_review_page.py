"""The Review page under AppTest: sign-in, answers, the rules as the page shows them."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from auditkit.cli import main
from auditkit.exceptions import AuditKitError
from auditkit.store import QUESTION_IDS, ReviewStore

REPO = Path(__file__).resolve().parents[2]
PAGE = str(REPO / "pages" / "7_Review.py")
PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def cxr_audit(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> Path:
    out = tmp_path_factory.mktemp("review") / "cxr-covid@v1__covid_cxr__page"
    assert main(["audit", "--model", "cxr-covid@v1", "--dataset", "covid_cxr", "--checks",
                 "fairness", "--n-boot", "50", "--out", str(out), "--data-root", str(data_root),
                 "--cache-dir", str(tmp_path_factory.mktemp("cache"))]) == 0
    return out


@pytest.fixture
def committee(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
              cxr_audit: Path) -> Iterator[tuple[ReviewStore, int]]:
    from argon2 import PasswordHasher

    from auditkit.store import _accounts

    monkeypatch.setattr(_accounts, "_hasher",  # small argon2id cost in tests
                        lambda: PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    url = f"sqlite:///{tmp_path / 'review.db'}"
    monkeypatch.setenv("AUDITKIT_DB_URL", url)
    st.cache_resource.clear()
    st.cache_data.clear()
    store = ReviewStore(url)
    for name, full, role in [("eve", "Eve Engineer", "engineer"),
                             ("rita", "Rita Reviewer", "reviewer"),
                             ("rob", "Rob Reviewer", "reviewer"), ("carl", "Carl Chair", "chair")]:
        store.add_user(name, full_name=full, roles=[role], password=PASSWORD, actor="system:t")
    folder = tmp_path / "audit"
    shutil.copytree(cxr_audit, folder)
    audit = store.register_audit(folder, actor="eve")
    yield store, audit.id
    store.close()
    st.cache_resource.clear()


def _signed_in(name: str) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    assert not at.exception
    at.text_input(key="signin_name").input(name)
    at.text_input(key="signin_password").input(PASSWORD)
    at.button(key="signin_submit").click().run()
    assert not at.exception, at.exception
    return at


def _tables(at: AppTest, column: str) -> list:
    return [d.value for d in at.dataframe if column in d.value.columns]


def _text(at: AppTest) -> str:
    return "\n".join([m.value for m in at.markdown] + [c.value for c in at.caption]
                     + [e.value for e in at.error] + [s.value for s in at.success])


def test_page_asks_to_sign_in_and_refuses_a_wrong_password(committee) -> None:
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    assert not at.exception
    assert "Sign in" in [h.value for h in at.subheader]
    assert not at.radio  # nothing of the review is drawn before sign-in
    at.text_input(key="signin_name").input("rita")
    at.text_input(key="signin_password").input("not the password")
    at.button(key="signin_submit").click().run()
    assert "unknown account, wrong password, or the account is disabled" in at.error[0].value


def test_reviewer_answers_and_chair_meets_the_rules(committee) -> None:
    store, audit_id = committee
    at = _signed_in("rita")
    assert "Signed in as **Rita Reviewer**" in _text(at)
    # the in-house view: every group with its exact n, small ones marked, none hidden
    groups = _tables(at, "images (patients)")[0]
    assert not groups["images (patients)"].str.contains("–").any()
    assert (groups["judgeable"] == "too few to judge").any()
    for qid in QUESTION_IDS:
        at.radio(key=f"answer_{qid}").set_value("agree")
        at.text_input(key=f"comment_{qid}").input(f"fine on {qid}")
    at.radio(key="answer_fairness").set_value("needs_more_evidence")
    at.button(key="save_review").click().run()
    assert not at.exception
    reviews = {r.question: r for r in store.reviews(audit_id) if r.reviewer == "rita"}
    assert set(reviews) == set(QUESTION_IDS)
    assert reviews["fairness"].answer == "needs_more_evidence"
    answers = _tables(at, "answer")  # one table per question, in the Overview's order
    assert len(answers) == len(QUESTION_IDS)
    assert answers[QUESTION_IDS.index("fairness")]["answer"].tolist() == ["needs more evidence"]
    assert answers[0]["reviewer"].tolist() == ["Rita Reviewer"]
    # a reviewer sees no decision form; the chair with one review of two is refused
    assert not [r for r in at.radio if r.key == "decision_choice"]
    chair = _signed_in("carl")
    chair.radio(key="decision_choice").set_value("approve")
    chair.button(key="decision_submit").click().run()
    assert "Not recorded: a decision needs 2 complete reviews" in _text(chair)
    for qid in QUESTION_IDS:
        store.record_review(audit_id, question=qid, answer="agree", actor="rob")
    chair = _signed_in("carl")
    chair.radio(key="decision_choice").set_value("approve_with_conditions")
    chair.text_area(key="decision_conditions").input("Adults only")
    chair.button(key="decision_submit").click().run()
    assert not chair.exception
    decision = store.decisions(audit_id)[-1]
    assert (decision.chair, decision.decision, decision.conditions) == (
        "carl", "approve_with_conditions", "Adults only")
    text = _text(chair)
    assert "**approve with conditions** by carl" in text and decision.event_hash in text
    assert store.verify_trail().ok


def test_engineer_registers_an_audit_on_file(committee, tmp_path: Path,
                                             cxr_audit: Path) -> None:
    store, _ = committee
    import os

    second = Path(os.environ["AUDITKIT_AUDITS"]) / "cxr-second"
    shutil.copytree(cxr_audit, second)  # the very same audit.json: refused
    at = _signed_in("eve")
    at.button(key="register_existing").click().run()
    assert "this audit.json is registered already as audit 1 (by eve)" in _text(at)
    doc = json.loads((second / "audit.json").read_text())
    doc["created_at"] = "2026-01-01T00:00:00+00:00"  # another run of the same audit
    (second / "audit.json").write_text(json.dumps(doc))
    at = _signed_in("eve")
    at.button(key="register_existing").click().run()
    assert not at.exception
    assert "Registered as audit #2" in _text(at)
    assert len(store.audits()) == 2
    assert not [r for r in at.radio if r.key and r.key.startswith("answer_")]


def test_single_sign_on_button_appears_when_oidc_is_configured(committee) -> None:
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.secrets["auth"] = {"redirect_uri": "http://localhost:8501/oauth2callback",
                          "cookie_secret": "x" * 32, "client_id": "auditkit",
                          "client_secret": "s", "server_metadata_url":
                          "https://login.hospital.example/.well-known/openid-configuration"}
    at.run()
    assert not at.exception
    assert at.button(key="signin_sso").label == "Sign in with single sign-on"
    assert at.text_input(key="signin_name")  # local accounts still work beside it
    plain = AppTest.from_file(PAGE, default_timeout=120).run()
    assert not [b for b in plain.button if b.key == "signin_sso"]


def _fairness_groups(audits: Path, cxr_audit: Path, user: str | None) -> tuple[AppTest, dict]:
    """The Fairness page on the cxr audit, sex × accuracy; ``user`` signed in or not."""
    dest = audits / cxr_audit.name
    if not dest.exists():
        shutil.copytree(cxr_audit, dest)
    at = AppTest.from_file(str(REPO / "pages" / "1_Fairness.py"), default_timeout=120)
    if user is not None:
        at.session_state["auditkit_user"] = user  # what the sign-in form stores
    at.run()
    at.sidebar.selectbox(key="fairness_model").set_value("cxr-covid@v1").run()
    at.selectbox(key="fairness_attribute").set_value("sex").run()
    at.selectbox(key="fairness_metric").set_value("accuracy").run()
    assert not at.exception
    table = next(d.value for d in at.dataframe if "the denominator counts" in d.value.columns)
    return at, {row["group"]: row for row in table.to_dict("records")}


def test_signed_in_reviewer_sees_the_exact_n_an_anonymous_viewer_does_not(
        committee, cxr_audit: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from auditkit.export import audience_for

    audits = Path(os.environ["AUDITKIT_AUDITS"])
    truth = json.loads((cxr_audit / "audit.in-house.json").read_text())
    unknown = next(g for g in truth["results"]["fairness"]["groups"]
                   if (g["attribute"], g["group"]) == ("sex", "unknown"))
    assert (unknown["n"], unknown["n_patients"]) == (3, 2)  # 3 images of 2 patients
    # signed in (a reviewer of the institution): the in-house copy, every n
    at, rows = _fairness_groups(audits, cxr_audit, "rita")
    assert (rows["unknown"]["images"], rows["unknown"]["patients"]) == ("3", "2")
    assert rows["unknown"]["too few to judge"] == "True"
    assert "In-house view (signed in as Rita Reviewer)" in _text(at)
    # anonymous: the deployment's default audience, release; the group is there, its n is not
    at, rows = _fairness_groups(audits, cxr_audit, None)
    assert "unknown" in rows and rows["unknown"]["images"] == "–"  # withheld
    assert "Release view" in _text(at) and "In-house view" not in _text(at)
    # a disabled account is no longer inside the institution
    store, _ = committee
    store.disable_user("rita", actor="system:t")
    at, rows = _fairness_groups(audits, cxr_audit, "rita")
    assert rows["unknown"]["images"] == "–" and "Release view" in _text(at)
    # a committee-only deployment may make in-house the default; anything else is refused
    monkeypatch.setenv("AUDITKIT_AUDIENCE", "in-house")
    assert audience_for(None) == "in-house"
    monkeypatch.setenv("AUDITKIT_AUDIENCE", "public")
    with pytest.raises(AuditKitError, match=r"\$AUDITKIT_AUDIENCE must be one of "
                                            r".'in-house', 'release'.; got 'public' instead"):
        audience_for(None)
