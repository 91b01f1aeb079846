import dataclasses
import json
from pathlib import Path

import pytest
import torch

from ctx.analysis import confusion, predict
from ctx.data import NUM_CLASSES, DigitScenes
from ctx.engine.checkpoint import load_model
from ctx.engine.config import TrainConfig, config_from_dict, validate_config
from ctx.engine.device import resolve_device
from ctx.engine.loop import RunResult, train, train_or_load
from ctx.io import save_checkpoint
from ctx.train import parse_args
from ctx.validation import ConfigError


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_trains_and_writes_history(tiny_train_config):
    result = train(tiny_train_config)
    out = result.checkpoint.parent
    history = json.loads((out / "history.json").read_text())["history"]
    assert history and history[-1]["step"] == 6
    assert history == json.loads(json.dumps(result.history))  # the file is the run's record
    assert history[-1]["train"]["ce"] > 0
    model, ckpt = load_model(out)
    assert not model.training and ckpt["step"] == 6 and ckpt["history"] == result.history
    # the recorded validation mIoU is the loaded weights' on the same validation scenes
    val = tiny_train_config.digit_scenes("val")
    direct = confusion(predict(model, val.images), val.labels, NUM_CLASSES).summary()
    assert history[-1]["val"]["miou"] == pytest.approx(direct["miou"])


def test_same_seed_same_numbers(tiny_train_config, tmp_path):
    a = train(tiny_train_config)
    b = train(dataclasses.replace(tiny_train_config, out=str(tmp_path / "b")))
    for k, v in _state(a.model).items():
        torch.testing.assert_close(v, b.model.state_dict()[k], rtol=0, atol=0)


def test_resume_continues_as_if_uninterrupted(tiny_train_config, tmp_path, monkeypatch):
    """Ctrl-C mid-epoch saves a checkpoint; running again ends where an uninterrupted run ends."""
    cfg = dataclasses.replace(tiny_train_config, max_steps=10)  # 4 steps per epoch
    full = train(dataclasses.replace(cfg, out=str(tmp_path / "full")))
    part_cfg = dataclasses.replace(cfg, out=str(tmp_path / "part"))
    get_item, calls = DigitScenes.__getitem__, []

    def interrupting_get_item(self, i):  # Ctrl-C while loading the batch of step 7 (mid-epoch 2)
        calls.extend([i] if self.augment else [])
        if len(calls) == 6 * cfg.batch_size + 1:
            raise KeyboardInterrupt
        return get_item(self, i)

    monkeypatch.setattr(DigitScenes, "__getitem__", interrupting_get_item)
    with pytest.raises(KeyboardInterrupt):
        train(part_cfg)
    monkeypatch.setattr(DigitScenes, "__getitem__", get_item)
    assert torch.load(tmp_path / "part" / "checkpoint.pt", weights_only=True)["step"] == 6
    resumed = train(part_cfg)
    for k, v in _state(full.model).items():
        torch.testing.assert_close(v, resumed.model.state_dict()[k], rtol=0, atol=0)
    assert [h["step"] for h in resumed.history] == [h["step"] for h in full.history]


def test_contextrast_loss_trains(tiny_train_config):
    cfg = dataclasses.replace(
        tiny_train_config, loss="contextrast", negatives="random", max_steps=3
    )
    history = train(cfg).history
    assert history[-1]["train"]["pa"] > 0


def test_corrupt_checkpoint_is_reported_and_kept(tiny_train_config):
    out = tiny_train_config.out
    train(tiny_train_config)
    path = f"{out}/checkpoint.pt"
    with open(path, "wb") as f:
        f.write(b"not a checkpoint")
    with pytest.raises(ValueError, match="corrupt"):
        train(dataclasses.replace(tiny_train_config, max_steps=8))
    assert open(path, "rb").read() == b"not a checkpoint"


def test_a_one_step_warm_up_is_refused_before_a_step(tiny_train_config):
    """torch's OneCycleLR divides by zero when pct_start x steps is exactly 1."""
    with pytest.raises(ConfigError, match="change max_steps or pct_start"):
        train(dataclasses.replace(tiny_train_config, max_steps=4, pct_start=0.25))
    cfg = dataclasses.replace(tiny_train_config, epochs=1, pct_start=0.25)
    with pytest.raises(ConfigError, match=r"change epochs or pct_start \(1 epochs of 4 steps\)"):
        train(cfg)  # 32 scenes in batches of 8: 4 steps, known once the data are made
    assert not Path(cfg.out, "checkpoint.pt").exists()
    assert train(dataclasses.replace(cfg, pct_start=0.3)).history[-1]["step"] == 4


def test_a_run_never_reaches_the_next_seeds_loss_draws(tiny_train_config):
    """Each step reseeds the loss with seed x SEED_STRIDE + step x processes + rank, so seed s
    would draw what seed s + 1 draws if a run took more than SEED_STRIDE draws."""
    from ctx.engine.config import SEED_STRIDE, seed_stream_problem

    validate_config(dataclasses.replace(tiny_train_config, max_steps=SEED_STRIDE))
    with pytest.raises(ConfigError, match="<= 1000003, got 1000004 .*repeat the next seed's"):
        validate_config(dataclasses.replace(tiny_train_config, max_steps=SEED_STRIDE + 1))
    assert seed_stream_problem(SEED_STRIDE // 4, 4) is None  # 250,000 steps on 4 processes
    problem = seed_stream_problem(SEED_STRIDE // 4 + 1, 4)
    assert problem.startswith("250,001 steps on 4 process(es) draw 1,000,004 loss seeds")
    assert problem.endswith("lower --max-steps")
    cfg = dataclasses.replace(tiny_train_config, epochs=SEED_STRIDE // 4 + 1)
    with pytest.raises(ConfigError, match=r"^1,000,004 steps on 1 process\(es\).*lower --epochs$"):
        train(cfg)  # 32 scenes in batches of 8: 4 steps an epoch, known once the data are made
    assert not Path(cfg.out, "checkpoint.pt").exists()


def test_mismatched_checkpoint_is_refused(tiny_train_config):
    train(tiny_train_config)
    with pytest.raises(ValueError, match="other settings.*lr"):
        train(dataclasses.replace(tiny_train_config, lr=1e-4))


def test_other_length_is_refused_not_mixed(tiny_train_config):
    train(tiny_train_config)
    with pytest.raises(ValueError, match="finished run of 6 steps, not 8"):
        train_or_load(dataclasses.replace(tiny_train_config, max_steps=8))


def test_train_or_load_loads_a_finished_run(tiny_train_config):
    first = train(tiny_train_config)
    again = train_or_load(tiny_train_config)
    for k, v in _state(first.model).items():
        torch.testing.assert_close(v, again.model.state_dict()[k])


def test_checkpoint_write_is_atomic(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint({"model": {}, "config": {}}, path)
    good = path.read_bytes()

    class Boom:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        save_checkpoint({"model": Boom(), "config": {}}, path)
    assert path.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


def test_devices_and_cli():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in {"cpu", "cuda", "mps"}
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("tpu")
    cfg = parse_args(
        [
            "--loss",
            "contextrast",
            "--negatives",
            "random",
            "--no-fusion",
            "--stages",
            "3",
            "--max-steps",
            "7",
            "--tau",
            "0.2",
        ]
    )
    assert (cfg.loss, cfg.negatives, cfg.fusion, cfg.stages, cfg.max_steps, cfg.tau) == (
        "contextrast",
        "random",
        False,
        (3,),
        7,
        0.2,
    )
    assert parse_args([]) == TrainConfig()
    with pytest.raises(
        ValueError, match="unknown config key 'max_step' \\(did you mean 'max_steps'"
    ):
        config_from_dict({"max_step": 1})


def test_bad_settings(tiny_train_config):
    with pytest.raises(ValueError, match="loss must be one of ce, contextrast, got 'dice'"):
        train(dataclasses.replace(tiny_train_config, loss="dice"))
    with pytest.raises(ValueError, match="bf16"):
        train(dataclasses.replace(tiny_train_config, bf16=True))


def test_train_or_load_replays_a_loaded_run_to_its_callback(tiny_train_config):
    first = train_or_load(tiny_train_config)
    seen, replayed = [], []

    def on_epoch_end(model, entry):
        seen.append(entry)

    on_epoch_end.replay = replayed.append
    again = train_or_load(tiny_train_config, on_epoch_end)  # finished: loaded, not trained
    assert seen == [] and replayed == [first.history] and again.history == first.history
    assert isinstance(again, RunResult) and again.config is tiny_train_config
    assert again.checkpoint == first.checkpoint and again.num_classes == first.num_classes
