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
def _classifier(models_dir: str):
    from nutrilearn.serving import load_classifier

    model = load_classifier(settings())
    model.warm_up()  # trace the forward pass now, not on the first user's photo
    return model


def classifier():
    """The backbone is built once per process and shared by every session."""
    return _classifier(str(settings().models_dir))


# Resources are keyed by the settings they depend on: one per store per process (and
# tests that point NUTRILEARN_HOME elsewhere get their own, never a stale one).
@st.cache_resource(show_spinner=False)
def _prediction_logger(tracking_uri: str, spool_dir: str, experiment: str):
    from nutrilearn.serving import prediction_logger as build

    return build(settings())


def prediction_logger():
    """The durable, asynchronous prediction logger of this process."""
    cfg = settings()
    return _prediction_logger(cfg.tracking_uri, str(cfg.spool_dir), cfg.predictions_experiment)


@st.cache_resource(show_spinner=False)
def _prediction_reader(tracking_uri: str, spool_dir: str, experiment: str):
    from nutrilearn.tracking.reader import PredictionReader

    return PredictionReader(settings())


def prediction_reader():
    """One incremental reader per store and process: closed batches are read once."""
    cfg = settings()
    return _prediction_reader(cfg.tracking_uri, str(cfg.spool_dir), cfg.predictions_experiment)


@st.cache_resource(show_spinner=False)
def _meal_store(url: str):
    from nutrilearn.meals import MealStore

    return MealStore(url)


def meal_store():
    """One meal store (engine and pool) per database per process."""
    return _meal_store(settings().database_url)


def analyzer():
    from nutrilearn.serving import build_analyzer

    return build_analyzer(settings(), classifier=classifier(), sink=prediction_logger())


def valid_user_name(name: str) -> bool:
    return bool(_USER_NAME.match(name.strip()))


def current_user() -> str:
    """The user picked in the sidebar (pages run alone in tests fall back to a default)."""
    return st.session_state.get("user") or DEFAULT_USER


NEW_USER = "➕ New user…"


def _known_users() -> list[str]:
    try:
        return meal_store().list_users()
    except Exception as exc:  # a busy or unreachable meal log must not hide the app
        st.caption(f"Users unavailable: {type(exc).__name__}")
        return []


def sidebar() -> None:
    """Who am I (pick or create), and where predictions go."""
    with st.sidebar:
        st.subheader("Who am I")
        me = current_user()
        options = [*sorted(set(_known_users()) | {me}), NEW_USER]
        choice = st.selectbox("User", options, index=options.index(me), key="user_pick",
                              help="Every prediction, meal and query is recorded under this name.")
        if choice == NEW_USER:
            name = st.text_input("New user name", max_chars=64, key="user_new").strip()
            if name and not valid_user_name(name):
                st.warning("Use 1-64 letters, digits, spaces or . @ ' - _")
            elif name and st.button("Create user", key="user_create"):
                meal_store().ensure_user(name)
                st.session_state["user"] = name
                st.session_state.pop("user_pick", None)
                st.rerun()
        else:
            st.session_state["user"] = choice


def tracking_status() -> None:
    """Where predictions go, and whether they are getting there (drawn after the page ran,
    so it counts what the page just logged)."""
    cfg = settings()
    st.caption(f"Tracking: `{cfg.tracking_uri}`")
    logger = prediction_logger()
    if logger is None:
        return
    info = logger.status()
    if info.unspooled or info.dropped or info.spool_error:
        st.error(" ".join(info.problems) or f"The spool fails: {info.spool_error}")
    elif info.reachable is False:
        st.warning(f"MLflow unreachable; {info.pending:,} record(s) kept safe in the local spool, "
                   f"retrying in {info.retry_in_s:.0f} s. ({info.last_error})")
    else:
        st.caption(f"{info.flushed_records:,} logged this session · {info.pending:,} waiting to flush")
    if info.dead_batches or info.checkpoint_error:
        st.warning("Prediction logging needs attention: see Monitoring, System health.")
