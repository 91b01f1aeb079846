"""Where the shipped data live: `data/` of a source checkout (or an editable install), or the
copy a wheel carries inside the package (`ctx/_data/`, mapped from `data/` by pyproject.toml)."""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent
_CHECKOUT = _HERE.parent  # the repository, when ctx is imported from a source tree


def data_dir() -> Path:
    """The folder holding mnist_5k.npz and reference/: the package's copy if it has one."""
    packaged = _HERE / "_data"
    return packaged if packaged.is_dir() else _CHECKOUT / "data"


def project_root() -> Path:
    """Where runs/ and results/ go by default: the repository when ctx runs from a checkout,
    else the current folder (an installed package must not write into site-packages)."""
    return _CHECKOUT if (_CHECKOUT / "pyproject.toml").is_file() else Path.cwd()


def portable(path: str | Path) -> str:
    """`path` relative to the project root when it lies inside it (for files that ship: no
    machine's absolute paths), else unchanged."""
    p = Path(path)
    try:
        return p.resolve().relative_to(project_root().resolve()).as_posix()
    except ValueError:
        return str(path)
