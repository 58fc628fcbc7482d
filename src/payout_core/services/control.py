"""Operating the fleet by hand: a fleet-wide pause and resume (DESIGN 7).

Each action names who did it and why, and is recorded in the store's
append-only audit trail together with the state before and after it.
"""

from __future__ import annotations

from datetime import datetime

from payout_core import errors, models, ports

__all__ = ["pause", "resume", "validate_actor_and_reason"]

_ACTOR_MAX = 200
_REASON_MAX = 2000


def validate_actor_and_reason(actor: object, reason: object) -> None:
    """Refuse an action that does not say who did it and why, or says it in
    what the audit trail cannot show as written (``status`` prints both on a
    terminal: no control characters, which could rewrite what it shows).

    Raises:
        InvalidOperatorAction: naming each problem; nothing was written.
    """
    problems = []
    for name, value, most in (("actor", actor, _ACTOR_MAX), ("reason", reason, _REASON_MAX)):
        if not isinstance(value, str):
            problems.append(errors.Problem(name, f"must be a string, got {type(value).__name__}"))
        elif not value.strip():
            problems.append(errors.Problem(name, "must not be empty"))
        elif len(value) > most:
            problems.append(
                errors.Problem(name, f"must be at most {most} characters, got {len(value)}")
            )
        elif "\x00" in value:
            problems.append(errors.Problem(name, "must not contain a NUL byte"))
        elif not value.isprintable():
            problems.append(
                errors.Problem(
                    name, "must not contain control characters (a line break, an escape, ...)"
                )
            )
    if problems:
        raise errors.InvalidOperatorAction(problems)


def _act(
    store: ports.PayoutStore,
    kind: models.OperatorActionKind,
    *,
    actor: str,
    reason: str,
    now: datetime,
) -> models.PauseState:
    validate_actor_and_reason(actor, reason)
    action = models.OperatorAction(action=kind, actor=actor.strip(), reason=reason, created_at=now)
    return store.set_paused(action)


def pause(store: ports.PayoutStore, *, actor: str, reason: str, now: datetime) -> models.PauseState:
    """Pause the whole fleet: from its next claim, no worker claims a transfer;
    transfers in flight finish and are recorded.

    Raises:
        InvalidOperatorAction: no actor or no reason; nothing was written.
        StoreUnavailable: nothing was written.
    """
    return _act(store, models.OperatorActionKind.PAUSE, actor=actor, reason=reason, now=now)


def resume(
    store: ports.PayoutStore, *, actor: str, reason: str, now: datetime
) -> models.PauseState:
    """End a pause: workers claim again from their next tick.

    Raises:
        InvalidOperatorAction: no actor or no reason; nothing was written.
        StoreUnavailable: nothing was written.
    """
    return _act(store, models.OperatorActionKind.RESUME, actor=actor, reason=reason, now=now)
