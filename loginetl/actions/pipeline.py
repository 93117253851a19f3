"""The pipeline: a batch of inbound messages in, each message's outcome out.

consume's workers and the Lambda handler are thin adapters over ``Pipeline.process``:
they cannot differ in what they commit, dead-letter or report. Modelled on Powertools'
batch processor: every message ends in exactly one of

- ``loaded``: its row is committed (new, or already there: a duplicate); delete it;
- ``dead_lettered``: the DLQ accepted its copy, with the reason; delete it;
- ``retry``: neither; leave it in the queue.

verify attributes -> (FIFO: group order) -> parse, validate, mask, seal -> (FIFO:
dead-letter the rejects first; hold back what follows a reject the DLQ did not take in
its group) -> one transaction (bisected when the database refuses rows as data) ->
dead-letter the rest of the rejects. Nothing is deleted here: the adapters delete
``done`` after ``process`` returns, so never before the commit.

Ours stops the line, theirs goes to the DLQ. A message is dead-lettered only for a reason
that is its own: its content fails the contract, or the database (or the masker, or the
sealer) refuses it while taking its neighbours. A failure the message does not explain (the
database refuses every row, preparing every message fails, an unexpected exception in the
write, a permission missing) raises ``Fatal`` with one sentence naming the cause, before
anything of the batch was dead-lettered (on FIFO, contract rejects may already be in the
DLQ: they are theirs); the adapter releases the batch (consume exits 1) or raises (the
Lambda returns every record).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import partial

from loginetl.actions.acknowledge import Acknowledger
from loginetl.actions.load import Loader
from loginetl.actions.prepare import prepare_isolating, trust_all
from loginetl.core.batch import InboundMessage
from loginetl.core.envelope import EnvelopeMode
from loginetl.core.fifo import behind, in_group_order, without
from loginetl.core.keyring import Keyring
from loginetl.core.masking import Masker
from loginetl.core.messages import MAX_BODY_BYTES
from loginetl.core.vault_crypto import VaultSealer
from loginetl.services import failpoints


@dataclass(frozen=True)
class BatchOutcome:
    """Each message's outcome; ``loaded``, ``dead_lettered`` and ``retry`` partition the batch."""

    loaded: list[InboundMessage]  # committed (``inserted`` of them new, the rest duplicates)
    inserted: int
    dead_lettered: list[InboundMessage]  # the DLQ accepted their copy
    reasons: dict[str, str] = field(default_factory=dict)  # message id -> reason code
    retry: list[InboundMessage] = field(default_factory=list)  # leave in the queue
    dead_letter_failures: int = 0  # rejects the DLQ did not take (among ``retry``)
    ignored_fields: int = 0
    forged_attributes_ignored: int = 0

    @property
    def done(self) -> list[InboundMessage]:
        """What may be deleted: committed, or accepted by the DLQ."""
        return [*self.loaded, *self.dead_lettered]

    @property
    def duplicates(self) -> int:
        return len(self.loaded) - self.inserted

    @property
    def by_reason(self) -> Counter[str]:
        return Counter(self.reasons.values())


@dataclass(frozen=True)
class Pipeline:
    """The one pipeline: what consume and the Lambda both run on a batch."""

    loader: Loader
    acknowledger: Acknowledger
    masker: Masker
    sealer: VaultSealer
    attribute_keys: Keyring
    envelope: EnvelopeMode = "auto"
    max_body_bytes: int = MAX_BODY_BYTES

    def process(self, messages: Sequence[InboundMessage], *, fifo: bool) -> BatchOutcome:
        """Load, dead-letter or keep each message; raise Fatal when the failure is ours."""
        trusted, forged = trust_all(messages, self.attribute_keys)
        if fifo:
            trusted = in_group_order(trusted)
        cache = self.loader.cache()  # a purge since it was filled: the load seals again
        prepare = partial(
            prepare_isolating,
            masker=self.masker,
            sealer=self.sealer,
            max_body_bytes=self.max_body_bytes,
            envelope=self.envelope,
        )
        batch = prepare(trusted, known_tokens=cache.tokens)
        early = self.acknowledger.dead_letter(batch.rejected if fifo else [])
        if fifo:
            # The FIFO rule: a group's reject reaches the DLQ before its later messages
            # commit; one the DLQ did not take holds the rest of its group back.
            taken = {m.message_id for m in early.accepted}
            held = [m for m in behind(trusted, early.unsent) if m.message_id not in taken]
            batch = replace(without(batch, held), rejected=[])
        loaded = self.loader.load(batch, cache=cache, reseal=prepare)
        failpoints.hit("crash_after_commit")
        late = self.acknowledger.dead_letter([*batch.rejected, *loaded.refused])
        dead = [*early.accepted, *late.accepted]
        done = {m.message_id for m in (*loaded.messages, *dead)}
        return BatchOutcome(
            loaded=loaded.messages,
            inserted=loaded.inserted,
            dead_lettered=dead,
            reasons={**early.reasons, **late.reasons},
            retry=[m for m in trusted if m.message_id not in done],
            dead_letter_failures=early.failed + late.failed,
            ignored_fields=batch.ignored_fields,
            forged_attributes_ignored=forged,
        )
