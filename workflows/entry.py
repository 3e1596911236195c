"""The console entry points (`userlm`, `simulate`) and how a command's failure becomes an exit code.

This module imports nothing heavy, so the Ctrl-C handling below is in place before the command modules load
(about 0.2 s): an interrupt at any moment exits 130 with one line, never a traceback."""

from __future__ import annotations

import os
import signal
import sys

INTERRUPTED = "interrupted: finished work is saved; run the same command again (with --resume) to continue"
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what a tool killed by a closed pipe exits with (`yes | head`)


def _say(line: str) -> None:
    try:
        print(line, file=sys.stderr)
    except OSError:  # stderr itself is a closed pipe
        pass


def _quiet_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's last flush at exit does not fail again on the closed
    pipe (the Python documentation's recipe for SIGPIPE, in signal's notes)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def exit_code(e: BaseException) -> int:
    """The exit code for a command that raised `e`, after one line on stderr: 2 for bad input (UserError) and
    any unknown error ("a bug", USERLM_TRACEBACK=1 shows it), 130 for Ctrl-C, 141 quietly for a closed pipe."""
    from userlm.io import UserError

    if isinstance(e, (SystemExit, GeneratorExit)):
        raise e
    if isinstance(e, KeyboardInterrupt):
        _say(INTERRUPTED)
        return 130
    if isinstance(e, BrokenPipeError):
        _quiet_stdout()
        return EXIT_BROKEN_PIPE
    if isinstance(e, UserError):
        _say(f"error: {one_line(str(e))}")
        return 2
    if os.environ.get("USERLM_TRACEBACK"):
        import traceback

        traceback.print_exception(e)
    elif isinstance(e, OSError) and e.filename is not None:
        _say(f"error: {e.filename}: {e.strerror or one_line(str(e))}")
    else:
        _say(f"error: unexpected {type(e).__name__}: {one_line(str(e))} (a bug; USERLM_TRACEBACK=1 shows where)")
    return 2


def one_line(text: str) -> str:
    return " ".join(text.split())[:500] or "(no message)"


def _exit_now(signum, frame) -> None:
    """Ctrl-C before the command runs: nothing is written yet, so leave at once. (The default handler's
    KeyboardInterrupt can land in an import-lock callback, where Python prints it and carries on.)"""
    os.write(2, b"interrupted\n")
    os._exit(130)


def interrupts_raise() -> None:
    """From here on (the command's own try block) Ctrl-C raises KeyboardInterrupt again, so that the command
    finishes what it must (closing files, the interrupted note) and exits 130."""
    if signal.getsignal(signal.SIGINT) is _exit_now:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _guarded(name: str, argv: list[str] | None) -> int:
    try:
        signal.signal(signal.SIGINT, _exit_now)
    except ValueError:  # not the main thread: the caller's handler stays
        pass
    try:
        from workflows import cli  # the heavy part: argparse, rich, yaml, the config modules

        return getattr(cli, name)(argv)
    except KeyboardInterrupt:  # while the modules load, or between the command and its own handler
        _say("interrupted")
        return 130
    except BrokenPipeError:
        _quiet_stdout()
        return EXIT_BROKEN_PIPE


def main(argv: list[str] | None = None) -> int:
    return _guarded("main", argv)


def simulate_main(argv: list[str] | None = None) -> int:
    return _guarded("simulate_main", argv)


if __name__ == "__main__":
    sys.exit(main())
