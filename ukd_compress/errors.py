"""The exceptions the CLI turns into one clear line and an exit code, never a traceback.

Standard library only: the CLI catches them without importing the training stack."""


class UserError(Exception):
    """Bad input from the user: the message says what is wrong and what to do."""


class CheckFailed(Exception):
    """A product check failed (e.g. ONNX parity): the CLI prints it and exits 1."""


class Interrupted(Exception):
    """Training stopped by Ctrl-C or SIGTERM after saving a resumable checkpoint (exit 130)."""
