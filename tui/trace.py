"""``nntui trace``: every phase printed the way the tutorial prints it, or as JSON lines."""

from __future__ import annotations

import contextlib
import sys

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.syntax import Syntax
from rich.text import Text

from engine import Phase, PhaseError, PhaseRecord, Recipe, Session
from engine.explain import explain, record_output_shape
from engine.gcpolicy import FreezeSurvivors
from engine.jsonl import record_to_line
from engine.summary import fmt


def _render(console: Console, record: PhaseRecord, explanation: str | None = None) -> None:
    # Names come from the user's model (an nn.ModuleDict key may be "[/]"): every one is
    # escaped or wrapped in Text, or Rich reads it as markup and raises.
    title = f"iteration {record.iteration} · {record.phase.value}"
    if record.skipped:
        title += " · skipped"
    console.rule(Text(title, style="bold magenta" if not record.skipped else "dim"))
    if explanation:
        console.print(Text(explanation, style="italic"))
    console.print(Syntax(record.code, "python", theme="ansi_dark", background_color="default"))
    if record.printed:
        console.print(
            Panel(Text(record.printed), title="Out", title_align="left", border_style="dim")
        )
    if record.grad_changes:
        for c in record.grad_changes:
            if (
                c.accumulated
                and c.fresh is not None
                and c.before is not None
                and c.after is not None
            ):
                console.print(
                    f"  {escape(c.name)}: grad ‖before‖={fmt(c.before.norm)} + "
                    f"‖fresh‖={fmt(c.fresh.norm)} → ‖after‖={fmt(c.after.norm)}  "
                    f"(after == before + fresh: {c.exact})"
                )
    if record.step_changes and record.step_changes[0].matches_sgd is not None:
        ok = all(c.matches_sgd for c in record.step_changes if c.matches_sgd is not None)
        console.print(f"  Δ == −lr·grad for every parameter: {ok}")
    for label, holds in record.checks:
        console.print(f"  {escape(label)}: [{'green' if holds else 'red'}]{holds}[/]")
    for d in record.diagnostics:
        console.print(f"  [yellow]{escape(d.kind)}[/]: {escape(d.message)}")


def run_trace(
    recipe: Recipe,
    *,
    iterations: int,
    accumulate: bool,
    history_bytes: int,
    as_json: bool,
    lang: str = "en",
) -> int:
    """Run define + ``iterations`` iterations; 0 on success, 1 when a phase failed.

    Each phase's explanation is printed the first time it runs, and again only when its text
    changes (it depends on the recipe, not on the iteration).
    """
    shown: dict[str, str] = {}
    out = sys.stdout
    # With --json, stdout is one JSON object per line and nothing else: whatever the user's
    # model prints (a debug print in forward) goes to stderr instead of breaking the stream.
    quiet = contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext()
    with quiet:
        session = Session(recipe, accumulate=accumulate, history_bytes=history_bytes)
    console = Console(highlight=False, soft_wrap=False)
    total = 1 + 5 * iterations
    # A third of a long run's time went to the collector (engine.gcpolicy).
    with FreezeSurvivors(exclude=session.history.nbytes) as keep_collector_off:
        for _ in range(total):
            with quiet:
                result = session.run_next()
                if isinstance(result, PhaseRecord) and result.phase is Phase.STEP:
                    keep_collector_off()
                line = record_to_line(result) if as_json and isinstance(result, PhaseRecord) else ""
            if isinstance(result, PhaseError):
                # Everything printed so far stays, and comes out before the error line.
                out.flush()
                print(result.line(), file=sys.stderr)
                # ctrl-c while a phase runs lands here as the phase's error: exit as interrupted.
                return 130 if result.type == "KeyboardInterrupt" else 1
            if as_json:
                out.write(line + "\n")
            else:
                shape = record_output_shape(result)
                text = explain(result.phase, session.code_recipe, accumulate, lang, shape)
                fresh = shown.get(result.phase.value) != text
                shown[result.phase.value] = text
                _render(console, result, text if fresh else None)
    out.flush()
    return 0
