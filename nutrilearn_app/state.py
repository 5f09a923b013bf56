"""Per-process resources (built once) and per-session state shared by the pages."""

from __future__ import annotations

import re

import streamlit as st

from nutrilearn.config import Settings

DEFAULT_USER = "analyst"
_USER_NAME = re.compile(r"^[\w .@'-]{1,64}$", re.UNICODE)


def settings() -> Settings:
    return Settings.from_env()


@st.cache_resource(show_spinner="Loading the food classifier…")
def classifier():
    """The backbone is built once per process and shared by every session."""
    from nutrilearn.serving import load_classifier

    return load_classifier(settings())


@st.cache_resource(show_spinner=False)
def prediction_logger():
    """The durable, asynchronous prediction logger, or None before tracking is set up."""
    from nutrilearn import serving

    factory = getattr(serving, "prediction_logger", None)
    return factory(settings()) if factory is not None else None


def analyzer():
    from nutrilearn.serving import build_analyzer

    return build_analyzer(settings(), classifier=classifier(), sink=prediction_logger())


def valid_user_name(name: str) -> bool:
    return bool(_USER_NAME.match(name.strip()))


def current_user() -> str:
    """The user picked in the sidebar (pages run alone in tests fall back to a default)."""
    return st.session_state.get("user") or DEFAULT_USER


def sidebar() -> None:
    """Who am I, and where predictions go."""
    with st.sidebar:
        st.subheader("Who am I")
        name = st.text_input("User name", value=current_user(), max_chars=64, key="user_input",
                             help="Every prediction, meal and query is recorded under this name.")
        if valid_user_name(name):
            st.session_state["user"] = name.strip()
        else:
            st.warning("Use 1-64 letters, digits, spaces or . @ ' - _")
        cfg = settings()
        st.caption(f"Tracking: `{cfg.tracking_uri}`")
