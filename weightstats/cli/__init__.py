"""The ``weightstats`` command line.

Each subcommand lives in its own module of this package and exposes a click command named
``command``; :class:`_LazyGroup` imports a module only when its subcommand runs, so
``weightstats --help`` stays fast and a subcommand's heavy imports (torch, matplotlib) are paid
only by the command that needs them.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from typing import Any

import click

from ._common import fail

__all__ = ["main"]

#: subcommand name -> module (inside this package) that defines ``command``.
SUBCOMMANDS = {
    "analyze": "analyze",
    "clt": "clt",
    "demo": "demo",
    "experiment": "experiment",
    "latent": "latent",
    "vae": "vae",
}


class _LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use.

    Run as a program (click's standalone mode), a usage error anywhere below it (an unknown
    option or subcommand, a nonsense option value) is one stderr line and exit 2, like every
    other bad input, instead of click's three-line usage block.
    """

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as exc:  # a group called alone: its help
            click.echo(exc.ctx.get_help() if exc.ctx is not None else exc.format_message())
            sys.exit(0)
        except click.UsageError as exc:
            path = exc.ctx.command_path if exc.ctx is not None else "weightstats"
            fail(f"{exc.format_message()} (see '{path} --help')")
        except click.ClickException as exc:
            fail(exc.format_message(), code=exc.exit_code)
        except click.Abort:
            fail("aborted", code=1)
        sys.exit(code if isinstance(code, int) else 0)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(
            name
            for name, module in SUBCOMMANDS.items()
            if importlib.util.find_spec(f"{__name__}.{module}") is not None
        )

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = SUBCOMMANDS.get(cmd_name)
        if module is None or importlib.util.find_spec(f"{__name__}.{module}") is None:
            return None
        return importlib.import_module(f"{__name__}.{module}").command


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="weightstats")
def main() -> None:
    """Measure whether neural-network weights and VAE latents are Gaussian, and why.

    \b
    Exit codes: 0 done; 1 finished, but some inputs could not be analysed;
    2 bad input (the reason is printed as one line on stderr).
    """
