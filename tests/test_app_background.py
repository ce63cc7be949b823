"""Progressive display: a big model's statistics come after the phase's first frame.

The thresholds are lowered so the tutorial Net counts as big (a 20 M-parameter model would
make the test slow), and the background thread is held at a gate, so the placeholder is seen
for certain before the exact value.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import tui.background as background
from engine.summary import fmt
from tui.app import NNTuiApp
from tui.pilot import press, quiet_app, settle, steps
from tui.widgets.outputpane import OutputPane
from tui.widgets.paramtable import ParamsTable

SIZE = (120, 40)


@pytest.fixture
def gated(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Tensors over 1,000 elements and records over 10,000 count as big; background tasks
    wait for the returned event."""
    monkeypatch.setattr(background, "DEFER_NUMEL", 1000)
    monkeypatch.setattr(background, "DEFER_RECORD_NUMEL", 10_000)
    gate = threading.Event()
    gate.set()
    submit = background.Background.submit

    def held(
        self: background.Background,
        key: object,
        compute: Callable[[], Any],
        apply: Callable[[Any], None],
    ) -> None:
        def wait_then() -> Any:
            gate.wait(30)
            return compute()

        submit(self, key, wait_then, apply)

    monkeypatch.setattr(background.Background, "submit", held)
    return gate


async def complete(pilot: Any, timeout: float = 30.0) -> None:
    app = pilot.app
    assert isinstance(app, NNTuiApp)
    deadline = time.monotonic() + timeout
    await settle(pilot)
    while app.placeholders:
        assert time.monotonic() < deadline, "background values never arrived"
        await asyncio.sleep(0.01)
    await pilot.pause()


async def test_placeholder_then_exact_value(gated: threading.Event) -> None:
    app = quiet_app()
    async with app.run_test(size=SIZE) as pilot:
        await press(pilot, *steps(5))  # define … backward
        await complete(pilot)
        table = app.query_one(ParamsTable)
        out = app.query_one(OutputPane)
        gated.clear()
        await press(pilot, "space")  # step: fc1.weight (48,000) and the step's block wait
        assert app.placeholders > 0
        assert table.cell_text("fc1.weight", "data") == background.PLACEHOLDER
        assert table.cell_text("fc1.bias", "data").startswith("‖p‖=")  # 120: read at once
        assert table.cell_text("fc1.weight", "last") == background.PLACEHOLDER  # SGD check
        last = out.texts[-1]
        assert last.startswith("iteration 1 · step")
        assert last.endswith(background.PLACEHOLDER)
        assert "bit-exact" not in last
        assert app.query_one("#views").get_tab("tab-diagnostics").label.plain.endswith("(…)")
        gated.set()
        await complete(pilot)
        weight = app.session.tensor("fc1.weight", "data")
        assert table.cell_text("fc1.weight", "data") == f"‖p‖={fmt(weight.norm().item())}"
        assert table.cell_text("fc1.weight", "last") == "p-=lr·g"
        last = out.texts[-1]
        assert background.PLACEHOLDER not in last
        assert "# p ← p − lr·grad, bit-exact: True (10 params)" in last
        assert app.placeholders == 0


async def test_rewind_discards_results_for_records_gone(gated: threading.Event) -> None:
    app = quiet_app()
    async with app.run_test(size=SIZE) as pilot:
        await press(pilot, *steps(5))
        await complete(pilot)
        gated.clear()
        await press(pilot, "space", "p")  # step, then rewind it before its values arrive
        gated.set()
        await complete(pilot)
        texts = app.query_one(OutputPane).texts
        assert not any("· step" in t for t in texts)  # the step's block is gone, not filled
        assert all(background.PLACEHOLDER not in t for t in texts)
        table = app.query_one(ParamsTable)
        weight = app.session.tensor("fc1.weight", "data")
        assert table.cell_text("fc1.weight", "data") == f"‖p‖={fmt(weight.norm().item())}"
        grad = app.session.tensor("fc1.weight", "grad")
        assert table.cell_text("fc1.weight", "grad") == f"‖g‖={fmt(grad.norm().item())}"


async def test_big_heatmap_laid_out_off_the_event_loop(gated: threading.Event) -> None:
    """A big tensor's pixels come from the background thread: the placeholder first, then
    exactly what laying it out at once gives."""
    import numpy as np

    from tui.widgets.heatmap import TensorView, layout_tensor

    app = quiet_app()
    async with app.run_test(size=SIZE) as pilot:
        await complete(pilot)
        view = app.query_one(TensorView)
        values = np.random.default_rng(0).standard_normal((48, 1000))
        gated.clear()
        view.show("w", values, "summary")
        await pilot.pause()
        canvas = view.canvas
        assert canvas.pending is not None and canvas.heatmap is None
        assert app.placeholders > 0
        legend = view.query_one("#tensor-legend")
        assert str(legend.render()) == background.PLACEHOLDER
        gated.set()
        await complete(pilot)
        region = canvas.scrollable_content_region
        want = layout_tensor(values, region.width, region.height * 2)
        got = canvas.heatmap
        assert got is not None and canvas.pending is None
        assert np.array_equal(got.codes, want.codes)
        assert (got.scale, got.note, got.reduce) == (want.scale, want.note, want.reduce)
        assert background.PLACEHOLDER not in str(legend.render())


async def test_background_starts_after_the_phase_is_painted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first statistic is computed only once the frame showing the phase is painted:
    started earlier, the thread's passes over big tensors slowed that very frame."""
    from tui.widgets.phasebar import PhaseBar

    monkeypatch.setattr(background, "DEFER_NUMEL", 1000)
    monkeypatch.setattr(background, "DEFER_RECORD_NUMEL", 10_000)
    events: list[tuple[str, object]] = []  # appended by the event loop and by the thread
    submit = background.Background.submit

    def logged(
        self: background.Background,
        key: object,
        compute: Callable[[], Any],
        apply: Callable[[Any], None],
    ) -> None:
        def log_then() -> Any:
            events.append(("compute", None))
            return compute()

        submit(self, key, log_then, apply)

    monkeypatch.setattr(background.Background, "submit", logged)
    app = quiet_app()
    async with app.run_test(size=SIZE) as pilot:
        await press(pilot, *steps(5))  # define … backward
        await complete(pilot)
        bar = app.query_one(PhaseBar)
        display = app._display

        def spy(screen: Any, renderable: Any) -> None:
            display(screen, renderable)
            if renderable is not None:
                events.append(("frame", (bar.state.done, bar.state.iteration)))

        app._display = spy  # type: ignore[method-assign]
        for _ in range(3):  # step, forward, loss: each with values to compute
            phase, iteration = app.session.next_phase, app.session.next_iteration
            events.clear()
            await pilot.press("space")
            await complete(pilot)
            computed = [i for i, (kind, _) in enumerate(events) if kind == "compute"]
            shown = [i for i, e in enumerate(events) if e == ("frame", (phase, iteration))]
            assert computed and shown, (phase, events)
            assert shown[0] < computed[0], (phase, events)


async def test_values_come_even_when_the_start_filed_for_after_the_frame_is_lost(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The thread's start is filed with the screen on top; a screen popped before it went
    idle (help closed as a phase ends) drops it. A timer starts the thread then."""
    monkeypatch.setattr(background, "DEFER_NUMEL", 1000)
    monkeypatch.setattr(background, "DEFER_RECORD_NUMEL", 10_000)
    app = quiet_app()
    async with app.run_test(size=SIZE) as pilot:
        await press(pilot, *steps(5))  # define … backward
        await complete(pilot)
        monkeypatch.setattr(app, "call_after_refresh", lambda *_, **__: True)  # filed, lost
        await pilot.press("space")  # step: its values wait for the thread
        await complete(pilot, timeout=10)
        table = app.query_one(ParamsTable)
        weight = app.session.tensor("fc1.weight", "data")
        assert table.cell_text("fc1.weight", "data") == f"‖p‖={fmt(weight.norm().item())}"
