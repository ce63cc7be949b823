"""QA leftovers: ctrl-c while a model imports, repeated options, ``-o -``, model paths that are
not regular files, and what a model prints while it is built.

Bad input is one line on stderr and exit 2 with nothing lost; ctrl-c exits 130; never a
traceback. Expected values come from plain Python and plain PyTorch, not from nntui.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.cli import nntui, usage_error
from tests.oracle import plain_losses

ROOT = Path(__file__).parent.parent


def _popen(*argv: str, **kw: Any) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "tui", *argv], cwd=ROOT, text=True, **kw)


# ------------------------------------------------------------------ 1. ctrl-c while importing
# Imported once by the CLI's check and again by the define phase; sleeps on import number
# SLEEP_AT, after leaving a file that says it got there.
SLOW_IMPORT = """
import time
from pathlib import Path

import torch.nn as nn

here = Path(__file__).parent
count = len(list(here.glob("imported-*"))) + 1
(here / f"imported-{{count}}").touch()
if count == {sleep_at}:
    time.sleep(120)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(x)
"""


@pytest.mark.parametrize("sleep_at", [1, 2], ids=["cli-check", "define-phase"])
def test_ctrl_c_while_the_model_imports_exits_130(tmp_path: Path, sleep_at: int) -> None:
    # Was: the loader reported the KeyboardInterrupt as the import failing, "cannot import
    # slow.py: KeyboardInterrupt", exit 2 (exit 1 when it came during the define phase). A
    # model's own ``raise KeyboardInterrupt`` stays exit 2 (tests/test_qa_user_code.py).
    path = tmp_path / "slow.py"
    path.write_text(SLOW_IMPORT.format(sleep_at=sleep_at))
    spec = f"{path}:Net"
    proc = _popen(
        "trace",
        "--model",
        spec,
        "--input-shape",
        "1,4",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        # As from a terminal: a shell without job control starts background jobs with SIGINT
        # ignored, and the child would inherit that.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / f"imported-{sleep_at}").exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the model was never imported"
            time.sleep(0.05)
        time.sleep(0.2)  # well inside time.sleep(120)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + signal.SIGINT, err
    assert "Traceback" not in err
    assert "nntui: error" not in err
    assert out == ""


# ------------------------------------------------------------------ 2. a class weighted twice
@pytest.mark.parametrize(
    "weights,first,second",
    [(["7=5", "7=2"], "7=5", "7=2"), (["3=1", "07=2", "7=2.0"], "07=2", "7=2.0")],
)
@pytest.mark.parametrize("command", ["trace", "export"])
def test_a_class_weighted_twice_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    weights: list[str],
    first: str,
    second: str,
    command: str,
) -> None:
    # Was: the last weight of the class won without a word (nn.CrossEntropyLoss got 2.0).
    argv = [command, "--loss", "cross-entropy"]
    for text in weights:
        argv += ["--class-weight", text]
    if command == "export":
        argv += ["-o", str(tmp_path / "out.py")]
    message = usage_error(capsys, *argv)
    assert message == (
        f"Invalid value for '--class-weight': class 7 is given twice ({first} and {second}): "
        "give each class once"
    )
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ 3. export -o -
PRINTING_MODEL = """
import torch.nn as nn

print("model says: imported")


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        print("model says: built")
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        print("model says: forward")
        return self.fc(x)
"""


def _plain_losses(iterations: int) -> list[float]:
    """The documented seeded loop in plain PyTorch for PRINTING_MODEL's Net, input 2×4."""
    import torch.nn as nn

    return plain_losses(lambda: nn.Linear(4, 3), (2, 4), (2, 3), iterations)


def test_export_to_dash_writes_the_script_to_stdout_and_nothing_else(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Was: a file literally named "-" in the current folder, and "wrote -: ..." on stdout.
    from tests.scripts import run_plain

    model = tmp_path / "printing.py"
    model.write_text(PRINTING_MODEL)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    argv = ["export", "-o", "-", "--iterations", "3", "--model", f"{model}:Net"]
    code, out, err = nntui(capsys, *argv, "--input-shape", "2,4")
    assert code == 0, err
    assert list(work.iterdir()) == []  # no file named "-"
    # The model's prints (import and build for the check, then import, build and the forward
    # that infers the target) went to stderr, not into the script.
    assert out.startswith('"""Exported by nntui')
    assert not [line for line in out.splitlines() if line.startswith("model says")]
    assert err.splitlines() == ["model says: imported", "model says: built"] * 2 + [
        "model says: forward"
    ]
    # What stdout held is a whole script: run as a user would, it prints the plain losses.
    script = tmp_path / "from_stdout.py"
    script.write_text(out)
    ran = run_plain(script, tmp_path)
    assert ran.returncode == 0, ran.stderr
    losses = [float(x) for x in ran.stdout.splitlines() if not x.startswith("model says")]
    assert losses == _plain_losses(3)


def test_export_to_dot_slash_dash_is_still_a_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = nntui(capsys, "export", "-o", "./-", "--iterations", "1")
    assert code == 0, err
    assert (tmp_path / "-").read_text().startswith('"""Exported by nntui')
    assert out == "wrote ./-: 1 iteration(s); run it with python ./-\n"


# ------------------------------------------------------------------ 4. model paths, not files
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
@pytest.mark.parametrize("command", ["trace", "export"])
def test_a_named_pipe_as_the_model_file_is_named_as_one(tmp_path: Path, command: str) -> None:
    # Was: "model file not found" for a file that is there. Opening it would wait for a
    # writer for ever: run in a subprocess so a regression fails on the timeout, not hangs.
    fifo = tmp_path / "model.py"
    os.mkfifo(fifo)
    argv = [command, "--model", f"{fifo}:Net", "--input-shape", "2,4"]
    if command == "export":
        argv += ["-o", str(tmp_path / "out.py")]
    ran = subprocess.run(
        [sys.executable, "-m", "tui", *argv], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert (ran.returncode, ran.stdout, ran.stderr) == (
        2,
        "",
        f"nntui: error: model file {fifo} is a named pipe (FIFO), not a regular .py file\n",
    )
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)  # left as it was
    assert not (tmp_path / "out.py").exists()


@pytest.mark.skipif(not Path("/dev/null").is_char_device(), reason="needs /dev/null")
def test_a_device_as_the_model_file_is_named_as_one(capsys: pytest.CaptureFixture[str]) -> None:
    # Was: "model file not found: /dev/null".
    message = usage_error(capsys, "trace", "--model", "/dev/null:Net", "--input-shape", "2,4")
    assert message == "model file /dev/null is a character device, not a regular .py file"


def test_a_symlink_to_a_named_pipe_and_a_dangling_one(tmp_path: Path) -> None:
    # The app's model form checks with the same code as the CLI.
    from engine import Recipe
    from engine.recipe import RecipeError
    from tui.screens.model import checked_recipe

    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "link.py").symlink_to(tmp_path / "pipe")
    (tmp_path / "dangling.py").symlink_to(tmp_path / "gone.py")
    link, dangling = tmp_path / "link.py", tmp_path / "dangling.py"
    with pytest.raises(RecipeError) as error:
        checked_recipe(Recipe(), f"{link}:Net", "2,4")
    assert str(error.value) == f"model file {link} is a named pipe (FIFO), not a regular .py file"
    with pytest.raises(RecipeError) as error:
        checked_recipe(Recipe(), f"{dangling}:Net", "2,4")
    assert str(error.value) == f"model file not found: {dangling}"
