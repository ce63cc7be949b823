"""Switching the model inside the app (palette and modal), the flow after a phase error, the
collapsed grad_fn tree of a deep user model, and the texts that follow the real model."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
from textual.widgets import Input, Static

from engine import Phase, Recipe
from engine.explain import explain
from engine.recipe import model_recipe
from engine.summary import summary_line
from tui.app import NNTuiApp
from tui.pilot import press, settle, steps
from tui.screens.model import ModelScreen, checked_recipe
from tui.widgets.errorbar import ErrorBar
from tui.widgets.explainpane import ExplainPane
from tui.widgets.gradtree import GradFnPane
from tui.widgets.heatmap import TensorView

SIZE = (120, 40)

BOOM = """\
import torch.nn as nn


class Boom(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        raise ValueError("boom in forward")
"""

DEEP = """\
import torch.nn as nn

LAYERS = 70


class Deep(nn.Module):
    def __init__(self):
        super().__init__()
        blocks = []
        for _ in range(LAYERS):
            blocks += [nn.Linear(4, 4), nn.ReLU()]
        self.layers = nn.Sequential(*blocks)

    def forward(self, x):
        return self.layers(x)
"""


HALF = """\
import torch
import torch.nn as nn


class Half(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3).to(torch.bfloat16)

    def forward(self, x):
        return self.fc(x.to(torch.bfloat16))
"""


async def palette(pilot, query: str) -> None:
    """Run the command palette's first hit for ``query``, as a user would."""
    await pilot.press("ctrl+p")
    await pilot.pause()
    await pilot.press(*query)
    await pilot.pause(0.3)  # the palette searches asynchronously
    await pilot.press("enter")
    await settle(pilot)


def test_model_recipe_keeps_what_still_makes_sense() -> None:
    old = Recipe(
        model="x.py:Net",
        input_shape=(8, 20),
        num_classes=3,
        loss="cross-entropy",
        optimizer="adam",
        lr=0.1,
        zero_grad="zeros",
        seed=4,
        watch="fc.bias",
    )
    new = model_recipe(old, "resnet").validate()
    assert (new.model, new.input_shape, new.num_classes, new.watch) == ("resnet", None, None, None)
    assert (new.loss, new.optimizer, new.lr, new.zero_grad, new.seed) == (
        "cross-entropy",
        "adam",
        0.1,
        "zeros",
        4,
    )
    digits = Recipe(data="digits", loss="cross-entropy")
    assert model_recipe(digits, "lenet").data == "digits"
    assert model_recipe(digits, "mlp").data == "random"  # digits are the Net's 1×32×32 images


def test_checked_recipe_errors_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "boom.py").write_text(BOOM)
    base = Recipe()
    cases = {
        "": "give a model",
        "nope": "unknown model 'nope'",
        f"{tmp_path}/missing.py:Net": "model file not found",
        f"{tmp_path}/boom.py:Nope": "has no 'Nope' (it defines: Boom)",
        f"{tmp_path}/boom.py:Boom": "needs an input shape",
    }
    for spec, expected in cases.items():
        try:
            checked_recipe(base, spec, "")
        except ValueError as exc:
            assert expected in str(exc) and "\n" not in str(exc), (spec, exc)
        else:
            raise AssertionError(f"{spec!r} was accepted")
    try:
        checked_recipe(base, "mlp", "8,x")
    except ValueError as exc:
        assert "not a shape" in str(exc)
    ok = checked_recipe(base, f"{tmp_path}/boom.py:Boom", "2x4")
    assert ok.model.endswith("boom.py:Boom") and ok.input_shape == (2, 4)


async def test_palette_switches_to_a_shipped_model() -> None:
    app = NNTuiApp(Recipe(loss="cross-entropy", lr=0.1))
    async with app.run_test(size=SIZE) as pilot:
        await press(pilot, *steps(2))
        await palette(pilot, "resnet")
        assert app.session.done is None and not app.session.records  # the loop was reset
        assert app.current_recipe.model == "resnet"
        assert (app.current_recipe.loss, app.current_recipe.lr) == ("cross-entropy", 0.1)
        await press(pilot, *steps(3))
        record = app.session.records[-1]
        assert record.phase is Phase.LOSS
        # The same loss as plain PyTorch builds for resnet's default batch, in seeded order.
        from engine.models import ResNet

        torch.manual_seed(0)
        net = ResNet()
        input = torch.randn(4, 3, 32, 32)
        target = torch.randint(0, 10, (4,))
        assert record.loss == nn.CrossEntropyLoss()(net(input), target).item()
        assert not app.query_one(GradFnPane).grouped  # 44 nodes: node by node


async def test_after_a_forward_error_rewind_reset_and_switch_model(tmp_path: Path) -> None:
    (tmp_path / "boom.py").write_text(BOOM)
    recipe = Recipe(
        model=f"{tmp_path}/boom.py:Boom", input_shape=(2, 4), num_classes=3, loss="cross-entropy"
    )
    app = NNTuiApp(recipe)
    async with app.run_test(size=SIZE) as pilot:
        await press(pilot, *steps(2))
        bar = app.query_one(ErrorBar)
        assert "forward" in bar.message and "boom in forward" in bar.message
        assert app.session.done is Phase.DEFINE and len(app.session.records) == 1
        await press(pilot, "left")  # rewind: before define
        assert app.session.done is None
        await press(pilot, *steps(2))  # define again, forward fails again
        assert app.session.done is Phase.DEFINE and "boom in forward" in bar.message
        await press(pilot, "r")
        assert app.session.done is None and not app.session.records
        await press(pilot, *steps(2))
        assert "boom in forward" in bar.message
        await palette(pilot, "lenet")
        assert app.current_recipe.model == "lenet"
        assert app.current_recipe.input_shape is None and app.current_recipe.num_classes is None
        await press(pilot, *steps(3))
        assert not bar.message
        assert app.session.done is Phase.LOSS
        assert app.session.records[1].activations[-1].shape == (1, 10)


async def test_modal_rejects_a_bad_spec_then_switches_to_a_deep_model(tmp_path: Path) -> None:
    (tmp_path / "deep.py").write_text(DEEP)
    app = NNTuiApp(Recipe())
    async with app.run_test(size=SIZE) as pilot:
        await press(pilot, *steps(2))
        await palette(pilot, "your own")
        assert isinstance(app.screen, ModelScreen)
        spec = app.screen.query_one("#model-spec", Input)
        shape = app.screen.query_one("#model-shape", Input)
        spec.value = f"{tmp_path}/nothere.py:Deep"
        shape.value = "2,4"
        spec.focus()
        await pilot.press("enter")
        await settle(pilot)
        error = str(app.screen.query_one("#model-error", Static).render())
        assert error == f"✗ model file not found: {tmp_path}/nothere.py"
        assert isinstance(app.screen, ModelScreen)
        assert app.current_recipe == Recipe() and app.session.done is Phase.FORWARD  # unchanged
        spec.value = f"{tmp_path}/deep.py:Deep"
        await pilot.press("enter")
        await settle(pilot)
        assert not isinstance(app.screen, ModelScreen)
        assert app.current_recipe.model == f"{tmp_path}/deep.py:Deep"
        assert app.current_recipe.input_shape == (2, 4)
        assert app.session.done is None
        await press(pilot, *steps(2))
        # The code pane shows the target define inferred (code_recipe), not a placeholder.
        code = "\n".join(str(line) for line in app.snapshot.listing.lines)
        assert "target = torch.randn(2, 4)" in code
        explained = app.query_one(ExplainPane).text
        assert "The output [2, 4] is the network's guess: 4 scores per sample" in explained
        assert explained == explain(Phase.FORWARD, app.current_recipe, False, "en", (2, 4))
        await press(pilot, "space")  # loss: the graph is big, shown by module
        pane = app.query_one(GradFnPane)
        assert pane.graph is not None and len(pane.graph) > 300
        assert pane.grouped
        root = pane.tree.root
        assert str(root.label) == "MseLossBackward0"
        outer = root.children[0]
        # Entering the model from the loss enters its outermost module first.
        assert str(outer.label) == "layers (Sequential) · 350 nodes"  # 70 × (Linear 4 + ReLU 1)
        assert not outer.is_expanded and not outer.children
        outer.expand()
        await pilot.pause()
        relu = outer.children[0]
        assert str(relu.label) == "ReluBackward0"  # a one-node module: no group line
        group = relu.children[0]
        assert str(group.label) == "layers.138 (Linear) · 4 nodes"
        assert group.data is not None and group.data.group == "layers.138"
        assert not group.is_expanded


async def test_modal_escape_changes_nothing() -> None:
    app = NNTuiApp(Recipe(model="mlp"))
    async with app.run_test(size=SIZE) as pilot:
        await press(pilot, "space")
        app.ask_model()
        await pilot.pause()
        assert isinstance(app.screen, ModelScreen)
        await pilot.press("escape")
        await settle(pilot)
        assert not isinstance(app.screen, ModelScreen)
        assert app.current_recipe == Recipe(model="mlp") and app.session.done is Phase.DEFINE


def test_trace_explains_the_real_output_shape() -> None:
    from click.testing import CliRunner

    from tests.user_models import Healthy
    from tui.cli import cli

    torch.manual_seed(0)
    shape = list(Healthy()(torch.randn(5, 6)).shape)  # what plain PyTorch returns: [5, 3]
    for lang, expected in (
        ("en", f"The output {shape} is the network's guess: {shape[1]} scores per sample"),
        ("ko", f"output {shape}은 신경망의 추측: 샘플마다 class별 점수 {shape[1]}개"),
    ):
        args = ["trace", "--model", "tests/user_models.py:Healthy", "--input-shape", "5,6"]
        result = CliRunner().invoke(cli, [*args, "--iterations", "1", "--lang", lang])
        assert result.exit_code == 0, result.output
        assert expected in " ".join(result.output.split())  # rich wraps lines
        assert "10 scores" not in result.output


async def test_a_bfloat16_model_steps_and_the_screen_follows_the_engine(tmp_path: Path) -> None:
    # numpy has no bfloat16: drawing the tensor used to raise after the phase had run, so the
    # screen stayed before define while the engine moved on, and every key said "internal error".
    (tmp_path / "half.py").write_text(HALF)
    app = NNTuiApp(Recipe(model=f"{tmp_path}/half.py:Half", input_shape=(2, 4)))
    async with app.run_test(size=SIZE) as pilot:
        for phase in (Phase.DEFINE, Phase.FORWARD, Phase.LOSS, Phase.ZERO_GRAD, Phase.BACKWARD):
            await press(pilot, "space")
            assert not app.query_one(ErrorBar).message, phase
            assert app.snapshot.done is phase is app.session.done
        await press(pilot, "space")  # step
        assert app.snapshot.done is Phase.STEP is app.session.done
        assert app.snapshot.selected == "fc.weight" and app.snapshot.which == "data"
        weight = app.session.tensor("fc.weight")
        assert weight is not None and weight.dtype == torch.bfloat16
        # Widened for the heatmap only, exactly (every bfloat16 is a float32).
        assert app.snapshot.values.tolist() == weight.float().tolist()
        # The numbers quoted are the record's own, as for any other model.
        state = app.session.last_record.param("fc.weight")
        assert app.snapshot.summary == f"fc.weight: {summary_line(state.data)}"
        assert app.query_one(TensorView).summary_text == app.snapshot.summary
        await press(pilot, "space", "m")  # forward again, then the activation view
        assert not app.query_one(ErrorBar).message
        assert app.snapshot.which == "activation" and app.snapshot.activation == "fc"
        out = app.session.tensor("fc", "activation")
        assert out is not None and app.snapshot.values.tolist() == out.float().tolist()


async def test_the_modal_checks_a_user_model_on_the_worker_not_the_event_loop(
    tmp_path: Path, monkeypatch
) -> None:
    # check_model imports and builds the user's model: slow, so never on the UI thread.
    import threading

    import engine.loader

    (tmp_path / "deep.py").write_text(DEEP)
    checked_on: list[int] = []
    check_model = engine.loader.check_model

    def recording_check_model(text: str) -> None:
        checked_on.append(threading.get_ident())
        check_model(text)

    monkeypatch.setattr(engine.loader, "check_model", recording_check_model)
    app = NNTuiApp(Recipe())
    async with app.run_test(size=SIZE) as pilot:
        await press(pilot, "space")
        app.ask_model()
        await pilot.pause()
        assert isinstance(app.screen, ModelScreen)
        app.screen.query_one("#model-spec", Input).value = f"{tmp_path}/deep.py:Nope"
        app.screen.query_one("#model-shape", Input).value = "2,4"
        app.screen.query_one("#model-spec", Input).focus()
        await pilot.press("enter")
        await settle(pilot)
        error = str(app.screen.query_one("#model-error", Static).render())
        assert error.startswith("✗ ") and "has no 'Nope' (it defines: Deep)" in error
        assert isinstance(app.screen, ModelScreen) and app.current_recipe == Recipe()
        app.screen.query_one("#model-spec", Input).value = f"{tmp_path}/deep.py:Deep"
        await pilot.press("enter")
        await settle(pilot)
        assert not isinstance(app.screen, ModelScreen)
        assert app.current_recipe.model == f"{tmp_path}/deep.py:Deep"
        assert len(checked_on) == 2
        assert threading.get_ident() not in checked_on  # both checks ran off the event loop


async def test_escape_while_the_model_is_being_checked_changes_nothing(
    tmp_path: Path, monkeypatch
) -> None:
    import threading

    import engine.loader

    (tmp_path / "deep.py").write_text(DEEP)
    gate = threading.Event()
    check_model = engine.loader.check_model

    def held_check_model(text: str) -> None:
        gate.wait(timeout=30)  # a slow import: the user gives up meanwhile
        check_model(text)

    monkeypatch.setattr(engine.loader, "check_model", held_check_model)
    app = NNTuiApp(Recipe(model="mlp"))
    async with app.run_test(size=SIZE) as pilot:
        await press(pilot, "space")
        app.ask_model()
        await pilot.pause()
        app.screen.query_one("#model-spec", Input).value = f"{tmp_path}/deep.py:Deep"
        app.screen.query_one("#model-shape", Input).value = "2,4"
        app.screen.query_one("#model-spec", Input).focus()
        await pilot.press("enter")
        await pilot.pause()
        assert app.busy  # the check is on the worker; the event loop still takes keys
        hint = str(app.screen.query_one("#model-hint", Static).render())
        assert hint.startswith("checking the model")
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, ModelScreen)
        gate.set()
        await settle(pilot)
        assert app.current_recipe == Recipe(model="mlp") and app.session.done is Phase.DEFINE
        assert not app.query_one(ErrorBar).message
        await press(pilot, "space")
        assert app.session.done is Phase.FORWARD


async def test_what_the_model_prints_shows_in_the_output_pane_and_error_line() -> None:
    """Textual owns stdout in the app: the model's prints reach the phase's block (and the
    last one before a failure the error line), not the void."""
    from tui.widgets.outputpane import OutputPane

    models = Path(__file__).parent / "user_models.py"
    shapes = {"input_shape": (2, 4), "target_shape": (2, 3)}
    app = NNTuiApp(Recipe(model=f"{models}:Chatty", **shapes))
    async with app.run_test(size=SIZE) as pilot:
        await press(pilot, *steps(2))  # define, forward
        define, forward = app.query_one(OutputPane).texts[-2:]
        assert "built Chatty" in define
        assert ">>> output = net(input)\nOut:\nx: (2, 4)\nwarned\n>>> print(output)" in forward
    app = NNTuiApp(Recipe(model=f"{models}:ChattyThenFails", **shapes))
    async with app.run_test(size=SIZE) as pilot:
        await press(pilot, *steps(2))
        bar = app.query_one(ErrorBar).message
        assert "forward failed" in bar
        assert bar.endswith("Your code printed: before the bad line, x is (2, 4)")


async def test_prints_from_a_thread_of_the_model_reach_the_output_pane() -> None:
    """A thread the model starts is not the phase's: its print went to Textual's capture,
    which drops what no widget asked for. With the descriptors captured (as ``nntui`` runs),
    it reaches the phase's block (and without the capture, no block shows it)."""
    from tui.fdcapture import FdCapture
    from tui.widgets.outputpane import OutputPane

    models = Path(__file__).parent / "user_models.py"
    recipe = Recipe(model=f"{models}:PrintsFromAThread", input_shape=(2, 4), target_shape=(2, 3))
    with FdCapture():
        app = NNTuiApp(recipe)
        async with app.run_test(size=SIZE) as pilot:
            await press(pilot, *steps(2))  # define, forward
            forward = app.query_one(OutputPane).texts[-1]
            print("from the event loop")  # goes where it went: Textual's capture, no block
            await press(pilot, "space")  # loss
            loss = app.query_one(OutputPane).texts[-1]
    assert ">>> output = net(input)\nOut:\nfrom a thread\n>>> print(output)" in forward
    assert "from the event loop" not in loss
    app = NNTuiApp(recipe)
    async with app.run_test(size=SIZE) as pilot:
        await press(pilot, *steps(2))
        assert "from a thread" not in app.query_one(OutputPane).texts[-1]
