"""The command line (`numgru train | evaluate | predict | export | bench | info`): `commands` holds
the subcommands and the parser, `prep` the data preparation of a run, `grid` the benchmark
sizes it shares with benchmarks/."""

from .commands import build_parser, main

__all__ = ["main", "build_parser"]
