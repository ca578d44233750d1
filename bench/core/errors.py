"""The project's exceptions: user mistakes, and numerical failures."""


class BenchError(Exception):
    """A user mistake: bad configuration, unreadable file, unknown name.

    The message names the thing that is wrong and how to fix it; the CLI prints
    it without a traceback and exits non-zero.
    """


class NonFiniteError(BenchError):
    """A numerical failure: a loss, gradient or sample became NaN or infinite.

    A run records it as the failure of that one cell and goes on with the
    others; any other exception that is not a :class:`BenchError` is a bug and
    stops the run.
    """
