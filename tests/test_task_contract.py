"""The contract every registered task keeps, checked for each name in ``ganforge.training.tasks.TASKS``
(a new task is tested here automatically once tests/helpers.py has a kit for it).

At training time: it builds, one ``Trainer.step()`` trains every phase's modules with finite
losses, a checkpoint restores into a fresh Trainer exactly, and a resumed run is bit-identical
to a straight one. At use time (``ganforge.use.load.load_run``): the run's face is the task's
``TrainedModel`` saying how it is fed (``inputs``: "noise" or "image"); noise models sample
deterministically in [-1, 1] (by class index or name when they have classes), image models
translate in every direction keeping the shape; ``ganforge sample``/``translate`` work for the
kind that applies and refuse the other (exit 2, one line); and ``ganforge eval`` scores the run
with a domain evaluator trained on the task's tiny labelled data.

Tiny: widths 4, 16 px synthetic images, 1-4 steps; the loss-curve plot is stubbed out.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from ganforge.cli import main
from ganforge.core.checkpoint import load_checkpoint
from ganforge.core.errors import UserError
from ganforge.data.paths import cache_dir
from ganforge.metrics.domain.train import train_evaluator
from ganforge.training.tasks import TASKS
from ganforge.training.trainer import Trainer
from ganforge.use.face import TrainedModel
from ganforge.use.load import load_run
from tests.helpers import TASK_KITS, assert_resume_exact, assert_same_state

TASK_NAMES = TASKS.names()
#: every step logged; no sample grids, GIFs or checkpoints but the last
QUIET = {"log.gif": False, "log.sample_every": 1000, "log.ckpt_every": 1000, "log.log_every": 1}
#: steps of the run the use-time checks load
RUN_STEPS = 2


@contextlib.contextmanager
def no_curve_plots():
    """The loss-curve PNG (matplotlib) dominates a tiny run and nothing here reads it."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("ganforge.training.callbacks.artifacts.plot_curves", lambda *a, **k: False)
        yield


@pytest.fixture(autouse=True)
def _no_curve_plots():
    with no_curve_plots():
        yield


def kit(task):
    if task not in TASK_KITS:
        pytest.fail(f"task '{task}' is registered but tests/helpers.py TASK_KITS has no kit for it")
    return TASK_KITS[task]


def make_trainer(task, out, resume=False, **over):
    k = kit(task)
    return Trainer(k.cfg(out, **{**QUIET, **over}), dataset=k.data(), quiet=True, resume=resume)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """``runs(task)`` -> (run folder, labelled data folder): a tiny run of ``task`` trained
    from data on disk (so that ``ganforge eval`` finds its real images), once per module."""
    made = {}

    def get(task):
        if task not in made:
            root = tmp_path_factory.mktemp(f"contract-{task}")
            over, folder = kit(task).on_disk(root)
            cfg = kit(task).cfg(root / "run", **QUIET, **over, **{"train.steps": RUN_STEPS})
            with no_curve_plots():
                Trainer(cfg, quiet=True).fit()
            made[task] = (root / "run", folder)
        return made[task]
    return get


def numbers(tree):
    """Every int/float leaf of a JSON result."""
    if isinstance(tree, dict):
        return [x for v in tree.values() for x in numbers(v)]
    if isinstance(tree, list):
        return [x for v in tree for x in numbers(v)]
    return [tree] if isinstance(tree, (int, float)) and not isinstance(tree, bool) else []


def one_line_error(capsys, command):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"ganforge {command}: error: "), err


# ----------------------------------------------------------------------------- the registry
def test_every_registered_task_has_a_kit():
    missing = sorted(set(TASK_NAMES) - set(TASK_KITS))
    assert not missing, f"registered tasks without a kit in tests/helpers.py TASK_KITS: {missing}"
    assert {"gan", "conditional", "cyclegan"} <= set(TASK_NAMES)


# ----------------------------------------------------------------------------- training time
@pytest.mark.parametrize("task", TASK_NAMES)
def test_builds_and_one_step_trains_with_finite_losses(tmp_path, task):
    tr = make_trainer(task, tmp_path, **{"train.steps": 2})
    t = tr.task
    assert t.name == task and type(t) is TASKS.get(task)
    assert t.generators and t.discriminators
    assert set(t.generators) | set(t.discriminators) <= set(t.modules)
    trained = {m for p in tr.phases for m in p.modules}
    assert trained == set(t.generators) | set(t.discriminators)
    before = {n: [p.detach().clone() for p in t.modules[n].parameters()] for n in trained}
    stats = tr.step()
    assert tr.step_count == 1
    losses = {k: v for k, v in stats.items() if k.startswith("loss")}
    assert losses and all(torch.isfinite(v).all() for v in stats.values()), stats
    assert set(t.progress_keys) <= set(stats)
    for n in trained:       # every phase's modules were stepped, and stayed finite
        now = list(t.modules[n].parameters())
        assert any(not torch.equal(p, q) for p, q in zip(now, before[n])), f"{n} did not change"
        assert all(torch.isfinite(p).all() for p in now), n
    grid = t.render(tr.fixed)          # the progress grid's images
    assert grid.dim() == 4 and torch.isfinite(grid).all() and grid.min() >= -1 and grid.max() <= 1


@pytest.mark.parametrize("task", TASK_NAMES)
def test_checkpoint_round_trip(tmp_path, task):
    """save -> load_state into a fresh Trainer: the same state, and the same next step."""
    tr = make_trainer(task, tmp_path, **{"train.steps": 4})
    tr.step()
    tr.step()
    path = tr.save_checkpoint()
    st = load_checkpoint(path)
    # a second Trainer on the same run folder must say it continues the run (--resume)
    fresh = make_trainer(task, tmp_path, resume=True, **{"train.steps": 4})
    fresh.load_state(st)
    assert fresh.step_count == 2
    assert_same_state(tr.state_dict(), fresh.state_dict())
    assert_same_state(st, fresh.state_dict())
    tr.step()
    fresh.step()
    assert_same_state(tr.state_dict(), fresh.state_dict())


@pytest.mark.parametrize("task", TASK_NAMES)
def test_resume_is_bit_exact(tmp_path, task):
    """4 steps straight == 2 steps, interrupted, a fresh Trainer resumed, 2 more."""
    def make(out, steps, resume=False):
        return make_trainer(task, out, resume=resume, **{"train.steps": steps})
    assert_resume_exact(make, tmp_path, steps=4, stop=2)


# ----------------------------------------------------------------------------- use time
@pytest.mark.parametrize("task", TASK_NAMES)
def test_load_run_gives_the_tasks_face(runs, task):
    run, _ = runs(task)
    model = load_run(run)
    assert isinstance(model, TrainedModel) and type(model) is TASKS.get(task).trained_class
    info = model.info
    assert info.task == task and info.step == RUN_STEPS
    assert model.inputs in ("noise", "image")
    assert set(model.modules) == set(TASKS.get(task).generators)
    assert all(not m.training for m in model.modules.values())
    c, s = info.channels, info.img_size
    assert (c, s) == (1, 16)
    if model.inputs == "noise":
        x = model.sample(4, seed=0)
        assert x.shape == (4, c, s, s) and x.dtype == torch.float32
        assert torch.isfinite(x).all() and x.min() >= -1 and x.max() <= 1
        assert torch.equal(x, model.sample(4, seed=0))           # the same seed, the same images
        assert not torch.equal(x, model.sample(4, seed=1))
        if model.class_names:
            assert len(model.class_names) >= 2
            by_index = model.sample(4, seed=0, classes=0)
            assert by_index.shape == x.shape
            for i, name in enumerate(model.class_names):
                assert torch.equal(model.sample(4, seed=0, classes=i),
                                   model.sample(4, seed=0, classes=name)), name
        with pytest.raises(UserError):
            model.translate(x, "a2b")
    else:
        x = torch.rand(4, c, s, s) * 2 - 1
        assert len(model.directions) >= 1
        for d in model.directions:
            y = model.translate(x, d)
            assert y.shape == x.shape and model.round_trip(x, d, reconstruct=False)[1] is None
            assert torch.isfinite(y).all() and y.min() >= -1 and y.max() <= 1
            y2, rec2 = model.round_trip(x, d)
            # a way back (CycleGAN's F(G(x))), or none (pix2pix: one generator)
            assert torch.equal(y, y2) and (rec2 is None or rec2.shape == x.shape)
        with pytest.raises(UserError):
            model.sample(4)


@pytest.mark.parametrize("task", TASK_NAMES)
def test_sample_and_translate_commands(runs, task, tmp_path, capsys):
    """The command that fits the run works; the other exits 2 with a one-line message."""
    run, _ = runs(task)
    model = load_run(run)
    c, s = model.info.channels, model.info.img_size
    sample = ["sample", str(run), "--n", "4", "--out", str(tmp_path / "s.npy")]
    if model.inputs == "noise":
        assert main(sample) == 0
        x = np.load(tmp_path / "s.npy")
        assert x.shape == (4, c, s, s) and np.isfinite(x).all() and np.abs(x).max() <= 1
        capsys.readouterr()
        assert main(["translate", str(run), "run:train", "--out", str(tmp_path / "t")]) == 2
        one_line_error(capsys, "translate")
        assert not (tmp_path / "t").exists()
    else:
        for d in model.directions:
            out = tmp_path / d
            assert main(["translate", str(run), "--direction", d, "run:train", "--limit", "3",
                         "--out", str(out)]) == 0
            files = sorted(out.glob("*.png"))
            assert len(files) == 3
            from PIL import Image
            assert Image.open(files[0]).size == (s, s)
        capsys.readouterr()
        assert main(sample) == 2
        one_line_error(capsys, "sample")
        assert not (tmp_path / "s.npy").exists()


#: tasks whose eval smoke test runs (the brief's budget: all, while each stays under ~10 s)
EVAL_TASKS = TASK_NAMES


@pytest.mark.parametrize("task", EVAL_TASKS)
def test_eval_command_with_a_tiny_domain_evaluator(runs, task, tmp_path):
    """`ganforge eval RUN --n 20` with a 1-epoch evaluator trained on the task's labelled data:
    exit 0 and finite numbers in --json. The evaluator goes to this test's own cache."""
    run, folder = runs(task)
    cache = cache_dir()
    assert Path(os.environ["GANFORGE_CACHE"]) == cache and not (cache / "evaluators").exists()
    ev = train_evaluator(str(folder), epochs=1, batch_size=16, widths=(4, 8), fc=16,
                         progress=False)
    assert ev.is_relative_to(cache)
    model = load_run(run)
    # a noise run finds the evaluator stored for its dataset; an image run's folder domains
    # are named by the evaluator's classes, so it is passed explicitly. The real images are
    # the training folder (--split train): a folder has no test split unless its subfolder
    # test/, which training would take for a class.
    extra = ["--weights", str(ev)] if model.inputs == "image" else []
    out = tmp_path / "eval.json"
    assert main(["eval", str(run), "--n", "20", "--split", "train", "--json", str(out), *extra]) == 0
    res = json.loads(out.read_text())
    # "run" names the run folder, or (conditional) the checkpoint in it
    assert res["task"] == task and res["run"].startswith(str(run))
    nums = numbers(res)
    assert len(nums) >= 3 and all(math.isfinite(v) for v in nums), res
