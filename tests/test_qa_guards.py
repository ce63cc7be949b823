"""QA: the forward guards (fixed structure, ``.grad`` left alone) against adversarial user
models, each compared with a plain PyTorch loop."""

from __future__ import annotations

from pathlib import Path

from engine import Phase, PhaseError, Recipe, Session

MODELS = Path(__file__).parent / "user_models.py"


def _session(name: str, **kw: object) -> Session:
    return Session(Recipe(model=f"{MODELS}:{name}", input_shape=(2, 4), target_shape=(2, 3)), **kw)


def test_a_forward_that_swallows_the_structure_refusal_still_fails() -> None:
    """A plain loop's model gains the submodule; nntui's did not, and went on silently."""
    s = _session("CatchesStructureRefusal")
    s.run_next()  # define
    error = s.run_next()
    assert isinstance(error, PhaseError), error
    assert error.type == "StructureChanged"
    assert "forward registers submodule 'extra'" in error.message
    assert s.done is Phase.DEFINE
    assert [n for n, _ in s.setup.net.named_modules()] == ["", "fc"]
