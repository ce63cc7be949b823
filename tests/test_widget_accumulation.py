"""AccumulationPane: before + fresh = after without zero_grad, norm growth, loss curve."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.optim as optim
from textual.app import App, ComposeResult
from textual_plotext import PlotextPlot

from engine import Phase, PhaseError, Session
from tests.oracle import TutorialNet
from tui.widgets.accumulation import (
    AccumulationPane,
    FastPlot,
    ValuesTable,
    accumulation_view,
    value,
    values_table,
)

STYLES = Path(__file__).resolve().parents[1] / "tui" / "styles" / "accumulation.tcss"
SIZE = (100, 34)


class PaneApp(App):
    CSS_PATH = STYLES

    def compose(self) -> ComposeResult:
        yield AccumulationPane()


Net = TutorialNet  # the oracle's own copy of the tutorial Net


def plain_torch_two_backwards() -> dict[str, torch.Tensor | list[float]]:
    """The tutorial loop in plain PyTorch with zero_grad left out, for two iterations."""
    torch.manual_seed(0)
    net = Net()
    input = torch.randn(1, 1, 32, 32)
    target = torch.randn(10).view(1, -1)
    criterion = nn.MSELoss()
    optimizer = optim.SGD(net.parameters(), lr=0.01)
    bias = net.conv1.bias
    losses = []
    loss = criterion(net(input), target)
    losses.append(loss.item())
    loss.backward()
    first = bias.grad.clone()
    optimizer.step()
    loss = criterion(net(input), target)
    losses.append(loss.item())
    # This backward's own contribution, before it is added into .grad.
    fresh = torch.autograd.grad(loss, bias, retain_graph=True)[0]
    loss.backward()
    return {"first": first, "fresh": fresh, "after": bias.grad.clone(), "losses": losses}


def run_phases(session: Session, n: int) -> None:
    for _ in range(n):
        result = session.run_next()
        assert not isinstance(result, PhaseError), result


def pane_text(pane: AccumulationPane) -> str:
    return (
        str(pane.query_one("#accum-header").render())
        + "\n"
        + "\n".join(
            pane.query_one("#accum-values").render_line(y).text
            for y in range(pane.query_one("#accum-values").size.height)
        )
    )


async def test_two_backwards_without_zero_grad_add_up() -> None:
    session = Session(accumulate=True)
    run_phases(session, 10)  # define, (forward loss zero_grad↷ backward step) ×1, …, backward
    assert session.records[-1].phase is Phase.BACKWARD
    torch_ref = plain_torch_two_backwards()
    async with PaneApp().run_test(size=SIZE) as pilot:
        pane = pilot.app.query_one(AccumulationPane)
        pane.update_from(session.records, "conv1.bias")
        await pilot.pause()
        view = pane.view
        change = view.change
        assert view.param == "conv1.bias" and view.backwards == 2
        assert change is not None and change.accumulated and change.exact
        assert change.before is not None and change.fresh is not None and change.after is not None
        assert list(change.before.head) == torch_ref["first"].tolist()
        assert list(change.fresh.head) == torch_ref["fresh"].tolist()
        assert list(change.after.head) == torch_ref["after"].tolist()
        assert torch.equal(torch_ref["after"], torch_ref["first"] + torch_ref["fresh"])
        # The norm series: one point per backward call, growing without zero_grad.
        norms = [p.after_norm for p in view.series]
        assert norms == pytest.approx(
            [torch_ref["first"].norm().item(), torch_ref["after"].norm().item()], rel=1e-6
        )
        assert len(norms) == 2 and norms[1] > norms[0]
        assert [p.since_zero_grad for p in view.series] == [1, 2]
        assert [v for _, v in view.losses] == pytest.approx(torch_ref["losses"], rel=1e-6)
        # And on screen.
        text = pane_text(pane)
        assert "2 backwards since the last zero_grad" in text
        assert "after = before + fresh ✓" in text
        assert value(change.after.head[0]) in text and value(change.before.head[0]) in text
        plot = pane.query_one("#accum-norm-plot")
        plot_text = "\n".join(plot.render_line(y).text for y in range(plot.size.height))
        assert "‖conv1.bias.grad‖ per backward" in plot_text and "after" in plot_text


async def test_first_backward_stores_fresh_and_zero_grad_resets() -> None:
    session = Session()  # normal loop: zero_grad() sets grads to None
    async with PaneApp().run_test(size=SIZE) as pilot:
        pane = pilot.app.query_one(AccumulationPane)
        run_phases(session, 5)  # … backward
        pane.update_from(session.records)
        await pilot.pause()
        assert pane.view.param == "conv1.bias"  # the tutorial's default
        assert pane.view.change is not None and not pane.view.change.accumulated
        assert pane.view.change.before is None
        assert "after = fresh ✓" in pane_text(pane)
        run_phases(session, 3)  # step, forward, loss
        run_phases(session, 1)  # zero_grad
        pane.update_from(session.records)
        await pilot.pause()
        assert pane.view.grad_now is None and pane.view.backwards == 0
        assert "set .grad to None" in pane_text(pane)
        run_phases(session, 1)  # backward
        pane.update_from(session.records)
        await pilot.pause()
        # With zero_grad in between the norms do not pile up: each backward starts afresh.
        assert [p.since_zero_grad for p in pane.view.series] == [1, 1]
        assert not pane.view.change.accumulated


async def test_empty_log_param_without_grad_and_rewind() -> None:
    session = Session(accumulate=True)
    async with PaneApp().run_test(size=SIZE) as pilot:
        pane = pilot.app.query_one(AccumulationPane)
        pane.update_from([])
        await pilot.pause()
        assert pane.view.param is None and pane.view.series == ()
        assert "no parameters yet" in pane_text(pane)
        run_phases(session, 1)  # define: grads are None
        pane.update_from(session.records, "fc3.weight")
        await pilot.pause()
        assert pane.view.param == "fc3.weight" and pane.view.grad_now is None
        assert "no backward yet" in pane_text(pane)
        run_phases(session, 9)
        pane.update_from(session.records)
        await pilot.pause()
        assert len(pane.view.series) == 2
        # Rewind past the second backward: the pane is recomputed from the trimmed log.
        assert session.rewind(5) == 5
        pane.update_from(session.records)
        await pilot.pause()
        assert len(pane.view.series) == 1 and pane.view.backwards == 1
        assert [i for i, _ in pane.view.losses] == [1]
        # An unknown name falls back to the default rather than failing.
        assert accumulation_view(session.records, "nope").param == "conv1.bias"


def test_no_grad_flowed_says_whether_after_equals_before() -> None:
    from engine.records import GradChange
    from engine.summary import summarize
    from tui.widgets.accumulation import check_text

    before = summarize(torch.tensor([1.0, 2.0]))
    same = GradChange("w", before, None, before, accumulated=True, exact=True)
    assert check_text(same).plain == "no grad flowed here this backward: after = before ✓"
    moved = summarize(torch.tensor([1.0, 3.0]))
    changed = GradChange("w", before, None, moved, accumulated=True, exact=False)
    text = check_text(changed)
    assert text.plain == "no grad flowed here this backward: after ≠ before ✗ (not bit-equal)"
    assert "red" in str(text.style)


def plot_cells(strips: list) -> list[list[tuple[str, object, object]]]:
    """Each cell's character, style without meta, and the offset text selection reads."""
    rows = []
    for strip in strips:
        row = []
        for segment in strip:
            style = segment.style
            offset = style.meta.get("offset") if style is not None else None
            for i, char in enumerate(segment.text):
                at = None if offset is None else (offset[0] + i, offset[1])
                row.append((char, style.clear_meta_and_links() if style else None, at))
        rows.append(row)
    return rows


@pytest.mark.parametrize("size", [(100, 34), (61, 21)])
async def test_fast_plots_draw_the_cells_plotext_plot_draws(size: tuple[int, int]) -> None:
    """FastPlot skips plotext's ANSI string and its parse: every cell must stay the same."""
    session = Session(accumulate=True)
    async with PaneApp().run_test(size=size) as pilot:
        pane = pilot.app.query_one(AccumulationPane)
        for n in (0, 1, 5, 6, 13):
            run_phases(session, n - len(session.records))
            pane.update_from(session.records, "conv1.bias")
            await pilot.pause()
            for plot in pane.query(FastPlot):
                height = plot.size.height
                fast = [plot.render_line(y) for y in range(height)]
                plot._layout_cache.clear()  # PlotextPlot's own path, from plot.render()
                plot._dirty_regions.add(plot.region)
                slow = [PlotextPlot.render_line(plot, y) for y in range(height)]
                assert plot_cells(fast) == plot_cells(slow), (n, plot.id)
                assert all(strip.cell_length == plot.size.width for strip in fast)


async def test_a_fresh_figure_draws_what_clear_figure_draws(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each replot takes a new Plot made after the last frame instead of clear_figure():
    the same cells, through no backward, ten (plotext's ticks set by us), then more (its own)."""
    session = Session(accumulate=True)
    steps = (0, 1, 5, 6, 13, 66, 70)  # 66 phases: 11 backwards, past the ten we tick
    fresh: list[object] = []
    async with PaneApp().run_test(size=(100, 34)) as pilot:
        pane = pilot.app.query_one(AccumulationPane)
        for n in steps:
            run_phases(session, n - len(session.records))
            pane.update_from(session.records, "conv1.bias")
            await pilot.pause()
            fresh.append(
                [
                    plot_cells([p.render_line(y) for y in range(p.size.height)])
                    for p in pane.query(FastPlot)
                ]
            )

    def cleared(self: FastPlot) -> object:
        self.plt.clear_data()
        self.plt.clear_figure()
        return self.plt

    monkeypatch.setattr(FastPlot, "fresh", cleared)
    records = session.records
    async with PaneApp().run_test(size=(100, 34)) as pilot:
        pane = pilot.app.query_one(AccumulationPane)
        for i, n in enumerate(steps):
            pane.update_from(records[:n], "conv1.bias")
            await pilot.pause()
            plots = list(pane.query(FastPlot))
            assert len(pane.view.series) > 10 or n < 66
            got = [plot_cells([p.render_line(y) for y in range(p.size.height)]) for p in plots]
            assert got == fresh[i], n


def test_values_grid_writes_what_the_rich_table_writes() -> None:
    """ValuesTable skips rich's table layout: the same segments at every width."""
    from rich.console import Console

    session = Session(accumulate=True)
    run_phases(session, 10)  # two backwards: .grad was None, then accumulated
    changes = [c for r in session.records if r.phase is Phase.BACKWARD for c in r.grad_changes]
    assert len(changes) == 20
    for change in changes:
        for width in (100, 44, 43, 30):  # 44: the grid's own width; narrower: rich squeezes
            console = Console(width=width, color_system="truecolor")
            want = console.render_lines(values_table(change), console.options, pad=False)
            got = console.render_lines(ValuesTable(change), console.options, pad=False)
            assert got == want, (change.name, width)


async def test_loss_plot_is_drawn_between_loss_and_backward() -> None:
    # The loss plot changes at loss, while its tab is hidden: it is drawn after loss's frame,
    # and backward (which brings the tab forward) shows it without drawing it again.
    from tui.pilot import press, quiet_app, steps
    from tui.widgets.accumulation import FastPlot

    app = quiet_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await press(pilot, *steps(7))  # an iteration (the tab shown once), the next forward
        plot = app.query_one("#accum-loss-plot", FastPlot)
        draw = plot._draw
        drawn: list[str] = []

        def counting(size):  # type: ignore[no-untyped-def]
            drawn.append(str(app.snapshot.done if app.snapshot else None))
            return draw(size)

        plot._draw = counting  # type: ignore[method-assign]
        await press(pilot, "space", "space", "space")  # loss, zero_grad, backward
        assert drawn == ["loss"]  # once, after loss's frame; not in backward's
        assert [list(s) for s in plot._strips] == [list(s) for s in draw(plot.size)]
