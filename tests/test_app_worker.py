"""The worker: keys never interleave with a running phase; failures show; resizing is safe."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
import torch
from textual.widgets import Footer

import tui.app
import tui.stepper
from engine import Phase, Recipe
from tui.app import FOOTER_ROOMY_WIDTH, NNTuiApp
from tui.pilot import press, quiet_app, settle, steps
from tui.widgets.errorbar import ErrorBar
from tui.widgets.outputpane import OutputPane
from tui.widgets.paramtable import ParamsTable

SIZE = (120, 40)


make_app = quiet_app  # seed 0, animations off (tui.pilot)


async def test_keys_pressed_while_a_phase_runs_queue_in_order() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        gate = threading.Event()
        run_next = app.session.run_next
        seen: list[int] = []

        def held_run_next():
            # Hold every phase until the test lets go: all keys arrive while one runs.
            gate.wait(timeout=30)
            seen.append(threading.get_ident())
            return run_next()

        app.session.run_next = held_run_next
        for _ in range(6):
            app.action_next()
        app.action_rewind()
        assert app.busy
        assert len(app._pending) == 6  # one running, six waiting
        gate.set()
        await settle(pilot)
        assert [r.phase for r in app.session.records] == [
            Phase.DEFINE,
            Phase.FORWARD,
            Phase.LOSS,
            Phase.ZERO_GRAD,
            Phase.BACKWARD,
        ]
        assert app.session.done is Phase.BACKWARD
        assert threading.get_ident() not in seen  # phases ran off the event loop
        assert app.snapshot.done is Phase.BACKWARD
        assert len(app.query_one(OutputPane).texts) == 5


async def test_a_full_queue_refuses_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tui.app, "MAX_QUEUED", 2)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        gate = threading.Event()
        run_next = app.session.run_next
        app.session.run_next = lambda: (gate.wait(timeout=30), run_next())[1]
        accepted = [app.request(tui.app.Request(tui.app.Action.NEXT)) for _ in range(6)]
        assert accepted == [True, True, True, False, False, False]
        gate.set()
        await settle(pilot)
        assert [r.phase for r in app.session.records] == [
            Phase.DEFINE,
            Phase.FORWARD,
            Phase.LOSS,
        ]


async def test_a_failing_phase_shows_and_the_session_stays_before_it() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await press(pilot, *steps(2))  # define, forward
        criterion = app.session.setup.criterion

        def broken(output, target):
            raise RuntimeError("The size of tensor a (10) must match the size of tensor b (3)")

        app.session.setup.criterion = broken
        params = [app.session.tensor(n) for n in app.session.names]
        await press(pilot, "space")
        bar = app.query_one(ErrorBar)
        assert bar.has_class("-shown") and bar.display
        assert bar.message.startswith("✗ loss failed (iteration 1): RuntimeError: The size")
        assert "the loop is still after forward" in bar.message
        assert app.session.done is Phase.FORWARD
        assert len(app.session.records) == 2
        assert all(torch.equal(p, app.session.tensor(n)) for n, p in zip(app.session.names, params))
        # The app keeps running: selecting and flipping still work, the error stays up.
        await press(pilot, "g")
        assert bar.has_class("-shown")
        app.session.setup.criterion = criterion
        await press(pilot, "space")
        assert not bar.has_class("-shown")
        assert app.session.done is Phase.LOSS


async def test_a_nan_loss_is_refused_by_the_nan_guard() -> None:
    # lr=1e38: the first step leaves huge but finite weights; the next loss is NaN.
    app = NNTuiApp(Recipe(seed=0, lr=1e38))
    app.animation_level = "none"
    async with app.run_test(size=SIZE) as pilot:
        await press(pilot, *steps(7))  # through iteration 2's forward
        assert app.query_one(ErrorBar).message == ""
        await press(pilot, "space")
        message = app.query_one(ErrorBar).message
        assert message.startswith("✗ loss failed (iteration 2): loss is nan (NaN guard)")
        assert message.endswith("the loop is still after forward.")
        assert app.session.done is Phase.FORWARD and app.session.iteration == 2
        assert "NaN" not in app.query_one(ParamsTable).cell_text("fc1.weight", "data")


async def test_an_internal_error_in_the_worker_is_shown_not_fatal() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await press(pilot, "space")

        def crash(n: int = 1) -> int:
            raise ValueError("history corrupted")

        app.session.rewind = crash
        await press(pilot, "left")
        assert app.query_one(ErrorBar).message == "✗ internal error: ValueError: history corrupted"
        assert app.is_running and not app.busy
        await press(pilot, "space")
        assert app.session.done is Phase.FORWARD


async def test_an_action_that_raises_after_the_phase_ran_still_shows_the_engine_state(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Drawing the result fails after run_next already moved the engine: the screen must not
    # stay on the state before it.
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await press(pilot, "space")

        def cannot_draw(*args: object) -> None:
            raise RuntimeError("cannot draw")

        monkeypatch.setattr(tui.stepper, "_view", cannot_draw)
        await press(pilot, "space")
        assert app.session.done is Phase.FORWARD
        assert app.query_one(ErrorBar).message == "✗ internal error: RuntimeError: cannot draw"
        assert app.snapshot.done is Phase.FORWARD and app.snapshot.next_phase is Phase.LOSS
        assert len(app.query_one(OutputPane).texts) == 2
        assert app.is_running and not app.busy
        monkeypatch.undo()
        await press(pilot, "space")
        assert app.snapshot.done is Phase.LOSS is app.session.done
        assert not app.query_one(ErrorBar).message


@pytest.mark.parametrize("size", [(80, 24), (120, 40), (160, 50)])
async def test_sizes_and_resizing_never_crash(size: tuple[int, int]) -> None:
    app = make_app()
    async with app.run_test(size=size) as pilot:
        await press(pilot, *steps(5))
        narrow = size[0] < 100
        assert app.screen.has_class("-narrow") is narrow
        # Compact below 140 columns, so help and quit stay visible (tests/test_app_views.py).
        assert app.query_one(Footer).compact is (size[0] < FOOTER_ROOMY_WIDTH)
        for w, h in ((60, 16), (200, 60), (80, 24), (30, 10), size):
            await pilot.resize_terminal(w, h)
            await pilot.pause()
        await press(pilot, "space", "left", "space")
        assert app.session.done is Phase.STEP
        assert app.screen.has_class("-narrow") is narrow


async def test_a_long_phase_counts_its_seconds_and_says_how_to_leave(monkeypatch) -> None:
    """A model's code may never return; the bar then counts the seconds and names q."""
    import asyncio

    from tui.widgets.phasebar import PhaseBar

    monkeypatch.setattr(tui.app, "LONG_RUN", 0.2)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        gate = threading.Event()
        run_next = app.session.run_next

        def slow_run_next():
            gate.wait(timeout=30)  # a phase that runs until the test lets go
            return run_next()

        app.session.run_next = slow_run_next
        app.action_next()
        bar = app.query_one(PhaseBar)
        await asyncio.sleep(0.1)
        await pilot.pause()
        assert bar.state.busy == "running define" and bar.state.waited == 0
        await asyncio.sleep(1.2)  # past LONG_RUN and the next once-a-second redraw
        await pilot.pause()
        assert bar.state.waited >= 1
        shown = bar.render_state(bar.state).plain
        assert f"running define… {bar.state.waited} s · q quits" in shown
        # The bar is two lines at 120 columns: the words must fit on the second one.
        assert len(shown.splitlines()[1]) <= SIZE[0]
        gate.set()
        await settle(pilot)
        assert bar.state.busy == "" and bar.state.waited == 0
        assert "q quits" not in bar.render_state(bar.state).plain


async def _frozen(app: NNTuiApp) -> None:
    """Wait for start-up's gc.freeze(), which runs on a thread."""
    deadline = time.monotonic() + 30
    while app._gc_frozen is None:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)


async def test_idle_collection_counts_what_it_freezes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The idle collection keeps its own count of what it froze (gc.get_freeze_count() walks
    every frozen object, tens of ms) and past REFREEZE_AFTER unfreezes and walks it all."""
    import gc

    import tui.app as app_module

    app = quiet_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await press(pilot, "space")
        await _frozen(app)
        await settle(pilot)
        while app.message_queue_size:  # _collect waits for an idle loop
            await asyncio.sleep(0.01)
        app._gc_timer = None
        frozen = app._gc_frozen
        before = gc.get_freeze_count()
        app._collect()
        assert app._gc_frozen - frozen == gc.get_freeze_count() - before > 0
        monkeypatch.setattr(app_module, "REFREEZE_AFTER", 0)
        calls: list[str] = []
        unfreeze = gc.unfreeze
        monkeypatch.setattr(gc, "unfreeze", lambda: (calls.append("unfreeze"), unfreeze()))
        while app.message_queue_size:
            await asyncio.sleep(0.01)
        gc.disable()  # nothing else may collect in between
        try:
            garbage: list[object] = []
            garbage.append(garbage)  # a cycle: freed by a collection only
            del garbage
            app._collect()
        finally:
            gc.enable()
        assert calls == ["unfreeze"]
        assert app._gc_frozen == 0


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None
        self.tensor: torch.Tensor | None = None


@pytest.mark.skipif(
    __import__("engine.gcpolicy").gcpolicy.allocated_bytes() is None,
    reason="no glibc mallinfo2 here",
)
async def test_idle_collection_frees_frozen_garbage_once_the_heap_grows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A cycle alive at one idle collection is frozen by it; dropped later, only a full walk
    frees it. Counting frozen objects alone let such cycles holding tensors pile up for a few
    hundred keys; heap growth beyond the history's own bytes triggers the walk too."""
    import gc
    import weakref

    import tui.app as app_module

    monkeypatch.setattr(app_module, "REFREEZE_GROWTH", 32 * 2**20)
    monkeypatch.setattr(app_module, "HEAP_CHECK_SECONDS", 0.0)  # every collection reads it
    app = quiet_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await press(pilot, *steps(6))  # a whole iteration: the history holds tensors
        await _frozen(app)
        await settle(pilot)
        while app.message_queue_size:  # _collect waits for an idle loop
            await asyncio.sleep(0.01)
        app._gc_timer = None
        gc.disable()  # nothing else may collect in between
        try:
            app._collect()  # the heap as it is now: the baseline, no walk
            a, b = _Node(), _Node()
            a.other, b.other = b, a
            a.tensor = torch.ones(4 * 2**20)  # 16 MiB: below the growth limit
            ref = weakref.ref(a)
            unfreeze = gc.unfreeze
            calls: list[str] = []
            monkeypatch.setattr(gc, "unfreeze", lambda: (calls.append("unfreeze"), unfreeze()))
            app._collect()  # alive: frozen
            del a, b
            app._collect()
            assert ref() is not None and calls == [], "frozen garbage waits for a full walk"
            more = torch.ones(12 * 2**20)  # 48 MiB more: past the limit
            app._collect()
            assert calls == ["unfreeze"]
            assert ref() is None
            assert app._gc_frozen == 0
            app._collect()  # the walk reset the baseline: no second walk
            assert calls == ["unfreeze"]
            # Growth the history accounts for (its checkpoints, bounded by its budget) is
            # not a reason to walk: a big model filling it would walk everything each time.
            history = app.session.history
            kept = history.nbytes()
            extra = torch.ones(12 * 2**20)  # 48 MiB, as if the history held it
            held = kept + extra.nbytes
            monkeypatch.setattr(history, "nbytes", lambda: held)
            app._collect()
            assert calls == ["unfreeze"]
            # A heap that shrank (a smaller model now): growth counts from the low point.
            low = app._gc_heap - 512 * 2**20
            monkeypatch.setattr(app._heap, "now", lambda: low)
            app._collect()
            assert app._gc_heap == low and calls == ["unfreeze"]
            del more, extra
        finally:
            gc.enable()


async def test_idle_collections_read_the_heap_at_most_once_a_second(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Reading glibc's heap figures walks its free lists (6 ms once a tutorial Net has filled
    its history): the idle collection after every key must not pay it each time."""
    import time

    reads: list[int] = []
    app = quiet_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await press(pilot, *steps(6))
        await _frozen(app)
        await settle(pilot)
        while app.message_queue_size:
            await asyncio.sleep(0.01)
        real = app._heap.now
        monkeypatch.setattr(app._heap, "now", lambda: (reads.append(1), real())[1])

        def collect(read_ago: float | None = None) -> None:
            if read_ago is not None:
                app._heap.read_at = time.monotonic() - read_ago
            app._gc_timer = None
            app._collect()

        collect(read_ago=2.0)
        assert len(reads) == 1
        collect()
        collect(read_ago=0.5)
        assert len(reads) == 1  # read under a second ago: not again
        collect(read_ago=1.1)
        assert len(reads) == 2


async def test_key_frames_run_no_young_collections() -> None:
    """A key's frame makes ~10,000 objects: at Python's default threshold (700) ten or more
    young collections and one of generation 1 ran inside it. After start-up the threshold
    is GEN0_THRESHOLD and the idle collection empties the young generations between keys."""
    import gc
    import threading

    import tui.app as app_module

    app = quiet_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await press(pilot, "space")
        await _frozen(app)
        assert gc.get_threshold()[0] == app_module.GEN0_THRESHOLD
        main = threading.get_ident()
        automatic: list[int] = []
        explicit = 0

        def seen(phase: str, info: dict[str, int]) -> None:
            if phase == "start" and threading.get_ident() == main:
                automatic.append(info["generation"])

        collect = app._collect

        def counted() -> None:
            nonlocal explicit
            before = len(automatic)
            collect()
            explicit += len(automatic) - before
            del automatic[before:]  # the idle collection itself, not one inside a frame

        app._collect = counted  # type: ignore[method-assign]
        gc.callbacks.append(seen)
        try:
            for _ in range(6):
                await press(pilot, "space")
                await asyncio.sleep(0.1)  # a person's pause: the idle collection runs
        finally:
            gc.callbacks.remove(seen)
        assert explicit > 0
        assert automatic == []


@pytest.mark.parametrize(
    ("variable", "probe", "ours", "theirs"),
    [
        # A frame waited up to 16 ms for Textual's default 60 FPS tick.
        ("TEXTUAL_FPS", "import tui, textual.constants as c; print(c.MAX_FPS)", "240", "30"),
        # The views switch tabs after most phases: sliding the underline painted 12 frames a
        # key and doubled the event loop's CPU per key.
        (
            "TEXTUAL_ANIMATIONS",
            "import tui.app as a; print(a.NNTuiApp().animation_level)",
            "none",
            "full",
        ),
    ],
)
def test_textual_settings_are_ours_unless_the_user_says_otherwise(
    variable: str, probe: str, ours: str, theirs: str
) -> None:
    import subprocess
    import sys

    env = {k: v for k, v in __import__("os").environ.items() if k != variable}
    for setting, expected in ((None, ours), (theirs, theirs)):
        if setting is not None:
            env[variable] = setting
        ran = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env)
        assert ran.stdout.strip() == expected, ran.stderr
