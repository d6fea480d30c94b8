"""The one exception type that the CLI turns into a single line and exit code 2."""


class IrrepprobeError(Exception):
    """Bad input from the user: a missing file, a bad config value, an unknown name."""
