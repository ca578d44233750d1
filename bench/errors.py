"""The one exception type for user mistakes."""


class BenchError(Exception):
    """A user mistake: bad configuration, unreadable file, unknown name.

    The message names the thing that is wrong and how to fix it; the CLI prints
    it without a traceback and exits non-zero.
    """
