"""Runs in odd states (issue 26, section 1 and 3): resumed after its data changed, killed
before its first checkpoint, a --resume with nothing to resume or nothing to do, and
--init-from across other classes. Each refusal is one line that names both sides and
changes nothing in the run folder."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from ganforge.cli import main
from ganforge.core import runfolder
from ganforge.core.checkpoint import CheckpointError, find_checkpoint, load_checkpoint
from ganforge.use.report import build_report

TINY = ["model.g_width=8", "model.d_width=8", "model.z_dim=4", "log.progress=false",
        "log.tensorboard=false", "log.log_every=1", "log.ckpt_every=2", "data.img_size=16"]


def _images(folder, n, seed):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(folder / f"{i}.png")


def _train(data, out, *extra):
    return main(["train", "--data", str(data), "--batch-size", "4", "--out", str(out), *TINY, *extra])


def _files(run):
    return {p.relative_to(run).as_posix(): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


def _one_error(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    err = [line for line in err if not line.startswith("[ganforge]")]
    assert len(err) == 1 and "Traceback" not in err[0] and "internal error" not in err[0], err
    return err[0]


@pytest.fixture
def classes(tmp_path):
    data = tmp_path / "data"
    _images(data / "cat", 4, 1)
    _images(data / "dog", 4, 2)
    run = tmp_path / "run"
    assert _train(data, run, "--task", "conditional", "--steps", "2") == 0
    return data, run


@pytest.mark.parametrize("change", ["added", "renamed"])
def test_resume_refuses_changed_classes_naming_both_lists(classes, capsys, change):
    data, run = classes
    if change == "added":
        _images(data / "bird", 4, 3)
    else:
        (data / "cat").rename(data / "zebra")       # sorted: dog, zebra: label 0 would move
    before = _files(run)
    capsys.readouterr()
    assert _train(data, run, "--resume", "--steps", "4") == 2
    err = _one_error(capsys)
    assert "classes changed since the checkpoint at step 2" in err and "[cat, dog]" in err
    assert ("[bird, cat, dog]" in err) if change == "added" else ("[dog, zebra]" in err)
    assert _files(run) == before
    assert load_checkpoint(run)["data"]["class_names"] == ["cat", "dog"]


def test_resume_refuses_changed_images(tmp_path, capsys):
    data, run = tmp_path / "u", tmp_path / "run"
    _images(data, 8, 4)
    assert _train(data, run, "--steps", "2") == 0
    _images(data, 8, 5)                     # same count, other pixels
    before = _files(run)
    capsys.readouterr()
    assert _train(data, run, "--resume", "--steps", "4") == 2
    err = _one_error(capsys)
    assert "training images changed" in err and "8 images (fingerprint" in err and "--init-from" in err
    assert _files(run) == before


def test_fingerprint_sees_content_labels_and_order():
    from ganforge.data.base import ImageDataset
    x = torch.randint(0, 256, (100, 1, 4, 4), dtype=torch.uint8)
    y = torch.arange(100) % 3
    a = ImageDataset(x, y, ["a", "b", "c"], "d", "src")
    assert a.fingerprint() == ImageDataset(x.clone(), y.clone(), ["a", "b", "c"], "d", "x").fingerprint()
    x2 = x.clone()
    x2[99, 0, 0, 0] ^= 1                                  # the last image is always looked at
    assert ImageDataset(x2, y, ["a", "b", "c"], "d", "src").fingerprint() != a.fingerprint()
    assert ImageDataset(x, y.roll(1), ["a", "b", "c"], "d", "src").fingerprint() != a.fingerprint()
    assert ImageDataset(x[:99], y[:99], ["a", "b", "c"], "d", "src").fingerprint() != a.fingerprint()


def test_init_from_maps_classes_by_name(classes, tmp_path, capsys):
    data, run = classes
    other = tmp_path / "other"
    _images(other / "ant", 4, 6)
    _images(other / "dog", 4, 2)
    _images(other / "emu", 4, 7)
    capsys.readouterr()
    new = tmp_path / "new"
    assert _train(other, new, "--task", "conditional", "--steps", "1", "--init-from", str(run)) == 0
    err = capsys.readouterr().err
    assert "label layers mapped by name" in err and "(1 kept; new" in err
    assert "new, starting fresh: ant, emu" in err and "dropped: cat" in err


def test_map_classes_moves_label_rows_by_name():
    from types import SimpleNamespace

    from ganforge.training.transfer import _map_classes
    net = torch.nn.Sequential(torch.nn.Embedding(3, 2), torch.nn.Linear(2, 2))
    own = net.state_dict()["0.weight"].clone()
    old_rows = torch.tensor([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])
    saved = {"G": {"0.weight": old_rows, "1.weight": torch.ones(2, 2), "1.bias": torch.zeros(2)}}
    task = SimpleNamespace(modules={"G": net})
    out, note = _map_classes(task, saved, ["a", "b", "c"], ["c", "x", "a"])
    got = out["G"]["0.weight"]
    assert torch.equal(got[0], old_rows[2]) and torch.equal(got[2], old_rows[0])
    assert torch.equal(got[1], own[1])                          # new class: the network's own
    assert torch.equal(out["G"]["1.weight"], torch.ones(2, 2))  # not a label layer: as saved
    assert "2 kept (2 at a new index)" in note and "new, starting fresh: x" in note
    assert "dropped: b" in note


def test_killed_before_first_checkpoint_is_named_as_such(tmp_path, capsys):
    data, run = tmp_path / "u", tmp_path / "run"
    _images(data, 8, 4)
    # what a kill before the first checkpoint leaves: config, a log, the first grid
    assert _train(data, run, "--steps", "3", "log.ckpt_every=100") == 0
    for p in (run / "checkpoints").iterdir():
        p.unlink()
    (run / "checkpoints").rmdir()
    with pytest.raises(CheckpointError, match=r"run with no checkpoint yet: it stopped at step 3"):
        find_checkpoint(run)
    capsys.readouterr()
    assert main(["sample", str(run), "--n", "4", "--out", str(tmp_path / "s.png")]) == 2
    err = _one_error(capsys)
    assert "folder of images" not in err and f"ganforge train --out {run} --resume" in err
    html = build_report(run)                         # the report works from what is there
    assert "no checkpoint yet" in html and "Progression" not in html or "step 0" in html
    assert _train(data, run, "--resume") == 0        # --resume starts it again, saved settings
    err = capsys.readouterr().err
    assert "has no checkpoint yet (stopped at step 3 before its first one)" in err
    assert load_checkpoint(run)["step"] == 3


def test_resume_with_nothing_to_resume_is_refused(tmp_path, capsys):
    data = tmp_path / "u"
    _images(data, 8, 4)
    assert _train(data, tmp_path / "typo", "--resume", "--steps", "2") == 2
    err = _one_error(capsys)
    assert "holds no run to resume" in err and "drop --resume" in err
    assert not (tmp_path / "typo").exists()


def test_resume_with_nothing_to_do_changes_nothing(tmp_path, capsys):
    data, run = tmp_path / "u", tmp_path / "run"
    _images(data, 8, 4)
    assert _train(data, run, "--steps", "4") == 0
    before = _files(run)
    capsys.readouterr()
    assert main(["train", "--out", str(run), "--resume", "--steps", "2"]) == 0
    assert "nothing to do, the run is unchanged" in capsys.readouterr().err
    assert _files(run) == before
    assert runfolder.read_config(run)["train"]["steps"] == 4


def test_report_and_info_name_the_device_and_precision_used(tmp_path):
    import ganforge
    data, run = tmp_path / "u", tmp_path / "run"
    _images(data, 8, 4)
    assert _train(data, run, "--steps", "4", "log.sample_every=1") == 0
    assert load_checkpoint(run)["runtime"] == {"device": "cpu", "precision": "float32", "processes": 1}
    assert ganforge.load(run).info.trained_on["device"] == "cpu"
    html = build_report(run)
    assert "float32" in html and "as configured" not in html
    assert html.count("<figcaption>step ") >= 3        # the progression strip
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows


def test_tensorboard_write_errors_are_one_warning_and_the_run_goes_on(tmp_path):
    """A full disk under TensorBoard's writer thread printed that thread's traceback (QA case
    15): its errors, in our calls or in its thread, are one warning; metrics.jsonl goes on."""
    import threading
    import warnings

    from ganforge.core.config import LogConfig
    from ganforge.training.callbacks.artifacts import Artifacts

    class Broken:
        def add_scalar(self, *a):
            raise OSError(28, "No space left on device")

    art = Artifacts(tmp_path, LogConfig(), write=True)
    art._tb = Broken()
    art._watch_tb_thread()
    try:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            art.log({"step": 1, "loss_D": 1.0})
            art.log({"step": 2, "loss_D": 0.5})
            writer = type("Writer", (threading.Thread,), {"__module__": "tensorboard.fake",
                                                          "run": lambda self: 1 / 0})()
            writer.start()
            writer.join()
        msgs = [str(w.message) for w in seen]
        assert len(msgs) == 1 and "TensorBoard cannot write its events (OSError" in msgs[0]
        assert [r["step"] for r in runfolder.read_rows(tmp_path)] == [1, 2]
    finally:
        art._unwatch_tb_thread()
