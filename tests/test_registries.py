"""Everything chosen by name goes through a Registry: metrics (the keys they add, the default
list and the help derive from it) and the optimiser (``train.optimizer``)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ganforge.cli import main
from ganforge.core.config import ConfigError
from ganforge.metrics import DEFAULT_METRICS, METRICS, compute_metrics, metric_keys
from ganforge.metrics.scores import metric
from ganforge.metrics.scoring import parse_metrics
from ganforge.training.optim import OPTIMIZERS
from ganforge.training.tasks import resolve_config
from ganforge.training.trainer import Trainer
from tests.helpers import blobs, tiny_cfg


def test_metrics_register_their_keys_and_the_default_list_derives_from_them():
    assert list(METRICS) == ["fid", "kid", "pr", "dc", "hf", "is"]
    assert DEFAULT_METRICS == ("fid", "kid", "pr", "dc", "hf")
    assert metric_keys()[:3] == ("fid", "kid_mean", "kid_std")
    for name in METRICS:
        assert METRICS.help(name)                   # what `ganforge list` prints


def test_a_new_metric_is_one_registration():
    @metric("mean", ("mean_gap",), "gap of the feature means", default=False)
    def _mean(i):
        return {"mean_gap": float(np.abs(np.mean(i.fake_feats) - np.mean(i.real_feats)))}

    try:
        r = np.random.default_rng(0)
        out = compute_metrics(r.normal(size=(50, 4)), r.normal(size=(50, 4)) + 1, ["fid", "mean"])
        assert set(out) == {"fid", "mean_gap"} and out["mean_gap"] == pytest.approx(1, abs=0.3)
        assert parse_metrics("mean,fid") == ("mean", "fid")
        assert "mean" not in DEFAULT_METRICS
    finally:
        METRICS._entries.pop("mean", None)          # unregistered for the other tests


def test_optimizers_are_chosen_by_name(tmp_path):
    assert OPTIMIZERS.names() == ["adam", "adamw"]
    with pytest.raises(ConfigError, match="train.optimizer='sgd' is not a known optimizer; valid: adam, adamw"):
        resolve_config(tiny_cfg(tmp_path / "x", **{"train.optimizer": "sgd"}))
    states = {}
    for name in ("adam", "adamw"):
        tr = Trainer(tiny_cfg(tmp_path / name, **{"train.optimizer": name, "train.weight_decay": 0.1,
                                                  "train.steps": 2}), dataset=blobs(n=32), quiet=True)
        expect = torch.optim.AdamW if name == "adamw" else torch.optim.Adam
        assert all(type(o) is expect and o.defaults["weight_decay"] == 0.1
                   for o in tr.optimizers.values())
        tr.fit()
        states[name] = tr.task.modules["G"].state_dict()
    assert any(not torch.equal(states["adam"][k], states["adamw"][k]) for k in states["adam"])


def test_the_optimizer_cannot_change_on_resume(tmp_path, capsys):
    run = tmp_path / "run"
    Trainer(tiny_cfg(run, **{"train.steps": 2}), dataset=blobs(n=32), quiet=True).fit()
    with pytest.raises(ConfigError, match="train.optimizer: 'adam' -> 'adamw'"):
        Trainer(tiny_cfg(run, **{"train.steps": 4, "train.optimizer": "adamw"}),
                dataset=blobs(n=32), quiet=True, resume=True)


def test_list_shows_every_registry(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for section in ("models:", "tasks:", "losses:", "datasets:", "metrics (", "optimizers (",
                    "augmentations (", "presets (", "feature extractors:"):
        assert section in out
    assert "adamw" in out and "kid" in out


# --------------------------------------------------------------------------- every combination
PRECISIONS = ("none", "bf16")


def _one_step_each(make_cfg, dataset, tmp_path, axes):
    """Build and train one step for each combination in ``axes`` ({key: values}); returns the
    combinations that ended in anything but success or a GanforgeError (a refusal before the
    first step is fine: it is one line for the user)."""
    import itertools

    from ganforge.core.errors import GanforgeError
    from ganforge.training import runtime
    keys = list(axes)
    bad = []
    # bf16 as on a CPU with native bf16 (AVX512-BF16/AMX), whatever this machine has: the
    # combinations users of such CPUs reach must be walked on every machine
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(runtime, "cpu_has_bf16", lambda: True)
        for i, values in enumerate(itertools.product(*axes.values())):
            over = dict(zip(keys, values))
            try:
                tr = Trainer(make_cfg(tmp_path / str(i), **over), dataset=dataset, quiet=True)
                tr.step()
            except GanforgeError:
                continue
            except Exception as e:  # noqa: BLE001 - what the walk is for
                bad.append(f"{over}: {type(e).__name__}: {str(e).splitlines()[0][:160]}")
    return bad


@pytest.mark.parametrize("task", ["gan", "conditional"])
@pytest.mark.parametrize("family", ["dcgan", "fastgan", "mlp", "r3gan", "resnet"])
def test_every_family_task_loss_and_precision_trains_a_step_or_is_refused(tmp_path, task, family):
    """model family x task x loss x precision (device: this CPU; CUDA in
    benchmarks/gpu_check.sh): one step each at tiny sizes. A CPU with native bf16 once ended
    r3gan's step in an internal error (its antialiased downsampling has no bf16 kernel)."""
    from ganforge.training.tasks import registered_names
    names = registered_names()
    assert family in names["model"]
    assert set(names["task"]) == {"gan", "conditional", "cyclegan", "pix2pix"}, \
        "a new task: walk it here"
    bad = _one_step_each(
        lambda out, **o: tiny_cfg(out, **{"train.task": task, "model.name": family,
                                          "train.steps": 1, "train.batch_size": 8, **o}),
        blobs(n=16), tmp_path, {"train.loss": names["loss"], "train.amp": PRECISIONS})
    assert not bad, "\n".join(bad)


def test_the_walk_covers_every_model_family():
    from ganforge.training.tasks import registered_names
    walked = {"dcgan", "fastgan", "mlp", "r3gan", "resnet"}
    assert set(registered_names()["model"]) == walked, "a new model family: add it to the walk"


def test_every_cyclegan_loss_and_precision_trains_a_step_or_is_refused(tmp_path):
    from ganforge.training.tasks import registered_names
    from tests.helpers import cyclegan_cfg, domain_pair
    bad = _one_step_each(lambda out, **o: cyclegan_cfg(out, **{"train.steps": 1, **o}),
                         domain_pair(), tmp_path,
                         {"train.loss": registered_names()["loss"], "train.amp": PRECISIONS})
    assert not bad, "\n".join(bad)


def test_every_pix2pix_loss_and_precision_trains_a_step_or_is_refused(tmp_path):
    from ganforge.training.tasks import registered_names
    from tests.helpers import paired_squares, pix2pix_cfg
    bad = _one_step_each(lambda out, **o: pix2pix_cfg(out, **{"train.steps": 1, **o}),
                         paired_squares(), tmp_path,
                         {"train.loss": registered_names()["loss"], "train.amp": PRECISIONS})
    assert not bad, "\n".join(bad)
