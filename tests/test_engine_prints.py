"""What the user's code prints during a phase is kept on its record (the app's sessions),
or let through as it comes (the default, ``trace``'s)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from engine import Phase, PhaseError, PhaseRecord, Recipe, Session
from engine.userprints import MAX_CHARS, capture_prints, joined

MODELS = Path(__file__).parent / "user_models.py"


def _recipe(name: str) -> Recipe:
    return Recipe(model=f"{MODELS}:{name}", input_shape=(2, 4), target_shape=(2, 3))


def test_prints_of_define_forward_and_backward_are_kept_on_their_records(capsys) -> None:
    s = Session(_recipe("Chatty"), capture_prints=True)
    records = [s.run_next() for _ in range(6)]
    assert all(isinstance(r, PhaseRecord) for r in records), records
    by_phase = {r.phase: r for r in records}
    assert by_phase[Phase.DEFINE].user_output == "built Chatty\n"
    # stdout and stderr in the order written, escape codes removed.
    assert by_phase[Phase.FORWARD].user_output == "x: (2, 4)\nwarned\n"
    assert by_phase[Phase.BACKWARD].user_output == "backward sees (2, 3)\n"
    for phase in (Phase.LOSS, Phase.ZERO_GRAD, Phase.STEP):
        assert by_phase[phase].user_output == ""
    # The record's printed text: the user's lines first, then the tutorial's print(output).
    forward = by_phase[Phase.FORWARD]
    assert forward.printed.startswith("x: (2, 4)\nwarned\nprint(output)\ntensor(")
    out, err = capsys.readouterr()
    assert "Chatty" not in out and "x:" not in out and "warned" not in err


def test_rewind_recomputing_a_forward_prints_nothing_and_keeps_the_records(capsys) -> None:
    s = Session(_recipe("Chatty"), capture_prints=True)
    for _ in range(3):  # define, forward, loss
        s.run_next()
    forward = s.records[1]
    assert s.rewind(1) == 1  # back to after forward: the forward is recomputed
    assert s.rewind_error is None
    assert s.records[-1] is forward and forward.user_output == "x: (2, 4)\nwarned\n"
    out, err = capsys.readouterr()
    assert out == "" and err == ""


def test_a_failing_forward_keeps_what_it_printed_before_failing() -> None:
    s = Session(_recipe("ChattyThenFails"), capture_prints=True)
    s.run_next()
    error = s.run_next()
    assert isinstance(error, PhaseError)
    assert error.user_output == "before the bad line, x is (2, 4)\n"


def test_without_capture_prints_go_to_the_terminal_as_they_come(capsys) -> None:
    s = Session(_recipe("Chatty"))
    s.run_next()
    s.run_next()
    out, err = capsys.readouterr()
    assert out == "built Chatty\nx: (2, 4)\n"
    assert "warned" in err
    assert s.records[1].user_output == ""


def test_other_threads_print_through_while_a_phase_captures(capsys) -> None:
    sink: list[str] = []
    with capture_prints(sink):
        print("mine")
        t = threading.Thread(target=lambda: print("theirs"))
        t.start()
        t.join()
    assert joined(sink) == "mine\n"
    assert capsys.readouterr().out == "theirs\n"


def test_a_model_printing_without_end_keeps_the_last_characters() -> None:
    sink = [f"line {i}\n" for i in range(10_000)]
    text = joined(sink)
    assert text.endswith("line 9999\n")
    assert len(text) <= MAX_CHARS + 100
    head, _, rest = text.partition("\n")
    assert head.endswith("earlier characters not kept]")
    dropped = int(head.strip("[").split()[0])
    assert dropped + len(rest) == len("".join(sink))
    assert rest.startswith("line ")  # cut at a line boundary


@pytest.mark.parametrize("stream", ["stdout", "stderr"])
def test_the_streams_are_put_back(stream: str) -> None:
    import sys

    before = getattr(sys, stream)
    with capture_prints([]):
        assert getattr(sys, stream) is not before
    assert getattr(sys, stream) is before


def test_a_stream_kept_from_define_writes_into_the_phase_running_now(capsys) -> None:
    """A stream object the model kept at define (``self.out = sys.stdout`` in ``__init__``;
    a logging handler made at import) wrote into define's finished sink: the forward's
    prints were lost (and the sink grew for ever when the next phase's thread had the same
    id). And ``sys.stdout.buffer``, which Textual's streams lack, is kept as text too."""
    s = Session(_recipe("KeepsItsStream"), capture_prints=True)
    s.run_next()  # define: the model keeps the capturing stream
    forward = s.run_next()
    assert isinstance(forward, PhaseRecord), forward
    assert forward.user_output == "through the kept stream\nas bytes\n"
    s.setup.net.out.write("after the phase\n")  # outside a phase: where it went before
    assert "after the phase" in capsys.readouterr().out


def test_a_phase_printing_megabytes_holds_a_bounded_tail() -> None:
    """The sink kept every string until the phase ended (8 MB of prints held 69 MB); now
    it holds a bounded tail, and says the same as a sink that kept everything."""
    from engine.userprints import _HELD, Printed

    lines = [f"{i} {'x' * (i % 50)}\n" for i in range(50_000)]
    sink = Printed()
    with capture_prints(sink):
        for line in lines:
            print(line, end="")
            assert sum(map(len, sink)) <= _HELD + 60
    assert joined(sink) == joined(lines)


def test_bytes_written_to_the_descriptors_show_in_the_phase_that_wrote_them(capfd) -> None:
    """With the app's FdCapture installed, bytes C code or os.write put on descriptors 1 and 2
    (which the app's terminal is) join the phase's output after its Python prints; a rewind's
    recomputed forward shows them no more than its prints; the descriptors come back."""
    import os
    import sys

    from tui.fdcapture import FdCapture

    ino = os.fstat(1).st_ino, os.fstat(2).st_ino
    streams = sys.__stdout__, sys.__stderr__
    with FdCapture():
        assert sys.__stdout__ is not streams[0] and sys.__stdout__.fileno() not in (1, 2)
        s = Session(_recipe("WritesToDescriptors"), capture_prints=True)
        define, forward, loss = (s.run_next() for _ in range(3))
        os.write(2, b"between phases\n")
        assert s.rewind(1) == 1  # recomputes the forward
        again = s.run_next()
        os.write(1, b"after the last phase\n")
    assert (os.fstat(1).st_ino, os.fstat(2).st_ino) == ino
    assert (sys.__stdout__, sys.__stderr__) == streams
    assert isinstance(forward, PhaseRecord) and isinstance(again, PhaseRecord)
    assert forward.user_output == "python print\nraw to fd 1\nraw to fd 2\nprintf 7\n"
    assert define.user_output == loss.user_output == ""
    # Written while no phase ran: shown by the next phase, not dropped with the bytes of the
    # forward the rewind recomputed.
    assert again.user_output == "between phases\n"
    out, err = capfd.readouterr()
    # Nothing leaked to the descriptors meanwhile; what came after the last phase is
    # written to the terminal's stderr when the capture ends, not dropped.
    assert out == "" and err == "after the last phase\n"


def test_without_the_capture_descriptor_bytes_go_where_they_went(capfd) -> None:
    s = Session(_recipe("WritesToDescriptors"), capture_prints=True)
    s.run_next()
    forward = s.run_next()
    assert isinstance(forward, PhaseRecord) and forward.user_output == "python print\n"
    import ctypes

    ctypes.CDLL(None).fflush(None)
    out, err = capfd.readouterr()
    assert "raw to fd 1" in out and "printf 7" in out and "raw to fd 2" in err


def test_descriptor_bytes_of_a_failing_phase_are_on_its_error() -> None:
    from tui.fdcapture import FdCapture

    with FdCapture():
        s = Session(_recipe("WritesToDescriptorsThenFails"), capture_prints=True)
        s.run_next()
        error = s.run_next()
    assert isinstance(error, PhaseError)
    assert error.user_output == "raw before failing\n"


def test_a_writer_holding_the_interpreter_lock_cannot_stall_the_capture() -> None:
    """C code writing while it holds the GIL (ctypes.PyDLL keeps it) never waits for a reader:
    with a pipe, 300 KB filled it and the reader thread could not run to drain it."""
    import ctypes

    from tui.fdcapture import MAX_TAKEN, FdCapture

    data = b"x" * 299_999 + b"\n"
    with FdCapture() as capture:
        assert ctypes.PyDLL(None).write(1, data, len(data)) == len(data)
        # And only its newest MAX_TAKEN bytes are read (a phase keeps 20,000 characters).
        skipped = len(data) - MAX_TAKEN
        assert (
            capture.take() == f"[{skipped} earlier bytes not kept]\n" + "x" * (MAX_TAKEN - 1) + "\n"
        )


def test_the_capture_survives_what_writers_do_to_its_file() -> None:
    """A child emptying the file (``> /dev/stdout`` opens it again with O_TRUNC), a character
    split across two takes, and more than MAX_KEPT bytes over many takes (the read part is
    freed while offsets stay valid)."""
    import os
    import subprocess

    from tui.fdcapture import MAX_KEPT, FdCapture

    with FdCapture() as capture:
        before = b"before the child, more bytes than it and the next line write\n"
        os.write(1, before)
        assert capture.take() == before.decode()
        subprocess.run("echo from the child > /dev/stdout", shell=True, check=True)
        os.write(1, b"after\n")
        assert capture.take() == "from the child\nafter\n"
        euro = "€".encode()
        os.write(1, euro[:1])
        assert capture.take() == ""
        os.write(1, euro[1:] + b"\n")
        assert capture.take() == "€\n"
        line = b"y" * 1023 + b"\n"
        for _ in range(3 * MAX_KEPT // (64 * len(line))):
            os.write(1, line * 64)
            assert capture.take() == (line * 64).decode()
