"""``nntui trace``: the JSON-lines contract against the oracle, and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.oracle import tutorial_loop


def _nntui(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tui", *args], capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("accumulate", [False, True])
def test_json_lines_match_plain_pytorch(accumulate: bool) -> None:
    args = ["trace", "--json", "--iterations", "2", "--seed", "3", "--lr", "0.05"]
    out = _nntui(*args, *(["--accumulate"] if accumulate else []))
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    expected = list(tutorial_loop(3, 0.05, 2, accumulate))
    assert len(lines) == len(expected) == 11
    for obj, (it, phase, loss, snap, _) in zip(lines, expected):
        assert obj["iteration"] == it and obj["phase"] == phase
        assert obj["skipped"] == (accumulate and phase == "zero_grad")
        assert obj["loss"] == loss
        assert obj["params"] == snap
        assert ("grad_fn" in obj) == (phase == "loss")
        assert isinstance(obj["diagnostics"], list)
    tree = lines[2]["grad_fn"]
    assert tree["name"] == "MseLossBackward0" and tree["children"][1] is None


def test_readable_trace_prints_like_the_tutorial() -> None:
    out = _nntui("trace", "--iterations", "1")
    assert out.returncode == 0, out.stderr
    text = out.stdout
    for needle in (
        "Net(",
        "(conv1): Conv2d(1, 6, kernel_size=(5, 5), stride=(1, 1))",
        "grad_fn=<MseLossBackward0>",
        "conv1.bias.grad before backward",
        "conv1.bias.grad after backward",
        "optimizer.step()",
    ):
        assert needle in text


@pytest.mark.parametrize(
    "args",
    [
        ["trace", "--lr", "-1"],
        ["trace", "--lr", "abc"],
        ["trace", "--iterations", "-2"],
        ["trace", "--loss", "hinge"],
        ["trace", "--class-weight", "seven"],
        ["trace", "--no-such-option"],
        ["nosuchcommand"],
    ],
)
def test_bad_options_exit_2_with_one_line(args: list[str]) -> None:
    out = _nntui(*args)
    assert out.returncode == 2
    assert out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nntui: error:")
    assert "Traceback" not in out.stderr
