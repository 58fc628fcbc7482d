"""The payout store in memory: the PostgreSQL store's semantics without a database.

:class:`InMemoryStore` implements :class:`payout_core.ports.PayoutStore`
directly (it fakes the port, not a database driver) and is held to the same
contract suite as the PostgreSQL store (``tests/contracts/store_contract.py``),
so a test that passes on it means what it says. What the database enforces,
it enforces too, with the same errors:

* one job per ``settlement_id``: scheduling again returns that job, ``created=False``;
* one live or completed transfer per ``(contest_id, user_id)`` across all jobs
  (failed ones do not count): ``DuplicatePayout`` naming the winners, and
  nothing written;
* an operator's resolve only over the very row decided on, and a failed
  transfer reissued at most once, never beside a live or completed one;
* its own clock, standing for the database's: claims, leases, due times and
  send intents are decided by it, never by a caller's clock (DESIGN 3, rule 1);
* claims with leases, oldest due first, never one transfer to two callers;
  an expired claim one too many in a row is escalated to an operator instead;
* write-ahead send intents, guarded by the claim and the send margin;
* the stale-claim guard: an outcome is written only over the claim it came from;
* an append-only ledger with unique ``idempotency_key``, at most one
  ``payout_completed`` and one ``payout_failed`` row per transfer, and per
  transfer never more ``payout_reversed`` credits than its payment;
* reversals written ahead as intents, one in doubt per transfer, each settled
  once (a settled reversal never changes);
* the row checks of the schema (``stripe_transfer_id`` iff completed, a claim
  has a lease and a token, ...): a write breaking one raises as the database's
  refusal would (:class:`~payout_core.errors.StoreRefused` naming the
  constraint when a job is scheduled, ``IllegalTransition`` when a transfer
  moves), never as the caller's invalid input.

Every operation is one step under one lock: atomic, and safe to share between
threads. Models are frozen, so what it returns can be kept without copying.

For tests of what happens when the database goes away, see
:attr:`InMemoryStore.available` and :meth:`InMemoryStore.fail_next`.

The store is one class made of its parts, a module each, as the port's
methods fall into them: :mod:`.jobs` (scheduling), :mod:`.claims` (the
worker's claims, send intents and outcomes), :mod:`.operator` (resolve,
reissue, pause), :mod:`.reversals`, :mod:`.reads` (and run reports), over
:mod:`.tables` (the state, the lock, the outage switches) and :mod:`.schema`
(the row checks). A scheduled job is stored as the core planned it: its
totals are not judged again.
"""

from __future__ import annotations

from payout_adapters.memory.store.claims import Claims
from payout_adapters.memory.store.jobs import Jobs
from payout_adapters.memory.store.operator import Operator
from payout_adapters.memory.store.reads import Reads
from payout_adapters.memory.store.reversals import Reversals
from payout_adapters.memory.store.tables import OPERATIONS

__all__ = ["OPERATIONS", "InMemoryStore"]


class InMemoryStore(Jobs, Claims, Operator, Reversals, Reads):
    """:class:`payout_core.ports.PayoutStore` in memory, for tests and demos.

    ``clock`` is the store's own time, the database's clock (the system clock
    by default): give it a :class:`~payout_adapters.memory.ManualClock` of its
    own to test workers whose clocks disagree with the database.

    Beyond the port it has, for tests only: :meth:`reset`, read-only views of
    everything stored (:meth:`jobs`, :meth:`transfers`, :meth:`runs`), and the
    outage switches :attr:`available` and :meth:`fail_next`.
    """
