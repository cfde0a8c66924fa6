"""`ganforge tune`: the search space is checked, trials run, score against the validation split,
prune, resume, share one SQLite study between processes, and the best preset trains."""
import csv
import json
import os
import signal
import subprocess
import sys

import pytest
import torch

from ganforge.cli import main
from ganforge.core.config import Config, ConfigError, load_config
from ganforge.core.errors import UserError
from ganforge.data import load_dataset
from ganforge.data.resolve import holdout_indices
from ganforge.training import tune
from ganforge.training.trainer import Trainer

optuna = pytest.importorskip("optuna")

TINY = ["model.g_width=4", "model.d_width=4", "model.z_dim=8", "train.batch_size=16",
        "log.sample_every=0", "log.ckpt_every=2", "log.log_every=2", "log.tensorboard=false",
        "log.gif=false"]


@pytest.fixture
def space(tmp_path):
    p = tmp_path / "space.yaml"
    p.write_text("train.lr_g: {type: float, low: 1.0e-4, high: 1.0e-3, log: true}\n"
                 "train.loss: {type: categorical, choices: [nonsaturating, hinge]}\n")
    return p


def tiny_args(shapes, space, out, trials=3, budget="4steps", *extra):
    return ["tune", "--space", str(space), "--trials", str(trials), "--budget", budget,
            "--out", str(out), "--rungs", "2", "--eval-n", "40", "--test-n", "0",
            f"data.name={shapes}", *TINY, *extra]


# --------------------------------------------------------------------------- pieces
def test_budget_parsing():
    assert tune.parse_budget("300s") == tune.Budget("seconds", 300)
    assert tune.parse_budget("5m") == tune.Budget("seconds", 300)
    assert tune.parse_budget("5000steps") == tune.Budget("steps", 5000)
    assert tune.parse_budget("5000") == tune.Budget("steps", 5000)
    for bad in ("", "fast", "-3s", "0steps", "2.5steps", "infs"):
        with pytest.raises(UserError, match="--budget"):
            tune.parse_budget(bad)


def test_validation_split_is_carved_from_train(shapes):
    val = load_dataset(str(shapes), "val")
    rest = load_dataset(str(shapes), "train-minus-val")
    whole = load_dataset(str(shapes))
    assert len(val) == 10 and len(val) + len(rest) == len(whole) == 120
    v, r = holdout_indices(120)
    assert not set(v.tolist()) & set(r.tolist())
    assert torch.equal(val.images, whole.images[v]) and torch.equal(rest.images, whole.images[r])
    assert torch.equal(holdout_indices(120)[0], v)          # the same images every time


@pytest.mark.parametrize("text, match", [
    ("train.lr_gg: {type: float, low: 0.1, high: 0.2}", "unknown config key 'train.lr_gg'.*lr_g"),
    ("train.lr_g: {type: normal, low: 0.1, high: 0.2}", "type 'normal' is not one of"),
    ("train.batch_size: {type: float, low: 8, high: 64}", "whole number; use type: int"),
    ("train.loss: {type: categorical, choices: [hinge, hingee]}", "train.loss.*hingee"),
    ("train.lr_g: {type: float, low: 0.2, high: 0.1}", "low=0.2 must not exceed high=0.1"),
    ("reg.r1: {type: float, low: 0.0, high: 1.0, log: true}", "log scale needs low > 0"),
    ("train.lr_g: {type: float, low: -1.0, high: 0.1}", "train.lr_g"),
    ("train.lr_g: {type: float, low: 0.1}", "needs 'low' and 'high'"),
    ("train.lr_g: {type: float, low: 0.1, high: 0.2, stepp: 1}", "unknown field"),
    ("reg.spectral_norm: {type: int, low: 0, high: 1}", "categorical"),
    ("model.name: {type: categorical, choices: [dcgan, nosuchnet]}", "nosuchnet"),
    ("- just a list", "mapping"),
])
def test_space_is_checked_before_any_trial(tmp_path, text, match):
    p = tmp_path / "s.yaml"
    p.write_text(text + "\n")
    with pytest.raises((UserError, ConfigError), match=match):
        tune.load_space(p, Config())


def test_space_errors_are_one_line_exit_2(tmp_path, capsys):
    p = tmp_path / "s.yaml"
    p.write_text("train.lr_gg: {type: float, low: 0.1, high: 0.2}\n")
    assert main(["tune", "--space", str(p), "--trials", "2", "--budget", "3steps",
                 "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "train.lr_gg" in err and len(err.splitlines()) == 1
    assert main(["tune", "--space", str(tmp_path / "missing.yaml"), "--trials", "2",
                 "--budget", "3steps", "--out", str(tmp_path / "o")]) == 2


def test_trial_config_trains_without_val_and_scores_on_it():
    cfg = tune.trial_config(Config(), {"train.lr_g": 3e-4}, tune.parse_budget("300s"),
                            __import__("pathlib").Path("/tmp/x"), rungs=4, eval_n=100)
    assert cfg.data.split == "train-minus-val" and cfg.eval.split == "val"
    assert cfg.train.time_limit == 300 and cfg.train.lr_g == 3e-4 and cfg.eval.every == 0
    cfg = tune.trial_config(Config(), {}, tune.parse_budget("50steps"),
                            __import__("pathlib").Path("/tmp/x"), rungs=4, eval_n=100)
    assert cfg.train.steps == 50 and cfg.train.time_limit == 0


# --------------------------------------------------------------------------- pruning
class AlwaysPrune:
    """A stand-in for an Optuna trial whose pruner always says stop."""

    def __init__(self):
        self.reports = []
        self.attrs = {}

    def report(self, value, step):
        self.reports.append((step, value))

    def should_prune(self):
        return True

    def set_user_attr(self, k, v):
        self.attrs[k] = v


def test_a_pruned_trial_stops_at_its_first_rung_and_keeps_a_checkpoint(shapes, evaluator, tmp_path):
    base = load_config(None, dict(a.split("=", 1) for a in TINY + [f"data.name={shapes}"]))
    cfg = tune.trial_config(base, {}, tune.parse_budget("12steps"), tmp_path / "run",
                            rungs=4, eval_n=40)
    trial = AlwaysPrune()
    score = tune.TrialScore(cfg, trial, tune.parse_budget("12steps"), rungs=4, check_every=1)
    trainer = Trainer(cfg, quiet=True, callbacks=[score])
    trainer.fit()
    assert score.pruned and trainer.step_count == 3          # rung 1 of 4 at 3 of 12 steps
    assert [s for s, _ in trial.reports] == [1]
    assert (tmp_path / "run" / "checkpoints" / "latest.pt").exists()
    rows = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert any("fid" in r for r in rows)


# --------------------------------------------------------------------------- a study
def read_trials(out):
    with open(out / "trials.csv") as f:
        return list(csv.DictReader(f))


def test_study_runs_writes_its_files_and_continues(shapes, evaluator, space, tmp_path, capsys):
    out = tmp_path / "study"
    assert main(tiny_args(shapes, space, out, 3)) == 0
    printed = capsys.readouterr().out
    assert printed.count("trial ") >= 3 and "FID(val)" in printed
    for f in ("study.db", "trials.csv", "best.yaml", "history.png"):
        assert (out / f).exists(), f
    rows = read_trials(out)
    assert len(rows) == 3 and {r["state"] for r in rows} <= {"complete", "pruned"}
    assert all(os.path.isdir(r["run"]) for r in rows)
    # trial 1 is the starting config itself, so the table shows what the search gained
    assert rows[0]["trial"] == "1 (start)" and float(rows[0]["train.lr_g"]) == 2e-4
    # every trial trained on train-minus-val and was scored against val
    saved = load_config(os.path.join(rows[0]["run"], "config.yaml"))
    assert saved.data.split == "train-minus-val" and saved.eval.split == "val"
    # the best preset is a preset: it loads, keeps the overrides, and trains
    best = load_config(out / "best.yaml")
    assert best.model.g_width == 4 and best.train.steps == 4 and best.data.split == "train"
    assert best.train.loss in ("nonsaturating", "hinge") and best.out.endswith("-best")
    run = tmp_path / "best-run"
    assert main(["train", "--config", str(out / "best.yaml"), "--steps", "2", "--out", str(run),
                 "log.progress=false"]) == 0
    # the same command with more trials continues the study: only the new trial runs
    assert main(tiny_args(shapes, space, out, 4)) == 0
    assert "3 of 4 trials already done" in capsys.readouterr().out
    assert len(read_trials(out)) == 4


def test_an_interrupted_trial_is_queued_again_and_resumes_its_run(shapes, evaluator, space, tmp_path,
                                                                   monkeypatch):
    out = tmp_path / "study"
    real_step = tune.TrialScore.on_step

    def interrupt_at_step_2(self, trainer, step, row):
        if step == 2:
            os.kill(os.getpid(), signal.SIGINT)     # what Ctrl-C does; the trainer saves and stops
        return real_step(self, trainer, step, row)

    monkeypatch.setattr(tune.TrialScore, "on_step", interrupt_at_step_2)
    with pytest.raises(KeyboardInterrupt):
        tune.run_study(tune.Study(preset=None, space=str(space), trials=1,
                                  budget=tune.parse_budget("6steps"), out=out, rungs=2, eval_n=40,
                                  test_n=0, overrides=[f"data.name={shapes}", *TINY]), log=lambda m: None)
    monkeypatch.setattr(tune.TrialScore, "on_step", real_step)
    first = optuna.load_study(study_name="study", storage=f"sqlite:///{out / 'study.db'}").trials
    assert [t.state.name for t in first] == ["FAIL"] and first[0].user_attrs["interrupted"]
    lines = []
    tune.run_study(tune.Study(preset=None, space=str(space), trials=1,
                              budget=tune.parse_budget("6steps"), out=out, rungs=2, eval_n=40,
                              test_n=0, overrides=[f"data.name={shapes}", *TINY]), log=lines.append)
    assert any("queued again" in l for l in lines)
    trials = optuna.load_study(study_name="study", storage=f"sqlite:///{out / 'study.db'}").trials
    assert trials[1].params == trials[0].params and trials[1].state.name == "COMPLETE"
    run = trials[1].user_attrs["run"]
    assert run == trials[0].user_attrs["run"]
    assert trials[1].user_attrs["resumed"] and trials[1].user_attrs["step"] == 6
    steps = [json.loads(l).get("step") for l in open(os.path.join(run, "metrics.jsonl"))]
    assert steps == sorted(steps) and steps[-1] == 6           # continued, not restarted


def test_two_worker_processes_share_one_sqlite_study(shapes, evaluator, space, tmp_path):
    out = tmp_path / "study"
    out.mkdir()
    url = f"sqlite:///{out / 'study.db'}"
    # create the study first (as the main process would), then two workers at once
    optuna.create_study(study_name="study", storage=url, direction="minimize")
    args = [sys.executable, "-m", "ganforge", *tiny_args(shapes, space, out, 4, "6steps"),
            "--storage", url, "--worker", "--threads", "1"]
    procs = [subprocess.Popen(args[:], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              env={**os.environ, "PYTHONPATH": os.getcwd()}) for _ in range(2)]
    outs = [p.communicate(timeout=300)[0].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    trials = optuna.load_study(study_name="study", storage=url).trials
    done = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(done) >= 4 and len({t.number for t in trials}) == len(trials)
    assert len({t.user_attrs["pid"] for t in done}) == 2          # both workers ran trials
    # the same command line on both: the workers' proposals still differ (host + pid seed)
    assert len({tuple(sorted(t.params.items())) for t in trials}) == len(trials)


def test_a_run_folder_in_use_prunes_the_second_trial(shapes, evaluator, space, tmp_path):
    """Two processes that meet on one set of values: the one that finds its run folder locked
    is pruned with a note instead of training into the same folder."""
    from ganforge.training import tune
    out = tmp_path / "study"
    (out / "trials").mkdir(parents=True)
    p = tmp_path / "one.yaml"
    p.write_text("train.loss: {type: categorical, choices: [hinge]}\n")
    params = {"train.loss": "hinge"}
    held = tune._try_lock(out / "trials" / f"{tune.trial_id(params)}.lock")
    assert held is not None and tune._try_lock(out / "trials" / f"{tune.trial_id(params)}.lock") is None
    try:
        assert main(tiny_args(shapes, p, out, 1)) == 0
    finally:
        os.close(held)
    rows = read_trials(out)
    assert [r["state"] for r in rows] == ["pruned"] and "another process" in rows[0]["note"]


def test_values_that_do_not_combine_fail_their_trial_and_the_study_goes_on(shapes, evaluator,
                                                                            tmp_path, capsys):
    """Each value is valid alone; relativistic with label smoothing is not (the loss refuses
    it when the run is built): the trials fail with the reason, the command still ends well."""
    p = tmp_path / "s.yaml"
    p.write_text("train.loss: {type: categorical, choices: [relativistic]}\n"
                 "reg.label_smoothing: {type: float, low: 0.1, high: 0.2}\n")
    out = tmp_path / "study"
    assert main(tiny_args(shapes, p, out, 2)) == 0
    printed = capsys.readouterr().out
    assert "failed" in printed and "label_smoothing" in printed and "no trial completed" in printed
    rows = read_trials(out)
    assert {r["state"] for r in rows} == {"fail"} and all("label_smoothing" in r["note"] for r in rows)
