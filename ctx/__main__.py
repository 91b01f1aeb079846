"""`python -m ctx [--version]`: the version, and where the commands are."""

import argparse

from ctx import __version__
from ctx.validation import OneLineParser


def main(argv: list[str] | None = None) -> None:
    p = OneLineParser(
        prog="python -m ctx",
        description="Contextrast in PyTorch. Commands (each with --help):\n"
        "  python -m ctx.train        train one run (CE or Contextrast)\n"
        "  python -m ctx.evaluate     score a run or checkpoint on a split\n"
        "  python -m ctx.experiments  the studies: ablation, tuning, the regime study, its\n"
        "                             reports, reference runs and gallery",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"ctx {__version__}")
    p.parse_args(argv)
    p.print_help()


if __name__ == "__main__":
    main()
