"""A long run: the session lets go of records no rewind can reach, and memory stays flat.

Before, every record of the run was kept: a long ``nntui trace`` grew by ~60 KB an iteration
(tutorial Net) with no bound, and the app's panes re-read the whole log each key. The loss
curve and the digits accuracy, which cover the whole run, come from ``Session.run_log``.
"""

from __future__ import annotations

import gc
import tracemalloc

import pytest

import engine.session as session_module
from engine import Phase, Recipe, Session
from engine.digits import batch_report
from tests.oracle import tutorial_loop
from tests.oracle_recipes import plain_run
from tui.widgets.accumulation import accumulation_view

# A history of a few iterations of the tutorial Net (params, grads and activations: ~0.5 MB
# an iteration), so a short test reaches the steady state of a long run.
SMALL_HISTORY = 3 * 2**20


@pytest.fixture
def small_tail(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(session_module, "KEEP_RECORDS", 12)
    monkeypatch.setattr(session_module, "TRIM_CHUNK", 5)


def oracle_losses(iterations: int) -> list[float]:
    return [loss for _, phase, loss, *_ in tutorial_loop(0, 0.01, iterations) if phase == "loss"]


def test_records_are_let_go_and_the_losses_cover_the_run(small_tail: None) -> None:
    session = Session(Recipe(), history_bytes=SMALL_HISTORY)
    session.run_next()
    for _ in range(40):
        session.run_iteration()
    want = oracle_losses(40)
    assert session.record_count == 1 + 5 * 40
    assert session.records_dropped > 100  # most of the run is gone ...
    assert len(session.records) < 12 + 5 + 5 * len(session.history)  # ... tail + window kept
    assert session.records[-1].phase is Phase.STEP and session.records[-1].iteration == 40
    assert session.run_log.losses() == tuple(enumerate(want, start=1))
    # Every checkpoint is still reachable: rewind as far as the history goes, then replay.
    reachable = len(session.history) - 1
    assert session.rewind(10**6) == reachable
    oldest_iteration = session.iteration
    assert session.records[-1].iteration == oldest_iteration  # the phase rewound to
    assert session.records[-1].phase is session.done
    losses = session.run_log.losses()
    assert losses == tuple(enumerate(want, start=1))[: len(losses)]
    while session.iteration < 40 or session.done is not Phase.STEP:
        result = session.run_next()
        assert result.phase is not None
    assert session.run_log.losses() == tuple(enumerate(want, start=1))
    assert session.record_count == 1 + 5 * 40


def test_python_memory_stays_flat_over_a_long_run(small_tail: None) -> None:
    session = Session(Recipe(), history_bytes=SMALL_HISTORY)
    session.run_next()
    for _ in range(30):
        session.run_iteration()
    gc.collect()
    tracemalloc.start()
    try:
        # The first hundred traced iterations grow one-time things (caches, dicts' tables).
        for _ in range(100):
            session.run_iteration()
        gc.collect()
        start = tracemalloc.get_traced_memory()[0]
        for _ in range(200):
            session.run_iteration()
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - start
    finally:
        tracemalloc.stop()
    # Kept, it was ~60 KB an iteration; the run log takes 32 bytes of it.
    assert grown / 200 < 1_000, grown


def test_digits_accuracy_covers_the_whole_run(small_tail: None) -> None:
    recipe = Recipe(data="digits", loss="cross-entropy", optimizer="adam", lr=0.001)
    session = Session(recipe, history_bytes=SMALL_HISTORY)
    session.run_next()
    for _ in range(30):
        session.run_iteration()
    assert session.records_dropped > 0
    oracle = plain_run(
        data="digits", loss="cross-entropy", optimizer="adam", lr=0.001, iterations=30
    )
    right = [(o.argmax(1) == y).sum().item() for o, y in zip(oracle.outputs, oracle.labels)]
    report = batch_report(session)
    assert report is not None and report.iteration == 30
    assert (report.seen, report.seen_correct) == (16 * 30, sum(right))
    assert (report.recent, report.recent_correct) == (160, sum(right[-10:]))
    session.rewind(5)  # past iteration 30's forward: out of the figures
    rewound = batch_report(session)
    assert rewound is not None and rewound.iteration == 29
    assert (rewound.seen, rewound.seen_correct) == (16 * 29, sum(right[:29]))


def test_accumulation_plot_numbers_backwards_from_the_start_of_the_run(small_tail: None) -> None:
    session = Session(Recipe(), history_bytes=SMALL_HISTORY)
    session.run_next()
    for _ in range(25):
        session.run_iteration()
    before = session.run_log.backwards_before(session.records_dropped)
    kept = sum(r.phase is Phase.BACKWARD for r in session.records)
    assert before + kept == 25 and before > 0
    view = accumulation_view(session.records, "conv1.bias", session.run_log.losses(), before)
    assert [p.call for p in view.series] == list(range(before + 1, 26))
    assert [p.iteration for p in view.series] == list(range(before + 1, 26))
    assert len(view.losses) == 25


def _latest(records: list, phase: Phase) -> object:
    return next((r for r in reversed(records) if r.phase is phase), None)


def test_a_deep_rewind_keeps_what_the_panes_read_back_to(monkeypatch: pytest.MonkeyPatch) -> None:
    # After a rewind to (near) the oldest checkpoint, the panes look back for the latest
    # forward (digits batch, activations), loss (grad_fn tree) and backward (accumulation):
    # the same records an untrimmed session has, for every phase the rewind can land on.
    recipe = Recipe(data="digits", loss="cross-entropy", batch_size=8)
    trimmed = Session(recipe, history_bytes=SMALL_HISTORY)
    full = Session(recipe, history_bytes=SMALL_HISTORY)

    def both(step: str, *args: int) -> None:
        for session, keep in ((trimmed, 6), (full, 10**9)):
            monkeypatch.setattr(session_module, "KEEP_RECORDS", keep)
            monkeypatch.setattr(session_module, "TRIM_CHUNK", 1)
            getattr(session, step)(*args)

    both("run_next")
    for _ in range(25):
        both("run_iteration")
    assert trimmed.records_dropped > 0 and full.records_dropped == 0
    for depth in range(1, 7):
        both("rewind", len(trimmed.history) - depth)
        assert (trimmed.done, trimmed.iteration) == (full.done, full.iteration)
        for phase in (Phase.FORWARD, Phase.LOSS, Phase.BACKWARD):
            want = _latest(full.records, phase)
            if want is not None and want.iteration >= trimmed.iteration - 1:
                assert _latest(trimmed.records, phase) is not None, (depth, phase)
                assert _latest(trimmed.records, phase).iteration == want.iteration
        report, want_report = batch_report(trimmed), batch_report(full)
        assert (report is None) == (want_report is None), depth
        if report is not None:
            assert (report.iteration, report.seen, report.seen_correct) == (
                want_report.iteration,
                want_report.seen,
                want_report.seen_correct,
            )
        for _ in range(depth):
            both("run_next")
