"""The explanation pane draws its text line by line, as the Static in a VerticalScroll it was.

It lays the screen out only when its own height changes, so a new explanation each phase
costs no layout; its height, scrollbar and every cell must still be those the Static's.
"""

from __future__ import annotations

from rich.cells import cell_len
from rich.text import Text
from textual.app import App, ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.widget import Widget
from textual.widgets import Static

from engine import Phase, Recipe
from engine.explain import explain
from tui.pilot import press, quiet_app, settle, steps
from tui.widgets.explainpane import ExplainPane, heading

CSS = """
.column { width: 40; height: 1fr; }
.filler { height: 1fr; }
.-auto Horizontal { overflow-y: auto; }
.-auto .column { height: auto; }
.-auto .filler { height: 20; }
ExplainPane, Reference {
    height: auto;
    max-height: 30%;
    padding: 0 1;
    border: round $panel-lighten-2;
    scrollbar-size-vertical: 1;
}
"""


class Reference(VerticalScroll):
    """What ExplainPane was: a Static in a VerticalScroll, updated with each explanation."""

    def compose(self) -> ComposeResult:
        yield Static()

    def show(self, title: str, text: str) -> None:
        body = Text(title + "\n", style="bold")
        body.append(text)
        self.query_one(Static).update(Content.from_rich_text(body, console=self.app.console))
        self.scroll_home(animate=False)


class Side(App[None]):
    CSS = CSS

    def __init__(self, auto: bool = False) -> None:
        super().__init__()
        self.auto = auto

    def on_mount(self) -> None:
        # As narrow screens: the columns as tall as their content, and the body scrolls;
        # the pane's max-height is then a share of a column that the pane itself sizes.
        self.set_class(self.auto, "-auto")

    def compose(self) -> ComposeResult:
        with Horizontal():
            with Vertical(classes="column"):
                yield Static("filler", classes="filler")
                yield ExplainPane(id="new")
            with Vertical(classes="column"):
                yield Static("filler", classes="filler")
                yield Reference(id="old")


def cells(app: App[None], widget: Widget) -> list[list[tuple[str, str]]]:
    """The screen's cells (character, style) in ``widget``'s region, empty segments left out,
    its vertical scrollbar's column blank: Textual can leave a scrollbar's thumb drawn where it
    was (hidden and shown again while scrolled to the top), in either pane, at moments that
    differ; the scrollbars are compared by their numbers (``bar``)."""
    region = app.screen.find_widget(widget).region
    bar = widget.vertical_scrollbar
    bar_x = app.screen.find_widget(bar).region.x if widget.show_vertical_scrollbar else -1
    rows = []
    for strip in app.screen._compositor.render_strips()[region.y : region.bottom]:
        row = []
        for seg in strip:
            for ch in seg.text:  # a wide character (Korean) takes two cells
                row += [(ch, str(seg.style))] + [("", str(seg.style))] * (cell_len(ch) - 1)
        if bar_x >= 0:
            row[bar_x] = ("bar", "")
        rows.append(row[region.x : region.right])
    return rows


def bar(widget: Widget) -> tuple[object, ...]:
    scrollbar = widget.vertical_scrollbar
    return (
        widget.show_vertical_scrollbar,
        scrollbar.window_virtual_size,
        scrollbar.window_size,
        widget.scroll_y,
        widget.max_scroll_y,
    )


async def test_every_explanation_draws_as_the_static_in_a_vertical_scroll() -> None:
    recipe = Recipe()
    texts = [("short", "a few words"), ("one", "x")]
    for lang in ("en", "ko"):
        for phase in Phase:
            for ran in (True, False):
                texts.append((heading(phase, ran, lang), explain(phase, recipe, False, lang)))
    texts.append(("long", " ".join(["word"] * 400)))
    texts.append(("short again", "a few words"))
    for size, auto in (((80, 40), False), ((80, 70), False), ((80, 24), False), ((90, 30), True)):
        app = Side(auto)
        async with app.run_test(size=size) as pilot:
            new, old = app.query_one(ExplainPane), app.query_one(Reference)
            for title, text in texts + texts[::-1]:
                new.text = ""  # the pane keeps its scroll position for the same words
                new._set_content(new._content_for(title, text))
                new.scroll_home(animate=False)
                old.show(title, text)
                await pilot.pause()
                await pilot.pause()
                where = (size, auto, title)
                assert new.outer_size == old.outer_size, where
                assert new.show_vertical_scrollbar == old.show_vertical_scrollbar, where
                assert bar(new) == bar(old), where
                assert cells(app, new) == cells(app, old), where
                new.scroll_end(animate=False)
                old.scroll_end(animate=False)
                await pilot.pause()
                await pilot.pause()
                assert new.scroll_y == new.max_scroll_y and bar(new) == bar(old), where
                assert cells(app, new) == cells(app, old), (where, "scrolled")


def count_layouts(app: App[None]) -> list[int]:
    """A list that counts the screen's layouts from now on."""
    screen = app.screen
    seen = [0]
    refresh_layout = screen._refresh_layout

    def counting(*args: object, **kwargs: object) -> None:
        seen[0] += 1
        refresh_layout(*args, **kwargs)  # type: ignore[arg-type]

    screen._refresh_layout = counting  # type: ignore[method-assign]
    return seen


async def test_forward_and_zero_grad_do_not_lay_out_the_screen() -> None:
    # They change no pane's size: a new explanation, a longer output log and a wider table
    # column used to lay out every widget on the screen for each key.
    app = quiet_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await press(pilot, *steps(7))  # an iteration, and the next forward
        await press(pilot, *steps(2))  # loss, zero_grad: laid out once (tab switch) and settled
        for phase in (Phase.BACKWARD, Phase.STEP, Phase.FORWARD, Phase.LOSS, Phase.ZERO_GRAD):
            layouts = count_layouts(app)
            explained = app.query_one(ExplainPane).text
            await press(pilot, "space")
            await settle(pilot)
            assert app.snapshot is not None and app.snapshot.done is phase
            assert app.query_one(ExplainPane).text != explained  # the pane did change
            if phase in (Phase.FORWARD, Phase.ZERO_GRAD):
                assert layouts[0] == 0, phase
