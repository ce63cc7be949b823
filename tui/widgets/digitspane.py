"""The digits pane: the batch's 8×8 images with label and prediction, and the accuracies."""

from __future__ import annotations

from rich.console import RenderableType
from rich.style import Style
from rich.text import Text
from textual.widget import Widget

from engine.digits import MAX_PIXEL, DigitsReport

CELL = 8  # columns an image takes (one per pixel; two pixel rows per text row)
GAP = 2


def _shade(value: int) -> str:
    level = round(255 * value / MAX_PIXEL)
    return f"rgb({level},{level},{level})"


def image_rows(image: tuple[tuple[int, ...], ...]) -> list[Text]:
    """8×8 pixels as 4 rows of half blocks: the top pixel is the glyph, the bottom its ground."""
    rows = []
    for top, bottom in zip(image[0::2], image[1::2]):
        row = Text()
        for upper, lower in zip(top, bottom):
            row.append("▀", Style.parse(f"{_shade(upper)} on {_shade(lower)}"))
        rows.append(row)
    return rows


def caption(label: int, prediction: int) -> Text:
    mark = "✓" if label == prediction else "✗"
    return Text(f"{label}→{prediction} {mark}".ljust(CELL), style="green" if mark == "✓" else "red")


def summary(report: DigitsReport) -> str:
    pct = f"{report.accuracy:.0%}"
    return (
        f"iteration {report.iteration} · epoch {report.epoch + 1}, batch "
        f"{report.batch_in_epoch + 1}/{report.batches_per_epoch}\n"
        f"this batch {report.correct}/{len(report.labels)} ({pct}) · "
        f"last {report.recent_batches} batches "
        f"{report.recent_accuracy:.0%} · all {report.seen} seen {report.running_accuracy:.0%}"
    )


class DigitsPane(Widget, can_focus=True):
    """Draws a ``DigitsReport``; the label→prediction under each image (argmax of output)."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.report: DigitsReport | None = None

    def show(self, report: DigitsReport | None) -> None:
        if report != self.report:
            self.report = report
            self.refresh(layout=True)

    def get_content_height(self, container, viewport, width: int) -> int:  # type: ignore[override]
        return self.render().plain.count("\n") + 1

    def render(self) -> RenderableType:
        report = self.report
        if report is None:
            return Text("digits: run a forward to see its batch (--data digits)", style="dim")
        per_row = max(1, (self.size.width + GAP) // (CELL + GAP)) if self.size.width else 8
        out = Text(summary(report) + "\n")
        items = list(zip(report.images, report.labels, report.predictions))
        for start in range(0, len(items), per_row):
            chunk = items[start : start + per_row]
            blocks = [image_rows(img) + [caption(y, p)] for img, y, p in chunk]
            for line in range(len(blocks[0])):
                out.append("\n")
                for i, block in enumerate(blocks):
                    if i:
                        out.append(" " * GAP)
                    out.append_text(block[line])
        return out
