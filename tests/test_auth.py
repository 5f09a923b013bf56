"""Who may see and change what, without a browser: identities and roles from claims, session
age, the meal store refusing other users' logs, and the registry guard refusing non-admins."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import sqlalchemy as sa

from nutrilearn import auth
from nutrilearn.auth import ADMIN, ANALYST, USER, AccessDenied, Identity, RoleConfig
from nutrilearn.config import Settings
from nutrilearn.meals import LATEST_VERSION, MealEntry, MealStore, Targets

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
CONFIG = RoleConfig(admin_emails=("Root@Example.com",), analyst_emails="ana@example.com, ann@example.com",
                    groups_claim="groups", admin_groups=("nutrilearn-admins",),
                    analyst_groups=("nutrilearn-analysts",), session_max_age_h=12)


def claims(sub: str, **extra) -> dict:
    return {"is_logged_in": True, "sub": sub, "iat": int(NOW.timestamp()) - 60, "provider": "default", **extra}


def ident(sub: str, *roles: str, name: str | None = None) -> Identity:
    return Identity(subject=sub, name=name or sub.title(), email=f"{sub}@example.com",
                    roles=frozenset({USER, *roles}), provider="default")


# -- roles from configuration -------------------------------------------------------------------

@pytest.mark.parametrize("extra, expected", [
    ({}, {USER}),
    ({"email": "ana@example.com"}, {USER, ANALYST}),
    ({"email": "ROOT@example.com", "email_verified": True}, {USER, ANALYST, ADMIN}),  # case-insensitive
    ({"email": "root@example.com", "email_verified": False}, {USER}),  # unverified earns nothing
    ({"email": "root@example.com", "email_verified": "false"}, {USER}),
    ({"groups": ["nutrilearn-analysts", "other"]}, {USER, ANALYST}),
    ({"groups": "nutrilearn-admins"}, {USER, ANALYST, ADMIN}),
    ({"groups": ["Nutrilearn-Admins"]}, {USER}),  # group names are exact
    ({"groups": {"not": "a list"}}, {USER}),
])
def test_roles_come_from_emails_or_groups(extra, expected):
    assert auth.roles_from_config(claims("u1", **extra), CONFIG) == expected


def test_groups_claim_name_is_configurable():
    config = RoleConfig(admin_groups=("ops",), groups_claim="roles")
    assert ADMIN in auth.roles_from_config(claims("u", roles=["ops"]), config)
    assert ADMIN not in auth.roles_from_config(claims("u", groups=["ops"]), config)


def test_role_settings_are_read_from_the_environment(monkeypatch):
    monkeypatch.setenv("NUTRILEARN_ADMIN_EMAILS", "a@x.org, B@x.org")
    monkeypatch.setenv("NUTRILEARN_ANALYST_GROUPS", "g1 g2")
    monkeypatch.setenv("NUTRILEARN_GROUPS_CLAIM", "cognito:groups")
    monkeypatch.setenv("NUTRILEARN_SESSION_MAX_AGE_H", "2.5")
    config = RoleConfig.from_settings(Settings.from_env())
    assert config.admin_emails == {"a@x.org", "b@x.org"} and config.analyst_groups == {"g1", "g2"}
    assert config.groups_claim == "cognito:groups" and config.session_max_age_h == 2.5
    monkeypatch.setenv("NUTRILEARN_SESSION_MAX_AGE_H", "soon")
    with pytest.raises(ValueError, match="NUTRILEARN_SESSION_MAX_AGE_H"):
        Settings.from_env()


def test_the_admin_token_is_never_in_a_settings_repr(monkeypatch):
    monkeypatch.setenv("NUTRILEARN_ADMIN_TOKEN", "tok-do-not-show")
    settings = Settings.from_env()
    assert settings.admin_token == "tok-do-not-show"
    assert "tok-do-not-show" not in repr(settings) and "tok-do-not-show" not in str(settings)


# -- identities ---------------------------------------------------------------------------------

def test_identity_from_the_providers_claims():
    me = auth.identity_from_claims(claims("4f1c-77", name="Alice Example", email="ana@example.com"), CONFIG)
    assert me.subject == "4f1c-77" and me.display_name == "Alice Example" and me.email == "ana@example.com"
    assert me.roles == {USER, ANALYST} and me.role == ANALYST and not me.is_local
    assert me.key == "sub:4f1c-77"
    assert me.record_as == "Alice Example (sub:4f1c-77)"
    # No name: the preferred username, then the email, then the subject.
    assert auth.identity_from_claims(claims("s", preferred_username="al"), CONFIG).display_name == "al"
    assert auth.identity_from_claims(claims("s"), CONFIG).display_name == "s"


@pytest.mark.parametrize("bad", [{}, {"is_logged_in": False, "sub": "x"}, {"is_logged_in": True},
                                 {"is_logged_in": True, "sub": "  "}, {"is_logged_in": True, "sub": 7}])
def test_no_identity_without_a_login_and_a_subject(bad):
    assert auth.identity_from_claims(bad, CONFIG) is None


def test_a_long_subject_becomes_a_stable_hashed_key():
    long_sub = "https://idp.example.org/realms/x|" + "9" * 80
    a, b = ident(long_sub), ident(long_sub, ADMIN)
    assert a.key == b.key and a.key.startswith("sub:") and len(a.key) <= 64
    assert ident("other" + long_sub).key != a.key


def test_local_mode_identity_is_the_picked_name_without_admin():
    me = Identity.local("ana")
    assert me.is_local and me.key == "ana" and me.record_as == "ana"
    assert auth.can(me, "view_monitoring") and not auth.can(me, "promote")  # the token decides in local mode
    # A logged-in subject never meets a local-mode name in the meal log.
    assert ident("ana").key != Identity.local("ana").key


def test_unknown_roles_and_actions_are_errors():
    with pytest.raises(ValueError, match="unknown role"):
        Identity(subject="x", name="x", roles=frozenset({"superuser"}))
    with pytest.raises(ValueError, match="unknown action"):
        auth.can(ident("x"), "promot")


@pytest.mark.parametrize("roles, allowed", [
    ((), {"analyze", "own_meals"}),
    ((ANALYST,), {"analyze", "own_meals", "view_monitoring", "label"}),
    ((ANALYST, ADMIN), set(auth.PERMISSIONS)),
])
def test_what_each_role_may_do(roles, allowed):
    me = ident("x", *roles)
    assert {a for a in auth.PERMISSIONS if auth.can(me, a)} == allowed
    for action in set(auth.PERMISSIONS) - allowed:
        with pytest.raises(AccessDenied, match="needs role"):
            auth.require(me, action)
    assert not auth.can(None, "analyze")


# -- session age ----------------------------------------------------------------------------------

def test_sessions_expire_after_the_configured_age():
    hours = 3600
    fresh = claims("u", iat=int(NOW.timestamp()) - 11 * hours)
    old = claims("u", iat=int(NOW.timestamp()) - 13 * hours)
    assert not auth.session_expired(fresh, CONFIG, now=NOW)
    assert auth.session_expired(old, CONFIG, now=NOW)
    # auth_time (when the person really logged in) wins over a re-issued token's iat.
    assert auth.session_expired({**fresh, "auth_time": int(NOW.timestamp()) - 20 * hours}, CONFIG, now=NOW)


@pytest.mark.parametrize("iat", [None, "yesterday", True, 10 ** 12])
def test_a_session_without_a_believable_issue_time_is_expired(iat):
    cookie = claims("u")
    cookie.pop("iat")
    if iat is not None:
        cookie["iat"] = iat
    assert auth.session_expired(cookie, CONFIG, now=NOW)


# -- the meal store refuses other users' logs -------------------------------------------------------

@pytest.fixture
def guarded(tmp_path: Path) -> MealStore:
    store = MealStore(f"sqlite:///{tmp_path / 'meals.db'}", guarded=True)
    yield store
    store.close()


def _log(store: MealStore, who: Identity, label: str = "pizza") -> int:
    store.ensure_user(who.key, actor=who, display_name=who.display_name)
    return store.log_meal(MealEntry(user=who.key, label=label, meal_type="lunch"), actor=who)


def test_each_user_reads_and_changes_only_their_own_meals(guarded: MealStore):
    alice, bob = ident("alice"), ident("bob", ANALYST, ADMIN)  # admins get no more of others' meals
    a_meal, b_meal = _log(guarded, alice), _log(guarded, bob, "sushi")
    assert guarded.meals(alice.key, actor=alice)["label"].tolist() == ["pizza"]
    assert guarded.meals(bob.key, actor=bob)["label"].tolist() == ["sushi"]
    assert guarded.get_user(alice.key, actor=alice).display_name == "Alice"

    forged = [
        lambda: guarded.meals(bob.key, actor=alice),
        lambda: guarded.get_meal(bob.key, b_meal, actor=alice),
        lambda: guarded.update_meal(bob.key, b_meal, portion=3, actor=alice),
        lambda: guarded.delete_meal(bob.key, b_meal, actor=alice),
        lambda: guarded.log_meal(MealEntry(user=bob.key, label="pizza", meal_type="snack"), actor=alice),
        lambda: guarded.set_targets(bob.key, Targets(kcal=100), actor=alice),
        lambda: guarded.reset_targets(bob.key, actor=alice),
        lambda: guarded.targets_for(bob.key, actor=alice),
        lambda: guarded.set_time_zone(bob.key, "Europe/Paris", actor=alice),
        lambda: guarded.streak(bob.key, actor=alice),
        lambda: guarded.logged_dates(bob.key, actor=alice),
        lambda: guarded.get_user(bob.key, actor=alice),
        lambda: guarded.ensure_user(bob.key, actor=alice),
        lambda: guarded.meals("bob", actor=alice),                     # a local-mode name is not bob's key
        lambda: guarded.list_users(actor=alice),                       # nor who else has a log
        lambda: guarded.meals(alice.key),                              # and nobody at all: refused
        lambda: guarded.delete_meal(alice.key, a_meal),
    ]
    for attempt in forged:
        with pytest.raises(AccessDenied):
            attempt()
    # Nothing changed: bob's meal is as he left it.
    assert guarded.meals(bob.key, actor=bob)[["label", "portion"]].values.tolist() == [["sushi", 1.0]]
    assert guarded.targets_for(bob.key, actor=bob) == guarded.targets_for(alice.key, actor=alice)
    # A meal id of bob's through alice's own log is simply not there.
    from nutrilearn.meals import NotFoundError

    with pytest.raises(NotFoundError):
        guarded.delete_meal(alice.key, b_meal, actor=alice)


def test_a_display_name_change_keeps_the_log(guarded: MealStore):
    before = ident("carol", name="Carol")
    _log(guarded, before)
    after = Identity(subject="carol", name="Carol Jones", roles=frozenset({USER}), provider="default")
    user = guarded.ensure_user(after.key, actor=after, display_name=after.display_name)
    assert user.display_name == "Carol Jones"
    assert len(guarded.meals(after.key, actor=after)) == 1


def test_local_mode_lists_users_and_the_unguarded_store_is_the_operators(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'meals.db'}"
    store = MealStore(url, guarded=True)
    store.ensure_user("ana", actor=Identity.local("ana"))
    assert store.list_users(actor=Identity.local("ana")) == ["ana"]
    store.close()
    operator = MealStore(url)  # the CLI: whoever can open the database file
    assert operator.list_users() == ["ana"] and operator.meals("ana").empty
    operator.close()


def test_upgrade_to_version_4_keeps_users_and_adds_display_names(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'meals.db'}"
    old = MealStore(url, migrate=False)
    old.upgrade(target=3)
    with old.engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO users (name, time_zone, created_at) VALUES ('ana', 'UTC', :t)"),
                     {"t": dt.datetime(2025, 1, 1)})
    old.close()
    store = MealStore(url)
    assert store.schema_version() == LATEST_VERSION == 4
    assert store.get_user("ana").display_name is None
    assert store.ensure_user("ana", display_name="Ana B.").display_name == "Ana B."
    store.close()


# -- the registry guard: only admins move aliases, recorded as themselves -------------------------------

@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    from nutrilearn.registry.jobs import ensure_version_one
    from nutrilearn.registry.store import Registry

    home = tmp_path_factory.mktemp("auth-registry")
    (home / "mlruns").mkdir()
    settings = Settings(home=home, tracking_uri=f"sqlite:///{home / 'mlruns' / 'mlflow.db'}",
                        models_dir=home / "models", admin_token="cli-token")
    reg = Registry(settings)
    ensure_version_one(settings, reg)
    return settings, reg


def _register(reg) -> str:
    import numpy as np

    from nutrilearn.vision.heads import LinearHead

    head = LinearHead(("a", "b"), np.zeros((1280, 2)), np.zeros(2))
    with reg.run("nutrilearn-training", "auth test head") as run_id:
        return reg.register_head(head, run_id, {"nutrilearn.training_data": "synthetic"})


def test_an_analyst_cannot_move_aliases_even_with_a_forged_request(registry):
    from nutrilearn.registry import admin

    settings, reg = registry
    version = _register(reg)
    analyst = ident("ana", ANALYST)
    champion, challenger, moves = reg.alias_version("champion"), reg.alias_version("challenger"), len(reg.history())
    # A logged-in analyst is refused whatever else the request carries (even the CLI's token).
    for token in (None, "cli-token"):
        with pytest.raises(admin.NotAuthorised, match="only admins may promote"):
            admin.promote(settings, version, token, "root", "forged", reg, actor=analyst)
        with pytest.raises(admin.NotAuthorised, match="only admins may set challenger"):
            admin.set_challenger(settings, version, token, "root", "forged", reg, actor=analyst)
        with pytest.raises(admin.NotAuthorised, match="only admins may rollback"):
            admin.rollback(settings, token, "root", "forged", reg, actor=analyst)
    assert (reg.alias_version("champion"), reg.alias_version("challenger"), len(reg.history())) == \
        (champion, challenger, moves)
    assert admin.admin_status(settings, None, analyst) == (False, "only admins may promote: Ana is an analyst")


def test_an_admin_moves_aliases_without_a_token_and_is_recorded_as_themselves(registry):
    from nutrilearn.registry import admin

    settings, reg = registry
    version = _register(reg)
    root = ident("root", ANALYST, ADMIN, name="Root Admin")
    event = admin.set_challenger(settings, version, None, "someone else", "shadow test", reg, actor=root)
    assert event.who == "Root Admin (sub:root)" and reg.alias_version("challenger") == version
    assert admin.set_challenger(settings, None, None, "x", "done", reg, actor=root).who == root.record_as
    # Local mode and the CLI: the token decides, compared as before.
    local = Identity.local("ana")
    assert admin.admin_status(settings, "cli-token", local)[0]
    assert not admin.admin_status(settings, "cli-token-", local)[0]
    assert not admin.admin_status(settings, None, local)[0]


def test_the_cli_lists_logged_in_users_with_their_display_names(tmp_path: Path, monkeypatch, capsys):
    from nutrilearn.cli import meals as meals_cli

    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'meals.db'}")
    store = MealStore.from_settings()
    store.ensure_user("ana")
    alice = ident("alice", name="Alice Liddell")
    _log(store, alice)
    store.close()
    assert meals_cli.main(["users"]) == 0
    assert capsys.readouterr().out.splitlines() == ["ana", "sub:alice\tAlice Liddell"]
    assert meals_cli.main(["export", "--user", "sub:alice", "-o", "-"]) == 0
    assert "pizza" in capsys.readouterr().out
