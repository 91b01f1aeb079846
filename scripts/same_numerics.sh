#!/usr/bin/env bash
# Do two commits train the same numbers? A study's runs must all use one version of the training
# numerics (README, "regime study"): run this before merging a change into a study that is running.
#   bash scripts/same_numerics.sh COMMIT_A COMMIT_B
# Trains a small ce and a small contextrast run at each commit (CPU, one thread, about a minute)
# and prints, per loss, whether every weight and buffer is bit-identical.
set -euo pipefail
repo="$(git rev-parse --show-toplevel)"
tmp="$(mktemp -d)"
trap 'for d in "$tmp"/tree_*; do git -C "$repo" worktree remove --force "$d" 2>/dev/null || true; done; rm -rf "$tmp"' EXIT
for side in a b; do
  commit=$([ "$side" = a ] && echo "$1" || echo "$2")
  git -C "$repo" worktree add -q --detach "$tmp/tree_$side" "$commit"
  (cd "$tmp/tree_$side" && PYTHONPATH="$tmp/tree_$side" OMP_NUM_THREADS=1 python - "$tmp/$side" <<'PY'
import sys

import torch

from pathlib import Path

# Choose by the tree's files, not by trying the import: an editable install of another checkout
# would otherwise supply ctx.engine to a commit from before it.
if Path("ctx/engine").is_dir():
    from ctx.engine.config import TrainConfig
    from ctx.engine.loop import train
else:
    from ctx.train import TrainConfig, train
import ctx

assert Path(ctx.__file__).resolve().parent == Path("ctx").resolve(), ctx.__file__

out = sys.argv[1]
for loss in ("ce", "contextrast"):
    cfg = TrainConfig(loss=loss, image_size=32, train_scenes=64, val_scenes=8, batch_size=8,
                      max_steps=24, widths=(8, 8, 16, 16), embed_dim=8, out=f"{out}/{loss}",
                      device="cpu", progress=False, threads=1)
    r = train(cfg)  # a RunResult; a dict before it
    state = (r.model if hasattr(r, "model") else r["model"]).state_dict()
    torch.save({k: v.clone() for k, v in state.items()}, f"{out}/{loss}.pt")
PY
  ) > "$tmp/log_$side" 2>&1 || { cat "$tmp/log_$side"; exit 1; }
done
python - "$tmp" <<'PY'
import sys

import torch

tmp = sys.argv[1]
for loss in ("ce", "contextrast"):
    a, b = torch.load(f"{tmp}/a/{loss}.pt"), torch.load(f"{tmp}/b/{loss}.pt")
    same = a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    print(loss, "bit-identical" if same else "DIFFERENT")
PY
