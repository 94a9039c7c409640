"""User-facing errors: one line that names the problem and the fix."""


class UserError(ValueError):
    """A mistake in the user's input (file, config, argument), not a bug.

    The command line prints the message alone and exits with status 2. It is a
    ``ValueError`` so library callers can treat every bad value alike.
    """
