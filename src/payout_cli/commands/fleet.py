"""``pause`` and ``resume``: an operator stops and restarts the whole fleet's claims."""

from __future__ import annotations

from payout_cli import bootstrap, conventions, output
from payout_cli.conventions import Actor, Reason
from payout_core.services import control

__all__ = ["pause", "resume"]


def pause(actor: Actor, reason: Reason, database_url: conventions.DatabaseUrl = None) -> None:
    """Pause the whole fleet: no worker claims a transfer from its next claim on.

    Transfers in flight finish and are recorded. Workers keep serving their
    admin endpoints and taking settlements from the inbox.
    """
    with conventions.exit_codes():
        control.validate_actor_and_reason(actor, reason)
        settings = conventions.settings_from(database_url=database_url)
        with bootstrap.open_database(settings, max_size=2) as db:
            state = control.pause(db.store, actor=actor, reason=reason, now=bootstrap.clock().now())
        output.note(f"the fleet is paused by {state.actor}: {state.reason}")


def resume(actor: Actor, reason: Reason, database_url: conventions.DatabaseUrl = None) -> None:
    """End a pause: workers claim transfers again from their next tick."""
    with conventions.exit_codes():
        control.validate_actor_and_reason(actor, reason)
        settings = conventions.settings_from(database_url=database_url)
        with bootstrap.open_database(settings, max_size=2) as db:
            control.resume(db.store, actor=actor, reason=reason, now=bootstrap.clock().now())
        output.note(f"the fleet is resumed by {actor.strip()}")
