"""User-facing errors: one line that names the file and the cause; the CLI prints it and exits 1.

Anything raised as ``MmpipeError`` is an expected failure of the input (corrupt file, no speech,
wrong path). A batch job records its message and carries on with the next video.
"""

from __future__ import annotations


class MmpipeError(Exception):
    """An expected, explainable failure. ``str(err)`` is the one-line message shown to users."""

    transient = False  # batch retries only transient errors (I/O hiccups), never bad input

    def __init__(self, message: str, path: str | None = None):
        self.path = path
        super().__init__(f"{path}: {message}" if path else message)


class InputError(MmpipeError):
    """The input file itself is unusable (missing, not media, corrupt, empty, no speech)."""


class OutputError(MmpipeError):
    """The output location cannot be written (read-only, full, not a folder, ...)."""


class ModelError(MmpipeError):
    """A model or checkpoint cannot be loaded or does not fit the features."""


class TransientError(MmpipeError):
    transient = True


def first_line(err: BaseException) -> str:
    """A library's exception as one line for a message: its type and the first line of its text."""
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__
