"""The swapbench command line: `swapbench run RECIPE`, `swapbench recipes list`, ...

One module per command group, each only parsing options and calling the module that does the work:
training (run, train, resume), evaluation (evaluate, leaderboard, compare, archive), sweep, figures (project,
figure), edit, recipes (recipes, registry, model, import-official), weights, score, bench, zoo and data
(datasets, sync). :mod:`swapbench.cli.common` holds the app and what several of them share.

A user mistake (bad recipe, unknown name, missing file) prints one line starting with ``error:`` and
exits with status 2; ``--debug`` adds the traceback. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import importlib
import signal
import sys
import traceback

import typer

from swapbench.cli.common import MULTI_PROCESS_COMMANDS, app, err  # noqa: F401
from swapbench.errors import UserError

# the command modules, in the order of `swapbench --help`; each registers its commands on the app when imported
COMMAND_MODULES = ("training", "evaluation", "sweep", "figures", "edit", "recipes", "data", "score", "weights",
                   "zoo", "bench", "ui", "swaps", "docs")
for _module in COMMAND_MODULES:
    importlib.import_module(f"swapbench.cli.{_module}")

try:  # recent typer releases vendor their own copy of click
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover - older typer on top of click
    from click import exceptions as click_exceptions


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: user errors exit 2 with one line, no traceback (unless --debug)."""
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    # a plain `kill` ends a run like Ctrl-C does: the MLflow run is marked KILLED, not left RUNNING
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        try:
            rv = app(args=argv, prog_name="swapbench", standalone_mode=False)
        finally:
            from swapbench.training.distributed import finish

            finish()  # leave the torchrun process group, if this process joined one
        sys.exit(rv if isinstance(rv, int) else 0)
    except (UserError, OSError) as exc:
        if isinstance(exc, OSError):  # a full or failing disk met by a writer that does not say it itself
            from swapbench.outputs import WRITE_ERRNOS, write_failed

            if exc.errno not in WRITE_ERRNOS:
                raise
            exc = write_failed(exc)
        if debug:
            traceback.print_exc()
        err.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
    except click_exceptions.NoArgsIsHelpError as exc:
        exc.ctx.get_help()  # typer prints the (rich) help itself
        sys.exit(0)
    except click_exceptions.ClickException as exc:  # usage errors: unknown option, missing argument
        if debug:
            traceback.print_exc()
        command = exc.ctx.command_path if getattr(exc, "ctx", None) is not None else "swapbench"
        err.print(f"error: {exc.format_message().rstrip('.')}; see `{command} --help`", markup=False, highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        err.print("interrupted", markup=False)
        sys.exit(130)


if __name__ == "__main__":
    main()
