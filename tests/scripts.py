"""Running a script nntui wrote the way a user would: a plain python, no checkout on the path."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_plain(script: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python script`` from ``cwd``, without PYTHONPATH (so nothing of nntui is importable)
    and with one OpenMP thread (the losses compared are printed by a single-threaded torch)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        env=env,
    )
