"""The one base class of user-facing errors."""


class VExpressError(Exception):
    """A problem the user can fix: bad input, or a file that is missing or unusable. The message is one line
    naming the file, the problem and the fix. Each command line catches this class once, prints the message
    and exits with status 2; a traceback means a bug."""
