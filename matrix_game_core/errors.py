"""The one user-facing exception type of the engine.

Every error a user can cause (a wrong file, a wrong mode, bad action JSON, a wrong image size, an
interrupted run) is raised as :class:`MatrixGameError` with the fix in the message, so that ComfyUI
(and the CLI) can show it as is.
"""


class MatrixGameError(Exception):
    """A problem with the user's input or files; ``str(err)`` says what went wrong and how to fix it."""


class MatrixGameInterrupted(MatrixGameError):
    """Generation was stopped on request (between blocks); no state is left half-written."""
