"""Who is acting, and what they may do: identities, roles and permissions.

Identities come from the login provider (OpenID Connect, through Streamlit's ``st.login``;
the glue is in ``nutrilearn_app.state``) and are never typed in. Roles come from
configuration (``Settings``: lists of admin and analyst emails, or groups in a claim of the
ID token). Everything here is plain Python: no Streamlit, no network, testable alone.

Without a login provider the app runs in *local mode*: the user is whoever is picked in the
sidebar (``Identity.local``), admin actions need the admin token, and nothing is private.

Roles (each includes the one before):

- ``user``: analyze photos, give feedback, and keep their own meal log.
- ``analyst``: also Monitoring, Drift and Models (read-only), drift checks, and labelling
  other users' photos from the labelling queue.
- ``admin``: also promote, roll back, set the challenger and replay demo traffic.

Nobody reads or changes another user's meal log through the app; the meal store refuses
it (``MealStore`` takes the acting identity). The CLI is the operator's tool: it needs the
admin token for alias moves and reads the meal database directly.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

USER, ANALYST, ADMIN = "user", "analyst", "admin"
ROLES: tuple[str, ...] = (USER, ANALYST, ADMIN)

#: action -> the roles that may do it.
PERMISSIONS: dict[str, frozenset[str]] = {
    "analyze": frozenset({USER, ANALYST, ADMIN}),          # upload photos, confirm or correct labels
    "own_meals": frozenset({USER, ANALYST, ADMIN}),        # one's own meal log, targets, export
    "view_monitoring": frozenset({ANALYST, ADMIN}),        # Monitoring, Drift, Models (read), drift checks
    "label": frozenset({ANALYST, ADMIN}),                  # label other users' photos (the labelling queue)
    "promote": frozenset({ADMIN}),
    "rollback": frozenset({ADMIN}),
    "set_challenger": frozenset({ADMIN}),
    "replay": frozenset({ADMIN}),                          # demo traffic into the shared store
}
ADMIN_ACTIONS: tuple[str, ...] = ("promote", "rollback", "set_challenger", "replay")

MAX_KEY_LEN = 64  # the meal log's user names are 1-64 printable characters
DEFAULT_SESSION_MAX_AGE_H = 12.0


class AccessDenied(PermissionError):
    """The acting identity may not do this (another user's meals, an admin-only action)."""


def _names(values: Iterable[str] | str | None) -> frozenset[str]:
    """A set of names from a list or a comma/space separated string (case kept)."""
    if values is None:
        return frozenset()
    if isinstance(values, str):
        values = values.replace(",", " ").split()
    return frozenset(v.strip() for v in values if v and v.strip())


@dataclass(frozen=True)
class RoleConfig:
    """How roles are given: by verified email, or by a groups claim in the ID token."""

    admin_emails: frozenset[str] = frozenset()
    analyst_emails: frozenset[str] = frozenset()
    groups_claim: str = "groups"
    admin_groups: frozenset[str] = frozenset()
    analyst_groups: frozenset[str] = frozenset()
    # A login older than this is logged out (the ID token's issue time, ``iat``).
    session_max_age_h: float = DEFAULT_SESSION_MAX_AGE_H

    def __post_init__(self) -> None:
        object.__setattr__(self, "admin_emails", frozenset(e.lower() for e in _names(self.admin_emails)))
        object.__setattr__(self, "analyst_emails", frozenset(e.lower() for e in _names(self.analyst_emails)))
        object.__setattr__(self, "admin_groups", _names(self.admin_groups))
        object.__setattr__(self, "analyst_groups", _names(self.analyst_groups))
        if not self.session_max_age_h > 0:
            raise ValueError(f"the session lifetime must be positive, got {self.session_max_age_h!r} h")

    @classmethod
    def from_settings(cls, settings: Any) -> "RoleConfig":
        return cls(
            admin_emails=settings.admin_emails, analyst_emails=settings.analyst_emails,
            groups_claim=settings.groups_claim or "groups", admin_groups=settings.admin_groups,
            analyst_groups=settings.analyst_groups, session_max_age_h=settings.session_max_age_h,
        )


def _claim_groups(value: Any) -> frozenset[str]:
    """Groups as providers send them: a list of names, or one string."""
    if isinstance(value, str):
        return _names(value)
    if isinstance(value, (list, tuple, set, frozenset)):
        return frozenset(str(v).strip() for v in value if str(v).strip())
    return frozenset()


def verified_email(claims: Mapping[str, Any]) -> str:
    """The email claim, lower-cased; empty when absent or when the provider says it is not
    verified (an unverified address must not earn a role)."""
    email = claims.get("email")
    if not isinstance(email, str) or "@" not in email:
        return ""
    verified = claims.get("email_verified", True)
    if verified is False or (isinstance(verified, str) and verified.lower() == "false"):
        return ""
    return email.strip().lower()


def roles_from_config(claims: Mapping[str, Any], config: RoleConfig) -> frozenset[str]:
    """The roles of a logged-in user: always ``user``; ``analyst`` and ``admin`` when the
    verified email or a group in ``config.groups_claim`` is listed (admin includes analyst)."""
    email = verified_email(claims)
    groups = _claim_groups(claims.get(config.groups_claim))
    roles = {USER}
    if (email and email in config.analyst_emails) or groups & config.analyst_groups:
        roles.add(ANALYST)
    if (email and email in config.admin_emails) or groups & config.admin_groups:
        roles.update({ANALYST, ADMIN})
    return frozenset(roles)


@dataclass(frozen=True)
class Identity:
    """The acting person. ``provider`` is empty in local mode (no login)."""

    subject: str
    name: str
    email: str = ""
    roles: frozenset[str] = field(default_factory=lambda: frozenset({USER}))
    provider: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.subject, str) or not self.subject.strip():
            raise ValueError("an identity needs a subject")
        unknown = set(self.roles) - set(ROLES)
        if unknown:
            raise ValueError(f"unknown role(s): {', '.join(sorted(unknown))}")
        object.__setattr__(self, "roles", frozenset(self.roles))

    @classmethod
    def local(cls, name: str) -> "Identity":
        """Local mode: whoever was picked in the sidebar. Admin actions still need the token."""
        clean = (name or "").strip()
        return cls(subject=clean, name=clean, roles=frozenset({USER, ANALYST}), provider="")

    @property
    def is_local(self) -> bool:
        return not self.provider

    @property
    def key(self) -> str:
        """The owner name of this identity's meal log: the provider's subject (stable when the
        display name or email changes), prefixed so it never meets a local-mode name."""
        if self.is_local:
            return self.subject
        key = f"sub:{self.subject}"
        if len(key) <= MAX_KEY_LEN and key.isprintable():
            return key
        return "sub:" + hashlib.sha256(self.subject.encode()).hexdigest()[:40]

    @property
    def display_name(self) -> str:
        return (self.name or self.email or self.subject).strip()[:64]

    @property
    def record_as(self) -> str:
        """The user on prediction and feedback records and alias moves: display name plus the
        provider subject, e.g. ``Alice Example (sub:4f1c...)``."""
        if self.is_local:
            return self.subject
        return f"{self.display_name} ({self.key})"[:200]

    @property
    def role(self) -> str:
        """The highest role, for display."""
        return next(r for r in reversed(ROLES) if r in self.roles) if self.roles else USER


def identity_from_claims(claims: Mapping[str, Any], config: RoleConfig) -> Identity | None:
    """The identity in ``st.user``'s claims, or None when not logged in (or no subject)."""
    if not claims or not claims.get("is_logged_in"):
        return None
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject.strip():
        return None
    name = next((claims[k] for k in ("name", "preferred_username", "email")
                 if isinstance(claims.get(k), str) and claims[k].strip()), subject)
    return Identity(
        subject=subject.strip(), name=str(name).strip(), email=verified_email(claims),
        roles=roles_from_config(claims, config), provider=str(claims.get("provider") or "oidc"),
    )


def _timestamp(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def session_expired(claims: Mapping[str, Any], config: RoleConfig, now: dt.datetime | None = None) -> bool:
    """True when the login is older than ``config.session_max_age_h`` (from the ID token's
    ``auth_time`` or ``iat``), or its time is missing, malformed or in the future (a cookie
    nobody should have)."""
    issued = _timestamp(claims.get("auth_time")) or _timestamp(claims.get("iat"))
    if issued is None:
        return True
    now_s = (now or dt.datetime.now(dt.UTC)).timestamp()
    if issued > now_s + 300:  # five minutes of clock skew between provider and app
        return True
    return now_s - issued > config.session_max_age_h * 3600


def can(identity: Identity | None, action: str) -> bool:
    """Whether ``identity`` may do ``action`` (one of ``PERMISSIONS``). In local mode admin
    actions are decided by the admin token instead (``registry.admin.admin_status``)."""
    if action not in PERMISSIONS:
        raise ValueError(f"unknown action {action!r}; known: {', '.join(sorted(PERMISSIONS))}")
    if identity is None:
        return False
    return bool(identity.roles & PERMISSIONS[action])


def require(identity: Identity | None, action: str) -> None:
    """``AccessDenied`` unless ``can(identity, action)``."""
    if not can(identity, action):
        who = identity.record_as if identity else "nobody logged in"
        need = " or ".join(sorted(PERMISSIONS[action]))
        raise AccessDenied(f"{who} may not {action.replace('_', ' ')} (needs role {need})")


def may_use_meal_log(identity: Identity | None, owner: str) -> bool:
    """A meal log is its owner's alone: read and written only by the identity whose key it is."""
    return (identity is not None and can(identity, "own_meals")
            and isinstance(owner, str) and owner.strip() == identity.key)
