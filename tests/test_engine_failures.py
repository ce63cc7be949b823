"""The one-line error a failing phase shows."""

from engine.failures import error_message


def test_an_empty_exception_message_is_named_once() -> None:
    assert error_message(AssertionError()) == "AssertionError"
    assert error_message(KeyboardInterrupt()) == "KeyboardInterrupt"
    assert error_message(ValueError("bad shape")) == "ValueError: bad shape"
