"""The training engine, one concern per module (torchvision's segmentation reference is the model):

- `config`: `TrainConfig`, its rules and checks, `config_from_dict`, `config_mismatch`;
- `device`: `resolve_device` and the data-parallel set-up (`Place`, `place`, `wrap`);
- `step`: `make_loss`, `train_step` (the one training step; the benchmarks call it too),
  `evaluate`;
- `checkpoint`: the run folder, `Progress`, saving, resuming, `load_model`;
- `interrupt`: Ctrl-C stops at a step boundary and saves (`Interrupted`);
- `loop`: `train`, a short loop over the above, `train_or_load` and `RunResult`.

The command line is ctx/train.py (`python -m ctx.train`, `torchrun -m ctx.train`). Importing
this package loads nothing: import from the module that holds a name.
"""
