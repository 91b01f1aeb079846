"""`python -m ctx [--version]`: the version, and where the commands are."""

from ctx import __version__
from ctx.validation import OneLineParser


def main(argv: list[str] | None = None) -> None:
    p = OneLineParser(
        prog="python -m ctx",
        description="Contextrast in PyTorch. Commands: python -m ctx.train --help (train one "
        "run), python -m ctx.experiments --help (ablation, tuning, reference runs).",
    )
    p.add_argument("--version", action="version", version=f"ctx {__version__}")
    p.parse_args(argv)
    p.print_help()


if __name__ == "__main__":
    main()
