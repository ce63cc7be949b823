"""The app on a run long enough that the session lets go of old records (engine.runlog)."""

from __future__ import annotations

import pytest

import engine.session as session_module
from engine import Phase, Recipe
from tests.oracle import tutorial_loop
from tests.test_keymash import CHECK_SIZE, check, send_key
from tui.app import NNTuiApp, current_graph
from tui.pilot import settle


async def test_a_trimmed_log_still_shows_the_whole_run_and_rewinds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A 6-record tail and a history of a few iterations: most of the 12 iterations' records
    # are let go while the app runs, and the held rewind key goes back to the oldest checkpoint.
    monkeypatch.setattr(session_module, "KEEP_RECORDS", 6)
    monkeypatch.setattr(session_module, "TRIM_CHUNK", 1)
    app = NNTuiApp(Recipe(seed=0), history_bytes=3 * 2**20)
    app.animation_level = "none"
    iterations = 12
    want = [loss for _, phase, loss, *_ in tutorial_loop(0, 0.01, iterations) if phase == "loss"]
    async with app.run_test(size=CHECK_SIZE) as pilot:
        await settle(pilot)
        for _ in range(1 + iterations * 5):
            send_key(app, "space")
            await settle(pilot)
        session = app.session
        assert session.records_dropped > 0
        snap = app.snapshot
        assert snap is not None
        # The loss plot's series is the whole run, every value the plain loop's.
        assert snap.losses == tuple(enumerate(want, start=1))
        await check(app, pilot)
        while session.can_rewind():
            send_key(app, "left")
            await settle(pilot)
            snap = app.snapshot
            assert snap is not None and snap.done is session.done
            # The grad_fn tree is there whenever the rewound-to phase has a live loss graph.
            if session.loss is not None:
                assert current_graph(snap.records) is not None, session.done
            assert snap.losses == tuple(enumerate(want, start=1))[: len(snap.losses)]
        await check(app, pilot)
        # And on from there, to the same losses.
        while (session.done, session.iteration) != (Phase.STEP, iterations):
            send_key(app, "space")
            await settle(pilot)
        assert app.snapshot is not None
        assert app.snapshot.losses == tuple(enumerate(want, start=1))
        await check(app, pilot)
