"""The one exception type the CLI turns into a clear line and exit code 2."""


class UserError(Exception):
    """Bad input from the user: the message says what is wrong and what to do."""


class CheckFailed(Exception):
    """A product check failed (e.g. ONNX parity): the CLI prints it and exits 1."""
