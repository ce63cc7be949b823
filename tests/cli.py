"""Running the CLI in-process the way a test asks about it: exit code, stdout, stderr."""

from __future__ import annotations

import pytest

from tui.cli import main


def nntui(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_:
        main(list(argv))
    out, err = capsys.readouterr()
    return exit_.value.code, out, err


def usage_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """The message of the one-line usage error ``argv`` must give (exit 2, nothing on stdout,
    no traceback)."""
    code, out, err = nntui(capsys, *argv)
    assert (code, out) == (2, ""), err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("nntui: error: ")
    return lines[0].removeprefix("nntui: error: ")
