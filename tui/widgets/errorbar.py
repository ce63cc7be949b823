"""The error line: which phase failed and why; the session is still where it was before it."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from engine import Phase, PhaseError

# How much of the user's last printed line the error line quotes.
LAST_PRINT = 120


def failure_text(error: PhaseError, still_after: Phase | None) -> str:
    where = f"after {still_after.value}" if still_after else "before define"
    text = (
        # The engine's message already names a foreign exception's type (``RuntimeError: …``).
        f"✗ {error.phase.value} failed (iteration {error.iteration}): {error.message}"
        f" — nothing changed, the loop is still {where}."
    )
    lines = [line for line in error.user_output.splitlines() if line.strip()]
    if lines:
        # The last thing the model printed before it failed: often the print that was put
        # there to find this very failure (``print(x.shape)``).
        last = lines[-1].strip()
        last = last if len(last) <= LAST_PRINT else last[: LAST_PRINT - 1] + "…"
        more = f" ({len(lines)} lines; the last)" if len(lines) > 1 else ""
        text += f" Your code printed{more}: {last}"
    return text


class ErrorBar(Static):
    """Hidden until something fails; the next successful action hides it again."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.message = ""

    def show_error(self, error: PhaseError, still_after: Phase | None) -> None:
        self.show_text(failure_text(error, still_after))

    def show_text(self, message: str) -> None:
        self.message = message
        self.update(Text(message))
        self.add_class("-shown")

    def clear(self) -> None:
        if not self.message and not self.has_class("-shown"):
            return  # clear already: every phase clears it, a repaint and layout for nothing
        self.message = ""
        self.update("")
        self.remove_class("-shown")
