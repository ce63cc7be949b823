"""Switch the model from inside the app: a shipped name, or your own ``file.py:NAME`` /
``package.module:NAME`` with its input shape, checked by the engine's loader before anything
changes. A bad value shows its one-line error here and the session is left as it was.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static

from engine import Recipe
from engine.recipe import MODELS, RecipeError, model_recipe, parse_shape

from ..jobs import Job

HINT = "enter: switch · tab: next field · escape: cancel"
CHECKING = "checking the model (imported and built once)… · escape: cancel"


def checked_recipe(recipe: Recipe, spec: str, shape_text: str) -> Recipe:
    """The recipe to switch to, or ``RecipeError`` with one line saying what is wrong.

    Your own model is imported and built once (``check_model``: the global RNG is put back),
    so a missing file or name, a factory that raises or returns no module fails here.
    """
    spec = spec.strip()
    if not spec:
        raise RecipeError(
            f"give a model: {', '.join(MODELS)}, path/to/file.py:NAME or package.module:NAME"
        )
    shape_text = shape_text.strip()
    shape = parse_shape(shape_text) if shape_text else None  # empty: the model's own (or none)
    if spec not in MODELS:
        from engine.loader import check_model, parse_spec

        parse_spec(spec, MODELS)
        check_model(spec)  # first: a wrong file or name matters more than a missing shape
        if shape is None:
            raise RecipeError(f"{spec} needs an input shape (e.g. 8,20 or 4,3,32,32)")
    return model_recipe(recipe, spec, shape).validate()


class ModelScreen(ModalScreen[Recipe | None]):
    """Two inputs (model, input shape) and a line for the error; enter switches."""

    CSS_PATH = "../styles/model.tcss"
    BINDINGS = [Binding("escape", "cancel", "Cancel", tooltip="Keep the current model")]

    def __init__(
        self, recipe: Recipe, busy: Callable[[], bool], submit: Callable[[Job], bool]
    ) -> None:
        super().__init__()
        self.recipe = recipe
        # A phase running in the worker must not see the loader fork the global RNG.
        self.busy = busy
        # The app's queue: the check imports and builds the user's model, on the worker.
        self.submit = submit

    def compose(self) -> ComposeResult:
        own = self.recipe.model not in MODELS
        shape = self.recipe.input_shape
        with Vertical(id="model-body"):
            yield Label("Switch model (the loop resets)", id="model-title")
            yield Input(
                self.recipe.model if own else "",
                placeholder=f"{' | '.join(MODELS)} | path/to/file.py:NAME | package.module:NAME",
                id="model-spec",
            )
            yield Input(
                ",".join(str(d) for d in shape) if own and shape else "",
                placeholder="input shape, e.g. 8,3,32,32 (a shipped model has its own)",
                id="model-shape",
            )
            yield Static("", id="model-error", markup=False)
            yield Static(HINT, id="model-hint")

    def on_mount(self) -> None:
        self.query_one("#model-spec", Input).focus()

    @on(Input.Submitted)
    def _submit(self, event: Input.Submitted) -> None:
        event.stop()
        error = self.query_one("#model-error", Static)
        if self.busy():
            error.update("✗ still working: try again when the phase is done")
            return
        spec = self.query_one("#model-spec", Input).value
        shape = self.query_one("#model-shape", Input).value
        check = partial(checked_recipe, self.recipe, spec, shape)
        if self.submit(Job("checking model", check, self._checked)):
            error.update("")
            self.query_one("#model-hint", Static).update(CHECKING)

    def _checked(self, recipe: Recipe | None, exc: Exception | None) -> None:
        """Back on the event loop: switch, or show the one-line error and change nothing."""
        if not self.is_attached:
            return  # escape was pressed while the model was being checked
        self.query_one("#model-hint", Static).update(HINT)
        if isinstance(exc, RecipeError):
            self.query_one("#model-error", Static).update(f"✗ {exc}")
        elif exc is not None:
            message = f"✗ internal error: {type(exc).__name__}: {exc}"
            self.query_one("#model-error", Static).update(message)
        else:
            self.dismiss(recipe)

    def action_cancel(self) -> None:
        self.dismiss(None)
