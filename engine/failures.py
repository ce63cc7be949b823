"""How a phase fails: the session's own refusals and the one-line error a user sees."""

from __future__ import annotations

from .blame import ModuleFailure, one_line
from .phases import Phase
from .recipe import RecipeError
from .records import PhaseError


class PhaseFailure(RuntimeError):
    """A check of the session's own (non-finite loss, non-scalar loss, …) that stops a phase."""


def error_message(exc: BaseException) -> str:
    """The error line's text: our own failures speak for themselves, others carry their type."""
    if isinstance(exc, (PhaseFailure, RecipeError, ModuleFailure)) or not str(exc).strip():
        return one_line(exc)  # an empty message is its type alone, not "KeyError: KeyError"
    return f"{type(exc).__name__}: {one_line(exc)}"


def phase_error(phase: Phase, iteration: int, exc: BaseException) -> PhaseError:
    original = exc.original if isinstance(exc, ModuleFailure) else exc
    return PhaseError(phase, iteration, type(original).__name__, error_message(exc))
