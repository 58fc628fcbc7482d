"""``payout-core transfers``: one payout transfer, for an operator: ``show``
what is known of it, and act on it (``resolve``, ``reissue``, ``reverse``),
each action checked against Stripe and kept in the audit trail."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, Any

import attrs
import typer

from payout_cli import bootstrap, conventions, logs, output
from payout_cli import settings as settings_
from payout_cli.commands import views
from payout_cli.conventions import Actor, Reason
from payout_core import attempt, models, outcomes, validation
from payout_core.services import control, inspection, reversals, transfer_actions

if TYPE_CHECKING:
    from payout_adapters.stripe import gateway as stripe_adapter

__all__ = ["transfers_reissue", "transfers_resolve", "transfers_reverse", "transfers_show"]


def _lookup_dict(found: outcomes.LookupOutcome | None) -> dict[str, Any]:
    match found:
        case None:
            return {"asked": False}
        case outcomes.Found(stripe_transfer_id=stripe_id):
            return {"asked": True, "found": True, "stripe_transfer_id": stripe_id}
        case outcomes.NotFound():
            return {"asked": True, "found": False}
        case _:
            return {"asked": True, "error": f"{found.code}: {found.message}"}


def transfers_show(
    transfer_id: Annotated[str, typer.Argument(help="The payout transfer's id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    database_url: conventions.DatabaseUrl = None,
) -> None:
    """The transfer, its keys, its ledger rows, the actions on it, and what Stripe holds."""
    with conventions.exit_codes():
        if (problem := validation.transfer_id_problem(transfer_id)) is not None:
            raise conventions.BadInput(problem.message)
        settings = conventions.settings_from(database_url=database_url)
        with bootstrap.open_database(settings, max_size=2) as db:
            gateway = bootstrap.stripe_if_configured(settings, limiter=db.rate_limiter)
            shown = inspection.view_transfer(db.store, transfer_id, gateway=gateway)
        if shown is None:
            raise conventions.BadInput(f"no payout transfer {transfer_id!r}")
        data: dict[str, Any] = {
            "transfer": views.transfer_dict(shown.transfer),
            "keys": [attrs.asdict(k) for k in shown.keys],
            "ledger": [
                {
                    "entry_type": e.entry_type.value,
                    "direction": e.direction.value,
                    "amount_cents": e.amount_cents,
                    "attempt_number": e.attempt_number,
                    "stripe_transfer_id": e.stripe_transfer_id,
                    "failure_code": e.failure_code,
                    "created_at": e.created_at.isoformat(),
                }
                for e in shown.ledger
            ],
            "actions": [views.action_dict(a) for a in shown.actions],
            "reversals": [views.reversal_dict(r) for r in shown.reversals],
            "at_stripe": _lookup_dict(shown.at_stripe),
        }
        if as_json:
            output.print_json(data)
            return
        con = output.console
        t = data["transfer"]
        con.print(
            output.table(
                f"Transfer {t['id']}",
                ["field", "value"],
                [[k, "" if v is None else str(v)] for k, v in t.items()],
            )
        )
        con.print(
            output.table(
                "Idempotency keys (one per attempt that ended; the current one last)",
                ["generation", "key", "current"],
                [[k["generation"], k["key"], "yes" if k["current"] else ""] for k in data["keys"]],
            )
        )
        con.print(
            output.table(
                "Ledger",
                ["when", "entry", "amount", "attempt", "stripe transfer", "code"],
                [
                    [
                        e["created_at"], e["entry_type"], e["amount_cents"], e["attempt_number"],
                        e["stripe_transfer_id"] or "", e["failure_code"] or "",
                    ]
                    for e in data["ledger"]
                ],
            )
        )  # fmt: skip
        if data["actions"]:
            con.print(views.actions_table("Operator actions on this transfer", data["actions"]))
        if data["reversals"]:
            con.print(
                views.reversals_table(
                    "Reversals asked by payout-core (sending: Stripe's answer not yet known)",
                    data["reversals"],
                )
            )
        stripe = data["at_stripe"]
        if not stripe["asked"]:
            con.print("Stripe not asked: no STRIPE_API_KEY (or the simulated gateway).")
        elif "error" in stripe:
            con.print(f"Stripe could not be asked: {logs.scrub(stripe['error'])}", markup=False)
        elif stripe["found"]:
            con.print(f"At Stripe: {stripe['stripe_transfer_id']}", markup=False)
        else:
            con.print("At Stripe: no transfer for this payout.")


def _stripe_for_operator(
    settings: settings_.Settings, db: bootstrap.Database
) -> stripe_adapter.StripeGateway:
    return bootstrap.build_operator_stripe(settings, limiter=db.rate_limiter)


def transfers_resolve(
    transfer_id: Annotated[str, typer.Argument(help="The payout transfer's id.")],
    actor: Actor,
    reason: Reason,
    found: Annotated[
        str | None,
        typer.Option("--found", help="Stripe holds this transfer (tr_...) for it: completed."),
    ] = None,
    absent: Annotated[
        bool,
        typer.Option("--absent", help="Stripe holds none for it: failed (it may be reissued)."),
    ] = False,
    database_url: conventions.DatabaseUrl = None,
) -> None:
    """Close a transfer that needs an operator, after checking the claim at Stripe.

    --found checks that Stripe's transfer exists and is this one's payment
    (amount, currency, pinned destination, group, metadata.payout_transfer_id);
    --absent checks that Stripe holds none and no send can still be running.
    Either refuses, writing nothing, when Stripe disagrees.
    """
    with conventions.exit_codes():
        if (found is None) == (not absent):
            raise conventions.BadInput("give exactly one of --found tr_... and --absent")
        control.validate_actor_and_reason(actor, reason)
        transfer_actions.validate_transfer_id(transfer_id)
        if found is not None:
            transfer_actions.validate_stripe_transfer_id(found)
        settings = conventions.settings_from(database_url=database_url)
        with bootstrap.open_database(settings, max_size=2) as db:
            records = _stripe_for_operator(settings, db)
            now = bootstrap.clock().now()
            if found is not None:
                closed = transfer_actions.resolve_found(
                    db.store, records, transfer_id, found, actor=actor, reason=reason, now=now
                )
            else:
                closed = transfer_actions.resolve_absent(
                    db.store,
                    records,
                    transfer_id,
                    actor=actor,
                    reason=reason,
                    now=now,
                    margin=attempt.send_margin(timedelta(seconds=settings.stripe_timeout_seconds)),
                )
        output.note(f"transfer {closed.id} is {closed.status} (resolved by {actor.strip()})")


def transfers_reissue(
    transfer_id: Annotated[str, typer.Argument(help="The failed_terminal transfer's id.")],
    actor: Actor,
    reason: Reason,
    database_url: conventions.DatabaseUrl = None,
) -> None:
    """Pay a failed_terminal winner again, once the cause is fixed: a new transfer
    for the same contest and user, linked to the failed one, under a new
    idempotency key. Refused while Stripe holds any transfer for the failed one."""
    with conventions.exit_codes():
        control.validate_actor_and_reason(actor, reason)
        transfer_actions.validate_transfer_id(transfer_id)
        settings = conventions.settings_from(database_url=database_url)
        with bootstrap.open_database(settings, max_size=2) as db:
            records = _stripe_for_operator(settings, db)
            new = transfer_actions.reissue(
                db.store,
                records,
                transfer_id,
                actor=actor,
                reason=reason,
                now=bootstrap.clock().now(),
                new_id=lambda: str(uuid.uuid4()),
            )
        output.console.print(new.id, markup=False)
        output.note(
            f"transfer {transfer_id} is reissued as {new.id}; the next tick pays it "
            f"and its job stays open until then"
        )


def transfers_reverse(
    transfer_id: Annotated[str, typer.Argument(help="The completed payout transfer's id.")],
    actor: Actor,
    reason: Reason,
    amount: Annotated[
        str | None,
        typer.Option(
            "--amount",
            help="Minor units (cents) to reverse, 1 to 99999999 (default: all that is left).",
            show_default=False,
        ),
    ] = None,
    database_url: conventions.DatabaseUrl = None,
) -> None:
    """Reverse (part of) a completed transfer at Stripe: money comes back.

    One Stripe reversal under the key payout-reversal:<transfer>:<n>, written
    ahead as an intent and booked as a payout_reversed credit with an audit
    row. If Stripe's answer is lost, run the same command again: it resolves
    that reversal (never reversing twice) instead of asking for a new one.
    """
    with conventions.exit_codes():
        control.validate_actor_and_reason(actor, reason)
        transfer_actions.validate_transfer_id(transfer_id)
        # The one amount rule, as for a settlement's amounts (1e2 is 100).
        cents = None if amount is None else validation.parse_amount(amount, "--amount")
        settings = conventions.settings_from(database_url=database_url)
        with bootstrap.open_database(settings, max_size=2) as db:
            stripe = _stripe_for_operator(settings, db)
            result = reversals.reverse(
                db.store,
                stripe,
                transfer_id,
                amount_cents=cents,
                actor=actor,
                reason=reason,
                now=bootstrap.clock().now(),
                new_id=lambda: str(uuid.uuid4()),
            )
        r = result.reversal
        what = "resolved the reversal in doubt" if result.resolved_earlier else "asked"
        money = f"{r.amount_cents} {r.currency}"
        if r.status is models.ReversalStatus.COMPLETED:
            output.console.print(r.stripe_reversal_id, markup=False)
            output.note(
                f"{what}: {money} of transfer {r.transfer_id} reversed at Stripe as "
                f"{r.stripe_reversal_id}; {result.amounts} {r.currency}"
            )
            return
        if r.status is models.ReversalStatus.FAILED:
            output.error(
                f"{what}: Stripe reversed nothing under {r.idempotency_key} "
                f"({r.failure_code}: {r.failure_message}); nothing was booked"
            )
        else:
            output.error(
                f"{what}: Stripe's answer to {r.idempotency_key} ({money}) is not known; the "
                "reversal may exist. Run the same command again to resolve it: it resends "
                "the same key, which can never reverse twice."
            )
    raise typer.Exit(conventions.EXIT_FAILURE)
