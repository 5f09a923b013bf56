"""The login glue through AppTest (no browser): local mode says so, a configured provider
shows only the login screen until someone is logged in, and then the sidebar says who."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[1] / "app.py")
AUTH = {"auth": {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "x" * 32,
                 "client_id": "nutrilearn", "client_secret": "s",
                 "server_metadata_url": "http://127.0.0.1:9/.well-known/openid-configuration"}}


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("NUTRILEARN_HOME", str(tmp_path))
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'meals.db'}")
    monkeypatch.setenv("NUTRILEARN_ADMIN_TOKEN", "never-on-a-page")


def _texts(at: AppTest) -> str:
    return " ".join([m.value for m in at.markdown] + [c.value for c in at.caption] + [t.value for t in at.title])


def test_local_mode_says_there_is_no_login():
    at = AppTest.from_file(APP, default_timeout=120).run()
    assert not at.exception
    assert "local mode: no login" in _texts(at)
    assert at.selectbox(key="user_pick") is not None


def test_with_a_provider_only_the_login_screen_shows_until_someone_logs_in():
    at = AppTest.from_file(APP, default_timeout=120)
    at.secrets = AUTH
    at.user = {"is_logged_in": False}
    at.run()
    assert not at.exception
    assert [b.label for b in at.button] == ["Log in"]
    assert "Who am I" not in _texts(at) and "local mode" not in _texts(at)


def test_a_logged_in_user_is_named_in_the_sidebar_without_a_picker_or_token():
    at = AppTest.from_file(APP, default_timeout=120)
    at.secrets = AUTH
    at.user = {"is_logged_in": True, "sub": "u-1", "name": "Alice Liddell", "email": "alice@example.com",
               "iat": int(time.time()), "provider": "default"}
    at.run()
    assert not at.exception
    text = _texts(at)
    assert "Alice Liddell" in text and "role: user" in text and "local mode" not in text
    assert "Log out" in [b.label for b in at.sidebar.button]
    assert not [s for s in at.selectbox if s.key == "user_pick"]
    assert "never-on-a-page" not in text


def test_an_old_login_gets_the_login_screen_again():
    at = AppTest.from_file(APP, default_timeout=120)
    at.secrets = AUTH
    at.user = {"is_logged_in": True, "sub": "u-1", "name": "Alice", "iat": int(time.time()) - 13 * 3600,
               "provider": "default"}
    at.run()
    assert not at.exception
    assert [b.label for b in at.button] == ["Log in"]
    assert any("session has expired" in w.value for w in at.warning)
