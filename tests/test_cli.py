"""Bad settings fail before any data are made, with one `error: ...` line that names the flag;
flags that do nothing warn; checkpoints we can't use are described without unsafe advice."""

import copy
import dataclasses
import importlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ctx.engine import loop
from ctx.engine.config import RULES, TrainConfig, validate_config
from ctx.engine.loop import RunResult, train
from ctx.experiments.cli import TASK_OPTIONS
from ctx.io import load_checkpoint, save_checkpoint, write_json
from ctx.train import _parser, main
from ctx.validation import ConfigError

ctx_train = importlib.import_module("ctx.train")  # the module; ctx.train is the function

ROOT = Path(__file__).resolve().parents[1]

# argv -> (exit code, words the one line must hold). "{tmp}" is a fresh folder with the files
# of FILES in it.
CASES = {
    "out is a file": (["--out", "{tmp}/afile"], 1, ["--out", "is a file", "another --out"]),
    "out under a file": (["--out", "{tmp}/afile/run"], 1, ["can't write to --out", "Not a directory"]),
    "eval-every 0": (["--eval-every", "0"], 2, ["--eval-every", "integer >= 1", "got 0"]),
    "val-scenes 0": (["--val-scenes", "0"], 2, ["--val-scenes", ">= 1"]),
    "image-size 0": (["--image-size", "0"], 2, ["--image-size", ">= 1"]),
    "image-size below stride": (["--image-size", "8"], 2, ["--image-size 8", "at least 16"]),
    "embed-dim 0": (["--embed-dim", "0"], 2, ["--embed-dim", ">= 1"]),
    "threads -2": (["--threads", "-2"], 2, ["--threads", ">= 1", "leave it unset"]),
    "threads 0": (["--threads", "0"], 2, ["--threads", "got 0"]),
    "threads past int": (
        ["--threads", "99999999999999999999"], 2, ["--threads", "<= 1024", "leave it unset"],
    ),
    "workers past int": (["--num-workers", "99999999999999999999"], 2, ["--num-workers", "<= 1024"]),
    "seed past int": (
        ["--seed", "99999999999999999999"], 2, ["--seed", "< 8796093022208", "got 9999", "2**63"],
    ),
    "seed at its bound": (["--seed", str(2**43)], 2, ["--seed", "< 8796093022208"]),
    "epochs 0": (["--epochs", "0"], 2, ["--epochs", "got 0", "--max-steps"]),
    "max-steps 0": (["--max-steps", "0"], 2, ["--max-steps", ">= 1", "got 0"]),
    "batch of one 1x1 map": (
        ["--image-size", "16", "--batch-size", "1"], 2, ["--batch-size 1 at --image-size 16", "BatchNorm"],
    ),
    "one-step warm-up": (
        ["--max-steps", "4"], 2,
        ["--pct-start (default) 0.25 of 4 steps", "OneCycleLR", "change --max-steps"],
    ),
    "data-seed -1": (["--data-seed", "-1"], 2, ["--data-seed", ">= 0", "got -1"]),
    "lr nan": (["--lr", "nan"], 2, ["--lr", "> 0", "nan"]),
    "lr not a number": (["--lr", "fast"], 2, ["argument --lr", "invalid float", "--help"]),
    "unknown loss": (["--loss", "dice"], 2, ["argument --loss", "'dice'", "contextrast"]),
    "unknown flag": (["--learning-rate", "1"], 2, ["unrecognized", "--learning-rate"]),
    "two stage weights": (
        ["--loss", "contextrast", "--stage-weights", "1", "2"], 2,
        ["--stage-weights has 2 weights", "4 stages", "give 4 weights"],
    ),
    "three widths": (
        ["--loss", "contextrast", "--widths", "16", "32", "64"], 2,
        ["--stage-weights (default) has 4 weights", "--widths gives", "3 stages"],
    ),
    "stage out of range": (["--loss", "contextrast", "--stages", "4"], 2, ["--stages", "0 to 3"]),
    "fusion weights": (
        ["--loss", "contextrast", "--w-l", "0.5"], 2, ["--w-l + --w-h (default) must be 1"],
    ),
    "config widths, default stage weights": (
        ["--config", "{tmp}/two_stages.json", "--loss", "contextrast"], 2,
        ["--stage-weights (default) has 4 weights", "widths (in {tmp}/two_stages.json) gives the model 2 stages"],
    ),
    "config w_l, default w_h": (
        ["--config", "{tmp}/w_l.json", "--loss", "contextrast"], 2,
        ["w_l (in {tmp}/w_l.json) + --w-h (default) must be 1, got 0.4 + 0.7"],
    ),
    "batch above scenes": (["--batch-size", "64", "--train-scenes", "32"], 2, ["no full batch"]),
    "benchmark without root": (["--dataset", "camvid"], 2, ["--dataset camvid needs --data-root"]),
    "benchmark root missing": (
        ["--dataset", "camvid", "--data-root", "{tmp}/nowhere"], 1, ["--data-root", "not a folder"],
    ),
    "unknown device": (["--device", "tpu"], 2, ["--device", "cuda:N", "'tpu'"]),
    "bf16 on cpu": (["--bf16", "--device", "cpu"], 1, ["--bf16", "CUDA", "drop --bf16"]),
    "config missing": (["--config", "{tmp}/missing.json"], 2, ["--config", "no such file"]),
    "config a folder": (["--config", "{tmp}"], 2, ["--config", "is a folder"]),
    "config not JSON": (["--config", "{tmp}/broken.json"], 2, ["not valid JSON", "line 1"]),
    "config not an object": (["--config", "{tmp}/list.json"], 2, ["JSON object", "got a list"]),
    "config unknown key": (
        ["--config", "{tmp}/typo.json"], 2, ["unknown config key 'max_step'", "'max_steps'"],
    ),
    "config wrong type": (["--config", "{tmp}/string.json"], 2, ["lr (in", "a finite number", "'fast'"]),
    "config wrong list": (["--config", "{tmp}/widths.json"], 2, ["widths (in", "list of one or more integers"]),
    "config bool as text": (["--config", "{tmp}/fusion.json"], 2, ["fusion (in", "true or false"]),
    "unknown regime": (["--regime", "sparse"], 2, ["argument --regime", "'sparse'", "scarce"]),
    "regime then bad flag": (
        ["--regime", "scarce", "--train-scenes", "8"], 2, ["no full batch", "--train-scenes"],
    ),
    "regime's field breaks a flag": (
        ["--regime", "scarce", "--batch-size", "600"], 2,
        ["--batch-size 600", "train_scenes (from --regime scarce)"],
    ),
}  # fmt: skip
FILES = {
    "afile": "",
    "broken.json": '{"lr": 0.1',
    "list.json": "[1, 2]",
    "typo.json": '{"max_step": 10}',
    "string.json": '{"lr": "fast"}',
    "widths.json": '{"widths": 16}',
    "fusion.json": '{"fusion": "yes"}',
    "two_stages.json": '{"widths": [16, 32]}',
    "w_l.json": '{"w_l": 0.4}',
}
TINY = ["--image-size", "32", "--train-scenes", "16", "--val-scenes", "8", "--batch-size", "8",
        "--widths", "8", "8", "16", "16", "--embed-dim", "8", "--max-steps", "2"]  # fmt: skip


@pytest.fixture
def files(tmp_path):
    for name, text in FILES.items():
        (tmp_path / name).write_text(text)
    return tmp_path


@pytest.fixture
def no_data(monkeypatch):
    """Fail the test if a run gets as far as making its data."""

    def refuse(cfg):
        raise AssertionError("data were generated before the settings were checked")

    monkeypatch.setattr(loop, "make_datasets", refuse)


def _run_main(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    return exit_.value.code, capsys.readouterr().err


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_bad_input_is_one_error_line(case, files, no_data, capsys):
    argv, code, words = CASES[case]
    argv = [a.replace("{tmp}", str(files)) for a in argv]
    if "--out" not in argv:
        argv += ["--out", str(files / "run")]
    if "--device" not in argv:
        argv += ["--device", "cpu"]
    got, err = _run_main(argv + ["--no-progress"], capsys)
    lines = err.strip().splitlines()
    assert got == code, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for word in words:
        assert word.replace("{tmp}", str(files)) in lines[0]


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--eval-every", "0"], "--eval-every must be an integer >= 1"),
        (["--config", "{tmp}/broken.json"], "is not valid JSON"),
    ],
)
def test_cli_errors_have_no_traceback(argv, words, files):
    argv = [a.replace("{tmp}", str(files)) for a in argv]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "ctx.train", *argv], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert words in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "module, argv, words",
    [
        ("ctx.evaluate", ["run", "--split", "bogus"], ["argument --split", "'bogus'", "'test'"]),
        ("ctx.evaluate", [], ["required: run"]),
        ("ctx.__main__", ["--bogus"], ["unrecognized arguments: --bogus"]),
        ("ctx.experiments.cli", ["bogus"], ["argument task", "'regimes'"]),
        (
            "ctx.experiments.cli",
            ["regimes", "--regimes", "nope"],
            ["argument --regimes", "'res128'"],
        ),
    ],
)
def test_every_cli_reports_a_bad_flag_in_one_line(module, argv, words, capsys):
    """Not argparse's usage block: one line that names the flag and points to --help."""
    main_of = importlib.import_module(module).main
    with pytest.raises(SystemExit) as exit_:
        main_of(argv)
    err = capsys.readouterr().err.strip()
    prog = module.removesuffix(".cli").removesuffix(".__main__")
    assert exit_.value.code == 2 and err.splitlines() == [err], err
    assert err.startswith("error: ") and f"python -m {prog} --help" in err
    for word in words:
        assert word in err


def test_experiments_report_without_an_ablation_names_the_command(tmp_path, capsys):
    from ctx.experiments.cli import main as experiments

    with pytest.raises(SystemExit) as exit_:
        experiments(["report", "--results-dir", str(tmp_path)])
    assert (
        exit_.value.code
        == f"error: no {tmp_path / 'ablation.json'}: run `python -m ctx.experiments ablation` first"
    )


# task -> (file under the results folder, what it holds, words of the one error line)
BAD_RESULTS = {
    "report: runs not a list": (
        ["report"], "ablation.json", {"runs": 5}, ["'runs' (a list of objects)", "'runs' is an int"],
    ),
    "report: a list": (["report"], "ablation.json", [], ["should hold an object", "it is a list"]),
    "report: a run without miou": (
        ["report"], "ablation.json",
        {"runs": [{"variant": "ce", "seed": 0}], "dataset": {"test_scenes": 8}, "command": "c"},
        ["'runs[0]' has no 'miou'", "`python -m ctx.experiments ablation`"],
    ),
    "regimes --report-only": (
        ["regimes", "--report-only"], "regimes.json", {"runs": {}}, ["'runs' is a dict"],
    ),
    "diagnose --report-only": (
        ["diagnose", "--report-only"], "regimes/diagnosis.json", {"runs": []}, ["'runs' is a list"],
    ),
    "mechanisms --report-only": (
        ["mechanisms", "--report-only"], "regimes/mechanisms.json", [], ["it is a list"],
    ),
    "error-kinds --report-only": (
        ["error-kinds", "--report-only"], "regimes/error_kinds.json", {"regimes": 5},
        ["'regimes' is an int"],
    ),
    "gallery's manifest": (
        ["gallery", "--out", "{tmp}/results"], "manifest.json", {"runs": [{"regime": "x"}]},
        ["'runs[0]' has no 'variant'", "`python -m ctx.experiments gallery`"],
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", BAD_RESULTS, ids=list(BAD_RESULTS))
def test_a_results_file_of_the_wrong_shape_is_one_line_and_kept(case, tmp_path, capsys):
    from ctx.experiments.cli import main as experiments

    argv, name, data, words = BAD_RESULTS[case]
    results = tmp_path / "results"
    write_json(data, results / name)
    before = (results / name).read_bytes()
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    with pytest.raises(SystemExit) as exit_:
        runs = ["--runs-dir", str(tmp_path / "runs")] if "runs_dir" in TASK_OPTIONS[argv[0]] else []
        experiments([*argv, "--results-dir", str(results), *runs])
    msg = str(exit_.value.code)
    assert msg.startswith(f"error: {results / name} should hold ")
    assert "\n" not in msg and "restore it from git or regenerate it with `python -m" in msg
    for word in words:
        assert word in msg, msg
    assert (results / name).read_bytes() == before


def test_an_option_the_task_does_not_read_is_refused_before_anything_runs(tmp_path):
    from ctx.experiments.cli import main as experiments

    argv = ["--results-dir", str(tmp_path / "r"), "--runs-dir", str(tmp_path / "runs")]
    for task, extra, flag in (
        ("regimes", ["--seeds", "9"], "--seeds"),  # the study fixes its seeds: it trained all
        ("regimes", ["--steps=50"], "--steps"),  # each regime fixes its steps
        ("gallery", ["--report-on"], "--report-only"),  # an abbreviation is the option it names
        ("error-kinds", ["--quick"], "--quick"),
    ):
        with pytest.raises(SystemExit) as exit_:
            experiments([task, *argv, *extra])
        msg = str(exit_.value.code)
        assert msg.startswith(f"error: {flag} does nothing for `{task}` (it reads --"), msg
        assert msg.endswith("): drop it") and "\n" not in msg
    assert not (tmp_path / "r").exists() and not (tmp_path / "runs").exists()


def test_every_documented_experiments_command_passes_the_option_check():
    """Each `python -m ctx.experiments TASK ...` in the README, docs, notebooks, the library's
    docstrings and messages, results and shipped manifests (the commands that made the files)
    sets only options its task reads."""
    import re

    from ctx.experiments.cli import unread_option
    from ctx.resources import project_root

    root = project_root()
    files = [root / "README.md", *root.glob("docs/*.md"), *root.glob("notebooks/*.ipynb")]
    files += [*root.glob("ctx/**/*.py"), *root.glob("scripts/*")]
    files += [
        *root.glob("results/**/*.json"),
        *root.glob("results/**/*.md"),
        *root.glob("data/*/manifest.json"),
    ]
    seen = 0
    for path in files:
        text = path.read_text()
        for m in re.finditer(r"python -m ctx\.experiments ([a-z-]+)([^`\"|#)\n\\]*)", text):
            task, rest = m.groups()
            if task not in TASK_OPTIONS:  # "TASK [options]" in the module's doc
                continue
            given = {f[2:].replace("-", "_") for f in re.findall(r"--[a-z][a-z-]*", rest)}
            assert unread_option(task, given) is None, f"{path.name}: {m.group(0)}"
            seen += 1
    assert seen > 80  # the README, PROTOCOL.md, the library and the manifests hold dozens


def test_python_api_validates_first(tiny_train_config, no_data):
    for bad in ({"eval_every": 0}, {"threads": 0}, {"epochs": 0}, {"lr": "0.1"}, {"widths": ()}):
        with pytest.raises(ConfigError):
            train(dataclasses.replace(tiny_train_config, **bad))
    validate_config(tiny_train_config)


def test_every_field_has_a_rule_and_a_help_line():
    names = [f.name for f in dataclasses.fields(TrainConfig)]
    assert sorted(RULES) == sorted(names), "add a rule for each new TrainConfig field"
    helps = {a.dest: a.help for a in _parser()._actions if a.dest != "help"}
    for name in names:
        assert "default:" in helps[name] and "\n" not in helps[name]
        if RULES[name].choices:
            assert "choices: " + ", ".join(RULES[name].choices) in helps[name]
    assert "default:" in helps["config"]
    validate_config(TrainConfig())  # the defaults pass their own rules


def test_regime_is_a_base_that_config_and_flags_override(files):
    from ctx.experiments.regimes import regime_config
    from ctx.train import parse_args

    assert parse_args(["--regime", "scarce"]) == regime_config("scarce")
    assert parse_args(["--regime", "crowded", "--loss", "contextrast"]) == regime_config(
        "crowded", loss="contextrast"
    )
    (files / "scenes.json").write_text('{"train_scenes": 400, "eval_every": 2}')
    cfg = parse_args(
        ["--regime", "scarce", "--config", str(files / "scenes.json"), "--eval-every", "3"]
    )
    assert (cfg.train_scenes, cfg.train_digits_per_class, cfg.eval_every) == (400, 35, 3)


def test_config_numbers_from_numpy_are_python_numbers():
    """A TrainConfig built from a numpy sweep holds Python numbers: it validates and saves to
    JSON like a typed one."""
    import numpy as np

    cfg = validate_config(
        TrainConfig(seed=np.int64(3), alpha=np.float32(0.25), widths=(np.int64(8),) * 4)
    )
    assert (cfg.seed, cfg.alpha, cfg.widths) == (3, 0.25, (8, 8, 8, 8)) and type(cfg.seed) is int
    json.dumps(dataclasses.asdict(cfg))


def test_inert_flags_warn_once(monkeypatch, capsys, files):
    monkeypatch.setattr(ctx_train, "train", lambda cfg: RunResult(None, [], cfg, Path("x"), 0))
    (files / "ce.json").write_text('{"tau": 0.2, "loss": "ce"}')
    main(["--config", str(files / "ce.json"), "--k", "0.2", "--max-steps", "5"])
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "warning: --k does nothing here: it only acts with loss contextrast",
        f"warning: tau (in {files / 'ce.json'}) does nothing here: it only acts with loss contextrast",
    ]
    main(["--loss", "contextrast", "--negatives", "random", "--k", "0.2", "--epochs", "2",
          "--max-steps", "9", "--blocks", "1", "1", "1", "1"])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "warning: --blocks does nothing here: only arch resnet has blocks",
        "warning: --k does nothing here: it only acts with negatives bane",
        "warning: --max-steps does nothing here: epochs sets the length of the run",
    ]
    main(["--no-normalize-embeddings", "--no-fill", "--hard-for", "predicted"])  # loss ce
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [  # named as typed: --no-..., sorted by field
        "warning: --no-fill does nothing here: it only acts with loss contextrast",
        "warning: --hard-for does nothing here: it only acts with loss contextrast",
        "warning: --no-normalize-embeddings does nothing here: it only acts with loss contextrast",
    ]


def test_ctrl_c_while_making_data_is_one_line(monkeypatch, capsys, tmp_path):
    def interrupted(cfg):
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "make_datasets", interrupted)
    code, err = _run_main(["--device", "cpu", "--out", str(tmp_path / "run")], capsys)
    assert code == 130
    assert err.strip() == "interrupted before training started: nothing was saved"


def test_ctrl_c_while_training_says_how_to_resume(monkeypatch, capsys, tmp_path):
    from ctx.data import DigitScenes

    get_item, calls = DigitScenes.__getitem__, []

    def interrupting(self, i):  # while loading the second batch
        calls.extend([i] if self.augment else [])
        if len(calls) == 9:
            raise KeyboardInterrupt
        return get_item(self, i)

    monkeypatch.setattr(DigitScenes, "__getitem__", interrupting)
    out = tmp_path / "run"
    code, err = _run_main([*TINY, "--device", "cpu", "--no-progress", "--out", str(out)], capsys)
    assert code == 130
    assert err.strip() == (
        f"interrupted at step 1 of 2: saved {out / 'checkpoint.pt'}; run the same command to resume"
    )


# ----------------------------------------------------------------------------- checkpoints

AFRESH = "use another --out, or delete it to start again"


def _unfinished(c, **changes):
    return {**c, "max_steps": 6, **changes}  # resumed with --max-steps 6: step 2 of 6


# what is done to a finished 2-step run's checkpoint -> extra flags, words the error must hold
TAMPERED = {
    "only model and config": (
        lambda c: {"model": c["model"], "config": c["config"]}, [], ["(no 'step')", AFRESH],
    ),
    "wrong shapes": (
        lambda c: {**c, "model": {**c["model"], next(iter(c["model"])): torch.zeros(1)}}, [],
        ["does not match the model its config describes", "size mismatch", AFRESH],
    ),
    "optimizer without groups": (
        lambda c: _unfinished(c, optimizer={"bad": 1}), ["--max-steps", "6"],
        ["does not match this run's optimizer (no 'param_groups')", AFRESH],
    ),
    "scheduler of another step": (
        lambda c: {**c, "step": 0, "optimizer": {"bad": 1}}, [],
        ["can't be resumed (its scheduler is at step 2, not step 0)", AFRESH],
    ),
    "scheduler without a count": (
        lambda c: _unfinished(c, scheduler={"bad": 1}), ["--max-steps", "6"],
        ["its scheduler is at no step, not step 2", AFRESH],
    ),
    "step not a number": (lambda c: {**c, "step": "2"}, [], ["its 'step' is a str", AFRESH]),
    "model not a state dict": (
        lambda c: {**c, "model": 5}, [], ["'model' is an int", "point to another file"],
    ),
    "NaN weights": (
        lambda c: {**c, "model": {k: v * float("nan") for k, v in c["model"].items()}}, [],
        ["non-finite weights", "damaged or its run diverged", "delete it and train again"],
    ),
}  # fmt: skip


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """The checkpoint of a finished 2-step TINY run."""
    out = tmp_path_factory.mktemp("finished") / "run"
    train(ctx_train.parse_args([*TINY, "--device", "cpu", "--no-progress", "--out", str(out)]))
    return torch.load(out / "checkpoint.pt", weights_only=True)


def test_a_finished_run_in_the_shipped_format_still_loads(finished_run, tmp_path, capsys):
    """A finished run needs no optimizer, schedule or clock: the study keeps some in the format
    of a shipped model.pt, and ctx.train loads them as it always did."""
    out = tmp_path / "run"
    out.mkdir()
    keep = ("model", "config", "history", "step", "max_steps", "num_classes")
    torch.save({k: finished_run[k] for k in keep}, out / "checkpoint.pt")
    main([*TINY, "--device", "cpu", "--no-progress", "--out", str(out)])
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last["miou"] == finished_run["history"][-1]["val"]["miou"]


@pytest.mark.parametrize("case", TAMPERED, ids=list(TAMPERED))
def test_a_checkpoint_that_cannot_resume_is_one_line_and_kept(case, finished_run, tmp_path, capsys):
    tamper, flags, words = TAMPERED[case]
    out = tmp_path / "run"
    out.mkdir()
    torch.save(tamper(copy.deepcopy(finished_run)), out / "checkpoint.pt")
    before = (out / "checkpoint.pt").read_bytes()
    argv = [*TINY, *flags, "--device", "cpu", "--no-progress", "--out", str(out)]
    code, err = _run_main(argv, capsys)
    assert code == 1 and err.strip().splitlines() == [err.strip()], err
    assert err.startswith(f"error: {out / 'checkpoint.pt'} ")
    for word in words:
        assert word in err
    assert (out / "checkpoint.pt").read_bytes() == before
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt"]


def test_random_bytes_checkpoint_gets_no_unsafe_advice(tmp_path):
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(ValueError) as err:
        load_checkpoint(path)
    message = str(err.value)
    assert "corrupt" in message and "delete it" in message
    assert "weights_only" not in message and "\n" not in message


def test_pickled_code_is_refused_without_unsafe_advice(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("ran code from a checkpoint",))

    path = tmp_path / "checkpoint.pt"
    torch.save({"model": Payload(), "config": {}}, path)
    with pytest.raises(ValueError, match="other than tensors") as err:
        load_checkpoint(path)
    assert "weights_only" not in str(err.value)


def test_unreadable_checkpoint_is_not_called_corrupt(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint({"model": {}, "config": {}}, path)

    def denied(*args, **kwargs):  # what the OS says to a file without read permission
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(torch, "load", denied)
    with pytest.raises(ValueError) as err:
        load_checkpoint(path)
    message = str(err.value)
    assert "can't read" in message and "Permission denied" in message and "permissions" in message
    assert "corrupt" not in message and "delete" not in message


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads any file")
def test_unreadable_checkpoint_for_real(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint({"model": {}, "config": {}}, path)
    path.chmod(0)
    with pytest.raises(ValueError, match="can't read"):
        load_checkpoint(path)


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_files_get_normal_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        save_checkpoint({"model": {}, "config": {}}, tmp_path / "c.pt")
        write_json({"a": 1}, tmp_path / "h.json")
    finally:
        os.umask(umask)
    assert (tmp_path / "c.pt").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "h.json").stat().st_mode & 0o777 == 0o644


def test_python_m_ctx_names_every_command_and_each_exists(capsys):
    import re

    from ctx.__main__ import main as ctx_main

    ctx_main([])
    named = re.findall(r"python -m (ctx\.\w+)", capsys.readouterr().out)
    assert named == ["ctx.train", "ctx.evaluate", "ctx.experiments"]
    for module in named:  # runnable with python -m: a module, or a package with __main__
        spec = importlib.util.find_spec(module)
        assert spec is not None, module
        if spec.submodule_search_locations:
            assert importlib.util.find_spec(f"{module}.__main__") is not None, module


class _BadItem(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 2

    def __getitem__(self, i: int):
        raise ValueError("labels/0001.png holds label values [31]; use SegNet's CamVid labels")


def _worker_error() -> ValueError:
    """The error torch re-raises in the main process when a DataLoader worker raised one."""
    loader = torch.utils.data.DataLoader(_BadItem(), num_workers=1)
    with pytest.raises(ValueError) as err:
        next(iter(loader))
    assert "Original Traceback" in str(err.value)  # what one_line is for
    return err.value


def test_an_error_in_a_dataloader_worker_is_one_line_at_the_cli(monkeypatch, capsys):
    from ctx.validation import one_line

    error = _worker_error()
    assert one_line(error) == (
        "labels/0001.png holds label values [31]; use SegNet's CamVid labels "
        "(in DataLoader worker process 0)"
    )
    assert one_line(ValueError("plain")) == "plain"

    def train_raises(cfg):
        raise error

    monkeypatch.setattr(importlib.import_module("ctx.train"), "train", train_raises)
    with pytest.raises(SystemExit) as exit_:
        main(["--max-steps", "2"])
    err = capsys.readouterr().err
    assert exit_.value.code == 1
    assert err == f"error: {one_line(error)}\n"
