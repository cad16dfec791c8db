"""One line on stderr, whatever goes wrong: the command-line groups of both halves use it.

A command reports the errors it expects itself (a bad setting, an unreadable file) with a
message that says what to do. What reaches `OneLineGroup` unexpected still ends in one line
and exit status 1 -- a full disk or a missing permission named with its file, anything else as
an internal error to report -- instead of a traceback; `EDGECOND_DEBUG=1` shows the traceback.
"""

from __future__ import annotations

import errno
import os

import click

from .names import printable


def one_line(text: str, limit: int = 500) -> str:
    return printable(" ".join(str(text).split()), limit)


class OneLineGroup(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except click.UsageError as e:  # click would print the usage block above it: one line instead
            command = (e.ctx or ctx).command_path
            one = click.ClickException(one_line(f"{e.format_message()} (see: {command} --help)"))
            one.exit_code = e.exit_code
            raise one from None
        except click.ClickException as e:
            e.message = one_line(e.message)
            raise
        except (click.exceptions.Exit, click.Abort, SystemExit, KeyboardInterrupt):
            raise
        except Exception as e:  # noqa: BLE001 - the point of this class
            if os.environ.get("EDGECOND_DEBUG"):
                raise
            raise click.ClickException(describe(e)) from None


def describe(e: BaseException) -> str:
    """A one-line account of an error a command did not report itself."""
    from .locking import OutputLocked

    if isinstance(e, OutputLocked):  # expected, and its message says what to do
        return one_line(str(e))
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        return one_line(f"no space left to write {e.filename or 'the output'} ({e.strerror}); free some and rerun")
    if isinstance(e, OSError) and e.strerror:
        return one_line(f"{e.filename}: {e.strerror}" if e.filename else e.strerror)
    if isinstance(e, MemoryError):
        return "out of memory: the input asks for more than this machine has"
    first = str(e).splitlines()[0] if str(e) else ""
    return one_line(f"internal error ({type(e).__name__}: {first}); rerun with EDGECOND_DEBUG=1 for the "
                    "traceback and please report it")
