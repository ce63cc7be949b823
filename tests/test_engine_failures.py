"""The one-line error a failing phase shows."""

from engine.failures import error_message


def test_an_empty_exception_message_is_named_once() -> None:
    assert error_message(AssertionError()) == "AssertionError"
    assert error_message(KeyboardInterrupt()) == "KeyboardInterrupt"
    assert error_message(ValueError("bad shape")) == "ValueError: bad shape"


def test_error_lines_survive_unreadable_coloured_and_huge_messages() -> None:
    from pathlib import Path

    from engine import Phase, PhaseError, Recipe, Session
    from engine.blame import MAX_MESSAGE, one_line
    from engine.failures import error_message

    class Coloured(Exception):
        pass

    # Colour codes and an OSC title sequence go; the words stay.
    assert one_line(Coloured("\x1b[31mred\x1b[0m and \x1b]0;title\x07plain")) == "red and plain"
    huge = one_line(RuntimeError("x" * 5000))
    assert len(huge) == MAX_MESSAGE and huge.endswith("…")
    assert error_message(KeyError()) == "KeyError"
    assert error_message(ValueError("bad value")) == "ValueError: bad value"

    # Through a phase: the error is one line naming the type, and the session is unchanged.
    model = f"{Path(__file__).parent / 'user_models.py'}:RaisesUnprintable"
    session = Session(Recipe(model=model, input_shape=(2, 4), target_shape=(2, 3)))
    session.run_next()  # define
    error = session.run_next()
    assert isinstance(error, PhaseError) and error.phase is Phase.FORWARD
    assert "its message could not be read: ValueError" in error.line()
    assert "\n" not in error.line() and session.done is Phase.DEFINE
