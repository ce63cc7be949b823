"""Activations in the tensor view (m / M / palette), views that follow the phase until the user
picks one, the explanation pane by terminal size, and the footer's keys at every width."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from textual.widgets import TabbedContent
from textual.widgets._footer import FooterKey

from engine import Phase, Recipe
from engine.explain import explain
from engine.models import ResNet
from engine.summary import fmt
from tests.oracle import TutorialNet
from tui.app import NNTuiApp
from tui.pilot import press, quiet_app, settle, steps
from tui.widgets.explainpane import ExplainPane
from tui.widgets.heatmap import TensorView

SIZE = (120, 40)


make_app = quiet_app  # seed 0, animations off (tui.pilot)


def tutorial_activations(seed: int = 0) -> dict[str, torch.Tensor]:
    """The tutorial's forward, written out in plain torch, every module's output kept."""
    torch.manual_seed(seed)
    net = TutorialNet()
    x = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        c1 = net.conv1(x)
        c2 = net.conv2(F.max_pool2d(F.relu(c1), 2))
        f1 = net.fc1(torch.flatten(F.max_pool2d(F.relu(c2), 2), 1))
        f2 = net.fc2(F.relu(f1))
        f3 = net.fc3(F.relu(f2))
    return {"conv1": c1, "conv2": c2, "fc1": f1, "fc2": f2, "fc3": f3, "output": f3}


def shown(app: NNTuiApp) -> tuple[str, np.ndarray | None, str]:
    view = app.query_one(TensorView)
    return view.title_text, view.canvas._values, view.summary_text


async def test_m_steps_through_every_activation_as_plain_torch_computes_it() -> None:
    plain = tutorial_activations()
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await press(pilot, "space")  # define: no forward yet, nothing to show
        await press(pilot, "m")
        assert app.snapshot.which == "data"
        await press(pilot, "space", "m")  # forward, then the first module
        assert app.snapshot.activations == ("conv1", "conv2", "fc1", "fc2", "fc3", "output")
        assert app.query_one(TabbedContent).active == "tab-tensor"
        for name in app.snapshot.activations:
            title, values, summary = shown(app)
            assert app.snapshot.which == "activation" and app.snapshot.activation == name
            assert title == f"{name} activation"
            assert values is not None and values.shape == tuple(plain[name].shape)
            assert np.array_equal(values, plain[name].numpy().astype(np.float64))
            t = plain[name]
            assert summary.startswith(f"{name} (")
            assert f"x∈[{fmt(t.min().item())}, {fmt(t.max().item())}]" in summary
            assert f"‖x‖={fmt(t.norm().item())}" in summary
            await press(pilot, "m")
        assert app.snapshot.activation == "conv1"  # wrapped around
        await press(pilot, "M")
        assert app.snapshot.activation == "output"
        # conv1's six 28×28 maps wrap into rows: all on screen, each map one tile.
        await press(pilot, "m")
        layout = app.query_one(TensorView).canvas.heatmap
        assert layout is not None and layout.note.startswith("6 maps")
        assert layout.height <= app.query_one(TensorView).canvas.size.height
        # g goes back to the parameters.
        await press(pilot, "g")
        assert app.snapshot.which == "data"
        assert shown(app)[0] == f"{app.snapshot.selected}.{app.snapshot.which}"


async def test_activation_stays_on_view_through_the_loop_and_a_rewind() -> None:
    plain = tutorial_activations()
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await press(pilot, *steps(2), "m", "m")  # conv2
        await press(pilot, "space")  # loss: the grad_fn view would come forward, but m pinned
        assert app.query_one(TabbedContent).active == "tab-tensor"
        assert app.snapshot.which == "activation" and app.snapshot.activation == "conv2"
        await press(pilot, "left", "left")  # back to after define: no activations
        assert app.session.done is Phase.DEFINE
        title, values, summary = shown(app)
        assert values is None and "run forward" in summary
        assert app.query_one(TensorView).canvas._message == "no activation yet: run forward"
        await press(pilot, "space")  # the same forward again
        values = shown(app)[1]
        assert values is not None and np.array_equal(values, plain["conv2"].numpy())
        # Selecting a parameter in the table means parameters again.
        await press(pilot, "down")
        assert app.snapshot.which == "data" and app.snapshot.selected == "conv2.weight"
        # A reset starts from the parameters, and the views follow again.
        await press(pilot, "m", "r")
        assert app.snapshot.which == "data" and app.follow_views


async def test_nested_activation_picked_from_the_palette_matches_plain_torch() -> None:
    torch.manual_seed(0)
    net = ResNet()
    x = torch.randn(4, 3, 32, 32)
    kept: dict[str, torch.Tensor] = {}
    handle = net.layer1[0].conv1.register_forward_hook(
        lambda mod, args, out: kept.setdefault("layer1.0.conv1", out.detach().clone())
    )
    net(x)
    handle.remove()
    app = make_app(Recipe(seed=0, model="resnet"))
    async with app.run_test(size=SIZE) as pilot:
        await press(pilot, *steps(2))
        shape = ", ".join(str(n) for n in kept["layer1.0.conv1"].shape)
        choices = dict(app.activation_choices)
        assert choices["layer1.0.conv1"] == f"Conv2d [{shape}]"
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"activation: layer1.0.conv1")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await settle(pilot)
        title, values, summary = shown(app)
        assert title == "layer1.0.conv1 activation"
        assert values is not None and np.array_equal(values, kept["layer1.0.conv1"].numpy())
        assert summary.startswith(f"layer1.0.conv1 (Conv2d) output: tensor[{shape}]")
        # Four samples: the grid keeps one row per sample (it scrolls).
        channels = kept["layer1.0.conv1"].shape[1]
        assert app.query_one(TensorView).canvas.heatmap.note.startswith(f"4×{channels} kernels")


async def test_views_follow_the_phase_until_the_user_picks_one() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        tabs = app.query_one(TabbedContent)
        views = app.query_one("#views")
        await press(pilot, *steps(3))
        assert tabs.active == "tab-graph" and app.follow_views
        assert not views.border_subtitle
        await press(pilot, *steps(2))
        assert tabs.active == "tab-accumulation"
        await press(pilot, "v")  # the user's choice: diagnostics
        assert tabs.active == "tab-diagnostics" and not app.follow_views
        assert "pinned" in views.border_subtitle
        await press(pilot, *steps(3))  # step, forward, loss: no switching now
        assert app.session.done is Phase.LOSS
        assert tabs.active == "tab-diagnostics"
        # The palette lets them follow again, without a reset.
        app.follow_phase()
        await press(pilot, *steps(2))  # zero_grad, backward
        assert tabs.active == "tab-accumulation" and app.follow_views
        # A click on a tab pins too.
        await pilot.click("#--content-tab-tab-graph")
        await settle(pilot)
        assert tabs.active == "tab-graph" and not app.follow_views
        await press(pilot, "space")  # step would bring the tensor view
        assert tabs.active == "tab-graph"
        # Reset: following again.
        await press(pilot, "r", *steps(3))
        assert app.follow_views and tabs.active == "tab-graph"
        await press(pilot, *steps(2))
        assert tabs.active == "tab-accumulation"


async def test_digits_forward_brings_the_digits_view() -> None:
    app = make_app(Recipe(seed=0, data="digits", loss="cross-entropy"))
    async with app.run_test(size=SIZE) as pilot:
        await press(pilot, *steps(2))
        tabs = app.query_one(TabbedContent)
        assert tabs.active == "tab-digits" and app.follow_views
        await press(pilot, *steps(4))  # loss, zero_grad, backward, step
        assert tabs.active == "tab-tensor" and app.follow_views


async def test_explanation_pane_shown_when_roomy_hidden_when_small_x_wins() -> None:
    app = make_app(lang="ko")
    async with app.run_test(size=SIZE) as pilot:
        pane = app.query_one(ExplainPane)
        await press(pilot, *steps(2))
        assert pane.display
        assert pane.text == explain(Phase.FORWARD, Recipe(seed=0), False, "ko")
        assert "방금 실행" in pane.title
        await pilot.resize_terminal(100, 30)
        await settle(pilot)
        assert not pane.display
        await pilot.resize_terminal(140, 45)
        await settle(pilot)
        assert pane.display
        await press(pilot, "x")  # the user's choice now beats the size
        assert not pane.display
        await pilot.resize_terminal(*SIZE)
        await settle(pilot)
        assert not pane.display
        await pilot.resize_terminal(80, 24)
        await press(pilot, "x")
        assert pane.display
    small = make_app()
    async with small.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert not small.query_one(ExplainPane).display


def footer_keys(app: NNTuiApp) -> dict[str, FooterKey]:
    return {key.key: key for key in app.query(FooterKey) if key.display}


async def test_footer_shows_explain_and_export_and_always_help_and_quit() -> None:
    for width, height in ((140, 45), (120, 40), (110, 30), (100, 30), (80, 24)):
        app = make_app()
        async with app.run_test(size=(width, height)) as pilot:
            await settle(pilot)
            keys = footer_keys(app)
            assert {"x", "question_mark", "q"} <= set(keys), (width, set(keys))
            if width >= 110:
                assert {"e", "m", "g"} <= set(keys)
            for key in ("question_mark", "q"):
                region = keys[key].region
                assert region.width > 0 and region.right <= width, (width, key, region)


async def test_step_brings_the_tensor_view_with_its_heatmap_already_drawn() -> None:
    """Step fills the tensor view while its tab is still hidden, then shows it: the picture
    is laid out at the size the canvas has on screen before the frame, not a frame later."""
    from tui.widgets.heatmap import HeatmapCanvas, layout_tensor

    app = make_app()
    after_show: list[tuple[str, bool, bool]] = []
    layouts: list[object] = []
    async with app.run_test(size=SIZE) as pilot:
        show = app.show

        def spy(snap: object) -> None:
            show(snap)  # type: ignore[arg-type]
            canvas = app.query_one(HeatmapCanvas)
            active = app.query_one(TabbedContent).active
            after_show.append((active, canvas._values is not None, canvas.heatmap is not None))
            layouts.append(canvas.heatmap)

        app.show = spy  # type: ignore[method-assign]
        await press(pilot, *["space"] * 6)  # define, then one iteration: step comes last
        await settle(pilot)
        assert app.snapshot.done is Phase.STEP
        assert after_show[-1] == ("tab-tensor", True, True)
        assert any(tab != "tab-tensor" for tab, _, _ in after_show[-4:-1]), "a view in between"
        canvas = app.query_one(HeatmapCanvas)
        region = canvas.scrollable_content_region
        values = canvas._values
        assert values is not None and canvas.heatmap is not None
        fresh = layout_tensor(values, region.width, region.height * 2)
        assert np.array_equal(canvas.heatmap.codes, fresh.codes)
        # The very picture laid out before the frame, at the size on screen: nothing was laid
        # out again once the tab showed (a wrong size there would be corrected only later).
        assert layouts[-1] is canvas.heatmap


async def test_a_resize_while_the_tensor_view_is_hidden_lays_it_out_again() -> None:
    from tui.widgets.heatmap import HeatmapCanvas, layout_tensor

    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await press(pilot, *["space"] * 3)  # define, forward, loss: the grad_fn tree is shown
        assert app.query_one(TabbedContent).active != "tab-tensor"
        await pilot.resize_terminal(140, 46)
        await press(pilot, *["space"] * 3)  # zero_grad, backward, step: the tensor comes back
        await settle(pilot)
        assert app.query_one(TabbedContent).active == "tab-tensor"
        canvas = app.query_one(HeatmapCanvas)
        region = canvas.scrollable_content_region
        assert canvas._values is not None and canvas.heatmap is not None
        fresh = layout_tensor(canvas._values, region.width, region.height * 2)
        assert (canvas.heatmap.width, canvas.heatmap.height) == (fresh.width, fresh.height)
        assert np.array_equal(canvas.heatmap.codes, fresh.codes)
