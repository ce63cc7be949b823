"""engine.gcpolicy: young cycles are still freed, survivors are frozen, frozen cycles are freed
after the refreeze threshold, and a process running without the collector is left alone."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from engine.gcpolicy import FreezeSurvivors, allocated_bytes


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def cycle() -> tuple[Node, weakref.ref[Node]]:
    a, b = Node(), Node()
    a.other, b.other = b, a
    return a, weakref.ref(a)


@pytest.fixture(autouse=True)
def thawed() -> Iterator[None]:
    was = gc.isenabled()
    gc.enable()
    yield
    gc.unfreeze()  # the rest of the test session runs with nothing frozen
    gc.collect()
    if not was:
        gc.disable()


def test_a_cycle_dropped_before_the_call_is_freed() -> None:
    policy = FreezeSurvivors()
    policy()
    a, ref = cycle()
    del a
    policy()
    assert ref() is None


def test_survivors_are_frozen_and_counted() -> None:
    policy = FreezeSurvivors()
    policy()  # the first call freezes start-up's objects without counting them
    assert policy.frozen == 0
    frozen_before = gc.get_freeze_count()
    kept = [Node() for _ in range(500)]
    policy()
    assert gc.get_freeze_count() >= frozen_before + len(kept)
    assert policy.frozen >= len(kept)
    # Nothing of it is walked again: the oldest generation is empty right after.
    assert gc.get_objects(2) == []


def test_a_frozen_cycle_is_freed_after_the_refreeze_threshold() -> None:
    policy = FreezeSurvivors(refreeze_after=1000)
    policy()
    a, ref = cycle()
    policy()  # frozen while alive
    del a
    policy()
    assert ref() is not None, "a frozen cycle waits for the full walk"
    filler = [Node() for _ in range(2000)]
    policy()  # counts the filler: over the threshold
    policy()  # the full walk
    assert policy.full_collections == 1
    assert ref() is None
    assert policy.frozen == 0
    del filler


def test_nothing_happens_when_the_collector_is_off() -> None:
    gc.disable()
    policy = FreezeSurvivors()
    frozen_before = gc.get_freeze_count()
    policy()
    assert gc.get_freeze_count() == frozen_before
    assert policy.frozen is None


def test_leaving_the_block_unfreezes() -> None:
    frozen_before = gc.get_freeze_count()
    with FreezeSurvivors() as policy:
        kept = [Node() for _ in range(100)]
        policy()
        assert gc.get_freeze_count() > frozen_before
    assert gc.get_freeze_count() == 0
    assert policy.frozen is None
    del kept


def test_trace_leaves_nothing_frozen(capsys: pytest.CaptureFixture[str]) -> None:
    """The tests run ``trace`` in their own process: it must hand the collector back."""
    from tests.cli import nntui

    code, out, _ = nntui(capsys, "trace", "--iterations", "3", "--json")
    assert code == 0 and len(out.splitlines()) == 16
    assert gc.get_freeze_count() == 0


@pytest.mark.skipif(allocated_bytes() is None, reason="no glibc mallinfo2 here")
def test_a_frozen_cycle_holding_memory_is_freed_once_memory_grows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A count of objects alone would let a cycle holding a big tensor pile up for thousands
    of iterations (a review's model: ~4 MiB of frozen garbage per iteration)."""
    import torch

    from engine import gcpolicy

    monkeypatch.setattr(gcpolicy, "CHECK_EVERY_SECONDS", 0.0)  # these calls come in a burst

    policy = FreezeSurvivors(refreeze_after=10**9, refreeze_growth=32 * 2**20)
    policy()
    a, ref = cycle()
    a.tensor = torch.ones(16 * 2**20)  # 64 MiB, touched: resident
    policy()  # grown: the full walk runs, the cycle is alive and frozen after it
    walks = policy.full_collections
    del a
    policy()
    assert ref() is not None, "frozen garbage waits for the next full walk"
    more = torch.ones(16 * 2**20)  # the process grows again
    policy()
    assert policy.full_collections == walks + 1
    assert ref() is None
    del more


@pytest.mark.skipif(allocated_bytes() is None, reason="no glibc mallinfo2 here")
def test_growth_the_caller_accounts_for_starts_no_walk(monkeypatch: pytest.MonkeyPatch) -> None:
    """The rewind history's bytes are bounded by its budget and freed by reference count:
    ``trace`` leaves them out, or a history filling up walks everything frozen twice."""
    import torch

    from engine import gcpolicy

    monkeypatch.setattr(gcpolicy, "CHECK_EVERY_SECONDS", 0.0)
    held: list[torch.Tensor] = []
    policy = FreezeSurvivors(
        refreeze_after=10**9,
        refreeze_growth=32 * 2**20,
        exclude=lambda: sum(t.nbytes for t in held),
    )
    policy()
    held.append(torch.ones(16 * 2**20))  # 64 MiB the "history" holds
    policy()
    assert policy.full_collections == 0
    other = torch.ones(16 * 2**20)  # 64 MiB it does not
    policy()
    assert policy.full_collections == 1
    del other
