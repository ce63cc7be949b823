"""QA in a real terminal, on models of the user's that misbehave.

``q`` while a phase is stuck in user code quits at once: the user's forward never returns.
Before, the screen went blank and the process hung for good (asyncio.run waited for the
worker thread at shutdown; ctrl-c did nothing). And bytes the model writes straight to the
terminal's descriptors show in the output pane instead of over the screen.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.test_tmux import NNTUI, SESSION, Tmux

pytestmark = [
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
    pytest.mark.skipif(not NNTUI.exists(), reason=f"{NNTUI} is not installed"),
]

SPIN = """
import torch.nn as nn


class Spin(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        while True:
            pass
"""


@contextmanager
def user_model_app(tmp_path: Path, source: str, cls: str, height: int = 40) -> Iterator[Tmux]:
    """``nntui`` on the model class ``cls`` defined by ``source``, in a tmux pane of 120 x
    ``height`` that stays open after nntui exits (to read what it left on screen), showing
    its first frame."""
    (tmp_path / "model.py").write_text(source)
    t = Tmux(f"nntui-qa-{cls.lower()}-{os.getpid()}")
    args = f"--model model.py:{cls} --input-shape 2,4 --target-shape 2,3"
    command = (
        f"cd {tmp_path} && unset COLUMNS LINES && {NNTUI} {args};"
        f" echo EXIT=$? > {tmp_path / 'exit'}; sleep 60"
    )
    t.run("new-session", "-d", "-s", SESSION, "-x", "120", "-y", str(height), command)
    try:
        t.wait_for("the first frame", lambda s: "▶ define" in s, 120)
        yield t
    finally:
        subprocess.run(["tmux", "-L", t.socket, "kill-server"], capture_output=True)


def quit_with_0(t: Tmux, tmp_path: Path) -> None:
    t.run("send-keys", "-t", SESSION, "q")
    exit_file = tmp_path / "exit"
    deadline = time.monotonic() + 20
    while not exit_file.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert exit_file.exists(), f"nntui did not exit; the screen was:\n{t.screen()}"
    assert exit_file.read_text().strip() == "EXIT=0"


def test_quit_while_a_phase_never_returns(tmp_path: Path) -> None:
    with user_model_app(tmp_path, SPIN, "Spin") as t:
        t.run("send-keys", "-t", SESSION, "Space")
        t.wait_for("define", lambda s: "✓ define" in s, 60)
        t.run("send-keys", "-t", SESSION, "Space")
        t.wait_for("forward running", lambda s: "running forward" in s, 60)
        # After a few seconds the bar counts them and says how to leave.
        t.wait_for("the way out", lambda s: "s · q quits" in s, 30)
        quit_with_0(t, tmp_path)
        assert "Traceback" not in t.screen()


RAW = """
import ctypes
import os

import torch.nn as nn


class Raw(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        os.write(1, b"RAW-ON-FD-1\\n")
        os.write(2, b"RAW-ON-FD-2\\n")
        ctypes.CDLL(None).printf(b"PRINTF-%d\\n", 42)
        return self.fc(x)
"""


def test_bytes_written_to_the_terminal_by_user_code_land_in_the_output_pane(
    tmp_path: Path,
) -> None:
    """Written straight to descriptors 1 and 2 (C code, os.write), they once landed over the
    app's screen wherever its cursor was; now they are the forward's output, inside the pane."""
    # Tall enough for the output pane to show the forward's whole block.
    with user_model_app(tmp_path, RAW, "Raw", height=70) as t:
        for phase in ("define", "forward"):
            t.run("send-keys", "-t", SESSION, "Space")
            t.wait_for(f"✓ {phase}", lambda s, p=phase: f"✓ {p}" in s, 60)
        marks = ("RAW-ON-FD-1", "RAW-ON-FD-2", "PRINTF-42")
        screen = t.wait_for("the forward's output", lambda s: all(m in s for m in marks), 30)
        for mark in marks:
            lines = [line for line in screen.splitlines() if mark in line]
            assert len(lines) == 1, (mark, screen)
            # In a pane: between its borders, not across them.
            assert lines[0].count("│") >= 2, (mark, screen)
        quit_with_0(t, tmp_path)
