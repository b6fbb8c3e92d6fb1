"""The one base class of user-facing errors, and what their messages say of other errors."""

import math
import shutil
from pathlib import Path


class VExpressError(Exception):
    """A problem the user can fix: bad input, or a file that is missing or unusable. The message is one line
    naming the file, the problem and the fix. Each command line catches this class once, prints the message
    and exits with status 2; a traceback means a bug."""


class NoSpaceError(VExpressError):
    """A write that ran out of room on its disk."""

    def __init__(self, path: str | Path, needed_bytes: float):
        super().__init__(f"no space left on device while writing {path} ({math.ceil(needed_bytes / 1e6)} MB needed)")


def out_of_space(folder: str | Path, detail: str = "") -> bool:
    """Whether a write into `folder` that failed with `detail` (an error's or a tool's message) ran out of room:
    the message says so (safetensors and ffmpeg report ENOSPC only as text), or under 1 MiB is left there."""
    if "No space left on device" in detail:
        return True
    try:
        return shutil.disk_usage(folder).free < 2**20
    except OSError:
        return False


def first_line(error: BaseException, path: str | Path | None = None, limit: int = 200) -> str:
    """What a message quotes of a library's exception: "empty file" when `path` is a file of 0 bytes (libraries
    say little useful about one, torch.load raises an EOFError without a message), else the first non-empty line
    of the exception's message, cut to `limit` characters, or its class name when it has none."""
    try:
        if path is not None and Path(path).is_file() and Path(path).stat().st_size == 0:
            return "empty file"
    except OSError:  # unreadable metadata: the exception says more
        pass
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0][:limit] if lines else type(error).__name__


def one_line(error: BaseException) -> str:
    """What a front end that goes on after a failure (the web UI, batch generation) shows of it: a VExpressError's
    message, or for anything else (a bug, the device out of memory) its type and first line."""
    if isinstance(error, VExpressError):
        return str(error)
    return f"{type(error).__name__}: {(str(error).splitlines() or [''])[0][:300]}"
