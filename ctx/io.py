"""Files a user keeps: checkpoints and results, written atomically (temp file + rename) and read
with clear errors. Nothing half-written ever replaces a good file."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch


def _atomic(path: Path, write) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
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
    """torch.load(weights_only=True) with errors that say what to do."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"no checkpoint at {path}: train first (python -m ctx.train --out {path.parent})"
        )
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated zip, pickle garbage, wrong file type
        raise ValueError(
            f"checkpoint {path} is corrupt or not a ctx checkpoint ({type(e).__name__}: {e}); "
            f"delete it and train again, or point to another file"
        ) from e
    if not isinstance(ckpt, dict) or "model" not in ckpt or "config" not in ckpt:
        raise ValueError(
            f"{path} is not a ctx checkpoint (no 'model'/'config' entries); point to another file"
        )
    return ckpt


def read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise
    except json.JSONDecodeError as e:
        raise ValueError(
            f"{path} is not valid JSON ({e}); restore it from git or regenerate it"
        ) from e
