"""``nntui`` in a real terminal (tmux): start, one full iteration by key presses, quit with 0.

Skipped when tmux is missing (CI installs it). The test runs its own tmux server on a private
socket and kills only that server.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NNTUI = Path(sys.executable).with_name("nntui")
SESSION = "nntui"

pytestmark = [
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
    pytest.mark.skipif(not NNTUI.exists(), reason=f"{NNTUI} is not installed"),
]


class Tmux:
    def __init__(self, socket: str) -> None:
        self.socket = socket

    def run(self, *args: str) -> str:
        out = subprocess.run(
            ["tmux", "-L", self.socket, *args], capture_output=True, text=True, timeout=30
        )
        assert out.returncode == 0, (args, out.stderr)
        return out.stdout

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", SESSION)

    def wait_for(self, what: str, ok: Callable[[str], bool], timeout: float) -> str:
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            text = self.screen()
            if ok(text):
                return text
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}; the screen was:\n{text}")


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[tuple[Tmux, Path]]:
    t = Tmux(f"nntui-test-{os.getpid()}")
    exit_file = tmp_path / "exit"
    # COLUMNS/LINES (pytest's environment has them) would override the pane's real size.
    command = f"cd {ROOT} && unset COLUMNS LINES && {NNTUI}; echo EXIT=$? > {exit_file}"
    t.run("new-session", "-d", "-s", SESSION, "-x", "120", "-y", "40", command)
    try:
        yield t, exit_file
    finally:
        subprocess.run(["tmux", "-L", t.socket, "kill-server"], capture_output=True)


def test_one_iteration_in_a_real_terminal_then_quit(tmux: tuple[Tmux, Path]) -> None:
    t, exit_file = tmux
    # The first frame: the phase bar with define next, nothing run yet.
    t.wait_for("the first frame", lambda s: "▶ define" in s and "iteration 0" in s, 120)
    for phase in ("define", "forward", "loss", "zero_grad", "backward", "step"):
        t.run("send-keys", "-t", SESSION, "Space")
        t.wait_for(f"✓ {phase}", lambda s, p=phase: f"✓ {p}" in s, 60)
    # After step: iteration 1 is complete, the next phase is the next iteration's forward,
    # and the panes show it. (Waited for, not asserted at once: tmux may be mid-frame.)
    t.wait_for(
        "the screen after step",
        lambda s: (
            "▶ forward" in s
            and "iteration 1 · next: forward (iteration 2)" in s
            and "conv1.weight" in s  # the parameter table …
            and "fc3.bias" in s  # … all ten rows of it
            and "optimizer.step()" in s  # the code pane
        ),
        30,
    )
    t.run("send-keys", "-t", SESSION, "q")
    deadline = time.monotonic() + 30
    while not exit_file.exists() or not exit_file.read_text().strip():
        assert time.monotonic() < deadline, "nntui did not exit after q"
        time.sleep(0.1)
    assert exit_file.read_text().strip() == "EXIT=0"
