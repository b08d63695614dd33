"""Command-line entry point: `python bench.py COMMAND ...` or `cnnbench COMMAND ...`.

The only place that prints user-facing errors and chooses exit codes. Each subcommand lives in
`cnnbench/commands/<name>.py` and exposes `HELP` (one line), `ORDER` (position in --help),
`add_arguments(parser)` and `run(args) -> int`, importing what it needs at its top. The CLI
reads every command's HELP and ORDER from the module's source (`command_infos`) and imports only
the command being run, so `bench.py --help` imports no command module and `bench.py show` none
of `run`'s machinery; no command module imports torch at import time.

Exit codes (one map for every command, `cnnbench.core.errors`): 0 success, 1 the work ran but
something measured is not ok (a failed case, a regression), 2 usage or input error, 130
interrupted.
"""

from __future__ import annotations

import argparse
import ast
import importlib
from dataclasses import dataclass
from pathlib import Path
import os
import signal
import sys

from cnnbench.core import terminal
from cnnbench.core.errors import EXIT_USAGE, UserError
from cnnbench.run import signals
import cnnbench.commands as pkg

__all__ = ["main", "entry", "build_parser", "command_infos", "CommandInfo"]


@dataclass(frozen=True)
class CommandInfo:
    """What --help says of a subcommand, read from its module's source without importing it."""

    name: str  # as typed: `history-baseline` for commands/history_baseline.py
    module: str  # dotted module name
    help: str
    order: int


def _literal(tree: ast.Module, name: str) -> object:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return ast.literal_eval(node.value)
    return None


def command_infos() -> list[CommandInfo]:
    """Every module of `cnnbench.commands` with a top-level `run` function and a literal `HELP`,
    in --help order (ORDER, then name)."""
    out = []
    for path in sorted(Path(pkg.__file__).parent.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        has_run = any(isinstance(n, ast.FunctionDef) and n.name == "run" for n in tree.body)
        help_text = _literal(tree, "HELP")
        if not has_run or not isinstance(help_text, str):
            continue
        order = _literal(tree, "ORDER")
        out.append(CommandInfo(path.stem.replace("_", "-"), f"{pkg.__name__}.{path.stem}", help_text,
                               order if isinstance(order, int) else 100))  # fmt: skip
    return sorted(out, key=lambda c: (c.order, c.module))


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The whole parser (argv None: every command's arguments, for docs and tests), or the one
    `argv` needs: every command listed, only the command being run imported and given its
    arguments."""
    parser = argparse.ArgumentParser(  # its usage errors already exit 2 with one line
        prog="bench.py",
        description="cnnbench: benchmark and profile CNN architectures (latency, throughput, "
        "FLOPs, parameters, memory, accuracy) across backends.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = argv[0] if argv else None
    for info in command_infos():
        if argv is not None and info.name != chosen:
            sub.add_parser(info.name, help=info.help)
            continue
        mod = importlib.import_module(info.module)
        p = sub.add_parser(info.name, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP))
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


# A command whose stdout was closed early (`bench.py history | head`) ends quietly with
# 128 + SIGPIPE, as `git log | head` does: no traceback, no "Exception ignored" at exit.
EXIT_PIPE = 128 + int(getattr(signal, "SIGPIPE", 13))


def _stdout_closed() -> int:
    """Point stdout at /dev/null (so the interpreter's last flush cannot fail again) and say
    the command ended on a closed pipe."""
    if getattr(sys.stdout, "wrapped", sys.stdout) is not sys.__stdout__:
        return EXIT_PIPE  # a stream of the caller's (a test's): its file descriptor is not ours
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.__stdout__.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass
    return EXIT_PIPE


def main(argv: list[str] | None = None) -> int:
    """Run one command; every byte it prints passes `core.terminal.guard` (data never reaches
    the terminal raw), and a closed stdout ends it quietly (EXIT_PIPE)."""
    unguard = terminal.guard(sys)
    try:
        code = _main(argv)
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        return _stdout_closed()
    except (Exception, SystemExit):
        # A library that met the closed pipe first and ended its own way (rich's console exits
        # 1 after pointing stdout at /dev/null): the same quiet end.
        if getattr(sys.stdout, "broken", False):
            return _stdout_closed()
        raise
    finally:
        unguard()


def _main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return EXIT_USAGE

    signals.reset()
    restore = signals.install()  # SIGTERM and SIGHUP end a command as Ctrl-C does
    try:
        code = int(args._run(args) or 0)
    except UserError as exc:
        head, *rest = exc.lines()
        print(f"error: {terminal.message_line(head)}", file=sys.stderr)
        for line in rest:  # an error that gathers several: each on its own line, each kept on it
            print(f"  {terminal.message_line(line.strip())}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:
        return _stdout_closed()
    except KeyboardInterrupt as exc:
        print("interrupted", file=sys.stderr)
        return signals.exit_code(getattr(exc, "signum", None) or signals.received())
    except Exception:
        # An error after a stop signal arrived is that signal's doing (e.g. a Ctrl-C inside a
        # module's import leaves it half-initialised, and the next import of it fails): the
        # command was interrupted, 128 + signal, never a traceback (seen under load).
        if signals.received() is None:
            raise
        print("interrupted", file=sys.stderr)
        return signals.exit_code(signals.received())
    finally:
        restore()
        signals.disarm()  # a signal met in the last import: received() below says it
    got = signals.received()
    if got is not None:  # a signal the command handled (a clean stop) or met while finishing
        return signals.exit_code(got)
    return code


def entry() -> None:
    """The console script and bench.py: `main`, then exit with its code (128+signal when a
    signal ended it, never a death by the signal itself, see cnnbench.run.signals)."""

    signals.entry(main)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
