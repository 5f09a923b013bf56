"""Guarded registry actions: promote, set or clear the challenger, roll back.

Each needs the admin token (``NUTRILEARN_ADMIN_TOKEN`` on the machine that runs the app or
the CLI). With no token configured every action is refused: the registry cannot be
changed by accident from a UI that anyone on the network can open. Every action that
goes through is recorded as an alias move (who, when, from, to, why).

In the app with a login provider the logged-in identity (``actor``) decides instead: only
the ``admin`` role may move aliases, no token is asked for, and the move is recorded under
the actor (whatever ``who`` says).
"""

from __future__ import annotations

import hmac

from nutrilearn.auth import Identity, can
from nutrilearn.config import Settings
from nutrilearn.registry.store import (
    BOOTSTRAP, CHALLENGER, CHAMPION, CLEAR_CHALLENGER, PROMOTE, ROLLBACK, SET_CHALLENGER, AliasEvent, Registry,
    RegistryError,
)

TOKEN_VARIABLE = "NUTRILEARN_ADMIN_TOKEN"
GUARD_DAYS_VARIABLE = "NUTRILEARN_VOCABULARY_GUARD_DAYS"  # "recent traffic" for the vocabulary guard (default 7)


class VocabularyChange(RegistryError):
    """A champion move that would stop naming foods users were recently given; allowed only
    when asked for (``--allow-vocabulary-change``, the tick on the Models page)."""

    def __init__(self, loss):
        self.loss = loss
        super().__init__(loss.message() + ". Pass --allow-vocabulary-change (the tick on the Models page) "
                                          "to move the champion anyway.")


def guard_days() -> float:
    from nutrilearn.config import env_number

    return float(env_number(GUARD_DAYS_VARIABLE, 7.0))


def vocabulary_loss(settings: Settings, reg: Registry, candidate: str, traffic=None, days: float | None = None):
    """``labels.VocabularyLoss`` of making ``candidate`` champion (None when there is no
    champion or the candidate names everything the champion names). ``traffic``: the
    predictions frame (read from the prediction log when not given and needed)."""
    from nutrilearn.registry import labels

    champion = reg.alias_version(CHAMPION)
    if champion is None or champion == str(candidate):
        return None
    champ_vocab, cand_vocab = reg.vocabulary(champion), reg.vocabulary(candidate)
    if not set(champ_vocab) - set(cand_vocab) - {labels.NOT_FOOD}:
        return None
    days = guard_days() if days is None else days
    if traffic is None:
        traffic = _read_traffic(settings, days)
    return labels.lost_foods(champion, champ_vocab, str(candidate), cand_vocab, traffic, days)


def _read_traffic(settings: Settings, days: float):
    """The last ``days`` of predictions, only the columns the guard looks at (the mirror reads those days only)."""
    import pandas as pd

    from nutrilearn.tracking.reader import PredictionReader

    reader = PredictionReader(settings)
    try:
        return reader.predictions(start=pd.Timestamp.now(tz="UTC") - pd.Timedelta(days=days),
                                  columns=("request_id", "timestamp", "status", "model_version", "model_alias",
                                           "source", "label"))
    finally:
        reader.close()


def _vocabulary_note(settings, reg, version, allow: bool, traffic) -> str:
    """Refuses (``VocabularyChange``) unless allowed; returns what the history records."""
    loss = vocabulary_loss(settings, reg, version, traffic)
    if loss is None:
        return ""
    if loss.blocks and not allow:
        raise VocabularyChange(loss)
    return loss.record()


class NotAuthorised(PermissionError):
    """A guarded action without a valid admin token."""


def admin_status(settings: Settings, token: str | None, actor: Identity | None = None,
                 action: str = "promote") -> tuple[bool, str]:
    """(allowed, reason): the reason says why actions are off, for buttons and errors.

    A logged-in ``actor`` (not local mode) is decided by role alone; otherwise the token is
    compared with ``NUTRILEARN_ADMIN_TOKEN`` in constant time."""
    if actor is not None and not actor.is_local:
        if can(actor, action):
            return True, f"admin actions enabled for {actor.display_name} (admin)"
        return False, (f"only admins may {action.replace('_', ' ')}: {actor.display_name} is "
                       f"{'an' if actor.role[0] in 'aeiou' else 'a'} {actor.role}")
    if not settings.admin_token:
        return False, f"admin actions are off: {TOKEN_VARIABLE} is not set where the app runs"
    if not token:
        return False, "enter the admin token to enable admin actions"
    if not hmac.compare_digest(token.encode(), settings.admin_token.encode()):
        return False, "the admin token is wrong"
    return True, "admin actions enabled"


def check_token(settings: Settings, token: str | None, actor: Identity | None = None,
                action: str = "promote") -> None:
    allowed, reason = admin_status(settings, token, actor, action)
    if not allowed:
        raise NotAuthorised(reason)


def _who(who: str, actor: Identity | None) -> str:
    """A logged-in actor is recorded as themselves, never as a typed name."""
    return actor.record_as if actor is not None and not actor.is_local else who


def _why(why: str) -> str:
    why = (why or "").strip()
    if not why:
        raise RegistryError("say why: every alias move is recorded with a reason")
    return why


def promote(settings: Settings, version: str, token: str | None, who: str, why: str,
            registry: Registry | None = None, allow_vocabulary_change: bool = False, traffic=None,
            actor: Identity | None = None) -> AliasEvent:
    """Make ``version`` the champion. If it was the challenger, the challenger alias is cleared.

    Refused (``VocabularyChange``) when ``version`` cannot name foods the champion named in
    recent traffic, unless ``allow_vocabulary_change``; the accepted change is recorded."""
    check_token(settings, token, actor, "promote")
    who = _who(who, actor)
    why = _why(why)
    reg = registry or Registry(settings)
    current = reg.alias_version(CHAMPION)
    if current == str(version):
        raise RegistryError(f"version {version} is already the champion")
    reg.version(version)  # an unknown version fails before the guard reads traffic
    note = _vocabulary_note(settings, reg, str(version), allow_vocabulary_change, traffic)
    event = reg.move_alias(CHAMPION, str(version), who, why, PROMOTE, vocabulary=note)
    if reg.alias_version(CHALLENGER) == str(version):
        reg.move_alias(CHALLENGER, None, who, f"promoted to champion: {why}", CLEAR_CHALLENGER)
    return event


def set_challenger(settings: Settings, version: str | None, token: str | None, who: str, why: str,
                   registry: Registry | None = None, actor: Identity | None = None) -> AliasEvent:
    """Point the challenger alias at ``version`` (None clears it)."""
    check_token(settings, token, actor, "set_challenger")
    who = _who(who, actor)
    why = _why(why)
    reg = registry or Registry(settings)
    if version is not None and reg.alias_version(CHAMPION) == str(version):
        raise RegistryError(f"version {version} is the champion; a challenger must be another version")
    action = SET_CHALLENGER if version is not None else CLEAR_CHALLENGER
    return reg.move_alias(CHALLENGER, None if version is None else str(version), who, why, action)


def rollback(settings: Settings, token: str | None, who: str, why: str, registry: Registry | None = None,
             allow_vocabulary_change: bool = False, traffic=None, actor: Identity | None = None) -> AliasEvent:
    """Give the champion alias back to the version that held it before the current one
    (guarded like ``promote`` against losing foods users were recently given)."""
    check_token(settings, token, actor, "rollback")
    who = _who(who, actor)
    why = _why(why)
    reg = registry or Registry(settings)
    previous = reg.previous_champion()
    if previous is None:
        raise RegistryError("nothing to roll back to: the champion has never been replaced")
    note = _vocabulary_note(settings, reg, previous, allow_vocabulary_change, traffic)
    return reg.move_alias(CHAMPION, previous, who, why, ROLLBACK, vocabulary=note)


def bootstrap_champion(settings: Settings, version: str, registry: Registry | None = None) -> AliasEvent | None:
    """Setup only: name the first champion when there is none (no token: nothing is replaced)."""
    reg = registry or Registry(settings)
    if reg.alias_version(CHAMPION) is not None:
        return None
    return reg.move_alias(CHAMPION, str(version), "nutrilearn setup", "first version: the ImageNet food model", BOOTSTRAP)
