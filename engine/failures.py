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
    text = one_line(exc)  # never raises, even for a message that cannot be read
    if isinstance(exc, (PhaseFailure, RecipeError, ModuleFailure)) or text == type(exc).__name__:
        return text  # an empty message is its type alone, not "KeyError: KeyError"
    return f"{type(exc).__name__}: {text}"


# torch's words when ``loss.backward()`` meets a loss that autograd did not record.
NO_GRAPH = "does not require grad and does not have a grad_fn"


def phase_error(
    phase: Phase, iteration: int, exc: BaseException, user_output: str = ""
) -> PhaseError:
    original = exc.original if isinstance(exc, ModuleFailure) else exc
    message = error_message(exc)
    if phase is Phase.BACKWARD and NO_GRAPH in message:
        # torch names the symptom; the cause is in the model, and it is one of these.
        message += (
            " (the loss has no grad_fn: no parameter that requires grad reached it; look "
            "for torch.no_grad(), .detach(), .data, a cast to an integer dtype or "
            "requires_grad=False in the model)"
        )
    return PhaseError(phase, iteration, type(original).__name__, message, user_output)
