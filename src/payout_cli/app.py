"""``payout-core``: the Typer app, and every command registered on it.

Each command lives in a module of :mod:`payout_cli.commands` by family; this
module is the table of them, in the order ``--help`` lists them. Commands
parse, take their adapters from :mod:`payout_cli.bootstrap`, call a service
and print.

Exit codes: 0 success; 1 runtime failure; 2 bad usage or bad input (the
message names what is wrong, and nothing was written).
"""

from __future__ import annotations

import typer

from payout_cli.commands import demo, fleet, ledger, reconcile, setup, status, transfers, worker

__all__ = ["app", "main"]

# Locals in a traceback could show a key or a token (Typer's docs warn of it).
app = typer.Typer(
    pretty_exceptions_show_locals=False,
    no_args_is_help=True,
    add_completion=False,
    help="Pay contest winnings to Stripe connected accounts, exactly once.",
)
accounts_app = typer.Typer(no_args_is_help=True, help="Connected accounts of winners.")
transfers_app = typer.Typer(no_args_is_help=True, help="One payout transfer, for an operator.")
ledger_app = typer.Typer(no_args_is_help=True, help="The append-only ledger, for accounting.")
webhooks_app = typer.Typer(no_args_is_help=True, help="Stripe's signed webhook events.")
app.add_typer(accounts_app, name="accounts")
app.add_typer(transfers_app, name="transfers")
app.add_typer(ledger_app, name="ledger")
app.add_typer(webhooks_app, name="webhooks")

app.command()(setup.migrate)
app.command()(setup.schedule)
accounts_app.command("set")(setup.accounts_set)
app.command()(worker.loop)
webhooks_app.command("serve")(worker.webhooks_serve)
app.command()(status.status)
app.command()(fleet.pause)
app.command()(fleet.resume)
transfers_app.command("show")(transfers.transfers_show)
transfers_app.command("resolve")(transfers.transfers_resolve)
transfers_app.command("reissue")(transfers.transfers_reissue)
transfers_app.command("reverse")(transfers.transfers_reverse)
ledger_app.command("export")(ledger.export)
app.command(name="reconcile")(reconcile.reconcile_command)
app.command()(demo.demo)


def main() -> None:
    app()
