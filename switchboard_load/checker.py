"""The delivery check: per subscription, every offset exactly once and in order.

Why: protocol v1 promises that per channel offsets arrive strictly increasing with no gaps while a
subscription lasts. The checker makes that promise visible: it runs in O(1) per delivery and keeps
only the offsets it is still missing, so 10,000 subscribers cost a few bytes each.
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field

Runs = list[tuple[int, int]]


def runs_of(offsets: list[int]) -> Runs:
    """Offsets as (first, last) runs: acknowledged offsets are nearly contiguous, so hundreds of
    thousands of them cross the workers' pipes in a few runs."""
    out: Runs = []
    for o in sorted(set(offsets)):
        if out and out[-1][1] + 1 == o:
            out[-1] = (out[-1][0], o)
        else:
            out.append((o, o))
    return out


def offsets_in(runs: Runs) -> frozenset[int]:
    return frozenset(o for first, last in runs for o in range(first, last + 1))


@dataclass(slots=True)
class OffsetChecker:
    """Tracks one subscription. `start` is the channel offset the subscribe reply gave."""

    start: int
    next: int = 0
    missing: set[int] = field(default_factory=set)
    received: int = 0
    duplicated: int = 0
    reordered: int = 0

    def __post_init__(self) -> None:
        self.next = self.start + 1

    def see(self, offset: int) -> None:
        """Record one delivered offset."""
        self.received += 1
        nxt = self.next
        if offset == nxt:
            self.next = nxt + 1
        elif offset > nxt:
            self.missing.update(range(nxt, offset))
            self.next = offset + 1
        elif offset in self.missing:
            self.missing.discard(offset)
            self.reordered += 1
        elif offset > self.start:
            self.duplicated += 1
        # offsets at or before `start` were published before the subscription began: not ours.

    def caught_up(self, final: int, acked: AbstractSet[int] | None = None) -> bool:
        """True once everything up to `final` (the channel's last acknowledged offset) arrived;
        with `acked`, a missing offset that was never acknowledged is not waited for."""
        if acked is None:
            return self.next > final and not self.missing
        return self.next > final and self.missing.isdisjoint(acked)

    def lost(self, final: int | None, acked: AbstractSet[int] | None = None) -> int:
        """Publications never delivered; with `final` None only gaps inside the window count.

        With `acked` (every offset the publishers had acknowledged), only those count: an offset
        whose publication was refused or never answered may be void (docs/protocol.md), and a
        subscriber that recovered across it rightly never sees it.
        """
        tail = range(self.next, final + 1) if final is not None else range(0)
        if acked is None:
            return len(self.missing) + len(tail)
        return sum(1 for o in self.missing if o in acked) + sum(1 for o in tail if o in acked)


@dataclass(slots=True)
class DeliveryTotals:
    """Counts over all subscribers: the result document's lost/duplicated/reordered."""

    lost: int = 0
    duplicated: int = 0
    reordered: int = 0
    subscriptions: int = 0
    #: a few examples (channel, offset) of lost publications, for the failure message
    examples: list[tuple[str, int]] = field(default_factory=list)

    def add(
        self,
        channel: str,
        chk: OffsetChecker,
        final: int | None,
        acked: AbstractSet[int] | None = None,
    ) -> None:
        lost = chk.lost(final, acked)
        self.lost += lost
        self.duplicated += chk.duplicated
        self.reordered += chk.reordered
        self.subscriptions += 1
        if lost and len(self.examples) < 5:
            first = min(chk.missing) if chk.missing else chk.next
            self.examples.append((channel, first))

    def merge(self, other: DeliveryTotals) -> None:
        self.lost += other.lost
        self.duplicated += other.duplicated
        self.reordered += other.reordered
        self.subscriptions += other.subscriptions
        self.examples.extend(other.examples[: max(0, 5 - len(self.examples))])

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.reordered)
