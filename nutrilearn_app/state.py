"""Per-process resources (built once) and per-session state shared by the pages."""

from __future__ import annotations

import gc
import re
import threading

import streamlit as st

from nutrilearn.config import Settings

DEFAULT_USER = "analyst"
_USER_NAME = re.compile(r"^[\w .@'-]{1,64}$", re.UNICODE)


def settings() -> Settings:
    return Settings.from_env()


_settled: set[str] = set()
_settle_lock = threading.Lock()


def settle_heap(page: str) -> None:
    """After a page's first run in this process: collect, then freeze what is alive.

    A page run leaves hundreds of thousands of objects that live as long as the process
    (the modules it imported: Streamlit, pandas, scikit-learn, altair...; ~390,000 after
    the Drift page). Python's full collections walked all of them: one took 0.29 s in the
    middle of a Drift interaction at 1M predictions. ``gc.freeze`` moves them out of the
    collector's reach (refcounting still frees them). Freezing right after a collection,
    once per page, stays safe for months of uptime: nothing made later is frozen, so later
    garbage cycles are collected as before; only a cycle alive at one of these moments that
    dies later is never collected (a bounded, one-time amount).
    """
    with _settle_lock:
        if page in _settled:
            return
        _settled.add(page)
    gc.collect()
    gc.freeze()


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
def _store_key() -> tuple[str, str, str]:
    """What the logger and the reader depend on: tracking URI, spool, predictions experiment."""
    cfg = settings()
    return cfg.tracking_uri, str(cfg.spool_dir), cfg.predictions_experiment


@st.cache_resource(show_spinner=False)
def _prediction_logger(tracking_uri: str, spool_dir: str, experiment: str):
    from nutrilearn.serving import prediction_logger as build

    return build(settings())


def prediction_logger():
    """The durable, asynchronous prediction logger of this process."""
    return _prediction_logger(*_store_key())


@st.cache_resource(show_spinner=False)
def _prediction_reader(tracking_uri: str, spool_dir: str, experiment: str):
    from nutrilearn.tracking.reader import PredictionReader

    # The days the pages ask about held in memory, each question's filters applied there (History).
    return PredictionReader(settings(), hold_rows=True)


def prediction_reader():
    """One incremental reader per store and process: closed batches are read once."""
    return _prediction_reader(*_store_key())


@st.cache_resource(show_spinner=False)
def _meal_store(url: str):
    from nutrilearn.meals import MealStore

    return MealStore(url, guarded=True)


def meal_store():
    """One meal store (engine and pool) per database per process. It is guarded: every call
    names the acting identity (``meal_actor()``), and the store refuses other users' logs."""
    return _meal_store(settings().database_url)


@st.cache_data(ttl=30, show_spinner=False)
def _champion_moves(tracking_uri: str):
    from nutrilearn.monitoring.versions import champion_moves as read

    return read(settings())


def champion_moves():
    """Champion moves from the registry's alias history, for the trend charts' markers
    (read at most every 30 s; none when the registry cannot be read: markers are a bonus)."""
    from nutrilearn.monitoring.versions import alias_moves

    try:
        return _champion_moves(settings().tracking_uri)
    except Exception:
        return alias_moves([])


def analyzer():
    from nutrilearn.serving import build_analyzer

    return build_analyzer(settings(), classifier=classifier(), sink=prediction_logger())


def valid_user_name(name: str) -> bool:
    return bool(_USER_NAME.match(name.strip()))


def identity():
    """Who is acting (``nutrilearn.auth.Identity``): the logged-in user, or in local mode the
    user picked in the sidebar. None only when a provider is configured and nobody is in."""
    from nutrilearn_app import login

    return login.identity()


def current_user() -> str:
    """The name predictions, feedback and alias moves are recorded under: the login's display
    name and provider subject, or in local mode the user picked in the sidebar (pages run
    alone in tests fall back to a default)."""
    ident = identity()
    if ident is not None and not ident.is_local:
        return ident.record_as
    return st.session_state.get("user") or DEFAULT_USER


def meal_actor(name: str | None = None):
    """The identity the meal store is called with. In local mode ``name`` (a user picked on
    a page run alone) acts for itself; with a login it is always the logged-in user."""
    from nutrilearn.auth import Identity

    ident = identity()
    if ident is None or not ident.is_local:
        return ident
    return Identity.local(name or current_user())


def meal_owner() -> str:
    """Whose meal log the pages show and write: the actor's own."""
    ident = meal_actor()
    return ident.key if ident is not None else current_user()


def may(action: str) -> bool:
    """Whether the acting identity may do ``action`` (see ``nutrilearn.auth.PERMISSIONS``)."""
    from nutrilearn.auth import can

    return can(identity(), action)


def require(action: str) -> None:
    """First thing on every page: stop unless the acting identity may do ``action``.

    The navigation already hides such pages, but it is not the only way in: until some
    session has run ``app.py`` (which calls ``st.navigation``), Streamlit runs a page of the
    ``pages/`` folder *directly* when its address is asked for, without ``app.py`` and its
    login screen. So each page checks for itself; logged out, it shows the login screen."""
    if may(action):
        return
    from nutrilearn_app import login

    if login.login_enabled() and identity() is None:
        login.login_screen()
    else:
        st.error(login.denied(action, identity()))
    st.stop()


NEW_USER = "➕ New user…"


def _known_users() -> list[str]:
    try:
        return meal_store().list_users(actor=meal_actor())
    except Exception as exc:  # a busy or unreachable meal log must not hide the app
        st.caption(f"Users unavailable: {type(exc).__name__}")
        return []


def sidebar() -> None:
    """Who am I: the logged-in user with a logout button, or in local mode a user picker
    under a plain "local mode: no login"."""
    from nutrilearn_app import login

    if login.login_enabled():
        ident = identity()
        if ident is not None:
            with st.sidebar:
                login.sidebar_identity(ident)
        return
    with st.sidebar:
        st.subheader("Who am I")
        st.caption("🔓 **local mode: no login**. Anyone who can open this app can pick any user "
                   "and read their meals. Configure a login provider to make meal logs private "
                   "(README, \"Logins and roles\").")
        me = current_user()
        options = [*sorted(set(_known_users()) | {me}), NEW_USER]
        choice = st.selectbox("User", options, index=options.index(me), key="user_pick",
                              help="Every prediction, meal and query is recorded under this name.")
        if choice == NEW_USER:
            name = st.text_input("New user name", max_chars=64, key="user_new").strip()
            if name and not valid_user_name(name):
                st.warning("Use 1-64 letters, digits, spaces or . @ ' - _")
            elif name and st.button("Create user", key="user_create"):
                meal_store().ensure_user(name, actor=meal_actor(name))
                st.session_state["user"] = name
                st.session_state.pop("user_pick", None)
                st.rerun()
        else:
            st.session_state["user"] = choice


def tracking_status() -> None:
    """Where predictions go, and whether they are getting there (drawn after the page ran,
    so it counts what the page just logged)."""
    cfg = settings()
    from nutrilearn.tracking.store import display_uri

    st.caption(f"Tracking: `{display_uri(cfg.tracking_uri)}`")
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
