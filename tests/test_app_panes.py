"""What every pane shows after every phase, normal and accumulate mode, against the engine."""

from __future__ import annotations

import torch
from textual.widgets import TabbedContent

from engine import Phase
from engine.summary import fmt
from tui.app import NNTuiApp
from tui.pilot import press, quiet_app, settle, show_view, steps
from tui.widgets.accumulation import AccumulationPane
from tui.widgets.codepane import CodePane
from tui.widgets.gradtree import GradFnPane
from tui.widgets.heatmap import TensorView
from tui.widgets.outputpane import OutputPane
from tui.widgets.paramtable import ParamsTable
from tui.widgets.phasebar import PhaseBar

SIZE = (120, 40)
NAMES = [
    "conv1.weight",
    "conv1.bias",
    "conv2.weight",
    "conv2.bias",
    "fc1.weight",
    "fc1.bias",
    "fc2.weight",
    "fc2.bias",
    "fc3.weight",
    "fc3.bias",
]


make_app = quiet_app  # seed 0, animations off (tui.pilot)


def marked(app: NNTuiApp, mark: str) -> list[str]:
    """Code lines carrying a gutter mark (``✓`` just run, ``▶`` next), without the mark."""
    lines = app.query_one(CodePane).render_listing().plain.splitlines()
    return [line[2:].strip() for line in lines if line.startswith(mark)]


def column(app: NNTuiApp, name: str) -> list[str]:
    table = app.query_one(ParamsTable)
    return [table.cell_text(n, name) for n in NAMES]


def last_block(app: NNTuiApp) -> str:
    return app.query_one(OutputPane).texts[-1]


async def test_start_screen_before_define() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        bar = app.query_one(PhaseBar)
        text = bar.render_state(bar.state).plain
        for phase in ("define", "forward", "loss", "zero_grad", "backward", "step"):
            assert phase in text
        assert "▶ define" in text and "✓" not in text
        assert "iteration 0" in text and "accumulate: off" in text
        assert marked(app, "▶") == [
            "torch.manual_seed(0)",
            "net = Net()",
            "input = torch.randn(1, 1, 32, 32)",
            "target = torch.randn(10).view(1, -1)",
            "criterion = nn.MSELoss()",
            "optimizer = optim.SGD(net.parameters(), lr=0.01)",
        ]
        assert app.query_one(OutputPane).texts == []
        assert app.query_one(ParamsTable).row_count == 0


async def test_every_pane_after_every_phase_of_an_iteration() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        # define
        await press(pilot, "space")
        bar = app.query_one(PhaseBar)
        assert "✓ define" in bar.render_state(bar.state).plain
        assert "▶ forward" in bar.render_state(bar.state).plain
        assert marked(app, "✓")[0] == "torch.manual_seed(0)"
        assert marked(app, "▶") == ["output = net(input)"]
        block = last_block(app)
        assert block.startswith("iteration 0 · define")
        assert "(conv1): Conv2d(1, 6, kernel_size=(5, 5), stride=(1, 1))" in block
        table = app.query_one(ParamsTable)
        assert list(table.names) == NAMES
        assert table.cell_text("conv1.weight", "shape") == "6×1×5×5"
        assert table.cell_text("fc1.weight", "count") == "48000"
        assert column(app, "grad") == ["None"] * 10
        assert column(app, "last") == ["created"] * 10
        norm = app.session.tensor("conv1.bias").norm().item()
        assert table.cell_text("conv1.bias", "data") == f"‖p‖={fmt(norm)}"
        view = app.query_one(TensorView)
        assert view.title_text == "conv1.bias.data"
        assert view.summary_text.startswith("conv1.bias: tensor[6]")

        # forward
        await press(pilot, "space")
        assert marked(app, "✓") == ["output = net(input)"]
        block = last_block(app)
        assert block.startswith("iteration 1 · forward")
        assert ">>> print(output)\nOut:\ntensor([[" in block
        assert "grad_fn=<AddmmBackward0>" in block
        assert column(app, "last") == [""] * 10  # forward changes no parameter

        # loss
        await press(pilot, "space")
        loss = app.session.records[-1].loss
        assert marked(app, "✓") == ["loss = criterion(output, target)"]
        block = last_block(app)
        assert f"tensor({loss:.4f}, grad_fn=<MseLossBackward0>)" in block
        assert ">>> print(loss.grad_fn)  # <MseLossBackward0>" in block

        # zero_grad
        await press(pilot, "space")
        assert marked(app, "✓") == ["optimizer.zero_grad()"]
        block = last_block(app)
        assert block.startswith("iteration 1 · zero_grad")
        assert "every .grad is now None" in block
        assert column(app, "grad") == ["None"] * 10

        # backward
        await press(pilot, "space")
        assert marked(app, "✓") == ["loss.backward()"]
        block = last_block(app)
        assert "conv1.bias.grad before backward')\nOut:\nNone" in block
        assert "conv1.bias.grad after backward" in block
        assert column(app, "last") == ["g=new"] * 10
        for name in NAMES:
            grad = app.session.tensor(name, "grad")
            assert table.cell_text(name, "grad") == f"‖g‖={fmt(grad.norm().item())}"
        await show_view(pilot, "tab-tensor")  # behind the accumulation view after backward
        assert view.title_text == "conv1.bias.grad"  # the view follows the phase
        assert torch.equal(
            torch.from_numpy(app.snapshot.values), app.session.tensor("conv1.bias", "grad")
        )
        assert ".grad holds 1 backward " in bar.render_state(bar.state).plain

        # step
        before = app.session.tensor("fc3.bias")
        grad = app.session.tensor("fc3.bias", "grad")
        await press(pilot, "space")
        assert marked(app, "✓") == ["optimizer.step()"]
        assert marked(app, "▶") == ["output = net(input)"]
        after = app.session.tensor("fc3.bias")
        assert torch.equal(after, before.add(grad, alpha=-0.01))
        assert table.cell_text("fc3.bias", "data") == f"‖p‖={fmt(after.norm().item())}"
        assert column(app, "last") == ["p-=lr·g"] * 10
        assert "# p ← p − lr·grad, bit-exact: True (10 params)" in last_block(app)
        assert view.title_text == "conv1.bias.data"
        text = bar.render_state(bar.state).plain
        assert "✓ step" in text and "next: forward (iteration 2)" in text
        # Newest last, one block per phase.
        titles = [t.splitlines()[0] for t in app.query_one(OutputPane).texts]
        assert titles == [
            "iteration 0 · define",
            "iteration 1 · forward",
            "iteration 1 · loss",
            "iteration 1 · zero_grad",
            "iteration 1 · backward",
            "iteration 1 · step",
        ]


async def test_accumulate_mode_second_backward_is_the_sum() -> None:
    app = make_app(accumulate=True)
    async with app.run_test(size=SIZE) as pilot:
        await press(pilot, *steps(4))  # define, forward, loss, zero_grad (skipped)
        bar = app.query_one(PhaseBar)
        assert "✓ zero_grad skipped" in bar.render_state(bar.state).plain
        lines = marked(app, "✓")
        assert lines == ["# optimizer.zero_grad()  # skipped: gradients accumulate"]
        assert last_block(app).startswith("iteration 1 · zero_grad skipped")

        await press(pilot, *steps(5))  # backward, step, forward, loss, zero_grad (skipped)
        first = app.session.tensor("conv1.bias", "grad")
        assert first is not None  # nothing cleared it
        assert app.query_one(ParamsTable).cell_text("conv1.bias", "grad") != "None"
        # This backward's own contribution, computed independently from the live loss.
        param = app.session.param("conv1.bias")
        (fresh,) = torch.autograd.grad(app.session.loss, [param], retain_graph=True)

        await press(pilot, "space")  # the second backward
        after = app.session.tensor("conv1.bias", "grad")
        assert torch.equal(after, first + fresh)
        record = app.session.records[-1]
        assert record.phase is Phase.BACKWARD and record.backwards == 2
        change = next(c for c in record.grad_changes if c.name == "conv1.bias")
        assert change.accumulated and change.exact
        block = last_block(app)
        assert "# conv1.bias.grad = before + this backward's grad" in block
        assert "# after == before + fresh, bit for bit: True" in block
        table = app.query_one(ParamsTable)
        assert table.cell_text("conv1.bias", "grad") == f"‖g‖={fmt(after.norm().item())}"
        assert column(app, "last") == ["g+=new"] * 10
        assert ".grad holds 2 backwards" in bar.render_state(bar.state).plain


async def test_toggling_accumulate_redraws_the_code_listing() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await press(pilot, *steps(3))
        assert marked(app, "▶") == ["optimizer.zero_grad()"]
        await press(pilot, "a")
        assert marked(app, "▶") == ["# optimizer.zero_grad()  # skipped: gradients accumulate"]
        await press(pilot, "a")
        assert marked(app, "▶") == ["optimizer.zero_grad()"]


async def test_rewind_removes_the_output_blocks_it_undid() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await press(pilot, *steps(5))
        assert len(app.query_one(OutputPane).texts) == 5
        await press(pilot, "left", "left")
        texts = app.query_one(OutputPane).texts
        assert len(texts) == 3
        assert texts[-1].startswith("iteration 1 · loss")
        await press(pilot, "space")
        assert app.query_one(OutputPane).texts[-1].startswith("iteration 1 · zero_grad")


async def test_grad_fn_and_accumulation_views_follow_the_phases() -> None:
    app = make_app(accumulate=True)
    async with app.run_test(size=SIZE) as pilot:
        tabs = app.query_one(TabbedContent)
        graph_pane = app.query_one(GradFnPane)
        accumulation = app.query_one(AccumulationPane)
        await press(pilot, *steps(2))
        assert graph_pane.graph is None  # no loss yet
        await press(pilot, "space")  # loss
        assert tabs.active == "tab-graph"
        record = app.session.records[-1]
        assert graph_pane.graph is record.graph
        assert graph_pane.tree.root.label.plain == "MseLossBackward0"
        await press(pilot, "space", "space")  # zero_grad (skipped), backward
        assert tabs.active == "tab-accumulation"
        assert accumulation.view.param == "conv1.bias"
        assert accumulation.view.backwards == 1
        await press(pilot, *steps(5))  # step, forward, loss, zero_grad (skipped), backward
        view = accumulation.view
        assert view.backwards == 2
        assert view.change is not None and view.change.accumulated and view.change.exact
        assert [i for i, _ in view.losses] == [1, 2]
        # Selecting a row points the accumulation view at that parameter.
        table = app.query_one(ParamsTable)
        table.focus()
        await press(pilot, "down", "down")
        assert accumulation.view.param == "conv2.bias"
        # Rewinding past loss takes the graph away again.
        await press(pilot, "left", "left", "left")
        assert app.session.done is Phase.FORWARD
        # v cycles the views; a rewind does not switch them.
        assert tabs.active == "tab-accumulation"
        await press(pilot, "v")
        assert tabs.active == "tab-diagnostics"
        await press(pilot, "v")
        assert tabs.active == "tab-tensor"
        await press(pilot, "v")
        assert tabs.active == "tab-graph"
        assert graph_pane.graph is None  # drawn as it was shown: the rewind took the graph
