"""``nntui export``: the script runs on its own and prints exactly ``nntui trace --json``'s losses."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from engine import Recipe
from engine.export import export_script
from tests.scripts import run_plain
from tui.cli import cli, main

RECIPES = {
    "tutorial": [],
    "ce-weighted-adam-zeros": [
        "--loss", "cross-entropy", "--class-weight", "7=5", "--optimizer", "adam",
        "--zero-grad", "zeros", "--seed", "4",
    ],
    "rmsprop-accumulate": ["--optimizer", "rmsprop", "--lr", "0.001", "--accumulate"],
    # 256 per batch: 8 batches an epoch, so 9 iterations cross into a reshuffled second epoch.
    "digits-ce-momentum-accumulate": [
        "--data", "digits", "--loss", "cross-entropy", "--optimizer", "momentum",
        "--batch-size", "256", "--accumulate", "--seed", "2",
    ],
    "digits-mse-manual-zeros": [
        "--data", "digits", "--optimizer", "manual", "--zero-grad", "zeros", "--lr", "0.1",
        "--batch-size", "256",
    ],
}  # fmt: skip


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # The script runs with OMP_NUM_THREADS=1 (below): trace, in this process, uses the same
    # thread count, so both pick the same kernels. Two shared cores gain nothing from more.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("name", RECIPES)
def test_exported_script_prints_the_trace_losses(name: str, tmp_path: Path) -> None:
    options = RECIPES[name]
    iterations = "9" if "digits" in name else "4"
    script = tmp_path / "loop.py"
    runner = CliRunner()
    out = runner.invoke(cli, ["export", *options, "--iterations", iterations, "-o", str(script)])
    assert out.exit_code == 0, out.output
    traced = runner.invoke(cli, ["trace", "--json", "--iterations", iterations, *options])
    assert traced.exit_code == 0, traced.output
    expected = [
        json.loads(line)["loss"]
        for line in traced.stdout.splitlines()
        if json.loads(line)["phase"] == "loss"
    ]
    assert len(expected) == int(iterations)
    # A plain python, from an empty directory, without this checkout on the path.
    ran = run_plain(script, tmp_path)
    assert ran.returncode == 0, ran.stderr
    printed = [float(line) for line in ran.stdout.splitlines()]
    assert printed == expected  # exact: print(float) writes every digit


def _imports(source: str) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add((node.module or "").split(".")[0])
    return names


@pytest.mark.parametrize("data", ["random", "digits"])
@pytest.mark.parametrize("accumulate", [False, True])
def test_script_imports_only_torch_and_numpy(data: str, accumulate: bool) -> None:
    recipe = Recipe(data=data, loss="cross-entropy", class_weights=((7, 2.0),))
    source = export_script(recipe, accumulate=accumulate, iterations=3)
    # Nothing of nntui: torch, numpy and (for the embedded digits) the standard library.
    assert _imports(source) <= {"torch", "numpy", "base64", "gzip", "io"}
    assert "class Net(nn.Module):" in source  # the model's own source, embedded
    loop = source[source.index("for iteration in range(1, iterations + 1):") :]
    if accumulate:
        assert "    # optimizer.zero_grad()  # skipped: gradients accumulate" in loop
    else:
        assert "    optimizer.zero_grad()\n" in loop


def test_digits_script_carries_the_data() -> None:
    import base64
    import re

    from engine.digits import DIGITS_PATH

    source = export_script(Recipe(data="digits"))
    blob = re.search(r'DIGITS_CSV_GZ = """\n(.*?)\n"""', source, re.S).group(1)
    assert base64.b64decode(blob.replace("\n", "")) == DIGITS_PATH.read_bytes()


@pytest.mark.parametrize(
    "args,start",
    [
        (["-o", "{tmp}/no/such/dir/x.py"], "nntui: error: cannot write"),
        (["-o", "{tmp}"], "nntui: error: Invalid value for '-o'"),
        ([], "nntui: error: Missing option '-o'"),
        (["--iterations", "-1", "-o", "{tmp}/x.py"], "nntui: error: Invalid value"),
    ],
)
def test_bad_export_is_one_line_exit_2(args, start, tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit:
        main(["export", *(a.format(tmp=tmp_path) for a in args)])
    assert exit.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(start), err
