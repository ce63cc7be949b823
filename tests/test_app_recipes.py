"""The app side of issue 4: recipe switching in the command palette, the explanation pane,
the digits pane and the export key, checked against plain PyTorch and the engine's pure text."""

from __future__ import annotations

import torch
from textual.widgets import TabbedContent

from engine import Phase, Recipe
from engine.explain import explain
from engine.export import export_script
from tests.oracle_recipes import plain_run
from tui.app import NNTuiApp
from tui.commands import recipe_choices
from tui.pilot import press, settle, steps
from tui.widgets.digitspane import DigitsPane
from tui.widgets.explainpane import ExplainPane

SIZE = (120, 40)


def _tab_ids(app: NNTuiApp) -> list[str]:
    return [pane.id for pane in app.query_one(TabbedContent).query("TabPane")]


async def test_default_recipe_has_no_digits_tab_and_explains_each_phase():
    app = NNTuiApp(Recipe())
    async with app.run_test(size=SIZE) as pilot:
        await press(pilot, *steps(3))
        assert "tab-digits" not in _tab_ids(app)
        pane = app.query_one(ExplainPane)
        assert pane.display  # shown by default from 120×40 (tests/test_app_views.py: sizes)
        assert pane.text == explain(Phase.LOSS, Recipe(), False, "en")
        await press(pilot, "a")  # accumulate on: the zero_grad text changes when it runs
        await press(pilot, "space")
        assert pane.text == explain(Phase.ZERO_GRAD, Recipe(), True, "en")
        app.set_lang("ko")
        await settle(pilot)
        assert pane.text == explain(Phase.ZERO_GRAD, Recipe(), True, "ko")
        await press(pilot, "x")
        assert not pane.display


async def test_digits_pane_shows_the_batch_the_plain_loop_sees():
    recipe = Recipe(data="digits", loss="cross-entropy", batch_size=16)
    oracle = plain_run(data="digits", loss="cross-entropy", batch_size=16, iterations=2)
    app = NNTuiApp(recipe)
    async with app.run_test(size=SIZE) as pilot:
        await press(pilot, *steps(1 + 5 + 1))  # define, iteration 1, forward of iteration 2
        await settle(pilot)
        assert "tab-digits" in _tab_ids(app)
        report = app.query_one(DigitsPane).report
        assert report is not None and report.iteration == 2
        assert report.labels == tuple(oracle.labels[1].tolist())
        assert report.predictions == tuple(oracle.outputs[1].argmax(1).tolist())
        hits = [(o.argmax(1) == y).sum().item() for o, y in zip(oracle.outputs, oracle.labels)]
        assert report.running_accuracy == sum(hits) / 32
        app.query_one(TabbedContent).active = "tab-digits"
        await settle(pilot)
        drawn = app.query_one(DigitsPane).render().plain
        assert "epoch 1, batch 2/113" in drawn
        assert f"{report.labels[0]}→{report.predictions[0]}" in drawn
        assert drawn.count("▀") == 16 * 64 // 2  # 16 images, two pixel rows per character


async def test_palette_switches_the_recipe_and_resets():
    app = NNTuiApp(Recipe())
    async with app.run_test(size=SIZE) as pilot:
        await press(pilot, *steps(6))
        assert app.snapshot.iteration == 1
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"optimizer: adam")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await settle(pilot)
        assert app.session.recipe.optimizer == "adam"
        assert app.snapshot.done is None  # reset to before define
        await press(pilot, *steps(6))
        step = app.snapshot.records[-1]
        assert step.phase is Phase.STEP
        oracle = plain_run(optimizer="adam", iterations=1)
        for name, value in oracle.params[0].items():
            assert torch.equal(app.session.tensor(name), value), name
        # Switching to digits brings the digits tab; back to random removes it.
        app.switch_recipe(app.current_recipe.with_(data="digits", loss="cross-entropy"))
        await press(pilot, *steps(2))
        assert "tab-digits" in _tab_ids(app)
        app.switch_recipe(app.current_recipe.with_(data="random"))
        await settle(pilot)
        await pilot.pause()
        assert "tab-digits" not in _tab_ids(app)


def test_palette_choices_are_valid_one_setting_changes():
    recipe = Recipe(loss="cross-entropy", class_weights=((7, 5.0),), optimizer="momentum")
    choices = list(recipe_choices(recipe))
    for _, _, new in choices:
        new.validate()
        changed = [
            f
            for f in ("loss", "optimizer", "zero_grad", "data", "batch_size", "lr")
            if getattr(new, f) != getattr(recipe, f)
        ]
        assert len(changed) <= 1
    mse = next(new for title, _, new in choices if title.endswith("loss: mse"))
    assert mse.class_weights == ()  # mse takes no class weight
    assert sum(title.startswith("● ") for title, _, _ in choices) == 7  # one current per setting


async def test_export_key_writes_the_script_of_what_ran(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    recipe = Recipe(optimizer="manual", zero_grad="zeros")
    app = NNTuiApp(recipe, accumulate=True)
    async with app.run_test(size=SIZE) as pilot:
        await press(pilot, *steps(11), "e")
        written = (tmp_path / NNTuiApp.EXPORT_PATH).read_text()
        assert written == export_script(recipe, accumulate=True, iterations=2)


async def test_export_resolves_the_recipe_on_the_worker_not_the_event_loop(tmp_path, monkeypatch):
    # resolve() may import and build a user model: slow, so never on the UI thread.
    import threading

    import engine.export

    monkeypatch.chdir(tmp_path)
    expected = export_script(Recipe(model="mlp"), accumulate=False, iterations=1)
    resolved_on: list[int] = []
    resolve = engine.export.resolve

    def recording_resolve(recipe: Recipe) -> Recipe:
        resolved_on.append(threading.get_ident())
        return resolve(recipe)

    monkeypatch.setattr(engine.export, "resolve", recording_resolve)
    app = NNTuiApp(Recipe(model="mlp"))
    async with app.run_test(size=SIZE) as pilot:
        await press(pilot, *steps(2), "e")
        assert (tmp_path / NNTuiApp.EXPORT_PATH).read_text() == expected
        assert len(resolved_on) == 1 and resolved_on[0] != threading.get_ident()
