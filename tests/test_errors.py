"""The one line an exception becomes in a message for the user."""

from __future__ import annotations

from nasplug.core.errors import one_line


def test_a_message_of_several_lines_becomes_one():
    assert one_line(ValueError("first\n   second\tthird ")) == "first second third"


def test_a_torch_backtrace_is_cut_off():
    e = RuntimeError("shapes do not match\nException raised from check at a.cpp:12 (frame 0 ...)")
    assert one_line(e) == "shapes do not match"


def test_a_message_less_error_is_its_type_with_or_without_the_type_asked_for():
    assert one_line(KeyboardInterrupt()) == "KeyboardInterrupt"
    assert one_line(RuntimeError(""), with_type=True) == "RuntimeError"


def test_the_type_comes_first_when_asked_for():
    assert one_line(KeyError("x"), with_type=True) == "KeyError: 'x'"
    assert (
        one_line(OSError(2, "No such file"), with_type=True)
        == "FileNotFoundError: [Errno 2] No such file"
    )


def test_a_long_message_is_cut_at_a_thousand_characters():
    assert one_line(ValueError("x" * 1000)) == "x" * 1000
    assert one_line(ValueError("x" * 5000)) == "x" * 1000 + " ..."
