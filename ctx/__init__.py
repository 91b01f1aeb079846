"""ctx — Contextrast (contextual contrastive learning for semantic segmentation) in PyTorch.

Modules: `data` (digit scenes), `model` (multi-stage segmentation net with projection heads),
`labels` (label checks and resizing), `anchors` and `losses` (CCL), `negatives` (BANE),
`metrics`, `train`, `plotting` and `widgets` (notebook helpers), `experiments`.
"""

__version__ = "0.1.0"
