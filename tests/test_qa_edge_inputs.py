"""QA: odd but legal input from the command line and from user model files.

Each case either runs and reports what plain PyTorch computes, or stops with one clear line
(exit 2 before anything runs, exit 1 for a failing phase), never with a traceback.
"""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn as nn

from tests.cli import nntui, usage_error
from tests.oracle import plain_losses
from tests.qa_edge_models import BOM, LATIN1, LATIN1_DECLARED, MODELS
from tests.scripts import run_plain


@pytest.fixture
def models(tmp_path: Path) -> str:
    path = tmp_path / "qa_edge_models.py"
    path.write_text(MODELS)
    return str(path)


def traced_losses(out: str) -> list[float]:
    return [json.loads(line)["loss"] for line in out.splitlines() if '"phase":"loss"' in line]


# ------------------------------------------------------------------ trace --json and stdout
def test_json_lines_stay_json_when_the_model_prints(
    models: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Was: "building Chatty" and "forward (2, 4)" on stdout between the JSON lines (the
    # import, the build, the dry forward at define and every forward), so `nntui trace --json
    # | jq` broke on the first print.
    factory = runpy.run_path(models)["Chatty"]
    expected = plain_losses(factory, (2, 4), (2, 3), 2)
    capsys.readouterr()
    code, out, err = nntui(
        capsys, "trace", "--json", "--iterations", "2", "--model", f"{models}:Chatty",
        "--input-shape", "2,4",
    )  # fmt: skip
    assert code == 0, err
    records = [json.loads(line) for line in out.splitlines()]  # every line is JSON
    assert len(records) == 11
    assert traced_losses(out) == expected
    # The prints are not lost: they are on stderr, in order.
    assert err.count("building Chatty") >= 1 and "forward (2, 4)" in err
    assert "to stderr" in err


def test_readable_trace_still_shows_the_model_prints(
    models: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = nntui(
        capsys, "trace", "--model", f"{models}:Chatty", "--input-shape", "2,4",
        "--target-shape", "2,3",
    )  # fmt: skip
    assert code == 0, err
    assert "forward (2, 4)" in out


# ------------------------------------------------------------------ models nntui cannot show
@pytest.mark.parametrize(
    "name,expected",
    [
        # Was: a traceback from the first record's statistics (float() of a complex sum).
        (
            "ComplexWeights",
            "ComplexWeights() from {}: parameter w is complex (torch.complex64); nntui shows "
            "real parameters only",
        ),
        # Was: a traceback from the step's SGD comparison in `trace`, and the app quit with
        # one (aminmax on a sparse gradient) when the accumulation view was drawn.
        (
            "SparseEmbedding",
            "SparseEmbedding() from {}: emb (Embedding) has sparse=True; nntui shows dense "
            "gradients only (use sparse=False)",
        ),
        # Was: exit 1 at define, "Tensor on device meta is not on the expected device cpu!".
        (
            "OnMeta",
            "OnMeta() from {}: parameter fc.weight is on the meta device (it has no values); "
            "build it on the CPU",
        ),
    ],
)
@pytest.mark.parametrize("command", ["trace", "trace --json", "export"])
def test_parameters_nntui_cannot_show_are_a_usage_error(
    models: str,
    name: str,
    expected: str,
    command: str,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    argv = [*command.split(), "--model", f"{models}:{name}", "--input-shape", "2,4"]
    if command == "export":
        argv += ["-o", str(tmp_path / "out.py")]
    assert usage_error(capsys, *argv) == expected.format(models)
    assert not (tmp_path / "out.py").exists()


# ------------------------------------------------------------------ models that run
def test_scalar_output_gets_a_scalar_target(
    models: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Was: "error in define: TypeError: randn() received an invalid combination of
    # arguments - got ()" (torch.randn(*()) for the inferred target shape ()).
    factory = runpy.run_path(models)["ScalarOut"]
    expected = plain_losses(factory, (2, 4), (), 3)
    code, out, err = nntui(
        capsys, "trace", "--json", "--iterations", "3", "--model", f"{models}:ScalarOut",
        "--input-shape", "2,4",
    )  # fmt: skip
    assert code == 0, err
    assert traced_losses(out) == expected
    # And the exported script writes the same target (it said torch.randn(), a TypeError).
    script = tmp_path / "loop.py"
    code, out, err = nntui(
        capsys, "export", "--iterations", "3", "--model", f"{models}:ScalarOut",
        "--input-shape", "2,4", "-o", str(script),
    )  # fmt: skip
    assert code == 0, err
    assert "target = torch.randn(())" in script.read_text()


def test_model_whose_deepcopy_raises_still_infers_its_target(
    models: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Was: "error in define: ValueError: this model cannot be copied" from the dry forward's
    # deepcopy, which fell back to the real model only for TypeError and RuntimeError.
    factory = runpy.run_path(models)["NoDeepcopy"]
    expected = plain_losses(factory, (2, 4), (2, 3), 2)
    code, out, err = nntui(
        capsys, "trace", "--json", "--iterations", "2", "--model", f"{models}:NoDeepcopy",
        "--input-shape", "2,4",
    )  # fmt: skip
    assert code == 0, err
    assert traced_losses(out) == expected


# ------------------------------------------------------------------ shapes and weights
@pytest.mark.parametrize(
    "argv,expected",
    [
        # Were exit 1 at define: "Storage size calculation overflowed with sizes=[...]".
        (
            ["--input-shape", "3037000500,3037000500"],
            "input-shape 3037000500,3037000500 has 9.22e+18 elements, more than a tensor can hold",
        ),
        (
            ["--model", "mlp", "--target-shape", "8,4294967296,4294967296"],
            "target-shape 8,4294967296,4294967296 has 1.48e+20 elements, more than a tensor "
            "can hold",
        ),
        # Was exit 1 at define: "value cannot be converted to type float without overflow".
        (
            ["--loss", "cross-entropy", "--class-weight", "3=1e300"],
            "class weight for class 3 is 1e+300, above the largest float32 (3.403e+38)",
        ),
    ],
)
@pytest.mark.parametrize("command", ["trace", "export"])
def test_sizes_and_weights_torch_cannot_hold_are_usage_errors(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    argv: list[str],
    expected: str,
    command: str,
) -> None:
    # export wrote a script that crashed at its first line of data.
    extra = ["-o", str(tmp_path / "out.py")] if command == "export" else []
    assert usage_error(capsys, command, *argv, *extra) == expected
    assert not (tmp_path / "out.py").exists()


def test_largest_float32_class_weight_is_accepted() -> None:
    from engine import Recipe

    top = float(torch.finfo(torch.float32).max)
    Recipe(loss="cross-entropy", class_weights=((3, top),)).validate()


# ------------------------------------------------------------------ model files
def test_a_directory_is_named_as_one(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    folder = tmp_path / "models.py"
    folder.mkdir()
    msg = usage_error(capsys, "trace", "--model", f"{folder}:Net", "--input-shape", "2,4")
    assert msg == f"model file {folder} is a directory, not a .py file"


def test_export_of_a_file_python_cannot_decode_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Was: a UnicodeDecodeError traceback (the source was read as UTF-8 for the script).
    path = tmp_path / "latin1.py"
    path.write_bytes(LATIN1)
    out = tmp_path / "out.py"
    msg = usage_error(
        capsys, "export", "--model", f"{path}:Net", "--input-shape", "2,4", "-o", str(out)
    )
    assert msg.startswith(f"cannot export {path}: cannot decode its text (")
    assert msg.endswith("); save it as UTF-8")
    assert not out.exists()


@pytest.mark.parametrize("source", [BOM, LATIN1_DECLARED], ids=["utf8-bom", "latin1-declared"])
def test_export_reads_the_file_as_python_does(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, source: bytes
) -> None:
    # Was: a SyntaxError traceback for the BOM (U+FEFF in the text given to ast.parse) and a
    # UnicodeDecodeError one for a declared latin-1 file.
    path = tmp_path / "model.py"
    path.write_bytes(source)
    factory = runpy.run_path(str(path))["Net"]
    expected = plain_losses(factory, (2, 4), (2, 3), 2)
    script = tmp_path / "loop.py"
    code, out, err = nntui(
        capsys, "export", "--iterations", "2", "--model", f"{path}:Net", "--input-shape", "2,4",
        "-o", str(script),
    )  # fmt: skip
    assert code == 0, err
    ran = run_plain(script, tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert [float(x) for x in ran.stdout.split()] == expected


# ------------------------------------------------------------------ where the output goes
ROOT = Path(__file__).parent.parent


def _run_nntui(*argv: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    kw.setdefault("timeout", 300)
    return subprocess.run([sys.executable, "-m", "tui", *argv], cwd=ROOT, text=True, **kw)


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize("json_flag", [["--json"], []])
def test_stdout_on_a_full_disk_is_one_line(json_flag: list[str]) -> None:
    # Was: an OSError traceback (ENOSPC) from the trace's write.
    with open("/dev/full", "w") as full:
        ran = _run_nntui("trace", *json_flag, stdout=full, stderr=subprocess.PIPE)
    assert (ran.returncode, ran.stderr) == (
        1,
        "nntui: error: cannot write the output: No space left on device\n",
    )


def test_closed_stdout_is_not_a_crash() -> None:
    # Was: AttributeError: 'NoneType' object has no attribute 'write' (Python sets
    # sys.stdout to None when fd 1 is closed at start).
    ran = _run_nntui(
        "trace", "--json", stderr=subprocess.PIPE, pass_fds=(), preexec_fn=lambda: os.close(1)
    )
    assert (ran.returncode, ran.stderr) == (0, "")


# ------------------------------------------------------------------ options before the command
@pytest.mark.parametrize(
    "argv",
    [
        ["--seed", "5", "--lr", "0.5", "--accumulate", "trace"],
        ["--seed", "5", "trace", "--lr", "0.5", "--accumulate"],
        ["--seed", "5", "trace", "--seed", "5", "--lr", "0.5", "--accumulate"],
    ],
)
def test_recipe_options_before_the_command_apply(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    # Was: click gave them to the group, which ignored them when a command followed: `nntui
    # --seed 5 trace` traced seed 0, `nntui --lr nan trace` ran, `nntui --model m.py:Net
    # export` wrote the tutorial's Net.
    from tests.oracle import tutorial_loop

    expected = [loss for _, phase, loss, _, _ in tutorial_loop(5, 0.5, 2, True) if phase == "loss"]
    code, out, err = nntui(capsys, *argv, "--json", "--iterations", "2")
    assert code == 0, err
    assert traced_losses(out) == expected


@pytest.mark.parametrize(
    "argv,expected",
    [
        (["--lr", "nan", "trace"], "lr must be a positive finite number, got nan"),
        (
            ["--seed", "5", "trace", "--seed", "6"],
            "--seed is given both before and after trace with different values: give it once",
        ),
        (
            ["--model", "mlp", "export", "--model", "lenet", "-o", "x.py"],
            "--model is given both before and after export with different values: give it once",
        ),
    ],
)
def test_bad_options_before_the_command_are_usage_errors(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str], expected: str
) -> None:
    argv = [str(tmp_path / a) if a == "x.py" else a for a in argv]
    assert usage_error(capsys, *argv) == expected
    assert not (tmp_path / "x.py").exists()


@pytest.mark.parametrize(
    "argv,expected",
    [
        # Were silently ignored: the run used other shapes than the ones asked for.
        (
            ["--data", "digits", "--input-shape", "2,1,32,32"],
            "--input-shape does not apply to --data digits: its batches are N×1×32×32 images "
            "and their labels (N: --batch-size)",
        ),
        (
            ["--data", "digits", "--target-shape", "16,10"],
            "--target-shape does not apply to --data digits: its batches are N×1×32×32 images "
            "and their labels (N: --batch-size)",
        ),
        (
            ["--batch-size", "8"],
            "--batch-size applies to --data digits; the random batch's size is the first size "
            "of --input-shape",
        ),
    ],
)
def test_options_the_data_ignores_are_usage_errors(
    capsys: pytest.CaptureFixture[str], argv: list[str], expected: str
) -> None:
    assert usage_error(capsys, "trace", *argv) == expected


# ------------------------------------------------------------------ names too long for a path
LONG = "a" * 5000


@pytest.mark.parametrize(
    "spec,expected",
    [
        (f"{LONG}:Net", f"cannot import {LONG}: "),
        (f"pkg.{LONG}:Net", f"cannot import pkg.{LONG}: "),
        (f"models/{LONG}.py:Net", f"model file models/{LONG}.py: File name too long"),
    ],
    ids=["bare", "module", "file"],
)
def test_a_model_name_too_long_for_a_path_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], spec: str, expected: str
) -> None:
    # Was: an OSError traceback (ENAMETOOLONG) from Path.is_file while parsing --model.
    assert usage_error(capsys, "trace", "--model", spec, "--input-shape", "2,4").startswith(
        expected
    )


def test_the_model_form_says_so_too() -> None:
    # The app's "model: your own…" form checks with the same code: it crashed the same way.
    from engine import Recipe
    from engine.recipe import RecipeError
    from tui.screens.model import checked_recipe

    with pytest.raises(RecipeError, match="^cannot import a+: "):
        checked_recipe(Recipe(), f"{LONG}:Net", "2,4")


# ------------------------------------------------------------------ export writes all or nothing
def _limit_file_size() -> None:
    # Files past 4 KB cannot grow (EFBIG), as on a full disk; the digits script is ~77 KB.
    import resource
    import signal

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))


@pytest.mark.parametrize("existing", [True, False], ids=["over-a-script", "new-file"])
def test_export_that_cannot_finish_leaves_nothing_half_written(
    tmp_path: Path, existing: bool
) -> None:
    # Was: open(path, "w") emptied the old script, 4 KB of the new one were written, and the
    # error left that cut-off script behind (or an empty new file).
    out = tmp_path / "loop.py"
    if existing:
        out.write_text("print('my old script')\n")
        out.chmod(0o640)
    ran = _run_nntui(
        "export", "--data", "digits", "-o", str(out),
        capture_output=True, preexec_fn=_limit_file_size,
    )  # fmt: skip
    assert (ran.returncode, ran.stdout) == (2, "")
    assert ran.stderr == f"nntui: error: cannot write {out}: File too large\n"
    if existing:
        assert out.read_text() == "print('my old script')\n"
        assert out.stat().st_mode & 0o777 == 0o640
    else:
        assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == (["loop.py"] if existing else [])


def test_export_replaces_a_script_keeping_its_mode_and_links(tmp_path: Path) -> None:
    real = tmp_path / "real.py"
    real.write_text("old\n")
    real.chmod(0o600)
    link = tmp_path / "loop.py"
    link.symlink_to(real.name)
    ran = _run_nntui("export", "--iterations", "2", "-o", str(link), capture_output=True)
    assert ran.returncode == 0, ran.stderr
    assert link.is_symlink() and "iterations = 2" in real.read_text()
    assert real.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["loop.py", "real.py"]


# ------------------------------------------------------------------ a loss autograd did not record
@pytest.mark.parametrize("name", ["NoGradForward", "IntegerOutput"])
def test_backward_of_a_loss_without_grad_fn_says_where_to_look(
    models: str, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Was torch's line alone ("element 0 of tensors does not require grad and does not have a
    # grad_fn"), which names the symptom in autograd's words, not the cause in the model.
    factory = runpy.run_path(models)[name]
    torch.manual_seed(0)
    net = factory()
    input, target = torch.randn(2, 4), torch.randn(2, 3)
    loss = nn.MSELoss()(net(input), target)
    assert loss.grad_fn is None
    with pytest.raises(RuntimeError) as plain:
        loss.backward()
    code, out, err = nntui(
        capsys, "trace", "--json", "--model", f"{models}:{name}", "--input-shape", "2,4",
        "--target-shape", "2,3",
    )  # fmt: skip
    assert code == 1 and "Traceback" not in err
    assert err.splitlines() == [
        f"error in backward: RuntimeError: {plain.value} (the loss has no grad_fn: no "
        "parameter that requires grad reached it; look for torch.no_grad(), .detach(), .data, "
        "a cast to an integer dtype or requires_grad=False in the model)"
    ]
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["phase"] for r in records] == ["define", "forward", "loss", "zero_grad"]
    assert records[2]["loss"] == loss.item()


# ------------------------------------------------------------------ names that look like markup
@pytest.mark.parametrize("accumulate", [[], ["--accumulate"]], ids=["zero-grad", "accumulate"])
def test_readable_trace_prints_names_that_look_like_markup_as_they_are(
    models: str, capsys: pytest.CaptureFixture[str], accumulate: list[str]
) -> None:
    # Was: rich.errors.MarkupError ("closing tag '[/]' ... has nothing to close") from the
    # diagnostics and the accumulation lines, which went through Rich markup unescaped.
    factory = runpy.run_path(models)["MarkupNames"]
    torch.manual_seed(0)
    net = factory()
    names = [name for name, _ in net.named_parameters()]
    code, out, err = nntui(
        capsys, "trace", "--iterations", "2", *accumulate, "--model", f"{models}:MarkupNames",
        "--input-shape", "2,4", "--target-shape", "2,3",
    )  # fmt: skip
    assert code == 0, err
    assert "vanishing: layers.[/].weight: " in out
    if accumulate:
        assert all(f"  {name}: grad ‖before‖=" in out for name in names)


# ------------------------------------------------------------------ the app without a terminal
def _app_with_stdout_in_a_file() -> tuple[int, str, str]:
    """``nntui`` (the app) with a pseudo-terminal on stdin and stderr and stdout in a pipe:
    ``(exit code, stdout, what the terminal showed)``."""
    import pty
    import select

    main_fd, tty_fd = pty.openpty()
    try:
        ran = subprocess.run(
            [sys.executable, "-m", "tui"],
            cwd=ROOT,
            stdin=tty_fd,
            stdout=subprocess.PIPE,
            stderr=tty_fd,
            text=True,
            timeout=60,
        )
        shown = b""
        while select.select([main_fd], [], [], 0.5)[0]:
            shown += os.read(main_fd, 65536)
    finally:
        os.close(tty_fd)
        os.close(main_fd)
    return ran.returncode, ran.stdout, shown.decode().replace("\r\n", "\n")


def test_the_app_with_stdout_in_a_file_says_it_needs_a_terminal() -> None:
    # Was: `nntui > log.txt` took Textual's 80×24 fallback size from stdout, the terminal then
    # reported its own size, and the app spun at 100% CPU on a blank screen.
    assert _app_with_stdout_in_a_file() == (
        2,
        "",
        "nntui: error: the app needs a terminal (stdout is not one); "
        "for a run without one, use nntui trace\n",
    )


def test_the_app_without_any_terminal_says_so() -> None:
    # Was: escape codes written into the pipe, then a wait for keys that never came (stdin
    # at /dev/null), until killed.
    ran = _run_nntui(stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
    assert (ran.returncode, ran.stdout) == (2, "")
    assert ran.stderr == (
        "nntui: error: the app needs a terminal (stdin, stdout and stderr are not one); "
        "for a run without one, use nntui trace\n"
    )
    # Bad options still come first: they are what to fix.
    ran = _run_nntui("--lr", "nan", stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
    assert ran.stderr == "nntui: error: lr must be a positive finite number, got nan\n"


# ------------------------------------------------------------------ deep grad_fn graphs
def test_json_of_a_graph_deeper_than_the_recursion_limit(
    models: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Was: RecursionError from json.dumps on the loss record's nested grad_fn tree (two
    # levels per node: 700 chained operations nest 1,400 deep), a traceback after 2 lines.
    factory = runpy.run_path(models)["LongChain"]
    expected = plain_losses(factory, (2, 4), (2, 3), 1)
    torch.manual_seed(0)
    net = factory()
    input, target = torch.randn(2, 4), torch.randn(2, 3)
    fn = nn.MSELoss()(net(input), target).grad_fn
    chain = []
    while fn is not None:
        chain.append(type(fn).__name__)
        fn = next((f for f, _ in fn.next_functions if f is not None), None)
    assert len(chain) > 700
    code, out, err = nntui(
        capsys, "trace", "--json", "--model", f"{models}:LongChain", "--input-shape", "2,4",
        "--target-shape", "2,3",
    )  # fmt: skip
    assert code == 0, err
    # Python's own decoder recurses too: reading this valid JSON needs a higher limit.
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(10_000)
    try:
        records = [json.loads(line) for line in out.splitlines()]
    finally:
        sys.setrecursionlimit(limit)
    assert [r["loss"] for r in records if r["phase"] == "loss"] == expected
    node = next(r for r in records if r["phase"] == "loss")["grad_fn"]
    traced = []
    while node is not None:
        traced.append(node["name"])
        node = next((c for c in node["children"] if c is not None), None)
    assert traced == chain


# ------------------------------------------------------------------ a module in the current folder
NNTUI_SCRIPT = Path(sys.executable).parent / "nntui"


@pytest.mark.skipif(not NNTUI_SCRIPT.exists(), reason="needs the installed nntui command")
def test_module_in_the_current_folder_says_why_it_is_not_found(tmp_path: Path) -> None:
    # The nntui command, unlike `python -m tui`, does not put the current folder on sys.path:
    # `--model mymodel:Net` next to mymodel.py said only "No module named 'mymodel'".
    (tmp_path / "mymodel.py").write_text("import torch.nn as nn\nNet = nn.Identity\n")
    ran = subprocess.run(
        [str(NNTUI_SCRIPT), "trace", "--model", "mymodel:Net", "--input-shape", "2,4"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    assert (ran.returncode, ran.stdout) == (2, "")
    assert ran.stderr == (
        "nntui: error: cannot import mymodel: ModuleNotFoundError: No module named 'mymodel' "
        "(mymodel is in the current folder, which is not on the import path: run with "
        "PYTHONPATH=. or give --model mymodel.py:Net)\n"
    )


@pytest.mark.parametrize("json_lines", [False, True])
def test_a_functional_sparse_gradient_is_one_line_at_backward(
    models: str, capsys: pytest.CaptureFixture[str], json_lines: bool
) -> None:
    # Was: "RuntimeError: self.is_sparse() INTERNAL ASSERT FAILED" traceback from the step's
    # SGD-vs-manual comparison, and the app died drawing the accumulation view (aminmax of a
    # sparse tensor). Like nn.Embedding(sparse=True) at define, it is refused in one line,
    # here at the backward that made it; forward and loss still equal plain PyTorch.
    factory = runpy.run_path(models)["FunctionalSparse"]
    torch.manual_seed(0)
    net = factory()
    input, target = torch.randn(2, 4), torch.randn(2, 3)
    loss = nn.MSELoss()(net(input), target)
    argv = ["--model", f"{models}:FunctionalSparse", "--input-shape", "2,4"]
    argv += ["--target-shape", "2,3", "--iterations", "2", *(["--json"] if json_lines else [])]
    code, out, err = nntui(capsys, "trace", *argv)
    assert code == 1
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "error in backward" in err and "table.grad is a sparse tensor" in err
    if json_lines:
        assert traced_losses(out) == [loss.item()]
