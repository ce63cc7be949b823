"""The engine is a pure library: importing it loads no UI package (checked in a fresh process)."""

import shutil
import subprocess
import sys
from pathlib import Path


def test_engine_imports_no_ui_packages() -> None:
    code = (
        "import sys, engine, engine.session, engine.jsonl, engine.codegen\n"
        "import pkgutil, importlib\n"
        "for m in pkgutil.iter_modules(engine.__path__):\n"
        "    importlib.import_module('engine.' + m.name)\n"
        "bad = [m for m in ('textual', 'rich', 'click', 'tui') if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_help_does_not_import_torch() -> None:
    code = (
        "import sys\n"
        "from tui.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print('TORCH' if 'torch' in sys.modules else 'CLEAN', file=sys.stderr)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "CLEAN" in out.stderr, out.stderr
    assert "Usage" in out.stdout


def test_import_linter_contract_is_kept() -> None:
    # The second guard (harlequin's): the contract in pyproject.toml, checked statically, so an
    # import hidden in a function body that the subprocess test never runs is caught too.
    exe = Path(sys.executable).with_name("lint-imports")
    cmd = str(exe) if exe.exists() else shutil.which("lint-imports")
    assert cmd, "import-linter is part of the test extra"
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([cmd], capture_output=True, text=True, cwd=root)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 kept, 0 broken" in out.stdout
