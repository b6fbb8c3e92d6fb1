"""The one base class of user-facing errors."""


class VExpressError(Exception):
    """A problem the user can fix: bad input, or a file that is missing or unusable. The message is one line
    naming the file, the problem and the fix. Each command line catches this class once, prints the message
    and exits with status 2; a traceback means a bug."""


def one_line(error: BaseException) -> str:
    """What a front end that goes on after a failure (the web UI, batch generation) shows of it: a VExpressError's
    message, or for anything else (a bug, the device out of memory) its type and first line."""
    if isinstance(error, VExpressError):
        return str(error)
    return f"{type(error).__name__}: {(str(error).splitlines() or [''])[0][:300]}"
