"""User-facing errors: one line that names the problem and the fix."""


class UserError(ValueError):
    """A mistake in the user's input (file, config, argument), not a bug.

    The command line prints the message alone and exits with status 2. It is a
    ``ValueError`` so library callers can treat every bad value alike.
    """


def warn(message: str) -> None:
    """A one-line warning for people on standard error: something was repaired or skipped."""
    import sys

    print(f"torchddsp: warning: {message}", file=sys.stderr)
