"""Write ``screenshots/<scene>.svg`` for every scene in ``tui.pilot.SCENES``.

    .venv/bin/python tools/screenshots.py            # all scenes
    .venv/bin/python tools/screenshots.py after-loss  # just one

Drives the real app headless (``run_test``) exactly as the snapshot tests do, so README's
pictures and the pinned snapshots show the same screens.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from tui.pilot import SCENES, SIZE, play, scene_app

OUT = Path(__file__).resolve().parents[1] / "screenshots"


async def shoot(name: str) -> Path:
    app = scene_app(name)
    async with app.run_test(size=SIZE) as pilot:
        await play(pilot, name)
        app.save_screenshot(f"{name}.svg", path=str(OUT))
    return OUT / f"{name}.svg"


def main(names: list[str]) -> int:
    unknown = [n for n in names if n not in SCENES]
    if unknown:
        print(f"unknown scene(s): {', '.join(unknown)}; choose from {', '.join(SCENES)}")
        return 2
    OUT.mkdir(exist_ok=True)
    for name in names or list(SCENES):
        print(asyncio.run(shoot(name)).relative_to(OUT.parent))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
