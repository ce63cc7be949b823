"""nntui's engine: a real PyTorch training loop as an exact, rewindable state machine.

Pure library: imports torch and numpy, never a UI package (a test checks it).
"""

from .graph import GradGraph, GradNode, walk_grad_fn
from .history import DEFAULT_BUDGET_BYTES, History
from .phases import LOOP, PHASES, Phase, next_phase
from .recipe import Recipe, RecipeError, build
from .records import (
    Activation,
    Diagnostic,
    GradChange,
    ParamState,
    PhaseError,
    PhaseRecord,
    StepChange,
)
from .session import Session
from .summary import TensorSummary, summarize, summary_line

__all__ = [
    "DEFAULT_BUDGET_BYTES",
    "LOOP",
    "PHASES",
    "Activation",
    "Diagnostic",
    "GradChange",
    "GradGraph",
    "GradNode",
    "History",
    "ParamState",
    "Phase",
    "PhaseError",
    "PhaseRecord",
    "Recipe",
    "RecipeError",
    "Session",
    "StepChange",
    "TensorSummary",
    "build",
    "next_phase",
    "summarize",
    "summary_line",
    "walk_grad_fn",
]
