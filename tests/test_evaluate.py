"""python -m ctx.evaluate: the numbers a run reports, from its files alone."""

import json

import pytest
import torch

from ctx import evaluate
from ctx.analysis import confusion, predict
from ctx.data import NUM_CLASSES
from ctx.engine.loop import train


def test_evaluate_matches_the_runs_own_validation(tiny_train_config, capsys):
    result = train(tiny_train_config)
    last_val = result.history[-1]["val"]
    evaluate.main([tiny_train_config.out, "--split", "val", "--device", "cpu"])
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["split"] == "val" and out["scenes"] == tiny_train_config.val_scenes
    for key in ("miou", "boundary_miou", "pixel_acc"):
        assert out[key] == pytest.approx(last_val[key])
    test = evaluate.evaluate_run(tiny_train_config.out + "/checkpoint.pt", "test", scenes=8)
    assert test["scenes"] == 8
    # the first 8 test scenes, scored apart from evaluate_run: the same numbers
    scenes = tiny_train_config.digit_scenes("test", 8)
    pred = predict(result.model, scenes.images)
    direct = confusion(pred, scenes.labels, NUM_CLASSES).summary()
    for key in ("miou", "boundary_miou", "pixel_acc"):
        assert test[key] == pytest.approx(direct[key])
    assert test["miou"] != pytest.approx(last_val["miou"])  # not the validation scenes


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["no/such/run"], "no run or checkpoint at no/such/run"),
        (["tests"], "holds no checkpoint.pt or model.pt"),
    ],
)
def test_bad_paths_exit_with_one_line(args, words, capsys):
    with pytest.raises(SystemExit) as e:
        evaluate.main(args)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_bad_scene_count(tiny_train_config):
    train(tiny_train_config)
    with pytest.raises(ValueError, match="--scenes must be >= 1"):
        evaluate.evaluate_run(tiny_train_config.out, "test", scenes=0)


@pytest.mark.parametrize(
    "tamper, words",
    [
        (
            lambda c: c["model"].update({k: torch.zeros(1) for k in list(c["model"])[:1]}),
            "does not match",
        ),
        (lambda c: c["config"].update({"widths": [0]}), "holds a config no model can be built"),
        (lambda c: c.update({"num_classes": -3}), "num_classes must be an int >= 1"),
        (lambda c: c.pop("num_classes"), "holds a config no model can be built"),
    ],
)
def test_a_tampered_checkpoint_is_one_error_line(tiny_train_config, tmp_path, tamper, words):
    train(tiny_train_config)
    ckpt = torch.load(tiny_train_config.out + "/checkpoint.pt", weights_only=True)
    tamper(ckpt)
    torch.save(ckpt, tmp_path / "bad.pt")
    with pytest.raises(SystemExit) as exit_:
        evaluate.main([str(tmp_path / "bad.pt"), "--split", "val", "--device", "cpu"])
    msg = str(exit_.value.code)
    assert msg.startswith("error: ") and "\n" not in msg and words in msg and "retrain" in msg


@pytest.mark.parametrize(
    "tamper, words",
    [
        (
            lambda c: c["model"].update({k: v * float("nan") for k, v in c["model"].items()}),
            ["non-finite weights", "damaged or its run diverged", "train again"],
        ),
        (lambda c: c.update({"model": 5}), ["'model' is an int", "point to another file"]),
        (lambda c: c.update({"config": [1]}), ["'config' is a list", "point to another file"]),
    ],
)
def test_unusable_weights_are_refused_before_scoring(tiny_train_config, tmp_path, tamper, words):
    """NaN weights would be scored as if valid; the file is left as it was."""
    train(tiny_train_config)
    ckpt = torch.load(tiny_train_config.out + "/checkpoint.pt", weights_only=True)
    tamper(ckpt)
    torch.save(ckpt, tmp_path / "bad.pt")
    before = (tmp_path / "bad.pt").read_bytes()
    with pytest.raises(SystemExit) as exit_:
        evaluate.main([str(tmp_path / "bad.pt"), "--split", "val", "--device", "cpu"])
    msg = str(exit_.value.code)
    assert msg.startswith(f"error: {tmp_path / 'bad.pt'} ") and "\n" not in msg
    for word in words:
        assert word in msg
    assert (tmp_path / "bad.pt").read_bytes() == before
