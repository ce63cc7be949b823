"""QA: user model code that raises what ``except Exception`` misses (``sys.exit()``,
``KeyboardInterrupt``), and a user forward that fails only when a rewind recomputes it.

Whatever user code raises, the session stays consistent and the caller gets a ``PhaseError``
or a one-line exit-2 error; nothing escapes to kill the program."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from engine import Phase, PhaseError, PhaseRecord, Recipe, Session
from tests.qa_models import MODELS
from tui.cli import main


@pytest.fixture
def models(tmp_path: Path) -> str:
    path = tmp_path / "qa_models.py"
    path.write_text(MODELS)
    return str(path)


def recipe(models: str, name: str) -> Recipe:
    # --target-shape: no dry forward at define, so the first forward call is the forward phase.
    return Recipe(model=f"{models}:{name}", input_shape=(2, 4), target_shape=(2, 3))


@pytest.mark.parametrize(
    "name,kind", [("Exits", "SystemExit"), ("Interrupts", "KeyboardInterrupt")]
)
def test_forward_raising_a_base_exception_is_a_phase_error(
    models: str, name: str, kind: str
) -> None:
    s = Session(recipe(models, name))
    define = s.run_next()
    assert isinstance(define, PhaseRecord)
    error = s.run_next()
    assert isinstance(error, PhaseError)
    assert (error.phase, error.type) == (Phase.FORWARD, kind)
    assert s.records == [define] and s.next_phase is Phase.FORWARD


def test_trace_reports_sys_exit_in_forward_as_a_phase_error(
    models: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(
            [
                "trace",
                "--json",
                "--model",
                f"{models}:Exits",
                "--input-shape",
                "2,4",
                "--target-shape",
                "2,3",
            ]
        )
    _, err = capsys.readouterr()
    assert exit_.value.code == 1
    assert err.splitlines() == ["error in forward: net (Exits): input [2, 4]: SystemExit: 4"]


@pytest.mark.parametrize(
    "name,expected",
    [
        ("ExitsInInit", "ExitsInInit() from {} raised SystemExit: 0"),
        (
            "InterruptsInInit",
            "InterruptsInInit() from {} raised KeyboardInterrupt: KeyboardInterrupt",
        ),
    ],
)
def test_factory_raising_a_base_exception_is_a_usage_error(
    models: str, name: str, expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["trace", "--model", f"{models}:{name}", "--input-shape", "2,4"])
    out, err = capsys.readouterr()
    assert (exit_.value.code, out) == (2, "")
    assert err.splitlines() == ["nntui: error: " + expected.format(models)]


def test_module_interrupting_its_import_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "ki.py"
    path.write_text("raise KeyboardInterrupt\n")
    with pytest.raises(SystemExit) as exit_:
        main(["trace", "--model", f"{path}:Net", "--input-shape", "2,4"])
    _, err = capsys.readouterr()
    assert exit_.value.code == 2
    assert err.splitlines() == [
        f"nntui: error: cannot import {path}: KeyboardInterrupt: KeyboardInterrupt"
    ]


def test_rewind_whose_recomputed_forward_fails_changes_nothing(models: str) -> None:
    s = Session(recipe(models, "FailsOnSecondCall"))
    records = [s.run_next() for _ in range(3)]  # define, forward, loss
    assert all(isinstance(r, PhaseRecord) for r in records)
    loss, params = s.loss, [p.detach().clone() for p in s.params]
    assert s.rewind(1) == 0  # rebuilding the forward's graph calls forward a second time
    error = s.rewind_error
    assert isinstance(error, PhaseError) and error.phase is Phase.FORWARD
    assert error.message == "net (FailsOnSecondCall): input [2, 4]: second call"
    # Exactly as before the rewind: still after loss, same records, same live loss tensor.
    assert (s.done, s.next_phase, s.records) == (Phase.LOSS, Phase.ZERO_GRAD, records)
    assert s.loss is loss
    assert all(torch.equal(p, q) for p, q in zip(s.params, params))
    # The loop goes on from there (the third forward call works again).
    assert isinstance(s.run_next(), PhaseRecord)
    assert isinstance(s.run_next(), PhaseRecord)  # backward through the kept graph
    assert s.rewind(1) == 1 and s.rewind_error is None and s.done is Phase.ZERO_GRAD


def test_trace_exits_130_when_a_phase_is_interrupted(
    models: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # What ctrl-c in the middle of a phase looks like to trace: the phase's KeyboardInterrupt.
    with pytest.raises(SystemExit) as exit_:
        main(
            [
                "trace",
                "--json",
                "--model",
                f"{models}:Interrupts",
                "--input-shape",
                "2,4",
                "--target-shape",
                "2,3",
            ]
        )
    out, err = capsys.readouterr()
    assert exit_.value.code == 130
    assert err.splitlines() == [
        "error in forward: net (Interrupts): input [2, 4]: KeyboardInterrupt: KeyboardInterrupt"
    ]
    assert [json.loads(line)["phase"] for line in out.splitlines()] == ["define"]


# ------------------------------------------------------------------ option values (exit 2)
def _usage_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as exit_:
        main(["trace", *argv])
    out, err = capsys.readouterr()
    assert (exit_.value.code, out) == (2, ""), err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    return err.strip()


@pytest.mark.parametrize("seed", ["99999999999999999999", str(2**64), str(-(2**63) - 1)])
def test_seed_torch_cannot_take_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], seed: str
) -> None:
    # torch.manual_seed takes -2**63 .. 2**64-1; beyond it, define failed with exit 1.
    assert _usage_error(capsys, "--seed", seed) == (
        f"nntui: error: seed must be in -2**63..2**64-1 (what torch.manual_seed takes), got {seed}"
    )


@pytest.mark.parametrize("seed", [-(2**63), -1, 2**64 - 1])
def test_seeds_at_the_ends_of_the_range_run(seed: int) -> None:
    s = Session(Recipe(seed=seed))
    assert isinstance(s.run_next(), PhaseRecord)


@pytest.mark.parametrize(
    "argv,expected",
    [
        (["--loss", "cross-entropy", "--class-weight", "11=1"], "class 11, but classes are 0..9"),
        (["--loss", "cross-entropy", "--class-weight", "-1=2"], "class -1, but classes are 0..9"),
        (["--num-classes", "10", "--class-weight", "10=1"], "class 10, but classes are 0..9"),
        (
            ["--data", "digits", "--loss", "cross-entropy", "--class-weight", "10=3"],
            "class 10, but classes are 0..9",
        ),
        (
            ["--loss", "cross-entropy", "--class-weight", "3=nan"],
            "class 3 must be a finite number >= 0, got nan",
        ),
        (
            ["--loss", "cross-entropy", "--class-weight", "3=inf"],
            "class 3 must be a finite number >= 0, got inf",
        ),
        (
            ["--loss", "cross-entropy", "--class-weight", "3=-1"],
            "class 3 must be a finite number >= 0, got -1",
        ),
    ],
)
def test_class_weight_that_cannot_apply_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], argv: list[str], expected: str
) -> None:
    line = _usage_error(capsys, *argv)
    assert line.startswith("nntui: error: class weight for ") and line.endswith(expected), line


def test_export_refuses_a_class_weight_its_script_would_crash_on(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out = tmp_path / "x.py"
    with pytest.raises(SystemExit) as exit_:
        main(["export", "--loss", "cross-entropy", "--class-weight", "11=1", "-o", str(out)])
    assert exit_.value.code == 2 and not out.exists()


def test_class_weight_zero_is_fine(capsys: pytest.CaptureFixture[str]) -> None:
    # (0=0 would be NaN here: seed 0's single target is class 0 and the weighted mean is 0/0.)
    with pytest.raises(SystemExit) as exit_:
        main(["trace", "--json", "--loss", "cross-entropy", "--class-weight", "3=0"])
    assert exit_.value.code == 0


# ------------------------------------------------------------------ a forward that is no tensor
RETURNS = """
import torch.nn as nn


class Pair(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        y = self.fc(x)
        return y, y


class Named(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return {"out": self.fc(x)}
"""


@pytest.mark.parametrize(
    "name,argv,kind",
    [
        ("Pair", ["--num-classes", "3"], "tuple"),
        ("Named", ["--target-shape", "2,3"], "dict"),
        ("Named", ["--num-classes", "3"], "dict"),
    ],
)
def test_forward_returning_no_tensor_fails_at_forward_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, argv: list[str], kind: str
) -> None:
    # Was: ``error in loss: AttributeError: 'dict' object has no attribute 'shape'`` (our own
    # shape check tripping over it) or a TypeError from inside cross_entropy.
    path = tmp_path / "returns.py"
    path.write_text(RETURNS)
    with pytest.raises(SystemExit) as exit_:
        main(["trace", "--json", "--model", f"{path}:{name}", "--input-shape", "2,4", *argv])
    out, err = capsys.readouterr()
    assert exit_.value.code == 1
    assert err.splitlines() == [
        f"error in forward: net returned {kind}, not a tensor: the loss needs one output tensor"
    ]
    assert [json.loads(line)["phase"] for line in out.splitlines()] == ["define"]


@pytest.mark.parametrize(
    "argv,expected",
    [
        (["--data", "digits", "--batch-size", str(2**63)], "batch size must be 1..2**63-1"),
        (
            ["--model", "mlp", "--input-shape", f"{2**63},64"],
            "input-shape must be positive sizes below 2**63",
        ),
        (
            ["--model", "mlp", "--target-shape", f"8,{10**20}"],
            "target-shape must be positive sizes below 2**63",
        ),
    ],
)
def test_sizes_torch_cannot_take_are_usage_errors(
    capsys: pytest.CaptureFixture[str], argv: list[str], expected: str
) -> None:
    # Were: 'error in forward: ValueError: Stop argument for islice() ...' (our DataLoader
    # code) and 'error in define: TypeError: randn(): ... Overflow ... frame #0: c10::...'.
    line = _usage_error(capsys, *argv)
    assert line.startswith("nntui: error: ") and expected in line, line
