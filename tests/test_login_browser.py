"""Logins in a real browser: a real OpenID Connect provider (oidc-provider-mock) on loopback,
the app configured for it through a secrets.toml, and Chromium logging in as two users, an
analyst and an admin. Each sees only their own meals; the analyst gets no alias controls and
a forged move is refused; logout, a tampered cookie and an expired login all mean the login
screen. Skips with the reason without Chromium or the provider package."""

from __future__ import annotations

import datetime as dt
import json
import re
import secrets
import threading
from pathlib import Path

import pytest

from tests.e2e import StreamlitApp, screenshot, wait_idle

TIMEOUT_MS = 120_000
COOKIE = "_streamlit_user"
ADMIN_TOKEN = "cli-only-admin-token-7f3a"  # set on the app's machine: the pages must never ask for or show it

# sub -> claims the provider puts in the ID token (plain users, an analyst by email, an admin by group)
PEOPLE = {
    "alice": {"name": "Alice Liddell", "email": "alice@example.com", "email_verified": True, "groups": []},
    "bob": {"name": "Bob Builder", "email": "bob@example.com", "email_verified": True, "groups": []},
    "ana": {"name": "Ana Analyst", "email": "ana@example.com", "email_verified": True, "groups": ["staff"]},
    "root": {"name": "Root Admin", "email": "root@example.com", "email_verified": True,
             "groups": ["staff", "nutrilearn-admins"]},
}
ROLE_ENV = {"NUTRILEARN_ANALYST_EMAILS": "ana@example.com", "NUTRILEARN_ADMIN_GROUPS": "nutrilearn-admins"}


@pytest.fixture(scope="module")
def provider():
    """oidc-provider-mock serving on 127.0.0.1 in a thread, with the four people predefined."""
    try:
        import oidc_provider_mock
        import werkzeug.serving
    except ImportError:
        pytest.skip("oidc-provider-mock is not installed (pip install -e '.[test]'): no OpenID provider to log in with")
    try:
        import authlib  # noqa: F401  st.login needs it
    except ImportError:
        pytest.skip("Authlib is not installed (pip install -e .): st.login cannot run")
    users = [oidc_provider_mock.User(sub=sub, claims=claims) for sub, claims in PEOPLE.items()]
    server = werkzeug.serving.make_server("127.0.0.1", 0, oidc_provider_mock.app(user_claims=users), threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(10)
    server.server_close()


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("login-home")


@pytest.fixture(scope="module")
def registry(home):
    """Version 1 (champion) and a trained-like version 2 in the app's own store."""
    import numpy as np

    from nutrilearn.config import Settings
    from nutrilearn.registry.jobs import ensure_version_one
    from nutrilearn.registry.store import Registry
    from nutrilearn.vision.heads import LinearHead
    from tests.e2e import ROOT

    (home / "mlruns").mkdir(exist_ok=True)
    settings = Settings(home=home, tracking_uri=f"sqlite:///{home / 'mlruns' / 'mlflow.db'}",
                        database_url=f"sqlite:///{home / 'data' / 'meals.db'}", models_dir=ROOT / "models",
                        admin_token=ADMIN_TOKEN, analyst_emails=("ana@example.com",),
                        admin_groups=("nutrilearn-admins",))
    reg = Registry(settings)
    ensure_version_one(settings, reg)
    with reg.run("nutrilearn-training", "login test head") as run_id:
        two = reg.register_head(LinearHead(("pizza", "sushi"), np.zeros((1280, 2)), np.zeros(2)), run_id,
                                {"nutrilearn.training_data": "synthetic"})
    return settings, reg, two


def login_app(home: Path, provider: str) -> StreamlitApp:
    """The app with a secrets.toml of its own that points at the test provider (not started)."""
    cookie_secret = secrets.token_urlsafe(32)
    server = StreamlitApp(home, env={**ROLE_ENV, "NUTRILEARN_ADMIN_TOKEN": ADMIN_TOKEN}, name="login-app")
    home.mkdir(parents=True, exist_ok=True)
    secrets_file = home / "secrets.toml"
    secrets_file.write_text(
        "[auth]\n"
        f'redirect_uri = "{server.url}/oauth2callback"\n'
        f'cookie_secret = "{cookie_secret}"\n'
        'client_id = "nutrilearn-tests"\n'
        'client_secret = "any-secret-the-mock-accepts"\n'
        f'server_metadata_url = "{provider}/.well-known/openid-configuration"\n'
    )
    server.args = ["--secrets.files", str(secrets_file)]
    server.cookie_secret = cookie_secret
    return server


@pytest.fixture(scope="module")
def app(provider, home, registry):
    server = login_app(home, provider).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def seeded(registry):
    """One meal each for alice and bob, written as the operator would (the unguarded store)."""
    from nutrilearn.meals import MealEntry, MealStore

    settings = registry[0]
    store = MealStore(settings.database_url)
    eaten = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    for sub, label in (("alice", "pizza"), ("bob", "sushi")):
        store.ensure_user(f"sub:{sub}", "UTC", display_name=PEOPLE[sub]["name"])
        store.log_meal(MealEntry(user=f"sub:{sub}", label=label, meal_type="lunch", eaten_at=eaten))
    yield store
    store.close()


@pytest.fixture
def context(browser, app):
    """A fresh browser (no cookies) that may only talk to loopback (the provider's page links a CDN)."""
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    ctx.route(re.compile(r"^https?://(?!127\.0\.0\.1[:/])"), lambda route: route.abort())
    ctx.set_default_timeout(TIMEOUT_MS)
    yield ctx
    ctx.close()


def login_screen(page) -> None:
    page.get_by_role("button", name="Log in").wait_for()
    assert page.get_by_text("Who am I").count() == 0  # nothing of the app before logging in


def log_in(page, app, sub: str) -> None:
    page.goto(app.url)
    login_screen(page)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r"/oauth2/authorize"))  # the provider's own page
    page.get_by_role("button", name=sub, exact=True).click()
    page.wait_for_url(re.compile(re.escape(app.url)))
    page.get_by_text(PEOPLE[sub]["name"]).first.wait_for()
    wait_idle(page)


def nav_links(page) -> set[str]:
    nav = page.locator('[data-testid="stSidebarNav"]')
    nav.wait_for()
    return {t.split()[-1] for t in nav.locator("a").all_inner_texts() if t.split()}  # without the icons


def open_meals(page, app) -> None:
    page.goto(f"{app.url}/meals")
    page.get_by_role("heading", name=re.compile("Meals")).first.wait_for()
    page.locator('[data-testid="stMetric"]', has_text="Meals in range").wait_for()
    wait_idle(page)


def choose(page, selectbox, option: str) -> None:
    """Pick ``option`` in a selectbox (its combobox opens with the arrow key)."""
    combo = selectbox.get_by_role("combobox")
    combo.click()
    combo.press("ArrowDown")
    page.get_by_role("option", name=option, exact=True).click()


def downloaded_meals(page) -> str:
    """The page's "Download meals as CSV", as the person would save it."""
    with page.expect_download() as download:
        page.get_by_role("button", name="Download meals as CSV").click()
    return Path(download.value.path()).read_text()


def metric(page, label: str) -> str:
    return page.locator('[data-testid="stMetric"]', has_text=label).first.locator(
        '[data-testid="stMetricValue"]').inner_text()


def test_without_login_only_the_login_screen_shows(context, app):
    page = context.new_page()
    page.goto(app.url)
    login_screen(page)
    page.goto(f"{app.url}/meals")  # a page's address does not get round the login
    login_screen(page)
    assert page.get_by_role("heading", name=re.compile("Meals")).count() == 0
    screenshot(page, "login-screen")


def test_a_fresh_server_asked_for_a_page_directly_still_wants_a_login(browser, provider, tmp_path):
    """Until some session has run app.py, Streamlit runs pages/<name>.py itself for /<name>,
    without app.py's login screen: each page checks for itself."""
    server = login_app(tmp_path / "fresh-home", provider).start()
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    ctx.route(re.compile(r"^https?://(?!127\.0\.0\.1[:/])"), lambda route: route.abort())
    ctx.set_default_timeout(TIMEOUT_MS)
    try:
        page = ctx.new_page()
        for path in ("monitoring", "models", "drift", "meals", "analyze"):
            page.goto(f"{server.url}/{path}")
            login_screen(page)
            wait_idle(page)
            assert page.get_by_role("heading", name=re.compile("Monitoring|Models|Drift|Meals|Analyze")).count() == 0
            assert page.locator('[data-testid="stException"]').count() == 0
        screenshot(page, "login-direct-page")
    finally:
        ctx.close()
        server.stop()


def test_two_users_each_see_only_their_own_meals(browser, app, seeded):
    for sub, mine, theirs in (("alice", "Pizza", "Sushi"), ("bob", "Sushi", "Pizza")):
        ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
        ctx.route(re.compile(r"^https?://(?!127\.0\.0\.1[:/])"), lambda route: route.abort())
        ctx.set_default_timeout(TIMEOUT_MS)
        page = ctx.new_page()
        try:
            log_in(page, app, sub)
            assert nav_links(page) == {"Analyze", "Meals"}  # a plain user: no monitoring, no models
            assert page.get_by_text("local mode").count() == 0
            open_meals(page, app)
            assert page.get_by_text(f"User {PEOPLE[sub]['name']}").count() == 1
            if sub == "alice":  # log one more through the page: it lands in her log, under her subject
                manual = page.locator('[data-testid="stExpander"]', has_text="Log a meal by hand")
                manual.get_by_text("Log a meal by hand").click()
                manual.get_by_label("Food", exact=True).fill("hamburger")
                manual.get_by_role("button", name="Log meal").click()
                page.get_by_text(re.compile(r"Logged meal #\d+")).wait_for()
                page.reload()
                open_meals(page, app)
            exported = downloaded_meals(page)
            assert mine in exported and theirs not in exported, exported
            assert metric(page, "Meals in range") == ("2" if sub == "alice" else "1")
            screenshot(page, f"login-meals-{sub}")
        finally:
            ctx.close()
    from nutrilearn.meals import MealStore

    operator = MealStore(seeded.url)
    assert sorted(operator.meals("sub:alice")["label"]) == ["hamburger", "pizza"]
    assert operator.meals("sub:bob")["label"].tolist() == ["sushi"]
    assert operator.get_user("sub:alice").display_name == "Alice Liddell"
    operator.close()


def test_a_plain_user_cannot_open_monitoring_or_models(context, app):
    page = context.new_page()
    log_in(page, app, "bob")
    for path in ("monitoring", "models", "label"):
        page.goto(f"{app.url}/{path}")
        page.get_by_text("No photos yet").wait_for()  # Streamlit falls back to the first page they may open
        wait_idle(page)
        assert page.get_by_role("heading", name=re.compile("Monitoring|Models|Label")).count() == 0
        assert page.get_by_role("button", name="Promote").count() == 0


def test_an_analyst_sees_monitoring_but_no_alias_controls_and_a_forged_move_is_refused(context, app, registry):
    from nutrilearn import auth
    from nutrilearn.registry import admin

    settings, reg, two = registry
    page = context.new_page()
    log_in(page, app, "ana")
    assert nav_links(page) == {"Analyze", "Meals", "Monitoring", "Photos", "Drift", "Label", "Models"}
    page.goto(f"{app.url}/models")
    page.get_by_text("Only admins may promote: Ana Analyst is an analyst").wait_for()
    wait_idle(page)
    for control in ("Promote", "Set challenger", "Roll back"):
        assert page.get_by_role("button", name=control).count() == 0
    assert page.get_by_label("Admin token").count() == 0 and ADMIN_TOKEN not in page.content()
    screenshot(page, "login-models-analyst")

    # The same person forging the move behind the page (with the CLI's token too) is refused
    # by the guard itself, and by the meal store when reaching for someone else's log.
    ana = auth.identity_from_claims({"is_logged_in": True, "sub": "ana", "provider": "default", **PEOPLE["ana"]},
                                    auth.RoleConfig.from_settings(settings))
    assert ana.roles == {auth.USER, auth.ANALYST}
    moves = len(reg.history())
    with pytest.raises(admin.NotAuthorised):
        admin.promote(settings, two, ADMIN_TOKEN, "Root Admin", "forged", reg, actor=ana)
    assert reg.alias_version("champion") == "1" and len(reg.history()) == moves
    from nutrilearn.meals import MealStore

    guarded = MealStore(settings.database_url, guarded=True)
    with pytest.raises(auth.AccessDenied):
        guarded.meals("sub:alice", actor=ana)
    guarded.close()


def test_an_admin_moves_an_alias_recorded_under_their_login(context, app, registry):
    settings, reg, two = registry
    page = context.new_page()
    log_in(page, app, "root")
    page.goto(f"{app.url}/models")
    page.get_by_text("admin actions enabled for Root Admin (admin)").wait_for()
    wait_idle(page)
    assert page.get_by_label("Admin token").count() == 0 and ADMIN_TOKEN not in page.content()
    form = page.locator('[data-testid="stForm"]', has_text="Set challenger")
    choose(page, form.locator('[data-testid="stSelectbox"]', has_text="Version"), two)
    form.get_by_label("Why").fill("shadow test from the browser")
    form.get_by_role("button", name="Set challenger").click()
    page.get_by_text(re.compile(r"set-challenger by Root Admin \(sub:root\)")).wait_for()
    screenshot(page, "login-models-admin")
    assert reg.alias_version("challenger") == two
    event = next(e for e in reg.history() if e.why == "shadow test from the browser")
    assert event.who == "Root Admin (sub:root)" and event.to_version == two
    reg.move_alias("challenger", None, "tests", "clean up", "clear-challenger")


def test_logout_then_back_shows_the_login_screen(context, app):
    page = context.new_page()
    log_in(page, app, "alice")
    page.locator('[data-testid="stSidebar"]').get_by_role("button", name="Log out").click()
    end = page.get_by_role("button", name="End session")  # the provider asks to confirm its own logout
    end.wait_for()
    end.click()
    login_screen(page)
    assert not [c for c in context.cookies() if c["name"].startswith(COOKIE)]
    page.goto(app.url)
    login_screen(page)
    screenshot(page, "login-after-logout")


def _forged_cookie(app, issued: dt.datetime) -> str:
    """A user cookie signed with the app's own secret, as Streamlit writes it after a login."""
    from streamlit.web.server.starlette.starlette_app_utils import create_signed_value

    payload = {"sub": "bob", **PEOPLE["bob"], "iat": int(issued.timestamp()),
               "exp": int(issued.timestamp()) + 300, "origin": app.url, "is_logged_in": True,
               "provider": "default"}
    return create_signed_value(app.cookie_secret, COOKIE, json.dumps(payload)).decode()


def _set_cookie(context, app, value: str) -> None:
    context.clear_cookies()
    context.add_cookies([{"name": COOKIE, "value": value, "url": app.url + "/"}])


def test_a_tampered_or_expired_session_cookie_means_logged_out(context, app):
    page = context.new_page()
    log_in(page, app, "bob")
    real = next(c for c in context.cookies() if c["name"] == COOKIE)
    flipped = real["value"][:-3] + ("AAA" if not real["value"].endswith("AAA") else "BBB")
    _set_cookie(context, app, flipped)
    page.goto(app.url)
    login_screen(page)

    now = dt.datetime.now(dt.UTC)
    _set_cookie(context, app, _forged_cookie(app, now - dt.timedelta(minutes=1)))  # control: a fresh login
    page.goto(app.url)
    page.get_by_text("Bob Builder").first.wait_for()
    _set_cookie(context, app, _forged_cookie(app, now - dt.timedelta(days=2)))  # older than 12 h
    page.goto(app.url)
    login_screen(page)
    page.get_by_text("Your session has expired").wait_for()
    screenshot(page, "login-expired")
