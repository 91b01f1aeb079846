"""Files a user keeps: checkpoints and results, written atomically (temp file + rename) and read
with clear errors. Nothing half-written ever replaces a good file."""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch


def _file_mode() -> int:
    """The mode open() gives a new file (0o666 less the umask); mkstemp's is 0o600."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def _atomic(path: Path, write) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_checkpoint(obj: dict, path: str | Path) -> Path:
    """torch.save to `path` atomically."""
    return _atomic(Path(path), lambda f: torch.save(obj, f))


def write_json(data: Any, path: str | Path) -> Path:
    """Write JSON to `path` atomically (indent 2, NaN written as null)."""
    text = json.dumps(_nan_to_none(data), indent=2) + "\n"
    return _atomic(Path(path), lambda f: f.write(text.encode()))


def write_text(text: str, path: str | Path) -> Path:
    """Write UTF-8 text to `path` atomically."""
    return _atomic(Path(path), lambda f: f.write(text.encode()))


@contextlib.contextmanager
def locked(path: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on `path` (via `path.lock`) so that processes that read, change and
    rewrite the same file (e.g. two ablation workers) take turns. POSIX only; elsewhere a no-op."""
    try:
        import fcntl
    except ImportError:  # Windows: run one writer at a time
        yield
        return
    lock = Path(f"{path}.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _nan_to_none(x: Any) -> Any:
    if isinstance(x, float) and x != x:
        return None
    if isinstance(x, dict):
        return {k: _nan_to_none(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_nan_to_none(v) for v in x]
    return x


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """torch.load(weights_only=True) with errors that say what to do. A file we can't read
    (permissions) is told apart from a damaged one; only the latter is worth deleting. torch's
    own advice to retry with weights_only=False is never passed on: that runs the file's code."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"no checkpoint at {path}: train first (python -m ctx.train --out {path.parent})"
        )
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except IsADirectoryError as e:
        raise ValueError(f"checkpoint {path} is a folder, not a file: point to another file") from e
    except OSError as e:  # permissions, an I/O error: the file itself may be fine
        raise ValueError(
            f"can't read checkpoint {path} ({e.strerror or type(e).__name__}): fix its "
            f"permissions or point to another file"
        ) from e
    except Exception as e:  # truncated zip, pickle garbage, wrong file type
        raise ValueError(
            f"checkpoint {path} is corrupt or not a ctx checkpoint ({_why_unloadable(path, e)}); "
            f"delete it and train again, or point to another file"
        ) from e
    if not isinstance(ckpt, dict) or "model" not in ckpt or "config" not in ckpt:
        raise ValueError(
            f"{path} is not a ctx checkpoint (no 'model'/'config' entries); point to another file"
        )
    check_contents(ckpt, path)
    return ckpt


def check_contents(ckpt: dict, path: Path) -> None:
    """Raise ValueError (one line) unless the checkpoint's config is a dict and its model a
    state dict of finite tensors: NaN weights would otherwise be scored, or trained on."""
    model, config = ckpt["model"], ckpt["config"]
    if not isinstance(config, dict):
        what = f"its 'config' is {kind_of(config)}, not a dict of settings"
        raise ValueError(f"{path} is not a ctx checkpoint ({what}); point to another file")
    if not isinstance(model, dict) or not all(isinstance(v, torch.Tensor) for v in model.values()):
        kind = "a dict of other values" if isinstance(model, dict) else kind_of(model)
        what = f"its 'model' is {kind}, not a state dict of tensors"
        raise ValueError(f"{path} is not a ctx checkpoint ({what}); point to another file")
    bad = non_finite(model)
    if bad:
        floats = sum(v.is_floating_point() for v in model.values())
        raise ValueError(
            f"{path} holds non-finite weights (NaN or inf in {len(bad)} of {floats} tensors, "
            f"e.g. {bad[0]!r}): the file is damaged or its run diverged; delete it and train "
            f"again (with a lower --lr if it diverged), or point to another file"
        )


def kind_of(value: Any) -> str:
    """What a value is, for a message: 'an int', 'a list', 'null'."""
    name = "null" if value is None else type(value).__name__
    return name if value is None else ("an " if name[0] in "aeiou" else "a ") + name


def non_finite(state: dict[str, torch.Tensor]) -> list[str]:
    """The names of the floating-point tensors in `state` that hold a NaN or an infinity."""
    return [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]


def _why_unloadable(path: Path, error: Exception) -> str:
    """A short, safe reason a checkpoint failed to load (torch's text suggests weights_only=False,
    which would execute whatever the file holds)."""
    if not zipfile.is_zipfile(path):
        return "not a torch zip archive: truncated, or another kind of file"
    if isinstance(error, pickle.UnpicklingError):
        return "holds objects other than tensors and plain data, which are not loaded"
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return "damaged archive: " + first if "weights_only" not in first else "damaged archive"


def read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(
            f"{path} is not valid JSON ({e}); restore it from git or regenerate it"
        ) from e


# A results file's shape, as its readers index it: a type (or a tuple of types), [shape] for a
# list of such, {key: shape} for an object holding at least those keys.
NUMBER = (int, float)
_NAMES = {str: "a string", int: "an integer", NUMBER: "a number", dict: "an object", list: "a list"}
_PLURALS = {str: "strings", int: "integers", NUMBER: "numbers", dict: "objects", list: "lists"}


def read_results(path: str | Path, shape: Any, remake: str) -> Any:
    """`read_json(path)` if the data have `shape`, else ValueError in one line naming the file,
    what it should hold and the fix: git, or the command `remake` that writes it."""
    data = read_json(path)
    problem = shape_problem(data, shape)
    if problem:
        raise ValueError(
            f"{path} should hold {describe(shape)}, but {problem}: restore it from git or "
            f"regenerate it with `{remake}`"
        )
    return data


def shape_problem(value: Any, shape: Any, where: str = "") -> str | None:
    """Where `value` first departs from `shape` ("'runs' is an int"), or None."""
    name = f"'{where}'" if where else "it"
    if isinstance(shape, dict):
        if not isinstance(value, dict):
            return f"{name} is {kind_of(value)}"
        for key, inner in shape.items():
            if key not in value:
                return f"{name} has no {key!r}"
            if problem := shape_problem(value[key], inner, f"{where}.{key}" if where else key):
                return problem
        return None
    if isinstance(shape, list):
        if not isinstance(value, list):
            return f"{name} is {kind_of(value)}"
        problems = (shape_problem(v, shape[0], f"{where}[{i}]") for i, v in enumerate(value))
        return next((p for p in problems if p), None)
    if isinstance(value, bool) or not isinstance(value, shape):
        return f"{name} is {kind_of(value)}"
    return None


def describe(shape: Any, top: bool = True) -> str:
    """`shape` in words, one level deep: "an object with 'runs' (a list of objects)"."""
    if isinstance(shape, dict):
        if not top:
            return "an object"
        return "an object with " + ", ".join(
            f"{k!r} ({describe(v, False)})" for k, v in shape.items()
        )
    if isinstance(shape, list):
        inner = shape[0]
        return "a list of " + _PLURALS[dict if isinstance(inner, dict) else inner]
    return _NAMES[shape]
