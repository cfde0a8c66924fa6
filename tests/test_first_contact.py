"""First contact (issue 26, sections 2 and 3): the evaluator a command needs, extreme values
of every numeric option, what errors say (did you mean, the command's own help, one prefix),
the first two commands a newcomer types, and what a run and an export show a person."""
from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
import pytest
import torch
from PIL import Image

from ganforge.cli import build_parser, main
from ganforge.core.argtypes import MAX_SEED
from ganforge.metrics.domain.network import EvaluatorError
from ganforge.models.latent import MAX_REDRAWS, truncate_, truncated_randn


def _images(folder, n, seed, size=16):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"{i}.png")


def _err_line(capsys):
    err = [line for line in capsys.readouterr().err.strip().splitlines()
           if not line.startswith("[ganforge]")]
    assert len(err) == 1 and "Traceback" not in err[0] and "internal error" not in err[0], err
    return err[0]


# --------------------------------------------------------------------------- truncation
def _old_truncate(z, psi, g):
    """ganforge 0.2's loop (the reference for psi where it finishes)."""
    mask = z.abs() > psi
    while int(mask.sum()):
        z[mask] = torch.randn(int(mask.sum()), generator=g, dtype=z.dtype)
        mask = z.abs() > psi
    return z


@pytest.mark.parametrize("psi", [0.05, 0.5, 0.7, 2.0])
def test_truncation_draws_what_it_drew_before(psi):
    a = _old_truncate(torch.randn(64, 100, generator=torch.Generator().manual_seed(3)), psi,
                      torch.Generator().manual_seed(4))
    b = truncate_(torch.randn(64, 100, generator=torch.Generator().manual_seed(3)), psi,
                  torch.Generator().manual_seed(4))
    assert torch.equal(a, b)


@pytest.mark.parametrize("psi", [1e-3, 1e-6, 1e-12, 1e-300])
def test_tiny_truncation_finishes_at_once_inside_the_bound(psi):
    t = time.perf_counter()
    z = truncated_randn(256, 100, psi, seed=1)
    assert time.perf_counter() - t < 5 * (1 + MAX_REDRAWS / 1000)
    assert bool((z.abs() <= psi).all()) and bool(torch.isfinite(z).all())
    if psi >= 1e-12:        # not all one value: still a distribution over [-psi, psi]
        assert z.std() > psi / 10


def test_huge_truncation_is_no_truncation():
    assert torch.equal(truncated_randn(8, 100, 1e9, seed=5), truncated_randn(8, 100, None, seed=5))


def test_inverted_tail_is_the_truncated_normal():
    # psi 0.005: most components go through the inversion; a truncated normal this narrow is
    # nearly uniform on [-psi, psi]: mean 0, variance psi^2 / 3
    z = truncated_randn(2000, 100, 0.005, seed=0)
    assert abs(float(z.mean())) < 2e-4 and float(z.var()) == pytest.approx(0.005 ** 2 / 3, rel=0.05)


# --------------------------------------------------------------------------- numeric options
EXTREMES = ["-1", "0", "1e-300", "1e300", "nan", "inf", str(2 ** 70), "-0"]


#: what each command needs besides the flag under test
BASE = {"tune": ["--space", "s.yaml", "--budget", "1steps"], "list": [],
        "evaluator": ["train", "--data", "x"], "translate": ["RUN", "IN", "--out", "o"],
        "export": ["RUN", "--out", "o"], "distill": ["RUN", "--out", "o"]}


def _numeric_flags():
    """(command, flag, its parser) of every flag whose value is a number."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, p in sub.choices.items():
        for a in p._actions:
            if not a.option_strings or a.type is None or a.choices:
                continue
            if a.type in (int, float) or getattr(a.type, "__name__", "").startswith(("whole", "number")):
                yield name, a.option_strings[-1], p


def test_every_numeric_flag_takes_extreme_values_or_refuses_them_in_one_line(capsys):
    flags = list(_numeric_flags())
    assert len(flags) > 25
    for command, flag, p in flags:
        for v in EXTREMES:
            argv = [command, *BASE.get(command, ["RUN"]), f"{flag}={v}"]
            try:
                build_parser().parse_args(argv)
            except SystemExit as e:
                err = capsys.readouterr().err.strip().splitlines()
                assert e.code == 2 and len(err) == 1 and flag in err[0], (argv, err)
                continue
            except Exception as e:  # noqa: BLE001 - what the walk is for
                pytest.fail(f"{argv}: {type(e).__name__}: {e}")
            # accepted: a number inside a finite range the command can finish
            val = getattr(build_parser().parse_args(argv), p._option_string_actions[flag].dest)
            assert not (isinstance(val, float) and not math.isfinite(val)), (argv, val)
            assert not (isinstance(val, int) and val > MAX_SEED), (argv, val)


def test_counts_that_no_command_could_finish_are_refused(capsys):
    for argv in (["sample", "R", "--n", "10000000"], ["interpolate", "R", "--frames", "1000000"],
                 ["interpolate", "R", "--fps", "1e-9"], ["serve", "R", "--port", "70000"],
                 ["interpolate", "R", "--seeds", "1,-2"], ["tune", "--trials", "0"]):
        assert main(argv) == 2
        assert argv[-2] in _err_line(capsys) or "seed" in argv[-2]


def test_serve_inputs_refuse_non_numbers_and_extremes():
    from ganforge.core.errors import UserError
    from ganforge.use.serve import parse_count, parse_seed
    for bad in ("inf", "nan", "-1", str(2 ** 70), "x", None):
        with pytest.raises(UserError):
            parse_seed(bad)
        with pytest.raises(UserError):
            parse_count(bad, 64)
    assert parse_seed(str(MAX_SEED)) == MAX_SEED


# --------------------------------------------------------------------------- errors
def test_misspelt_flags_commands_and_presets_get_a_suggestion(capsys):
    assert main(["sample", "R", "--seeed", "3"]) == 2
    err = _err_line(capsys)
    assert err.startswith("ganforge sample: error:") and "did you mean --seed?" in err
    assert "see ganforge sample --help" in err
    assert main(["train", "--lr-g", "3"]) == 2
    assert "train.lr_g=VALUE" in _err_line(capsys)
    assert main(["sampel", "R"]) == 2
    assert "did you mean sample?" in _err_line(capsys)
    assert main(["train", "--config", "dcgan-fashon-mnist"]) == 2
    assert "did you mean dcgan-fashion-mnist?" in _err_line(capsys)


def test_an_error_names_its_command_once(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nope")]) == 2
    err = _err_line(capsys)
    assert err.startswith("ganforge report: error: ") and "error: report:" not in err


def test_train_takes_device(capsys):
    assert main(["train", "--device", "cpu", "--steps", "1", "--print-config"]) == 0
    assert "device: cpu" in capsys.readouterr().out


def test_a_bad_data_path_leaves_nothing_behind(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--data", str(tmp_path / "missing"), "--steps", "1"]) == 2
    err = _err_line(capsys)
    assert "does not exist" in err and "relative to" not in err      # an absolute path
    assert not (tmp_path / "runs").exists()


def test_the_first_two_commands_do_not_collide(tmp_path, monkeypatch, capsys):
    """`make train` (the preset) then `ganforge train` (the defaults): both default to
    runs/<model>-<data>; the second goes to a free folder and says so."""
    monkeypatch.chdir(tmp_path)
    _images(tmp_path / "pics", 8, 1)
    tiny = ["--data", "pics", "--steps", "1", "--batch-size", "4", "model.g_width=4",
            "model.d_width=4", "data.img_size=16", "log.progress=false", "log.tensorboard=false"]
    assert main(["train", *tiny]) == 0
    first = tmp_path / "runs" / "dcgan-pics"
    assert (first / "checkpoints" / "latest.pt").exists()
    capsys.readouterr()
    assert main(["train", *tiny]) == 0
    assert "holds another run; this one goes to runs/dcgan-pics-2" in capsys.readouterr().err
    assert (tmp_path / "runs" / "dcgan-pics-2" / "checkpoints" / "latest.pt").exists()
    # --resume still means the folder itself
    assert main(["train", "--out", str(first), "--resume", "--steps", "2"]) == 0


# --------------------------------------------------------------------------- evaluators
def test_a_folder_without_evaluator_is_one_line_with_the_command(tmp_path):
    from ganforge.metrics.domain.train import ensure_evaluator
    _images(tmp_path / "d" / "a", 4, 1)
    _images(tmp_path / "d" / "b", 4, 2)
    with pytest.raises(EvaluatorError) as e:
        ensure_evaluator(str(tmp_path / "d"), 16)
    msg = str(e.value)
    assert "\n" not in msg and f"ganforge evaluator train --data {tmp_path / 'd'} --img-size 16" in msg


def test_a_named_dataset_trains_its_evaluator_on_first_use(tmp_path, monkeypatch, capsys):
    from ganforge.metrics.domain import train as dtrain
    calls = []

    def fake_train(spec, **kw):
        calls.append((spec, kw))
        return tmp_path / "ev.pt"
    monkeypatch.setattr(dtrain, "train_evaluator", fake_train)
    assert dtrain.ensure_evaluator("fashion-mnist:test", 32) == tmp_path / "ev.pt"
    assert calls == [("fashion-mnist", {"data_dir": None, "img_size": 32, "progress": True})]
    err = capsys.readouterr().err
    assert "training one now, once" in err and "ganforge evaluator train --data fashion-mnist --img-size 32" in err


def test_tune_without_evaluator_stops_before_the_study(shapes, tmp_path, capsys):
    pytest.importorskip("optuna")
    space = tmp_path / "space.yaml"
    space.write_text("train.lr_g: {type: float, low: 1.0e-4, high: 1.0e-3, log: true}\n")
    out = tmp_path / "study"
    assert main(["tune", "--space", str(space), "--trials", "1", "--budget", "1steps",
                 "--out", str(out), "--eval-n", "8", "--test-n", "0", f"data.name={shapes}",
                 "data.img_size=16", "model.g_width=4", "model.d_width=4"]) == 2
    err = _err_line(capsys)
    assert f"ganforge evaluator train --data {shapes} --img-size 16" in err
    assert not out.exists()


def test_a_failed_baseline_trial_is_queued_again():
    optuna = pytest.importorskip("optuna")
    from ganforge.training.tune import _requeue_interrupted
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study()
    study.enqueue_trial({"x": 0.5}, user_attrs={"baseline": True})

    def boom(trial):
        trial.suggest_float("x", 0, 1)
        raise RuntimeError("no evaluator")
    study.optimize(boom, n_trials=1, catch=(RuntimeError,))
    assert _requeue_interrupted(study) == 1
    assert _requeue_interrupted(study) == 0                 # once
    seen = []
    study.optimize(lambda t: seen.append(t.user_attrs) or t.suggest_float("x", 0, 1), n_trials=1)
    assert seen[0].get("baseline") is True


# --------------------------------------------------------------------------- what a person sees
def _tiny_run(tmp_path, steps):
    """A ``steps``-step run on 8 random 16 px images, with the default logging cadence."""
    _images(tmp_path / "pics", 8, 1)
    run = tmp_path / "run"
    assert main(["train", "--data", str(tmp_path / "pics"), "--steps", str(steps), "--batch-size",
                 "4", "--out", str(run), "model.g_width=4", "model.d_width=4", "data.img_size=16",
                 "log.progress=false", "log.tensorboard=false"]) == 0
    return run


def test_a_short_run_logs_and_samples_enough_to_show(tmp_path):
    from ganforge.core import runfolder
    run = _tiny_run(tmp_path, 40)
    rows = [r for r in runfolder.read_rows(run) if runfolder.row_kind(r) == "train"]
    assert len(rows) == 20 and len(runfolder.sample_grids(run)) >= 6
    assert runfolder.read_config(run)["log"]["log_every"] == 2


def test_an_export_card_names_no_machine_path(tmp_path):
    from ganforge.use.export import export_run
    run = _tiny_run(tmp_path, 1)
    out = export_run(run, tmp_path / "deep" / "my-model")
    card = (out / "README.md").read_text()
    assert str(tmp_path) not in card.split("## Use")[1].split("## Files")[0]
    assert "ganforge.load('my-model')" in card and "classes=" not in card
    assert json.loads((out / "config.json").read_text())["task"] == "gan"
