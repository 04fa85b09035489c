"""Exception types that separate the user's mistakes from our bugs.

The CLI turns a :class:`UserInputError` into one line on stderr and exit code 2; anything
else is a bug and keeps its traceback.
"""


class CompressorError(Exception):
    """Base class for errors raised on purpose by compressor."""


class UserInputError(CompressorError, ValueError):
    """The input (an argument, a file, a config value) is wrong; the message says how to fix it."""
