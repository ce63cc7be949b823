"""nntui copies or works around some of Textual 8.2.8's private code (tui/widgets/virtual.py,
views.py, paramtable.py, gradtree.py, tui/screens/main.py). A Textual that changed any of it
fails here, naming it, instead of the app drifting from what Textual would draw."""

from __future__ import annotations

import hashlib
import importlib.metadata
import inspect

import pytest
from textual._compositor import Compositor
from textual.widget import Widget
from textual.widgets import DataTable, TabbedContent, Tree

# The source each override was written against: sha256 of inspect.getsource, first 16 digits.
PINNED = {
    Widget._scroll_update: "edb9f6257285830d",  # SteadyScrollView (virtual.py)
    TabbedContent._watch_active: "87bb94f75c56c932",  # Views (views.py)
    DataTable._update_column_widths: "4f36354aa46fae6c",  # ParamsTable (paramtable.py)
    DataTable._render_cell: "56c87899a3bfc4da",  # ParamsTable draws cells as this does
    DataTable.update_cell: "117f6ee504bc006b",  # ParamsTable._update_cells does what it does
    Compositor.update_widgets: "86c02b2f8d6d93dd",  # screens/main.py
    Compositor.reflow: "a08580a81a779473",  # screens/main.py
    Tree._on_resize: "ac9951ecac600cb8",  # GradTree (gradtree.py)
}


def test_textual_is_the_version_the_overrides_were_written_for() -> None:
    assert importlib.metadata.version("textual") == "8.2.8"


@pytest.mark.parametrize("function", list(PINNED), ids=lambda f: f.__qualname__)
def test_overridden_textual_code_is_unchanged(function: object) -> None:
    source = inspect.getsource(function)  # type: ignore[arg-type]
    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    assert digest == PINNED[function], (
        f"Textual changed {function.__qualname__}: re-check nntui's override"
    )  # type: ignore[index, attr-defined]
