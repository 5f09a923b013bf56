"""Login glue: Streamlit's OpenID Connect support (``st.login`` / ``st.user`` / ``st.logout``)
turned into a ``nutrilearn.auth.Identity``.

A provider is configured in ``.streamlit/secrets.toml`` (``[auth]``; see README, "Logins and
roles"). Without one the app runs in local mode, as before: the sidebar's user picker says
who you are and the sidebar says plainly that there is no login.
"""

from __future__ import annotations

from collections.abc import Mapping

import streamlit as st

from nutrilearn import auth
from nutrilearn.auth import Identity
from nutrilearn_app import state


def _auth_section() -> Mapping | None:
    try:
        section = st.secrets.get("auth")
    except Exception:  # no secrets file at all (Streamlit raises its own not-found error)
        return None
    return section if isinstance(section, Mapping) and section else None


def providers() -> list[str | None]:
    """The configured providers: None for the unnamed ``[auth]`` one, then named
    ``[auth.NAME]`` sections."""
    section = _auth_section()
    if section is None:
        return []
    found: list[str | None] = [None] if "client_id" in section else []
    found += [name for name, value in section.items()
              if isinstance(value, Mapping) and "client_id" in value]
    return found


def login_enabled() -> bool:
    """True when a login provider is configured (otherwise: local mode)."""
    return bool(providers())


def role_config() -> auth.RoleConfig:
    return auth.RoleConfig.from_settings(state.settings())


def _claims() -> dict:
    try:
        return dict(st.user.to_dict())
    except Exception:  # outside a script run
        return {}


def session_state() -> tuple[Identity | None, bool]:
    """(the logged-in identity or None, whether a login was there but is too old)."""
    claims = _claims()
    config = role_config()
    ident = auth.identity_from_claims(claims, config)
    if ident is None:
        return None, False
    if auth.session_expired(claims, config):
        return None, True
    return ident, False


def identity() -> Identity | None:
    """Who is acting: the logged-in identity (None when logged out or expired), or in local
    mode the user picked in the sidebar."""
    if not login_enabled():
        return Identity.local(str(st.session_state.get("user") or state.DEFAULT_USER))
    return session_state()[0]


def login_screen() -> None:
    _, expired = session_state()
    st.title("🥗 NutriLearn")
    if expired:
        st.warning("Your session has expired. Log in again to continue.")
    st.markdown("Log in to analyze photos, keep your meal log and, with the right role, "
                "watch and manage the models.")
    for provider in providers():
        label = "Log in" if provider is None else f"Log in with {provider.replace('-', ' ').title()}"
        if st.button(label, type="primary", key=f"login_{provider or 'default'}"):
            st.login(provider)
    st.caption("Your meal log is private: only you can see or change it.")


def login_gate() -> Identity:
    """The acting identity; when a provider is configured and nobody (valid) is logged in,
    shows the login screen as the only page and stops the run."""
    ident = identity()
    if ident is not None:
        return ident
    st.navigation([st.Page(login_screen, title="Log in", icon="🔐", default=True)], position="hidden").run()
    st.stop()
    raise AssertionError("unreachable")  # st.stop() ends the run


def sidebar_identity(ident: Identity) -> None:
    """Who is logged in (never a token), their role, and the logout button."""
    st.subheader("Who am I")
    st.markdown(f"**{ident.display_name}**")
    st.caption(" · ".join(x for x in (ident.email, f"role: {ident.role}") if x))
    st.caption("Predictions, feedback, meals and model changes are recorded under this login.")
    if st.button("Log out", key="logout"):
        st.logout()


def denied(action: str, ident: Identity | None) -> str:
    need = " or ".join(sorted(auth.PERMISSIONS[action]))
    who = ident.display_name if ident else "nobody"
    return f"This page needs the {need} role; {who} is {'an' if (ident and ident.role[0] in 'aeiou') else 'a'} " \
           f"{ident.role if ident else 'visitor'}."
