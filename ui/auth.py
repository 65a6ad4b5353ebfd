"""Sign-in for the dashboard: local accounts, or the hospital's single sign-on (OIDC).

Local accounts live in the review store (argon2id-hashed passwords, managed with
``auditkit users``). Where ``.streamlit/secrets.toml`` has an ``[auth]`` section
(Streamlit's own OIDC settings: ``redirect_uri``, ``cookie_secret``, ``client_id``,
``client_secret``, ``server_metadata_url``; see docs/review.md), a "Sign in with single
sign-on" button calls ``st.login()``; the identity provider's e-mail address then picks
the auditkit account (and so the roles), which an administrator created beforehand with
``auditkit users add NAME --email ... --sso-only``.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from auditkit.exceptions import AuditKitError, AuthenticationError
from auditkit.store import ReviewStore, UserInfo, default_db_url

_SESSION_KEY = "auditkit_user"


@st.cache_resource(show_spinner=False)
def review_store(url: str) -> ReviewStore:
    """One store (one connection pool) per database URL for the whole server."""
    return ReviewStore(url)


def current_store() -> ReviewStore:
    return review_store(default_db_url())


def sso_configured() -> bool:
    """True when Streamlit's OIDC settings (``[auth]`` in secrets.toml) are present."""
    try:
        return "auth" in st.secrets
    except Exception:  # no secrets file at all  # noqa: BLE001
        return False


def _sso_user(store: ReviewStore) -> UserInfo | None:
    user: Any = getattr(st, "user", None)
    if user is None or not getattr(user, "is_logged_in", False):
        return None
    email = user.get("email") if hasattr(user, "get") else None
    if not email:
        st.error("The single sign-on provider did not send an e-mail address; auditkit "
                 "needs it to find your account.")
        return None
    try:
        return store.user_by_email(str(email))
    except AuthenticationError as exc:
        st.error(str(exc))
        return None


def signed_in_user(store: ReviewStore) -> UserInfo | None:
    """The signed-in account (re-read from the store, so a disabled account drops out)."""
    name = st.session_state.get(_SESSION_KEY)
    if name:
        try:
            user = store.user(name)
        except Exception:  # noqa: BLE001 - account removed: sign out
            user = None
        if user is not None and user.active:
            return user
        st.session_state.pop(_SESSION_KEY, None)
    if sso_configured():
        return _sso_user(store)
    return None


def session_user() -> UserInfo | None:
    """The signed-in account of this browser session, or None.

    Opens the review store only when someone signed in (locally or by single sign-on), so
    an anonymous viewer's page never creates a database.
    """
    if not st.session_state.get(_SESSION_KEY) and not sso_configured():
        return None
    try:
        return signed_in_user(current_store())
    except AuditKitError:  # the store cannot be opened: nobody is signed in
        return None


def require_user(store: ReviewStore) -> UserInfo:
    """The signed-in account, or the sign-in form and ``st.stop()``."""
    user = signed_in_user(store)
    if user is not None:
        with st.sidebar:
            st.markdown(f"Signed in as **{user.full_name}** ({user.name}): "
                        f"{', '.join(user.roles)}")
            if st.button("Sign out", key="signout"):
                st.session_state.pop(_SESSION_KEY, None)
                if sso_configured() and getattr(st.user, "is_logged_in", False):
                    # st.logout() queues a redirect to the provider's end-session page;
                    # a rerun now would clear that queue before the browser hears of it
                    # (the identity cookie would survive, and the next visit sign in again),
                    # so stop here and let the redirect start the new session.
                    st.logout()
                    st.stop()
                st.rerun()
        return user
    st.subheader("Sign in")
    st.caption("The committee's review is for signed-in members only: every answer and "
               "decision is recorded with its author in a tamper-evident trail.")
    if sso_configured():
        if st.button("Sign in with single sign-on", key="signin_sso"):
            st.login()
        st.caption("Or with a local account:")
    name = st.text_input("Account name", key="signin_name")
    password = st.text_input("Password", type="password", key="signin_password")
    if st.button("Sign in", key="signin_submit"):
        try:
            user = store.authenticate(name, password)
        except AuthenticationError as exc:
            st.error(f"Not signed in: {exc}")
        else:
            st.session_state[_SESSION_KEY] = user.name
            st.rerun()
    st.stop()
    raise AssertionError("unreachable")  # st.stop() raises
