"""Exception types that separate the user's mistakes from our bugs.

The CLI turns a :class:`UserInputError` into one line on stderr and exit code 2; anything
else is a bug and keeps its traceback.
"""


class CompressorError(Exception):
    """Base class for errors raised on purpose by compressor."""


class UserInputError(CompressorError, ValueError):
    """The input (an argument, a file, a config value) is wrong; the message says how to fix it."""


def one_line(exc: BaseException) -> str:
    """``Type: first line of the message``, for one-line errors that quote another error."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__
