"""Knowledge distillation (`ganforge distill`, distill.*): a student of every task trains on its
teacher's outputs, is an ordinary run afterwards, and bad teachers are one-line errors."""
import json

import pytest
import torch

import ganforge
from ganforge.cli import main
from ganforge.core.config import ConfigError
from ganforge.training.trainer import Trainer
from tests.helpers import TASK_KITS, blobs, save_class_folders

QUIET = {"log.progress": False, "log.tensorboard": False, "log.gif": False}


def teacher(kit, root, steps=6):
    out = root / "teacher"
    Trainer(kit.cfg(out, **{**QUIET, "train.steps": steps}), dataset=kit.data(), quiet=True).fit()
    return out


def rows(run):
    return [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("task", sorted(TASK_KITS))
def test_a_student_of_every_task_trains_and_is_an_ordinary_run(task, tmp_path):
    kit = TASK_KITS[task]
    t = teacher(kit, tmp_path)
    student = tmp_path / "student"
    cfg = kit.cfg(student, **{**QUIET, "train.steps": 6, "model.g_width": 2,
                              "distill.teacher": str(t)})
    tr = Trainer(cfg, dataset=kit.data(), quiet=True)
    assert all(set(p.modules) & set(tr.task.generators) for p in tr.phases)   # no D phase
    tr.fit()
    logged = [r for r in rows(student) if "distill_l1" in r]
    assert logged and all(r["distill_l1"] >= 0 for r in logged)
    g = ganforge.load(student)                       # the use-time face, unchanged
    if g.inputs == "image":
        x = torch.zeros(2, g.info.channels, g.info.img_size, g.info.img_size)
        assert g.translate(x, "a2b").shape == x.shape
    else:
        assert g.sample(3, seed=0).shape[0] == 3
    st = torch.load(student / "checkpoints" / "latest.pt", weights_only=False)
    assert st["config"]["distill"]["teacher"] == str(t)
    widths = {n: s["kwargs"].get("width") for n, s in st["specs"].items() if n in tr.task.generators}
    assert set(widths.values()) == {2}


def test_the_student_learns_the_teachers_outputs(tmp_path):
    """The pixel distance to the teacher falls as the student trains."""
    kit = TASK_KITS["gan"]
    t = teacher(kit, tmp_path, steps=8)
    student = tmp_path / "student"
    cfg = kit.cfg(student, **{**QUIET, "train.steps": 60, "log.log_every": 10, "log.ckpt_every": 60,
                              "log.sample_every": 60, "distill.teacher": str(t),
                              "distill.feature": 0.0, "train.lr_g": 2e-3})
    Trainer(cfg, dataset=kit.data(), quiet=True).fit()
    l1 = [r["distill_l1"] for r in rows(student) if "distill_l1" in r]
    assert l1[-1] < 0.6 * l1[0], l1


def test_adversarial_term_keeps_d_and_starts_it_from_the_teacher(tmp_path):
    kit = TASK_KITS["gan"]
    t = teacher(kit, tmp_path)
    cfg = kit.cfg(tmp_path / "student", **{**QUIET, "train.steps": 2, "model.g_width": 2,
                                           "distill.teacher": str(t), "distill.adversarial": 0.1})
    tr = Trainer(cfg, dataset=kit.data(), quiet=True)
    assert any(p.modules == ("D",) for p in tr.phases)
    saved = torch.load(t / "checkpoints" / "latest.pt", weights_only=False)["modules"]["D"]
    for k, v in tr.task.modules["D"].state_dict().items():
        assert torch.equal(v, saved[k]), k
    assert "D starts from the teacher's weights" in tr.distiller.describe()
    tr.fit()


def test_bad_teachers_are_config_errors(tmp_path):
    kit = TASK_KITS["gan"]
    with pytest.raises(ConfigError, match="distill.teacher"):
        Trainer(kit.cfg(tmp_path / "s", **{**QUIET, "distill.teacher": str(tmp_path / "nope")}),
                dataset=kit.data(), quiet=True)
    cond = teacher(TASK_KITS["conditional"], tmp_path / "c")
    with pytest.raises(ConfigError, match="'conditional' run.*train.task=conditional"):
        Trainer(kit.cfg(tmp_path / "s2", **{**QUIET, "distill.teacher": str(cond)}),
                dataset=kit.data(), quiet=True)
    with pytest.raises(ConfigError, match="both 0"):
        Trainer(kit.cfg(tmp_path / "s3", **{**QUIET, "distill.teacher": str(cond),
                                           "train.task": "conditional", "distill.pixel": 0,
                                           "distill.feature": 0}), dataset=kit.data(), quiet=True)


def test_distill_command_starts_from_the_teachers_config(tmp_path, capsys):
    data = save_class_folders(blobs(n=64), tmp_path / "blobs")
    t = tmp_path / "teacher"
    assert main(["train", "--data", str(data), "--steps", "4", "--out", str(t), "--batch-size", "16",
                 "model.g_width=4", "model.d_width=4", "model.z_dim=8", "log.progress=false",
                 "log.tensorboard=false", "data.img_size=16"]) == 0
    s = tmp_path / "student"
    assert main(["distill", str(t), "--out", str(s), "--steps", "3", "model.g_width=2",
                 "log.progress=false"]) == 0
    assert "distilling" in capsys.readouterr().err
    saved = (s / "config.yaml").read_text()
    assert "g_width: 2" in saved and "z_dim: 8" in saved and "img_size: 16" in saved
    assert main(["sample", str(s), "--n", "4", "--out", str(tmp_path / "g.png")]) == 0
    assert main(["distill", str(tmp_path / "nope"), "--out", str(tmp_path / "x")]) == 2
