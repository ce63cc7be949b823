"""SVG snapshots of the app at 120×40 in the states README shows (``tui.pilot.SCENES``).

Update with ``pytest tests/test_snapshots.py --snapshot-update`` only after reading the report.
"""

from __future__ import annotations

from functools import partial

import pytest

from tui.pilot import SCENES, SIZE, play, scene_app


@pytest.mark.parametrize("name", list(SCENES))
def test_scene(name: str, snap_compare) -> None:
    assert snap_compare(scene_app(name), run_before=partial(play, name=name), terminal_size=SIZE)
