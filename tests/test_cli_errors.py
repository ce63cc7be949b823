"""Bad input never crashes: one line and exit 2 for bad options, ``error in <phase>:`` and exit 1
for a phase that fails, and what was printed before the failure stays printed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn

import engine.recipe
from engine import Phase, PhaseError, PhaseRecord, Recipe, Session
from tests.cli import nntui

USER = str(Path(__file__).parent / "user_models.py")
ROOT = Path(__file__).parent.parent


def one_error_line(code: int, out: str, err: str, expected_code: int) -> str:
    assert code == expected_code, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def write(tmp_path: Path, name: str, source: str) -> str:
    path = tmp_path / name
    path.write_text(source)
    return str(path)


# ------------------------------------------------------------------ exit 2: before anything runs
def _usage_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    code, out, err = nntui(capsys, "trace", *argv)
    line = one_error_line(code, out, err, 2)
    assert out == ""
    assert line.startswith("nntui: error: ")
    return line.removeprefix("nntui: error: ")


def test_missing_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    missing = tmp_path / "nope.py"
    msg = _usage_error(capsys, "--model", f"{missing}:Net", "--input-shape", "1,6")
    assert msg == f"model file not found: {missing}"


def test_file_with_a_syntax_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = write(tmp_path, "broken.py", "class Net(nn.Module:\n    pass\n")
    msg = _usage_error(capsys, "--model", f"{path}:Net", "--input-shape", "1,6")
    assert msg.startswith(f"cannot import {path}: SyntaxError: ")


def test_file_that_raises_on_import(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = write(tmp_path, "raises.py", "import torch\nraise KeyError('config')\n")
    msg = _usage_error(capsys, "--model", f"{path}:Net", "--input-shape", "1,6")
    assert msg == f"cannot import {path}: KeyError: 'config'"


def test_file_importing_a_missing_package(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = write(tmp_path, "deps.py", "import no_such_package_here\n")
    msg = _usage_error(capsys, "--model", f"{path}:Net", "--input-shape", "1,6")
    assert msg == (
        f"cannot import {path}: ModuleNotFoundError: No module named 'no_such_package_here'"
    )


def test_missing_name_lists_what_the_file_defines(capsys: pytest.CaptureFixture[str]) -> None:
    msg = _usage_error(capsys, "--model", f"{USER}:Nett", "--input-shape", "1,6")
    assert msg.startswith(f"{USER} has no 'Nett' (it defines: Healthy, make_healthy, Unused")


def test_factory_that_raises(capsys: pytest.CaptureFixture[str]) -> None:
    msg = _usage_error(capsys, "--model", f"{USER}:raises", "--input-shape", "1,6")
    assert msg == f"raises() from {USER} raised RuntimeError: factory failed on purpose"


def test_class_needing_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    msg = _usage_error(capsys, "--model", f"{USER}:Tiny", "--input-shape", "1,6")
    assert msg.startswith(f"Tiny() from {USER} raised TypeError: ")
    assert "scale" in msg


@pytest.mark.parametrize(
    "name,expected",
    [
        ("NotAModule", "NotAModule in {USER} is a class but not an nn.Module subclass"),
        ("returns_int", "returns_int() from {USER} returned int, not an nn.Module"),
        (
            "INSTANCE",
            "INSTANCE in {USER} is an nn.Module instance; give its class or a function that "
            "returns a new one",
        ),
        (
            "USER_CONSTANT",
            "USER_CONSTANT in {USER} is not an nn.Module class or a function returning one "
            "(it is str)",
        ),
        ("NoParams", "NoParams() from {USER} has no parameters to train"),
    ],
)
def test_not_an_nn_module(capsys: pytest.CaptureFixture[str], name: str, expected: str) -> None:
    msg = _usage_error(capsys, "--model", f"{USER}:{name}", "--input-shape", "1,6")
    assert msg == expected.format(USER=USER)


def test_lazy_module(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "lazy.py",
        "import torch.nn as nn\n\ndef make():\n    return nn.Sequential(nn.LazyLinear(3))\n",
    )
    msg = _usage_error(capsys, "--model", f"{path}:make", "--input-shape", "1,6")
    assert "lazy (uninitialized) parameters" in msg


@pytest.mark.parametrize(
    "spec,expected",
    [
        (
            "nope",
            "unknown model 'nope' (choose from lenet, mlp, resnet, or give path/to/file.py:NAME "
            "or package.module:NAME)",
        ),
        ("a:b:c", "model 'a:b:c' is not path/to/file.py:NAME or package.module:NAME"),
        (
            "model.py:",
            "model 'model.py:' is not path/to/file.py:NAME or package.module:NAME "
            "(NAME is a Python name)",
        ),
        (
            ":Net",
            "model ':Net' is not path/to/file.py:NAME or package.module:NAME "
            "(NAME is a Python name)",
        ),
        (
            "model.py:1Net",
            "model 'model.py:1Net' is not path/to/file.py:NAME or package.module:NAME "
            "(NAME is a Python name)",
        ),
        (
            "my-pkg.mod:Net",
            "model 'my-pkg.mod:Net' is not path/to/file.py:NAME or package.module:NAME",
        ),
    ],
)
def test_malformed_model_spec(capsys: pytest.CaptureFixture[str], spec: str, expected: str) -> None:
    assert _usage_error(capsys, "--model", spec, "--input-shape", "1,6") == expected


def test_module_that_cannot_be_imported(capsys: pytest.CaptureFixture[str]) -> None:
    msg = _usage_error(capsys, "--model", "no_such_pkg.models:Net", "--input-shape", "1,6")
    assert (
        msg
        == "cannot import no_such_pkg.models: ModuleNotFoundError: No module named 'no_such_pkg'"
    )


def test_module_without_the_name(capsys: pytest.CaptureFixture[str]) -> None:
    msg = _usage_error(capsys, "--model", "tests.user_models:Nope", "--input-shape", "1,6")
    assert msg == "tests.user_models has no 'Nope'"


@pytest.mark.parametrize(
    "option,value",
    [
        ("--input-shape", "1,a"),
        ("--input-shape", "0,3"),
        ("--input-shape", ""),
        ("--input-shape", "1,,3"),
        ("--target-shape", "x"),
        ("--target-shape", "-1"),
    ],
)
def test_malformed_shape(capsys: pytest.CaptureFixture[str], option: str, value: str) -> None:
    msg = _usage_error(capsys, option, value)
    assert msg == (
        f"Invalid value for '{option}': {value!r} is not a shape of positive sizes (e.g. 8,3,32,32)"
    )


def test_user_model_needs_an_input_shape(capsys: pytest.CaptureFixture[str]) -> None:
    msg = _usage_error(capsys, "--model", f"{USER}:Healthy")
    assert msg == f"--input-shape is needed for {USER}:Healthy"


@pytest.mark.parametrize(
    "argv,expected",
    [
        (["--loss", "hinge"], "Invalid value for '--loss': 'hinge' is not one of"),
        (["--optimizer", "lbfgs"], "Invalid value for '--optimizer': 'lbfgs' is not one of"),
        (["--num-classes", "0"], "Invalid value for '--num-classes': 0 is not in the range"),
        (["--model", "mlp", "--num-classes", "5"], "mlp has 10 outputs, not --num-classes 5"),
        (
            [
                "--model",
                f"{USER}:Healthy",
                "--input-shape",
                "4,6",
                "--loss",
                "mse",
                "--num-classes",
                "3",
                "--target-shape",
                "4,3",
            ],
            "give --num-classes or --target-shape for MSE, not both",
        ),
    ],
)
def test_bad_option_values(
    capsys: pytest.CaptureFixture[str], argv: list[str], expected: str
) -> None:
    assert _usage_error(capsys, *argv).startswith(expected)


def test_usage_errors_through_the_installed_entry_point() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "tui", "trace", "--model", "nope.py:X", "--input-shape", "1,2"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert (out.returncode, out.stdout, out.stderr) == (
        2,
        "",
        "nntui: error: model file not found: nope.py\n",
    )


# ------------------------------------------------------------------ exit 1: a phase fails
def _phase_error(
    capsys: pytest.CaptureFixture[str], *argv: str
) -> tuple[str, list[dict[str, object]]]:
    code, out, err = nntui(capsys, "trace", "--json", *argv)
    line = one_error_line(code, out, err, 1)
    return line, [json.loads(x) for x in out.splitlines()]


def test_shape_mismatch_names_the_layer_and_both_shapes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # What PyTorch itself says for this multiplication, for the tail of the line.
    with pytest.raises(RuntimeError) as torch_error:
        nn.Linear(400, 120)(torch.randn(1, 256))
    line, before = _phase_error(
        capsys, "--model", f"{USER}:WrongSize", "--input-shape", "1,16,4,4", "--num-classes", "120"
    )
    assert line == (
        f"error in forward: fc1 (Linear): input [1, 256] vs weight [120, 400]: {torch_error.value}"
    )
    assert [o["phase"] for o in before] == ["define"]


def test_shape_mismatch_while_inferring_the_target(capsys: pytest.CaptureFixture[str]) -> None:
    line, before = _phase_error(capsys, "--model", f"{USER}:WrongSize", "--input-shape", "2,256")
    assert line.startswith(
        f"error in define: cannot infer the target of {USER}:WrongSize from a forward on input "
        "[2, 256]: fc1 (Linear): input [2, 256] vs weight [120, 400]: "
    )
    assert before == []


def test_non_scalar_loss(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # No option makes a non-scalar loss; a criterion without reduction does.
    monkeypatch.setattr(
        engine.recipe, "make_criterion", lambda recipe, classes: nn.MSELoss(reduction="none")
    )
    line, before = _phase_error(capsys)
    assert line == "error in loss: loss must be a scalar tensor, got [1, 10]"
    assert [o["phase"] for o in before] == ["define", "forward"]


def test_nan_guard_on_the_loss_names_the_first_module(
    capsys: pytest.CaptureFixture[str],
) -> None:
    line, before = _phase_error(capsys, "--model", f"{USER}:NaNMiddle", "--input-shape", "4,6")
    assert line == (
        "error in loss: loss is nan (NaN guard): the step would poison every weight; "
        "first non-finite output: bad"
    )
    assert [o["phase"] for o in before] == ["define", "forward"]
    assert before[1]["diagnostics"][0]["kind"] == "nonfinite"
    assert before[1]["diagnostics"][0]["module"] == "bad"


def test_nan_guard_on_the_step(capsys: pytest.CaptureFixture[str]) -> None:
    line, before = _phase_error(capsys, "--model", f"{USER}:NaNGrad", "--input-shape", "4,6")
    assert line == "error in step: step made s non-finite (NaN guard)"
    assert [o["phase"] for o in before] == ["define", "forward", "loss", "zero_grad", "backward"]


def test_exception_in_user_forward(capsys: pytest.CaptureFixture[str]) -> None:
    line, before = _phase_error(
        capsys, "--model", f"{USER}:RaisesInBlock", "--input-shape", "4,6", "--num-classes", "6"
    )
    assert line == "error in forward: block (Boom): input [4, 6]: ValueError: boom in user code"
    assert len(before) == 1


def test_exception_in_user_backward(capsys: pytest.CaptureFixture[str]) -> None:
    line, before = _phase_error(capsys, "--model", f"{USER}:BadBackward", "--input-shape", "4,6")
    assert line == "error in backward: ValueError: custom backward refuses"
    assert [o["phase"] for o in before] == ["define", "forward", "loss", "zero_grad"]


def test_exception_in_the_factory_at_define(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # The CLI's early check builds the model once and succeeds; define builds it again.
    # The file is imported afresh for define, so count calls across imports in a file.
    counter = tmp_path / "count"
    path = write(
        tmp_path,
        "second.py",
        "import pathlib\nimport torch.nn as nn\n\n"
        f"COUNT = pathlib.Path({str(counter)!r})\n\n"
        "def make():\n"
        "    n = int(COUNT.read_text()) if COUNT.exists() else 0\n"
        "    COUNT.write_text(str(n + 1))\n"
        "    if n:\n        raise RuntimeError('only once')\n"
        "    return nn.Linear(6, 3)\n",
    )
    line, before = _phase_error(capsys, "--model", f"{path}:make", "--input-shape", "4,6")
    assert line == f"error in define: make() from {path} raised RuntimeError: only once"
    assert before == []


@pytest.mark.parametrize(
    "argv,expected",
    [
        (
            ["--target-shape", "4,5"],
            "error in loss: MSELoss: output [4, 3] vs target [4, 5]",
        ),
        (["--num-classes", "50"], "error in loss: IndexError: Target "),
    ],
    ids=["mse-shape", "class-out-of-range"],
)
def test_loss_that_cannot_be_computed(
    capsys: pytest.CaptureFixture[str], argv: list[str], expected: str
) -> None:
    line, before = _phase_error(capsys, "--model", f"{USER}:Healthy", "--input-shape", "4,6", *argv)
    assert line.startswith(expected)
    assert [o["phase"] for o in before] == ["define", "forward"]


def test_readable_trace_keeps_what_it_printed(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = nntui(capsys, "trace", "--model", f"{USER}:NaNGrad", "--input-shape", "4,6")
    line = one_error_line(code, out, err, 1)
    assert line == "error in step: step made s non-finite (NaN guard)"
    assert "iteration 1 · backward" in out and "nonfinite" in out


def test_phase_failure_through_the_installed_entry_point() -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "tui",
            "trace",
            "--json",
            "--model",
            f"{USER}:RaisesInBlock",
            "--input-shape",
            "4,6",
            "--num-classes",
            "6",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert out.returncode == 1
    assert out.stderr == (
        "error in forward: block (Boom): input [4, 6]: ValueError: boom in user code\n"
    )
    assert [json.loads(x)["phase"] for x in out.stdout.splitlines()] == ["define"]


# ------------------------------------------------------------------ the session after a failure
def test_a_failing_loss_leaves_the_session_as_it_was() -> None:
    s = Session(Recipe(model=f"{USER}:Healthy", input_shape=(4, 6), target_shape=(4, 5)))
    define, forward = s.run_next(), s.run_next()
    params = [p.detach().clone() for p in s.params]
    error = s.run_next()
    assert isinstance(error, PhaseError) and error.phase is Phase.LOSS
    assert s.records == [define, forward]
    assert s.next_phase is Phase.LOSS
    assert all(torch.equal(p, q) for p, q in zip(s.params, params))
    assert s.rewind(1) == 1 and s.next_phase is Phase.FORWARD
    assert isinstance(s.run_next(), PhaseRecord)


def test_existing_file_that_is_not_python(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Relative and without a slash: still the file, not a module named ``m``.
    (tmp_path / "m.txt").write_text("class Net: pass\n")
    monkeypatch.chdir(tmp_path)
    msg = _usage_error(capsys, "--model", "m.txt:Net", "--input-shape", "1,6")
    assert msg == "cannot import m.txt: not a Python source file"


@pytest.mark.parametrize("output", ["", "  "])
def test_export_to_an_empty_path(capsys: pytest.CaptureFixture[str], output: str) -> None:
    code, out, err = nntui(capsys, "export", "-o", output)
    line = one_error_line(code, out, err, 2)
    assert line == "nntui: error: -o/--output is empty: give the .py file to write"


def test_error_lines_leave_out_a_cpp_stack() -> None:
    from engine.blame import one_line

    exc = RuntimeError(
        "The size of tensor a (3) must match the size of tensor b (4)\n"
        "Exception raised from infer_size_impl at aten/src/ATen/ExpandUtils.cpp:31 (most "
        "recent call first):\nframe #0: c10::Error::Error(...) + 0x96 (0x7f in libc10.so)\n"
    )
    assert one_line(exc) == "The size of tensor a (3) must match the size of tensor b (4)"
    assert one_line(KeyError()) == "KeyError"
    assert one_line(ValueError("two\n  lines")) == "two lines"
