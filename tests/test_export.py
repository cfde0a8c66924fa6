"""``ganforge export``: a run as a Hugging Face-layout folder (config.json, model.safetensors,
README.md, samples.png, optional ONNX) that ``ganforge.use.load.load_run`` rebuilds, for every
registered task, into the same TrainedModel with bit-identical outputs, without the training
checkpoint and without executing anything from the folder."""
from __future__ import annotations

import json
import os
import shutil

import pytest
import torch

from ganforge.cli import main
from ganforge.core.errors import UserError
from ganforge.core.runfolder import last_eval_row
from ganforge.training.tasks import TASKS
from ganforge.training.trainer import Trainer
from ganforge.use.export import export_run
from ganforge.use.load import load_run
from tests.helpers import TASK_KITS

TASK_NAMES = TASKS.names()
QUIET = {"log.gif": False, "log.sample_every": 1000, "log.ckpt_every": 1000, "log.log_every": 1,
         "train.steps": 2, "ema.half_life": 1}


@pytest.fixture(autouse=True)
def _no_curve_plots(monkeypatch):
    monkeypatch.setattr("ganforge.training.callbacks.artifacts.plot_curves", lambda *a, **k: False)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    made = {}

    def get(task):
        if task not in made:
            root = tmp_path_factory.mktemp(f"export-{task}")
            k = TASK_KITS[task]
            with pytest.MonkeyPatch.context() as mp:
                mp.setattr("ganforge.training.callbacks.artifacts.plot_curves", lambda *a, **k: False)
                Trainer(k.cfg(root / "run", **QUIET), dataset=k.data(), quiet=True).fit()
            made[task] = root / "run"
        return made[task]
    return get


def outputs(model):
    """Fixed outputs of a trained model's use-time face."""
    if model.inputs == "noise":
        out = {"sample": model.sample(6, seed=3)}
        if model.class_names:
            out["class1"] = model.sample(4, seed=5, classes=1)
        return out
    x = torch.rand(3, model.info.channels, model.info.img_size, model.info.img_size,
                   generator=torch.Generator().manual_seed(0)) * 2 - 1
    return {d: torch.cat([t for t in model.round_trip(x, d) if t is not None])
            for d in model.directions}


@pytest.mark.parametrize("task", TASK_NAMES)
def test_export_round_trip_is_bit_identical(tmp_path, runs, task):
    run = runs(task)
    out = export_run(run, tmp_path / "exp")
    files = sorted(os.listdir(out))
    assert files == ["README.md", "config.json", "model.safetensors", "samples.png"], files
    cfg = json.loads((out / "config.json").read_text())
    ref = load_run(run)
    assert cfg["task"] == task and cfg["step"] == ref.info.step
    assert cfg["img_size"] == ref.info.img_size and cfg["channels"] == ref.info.channels
    assert set(cfg["generators"]) == set(TASKS.get(task).generators)
    assert all(g["weights"].endswith("_ema") for g in cfg["generators"].values())  # EMA default
    assert cfg["ganforge_version"] and cfg["data"]["name"]

    # no training checkpoint needed: the export alone, the run folder gone
    moved = tmp_path / "moved"
    shutil.copytree(out, moved)
    got = load_run(moved)
    assert type(got) is type(ref)
    assert got.info.modules == ref.info.modules and got.info.classes == ref.info.classes
    a, b = outputs(ref), outputs(got)
    for k in a:
        assert torch.equal(a[k], b[k]), f"{task}: {k} differs after export"

    raw = export_run(run, tmp_path / "raw", ema=False)
    assert all("_ema" not in g["weights"]
               for g in json.loads((raw / "config.json").read_text())["generators"].values())
    a, b = outputs(load_run(run, ema=False)), outputs(load_run(raw))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_weights_file_is_plain_safetensors(tmp_path, runs):
    from safetensors import safe_open
    out = export_run(runs("cyclegan"), tmp_path / "e")
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        keys = list(f.keys())
        assert f.metadata()["format"] == "ganforge-export-1"
    assert keys and all(k.split(".")[0] in ("G_AB", "G_BA") for k in keys)
    assert not any(k.startswith("D") for k in keys)


def test_conditional_task_state_and_card(tmp_path, runs):
    run = runs("conditional")
    out = export_run(run, tmp_path / "e")
    cfg = json.loads((out / "config.json").read_text())
    probs = cfg["task_state"]["label_probs"]
    assert isinstance(probs, list) and abs(sum(probs) - 1) < 1e-5
    assert cfg["class_names"] and cfg["z_dim"] == 8
    card = (out / "README.md").read_text()
    assert "samples.png" in card and "ganforge.load(" in card and "ganforge sample" in card


def test_metrics_are_the_last_eval_row(tmp_path):
    (tmp_path / "metrics.jsonl").write_text(
        '{"step": 2, "loss_D": 1.0, "loss_G": 2.0}\n{"step": 2, "fid": 9.5, "kid": 0.1}\n'
        '{"step": 4, "loss_D": 1.0, "loss_G": 2.0}\n{"step": 4, "resumed": true}\n')
    assert last_eval_row(tmp_path) == {"step": 2, "fid": 9.5, "kid": 0.1}
    assert last_eval_row(tmp_path / "none") == {}


def test_refuses_a_non_export_folder_and_overwrites_an_export(tmp_path, runs, capsys):
    run = runs("gan")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not empty"):
        export_run(run, busy)
    assert main(["export", str(run), "--out", str(busy)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ganforge export: error: "), err
    assert (busy / "notes.txt").read_text() == "mine"

    out = tmp_path / "e"
    assert main(["export", str(run), "--out", str(out), "--onnx"]) == 0
    assert (out / "generator.onnx").is_file()
    assert main(["export", str(run), "--out", str(out), "--no-ema"]) == 0   # an earlier export
    assert not (out / "generator.onnx").exists()                          # its stale files go
    assert json.loads((out / "config.json").read_text())["generators"]["G"]["weights"] == "G"
    assert main(["sample", str(out), "--n", "4", "--out", str(tmp_path / "g.png")]) == 0


def test_refuses_an_unwritable_folder(tmp_path, runs, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")              # a folder under a file cannot be made (even by root)
    with pytest.raises(UserError, match="not writable"):
        export_run(runs("gan"), blocker / "exp")
    assert main(["export", str(runs("gan")), "--out", str(blocker / "exp")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


@pytest.mark.parametrize("task", TASK_NAMES)
def test_onnx_matches_torch(tmp_path, runs, task):
    ort = pytest.importorskip("onnxruntime")
    out = export_run(runs(task), tmp_path / "e", onnx=True)
    cfg = json.loads((out / "config.json").read_text())
    model = load_run(out)
    for name, g in cfg["generators"].items():
        assert (out / g["onnx"]).is_file()
        args, names = model.example_inputs(name, n=3, seed=11)
        assert list(names) == g["onnx_inputs"]
        sess = ort.InferenceSession(str(out / g["onnx"]), providers=["CPUExecutionProvider"])
        got = sess.run(["output"], {n: a.numpy() for n, a in zip(names, args)})[0]
        with torch.no_grad():
            want = model.modules[name](*args)
        assert got.shape == tuple(want.shape)
        assert torch.allclose(torch.from_numpy(got), want, atol=1e-4, rtol=0), \
            (task, name, (torch.from_numpy(got) - want).abs().max())
    if len(cfg["generators"]) > 1:
        assert sorted(f for f in os.listdir(out) if f.endswith(".onnx")) == \
            sorted(f"{n}.onnx" for n in cfg["generators"])
