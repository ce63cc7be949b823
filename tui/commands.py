"""Command palette entries: switch the recipe (the session resets to it), language, export,
which module's activation to show, and letting the views follow the phase again.

Each recipe entry is a plain ``(title, recipe)`` pair computed from the current recipe, so the
palette never offers an invalid combination (mse drops the class weights, a class weight
brings cross-entropy with it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from textual.command import DiscoveryHit, Hit, Hits, Provider

from engine import Recipe
from engine.recipe import LOSSES, MODELS, OPTIMIZERS, ZERO_GRAD_MODES, model_recipe

LRS = (0.1, 0.01, 0.001)
BATCH_SIZES = (8, 16, 32, 64)
WEIGHTS: tuple[tuple[tuple[int, float], ...], ...] = ((), ((7, 5.0),))
MODEL_HELP = {
    "lenet": "The tutorial's Net, input 1×1×32×32",
    "mlp": "64 → 32 → 32 → 10 with nn.ReLU modules, input 8×64",
    "resnet": "Two residual blocks with BatchNorm, input 4×3×32×32",
}


class RecipeHost(Protocol):
    """What the provider needs of the app."""

    @property
    def current_recipe(self) -> Recipe: ...
    @property
    def lang(self) -> str: ...
    def switch_recipe(self, recipe: Recipe) -> None: ...
    def set_lang(self, lang: str) -> None: ...
    def export_script(self) -> None: ...
    def ask_model(self) -> None: ...
    @property
    def activation_choices(self) -> list[tuple[str, str]]: ...
    def show_activation(self, name: str) -> None: ...
    def follow_phase(self) -> None: ...


@dataclass(frozen=True)
class Entry:
    title: str
    help: str
    run: Callable[[], None]


def _mark(on: bool) -> str:
    return "● " if on else "  "


def recipe_choices(recipe: Recipe) -> Iterator[tuple[str, str, Recipe]]:
    """``(title, help, new recipe)`` for every one-setting change of ``recipe``."""
    for loss in LOSSES:
        new = recipe.with_(loss=loss, class_weights=() if loss == "mse" else recipe.class_weights)
        yield f"{_mark(recipe.loss == loss)}loss: {loss}", "Reset the loop with this loss", new
    for weights in WEIGHTS:
        text = ", ".join(f"{k}={w:g}" for k, w in weights) or "none"
        new = recipe.with_(loss="cross-entropy", class_weights=weights)
        on = recipe.class_weights == weights and recipe.loss == "cross-entropy"
        yield f"{_mark(on)}class weight: {text}", "Cross-entropy with these weights", new
    for name in OPTIMIZERS:
        new = recipe.with_(optimizer=name)
        yield f"{_mark(recipe.optimizer == name)}optimizer: {name}", "Reset with this update", new
    for mode in ZERO_GRAD_MODES:
        new = recipe.with_(zero_grad=mode)
        help = "set_to_none=True: grads become None" if mode == "none" else "grads filled with 0"
        yield f"{_mark(recipe.zero_grad == mode)}zero_grad: {mode}", help, new
    for data in ("random", "digits"):
        new = recipe.with_(data=data)
        help = "The tutorial's fixed batch" if data == "random" else "Real 8×8 handwritten digits"
        yield f"{_mark(recipe.data == data)}data: {data}", help, new
    for size in BATCH_SIZES:
        new = recipe.with_(batch_size=size)
        yield f"{_mark(recipe.batch_size == size)}batch size: {size}", "Digits per batch", new
    for lr in LRS:
        new = recipe.with_(lr=lr)
        yield f"{_mark(recipe.lr == lr)}lr: {lr:g}", "Reset with this learning rate", new


def entries(host: RecipeHost) -> list[Entry]:
    out = [
        Entry(title, help, lambda r=new: host.switch_recipe(r))
        for title, help, new in recipe_choices(host.current_recipe)
    ]
    recipe = host.current_recipe
    # Another model changes the shapes too (``model_recipe``): not a one-setting change.
    for model in MODELS:
        out.append(
            Entry(
                f"{_mark(recipe.model == model)}model: {model}",
                MODEL_HELP.get(model, "A shipped model"),
                lambda model=model: host.switch_recipe(model_recipe(recipe, model)),
            )
        )
    own = recipe.model not in MODELS
    out.append(
        Entry(
            f"{_mark(own)}model: your own…",
            "Type path/to/file.py:NAME or package.module:NAME and its input shape",
            host.ask_model,
        )
    )
    for lang, name in (("en", "English"), ("ko", "한국어")):
        out.append(
            Entry(
                f"{_mark(host.lang == lang)}language: {lang} ({name})",
                "Language of the explanation pane",
                lambda lang=lang: host.set_lang(lang),
            )
        )
    out.append(
        Entry(
            "  export script",
            "Write this recipe as a plain PyTorch script (like nntui export)",
            host.export_script,
        )
    )
    for name, help in host.activation_choices:
        out.append(
            Entry(f"  activation: {name}", help, lambda name=name: host.show_activation(name))
        )
    out.append(
        Entry(
            "  views: follow the phase",
            "Switch the views after each phase again (grad_fn after loss, …)",
            host.follow_phase,
        )
    )
    return out


class RecipeCommands(Provider):
    """The palette's recipe, language and export commands."""

    def _entries(self) -> list[Entry]:
        host = self.app
        if not all(hasattr(host, a) for a in ("current_recipe", "switch_recipe", "set_lang")):
            return []  # another app (a test host) without recipes
        return entries(host)  # type: ignore[arg-type]

    async def discover(self) -> Hits:
        for entry in self._entries():
            yield DiscoveryHit(entry.title, entry.run, help=entry.help)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for entry in self._entries():
            score = matcher.match(entry.title)
            if score > 0:
                yield Hit(score, matcher.highlight(entry.title), entry.run, help=entry.help)
