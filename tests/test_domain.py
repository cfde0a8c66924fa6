"""The ``domain`` feature extractor: a small CNN trained on the dataset, stored, served.

Everything trains on tiny synthetic labeled data (three shapes at 16 px) in a few seconds;
one optional test touches real Fashion-MNIST.
"""
from __future__ import annotations

import argparse
import os
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ganforge.metrics.domain import train as evaluator_mod
from ganforge.metrics.domain.network import (
    DomainEvaluator,
    EvaluatorError,
    default_evaluator_path,
    load_evaluator,
    weights_digest,
)
from ganforge.metrics.domain.train import COMMAND as EVALUATOR
from ganforge.metrics.domain.train import train_evaluator
from ganforge.metrics.extractors import EXTRACTORS

SIZE = 16
CLASSES = ["square", "hbar", "vbar"]
#: A narrow network keeps each test's training to about a second.
TINY = dict(widths=(8, 16, 32), fc=64)


def shapes(n_per_class: int = 100, seed: int = 0,
           size: int = SIZE) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (N, size, size) images of three easily told apart shapes at random positions and
    brightnesses on a noisy dark background, with labels 0..2."""
    r = np.random.default_rng(seed)
    imgs, labels = [], []
    for label in range(3):
        for _ in range(n_per_class):
            a = r.integers(0, 40, size=(size, size)).astype(np.int32)
            v = int(r.integers(160, 256))
            y, x = (int(t) for t in r.integers(1, size - 11, size=2))
            if label == 0:
                a[y:y + 6, x:x + 6] = v                   # filled square
            elif label == 1:
                a[y + 4:y + 7, x:x + 10] = v              # horizontal bar
            else:
                a[y:y + 10, x + 4:x + 7] = v              # vertical bar
            imgs.append(a.astype(np.uint8))
            labels.append(label)
    return np.stack(imgs), np.array(labels, dtype=np.int64)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One evaluator trained on a synthetic .npz dataset, shared by the tests below (the
    cache is pointed at a temp dir for its duration)."""
    root = tmp_path_factory.mktemp("domain")
    x, y = shapes()
    npz = root / "shapes.npz"
    np.savez(npz, images=x, labels=y, class_names=np.array(CLASSES))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GANFORGE_CACHE", str(root / "cache"))
        torch.set_num_threads(1)
        path = train_evaluator(str(npz), epochs=6, batch_size=16, seed=0, progress=False,
                               **TINY)
    return npz, path


@pytest.fixture
def ev(trained) -> DomainEvaluator:
    return load_evaluator(trained[1])


def as_float(x_uint8: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(x_uint8).unsqueeze(1).float() / 127.5 - 1


# ----------------------------------------------------------------------------- training
def test_trains_to_high_accuracy_and_stores_provenance(trained, ev):
    npz, path = trained
    assert path.name.startswith("shapes-") and path.name.endswith(f"-{SIZE}px.pt")
    assert path.parent.name == "evaluators"
    assert ev.accuracy >= 0.9, ev
    assert ev.class_names == CLASSES
    assert ev.meta["eval_split"].startswith("holdout")      # an .npz has no test split
    assert ev.meta["train_images"] == 270 and ev.meta["test_images"] == 30
    assert ev.dataset["spec"] == str(npz) and ev.dataset["img_size"] == SIZE
    assert ev.dataset["channels"] == 1 and ev.dataset["split"] == "train"
    assert ev.input_size == SIZE and ev.name == "domain" and ev.has_logits
    # The file is plain data: it loads with weights_only=True and its hash checks out.
    obj = torch.load(path, weights_only=True)
    assert obj["arch"]["family"] == "domain-cnn" and obj["accuracy"] == ev.accuracy
    assert obj["weights_hash"] == ev.weights_hash == weights_digest(obj["arch"], obj["state_dict"])
    assert len(ev.weights_hash) == 64
    # Predictions on fresh images of the same shapes are right too.
    xt, yt = shapes(20, seed=123)
    acc = (ev.predict(as_float(xt)) == torch.from_numpy(yt)).float().mean().item()
    assert acc >= 0.9


def test_holdout_is_seeded_and_stratified():
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)
    tr, te = evaluator_mod._holdout(len(labels), labels, 0.1, seed=0)
    tr2, te2 = evaluator_mod._holdout(len(labels), labels, 0.1, seed=0)
    assert torch.equal(te, te2) and torch.equal(tr, tr2)
    assert sorted(torch.cat([tr, te]).tolist()) == list(range(100))
    assert torch.bincount(labels[te]).tolist() == [5, 3, 2]
    assert not torch.equal(te, evaluator_mod._holdout(len(labels), labels, 0.1, seed=1)[1])


def test_time_budget_ends_training_early(trained, tmp_path, monkeypatch):
    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "budget.pt"
    train_evaluator(str(trained[0]), epochs=1000, batch_size=16, time_budget=0.3, out=out,
                    progress=False, **TINY)
    tr = load_evaluator(out).meta["train"]
    assert 1 <= tr["steps"] < 1000 * (270 // 16) and tr["time_budget"] == 0.3


def test_default_schedule_gives_a_small_dataset_enough_steps(trained, tmp_path, monkeypatch,
                                                                capsys):
    """epochs=None: 4 epochs, or enough for MIN_STEPS steps on a small dataset (then with
    random shifts of a tenth of the image size, which many passes need)."""
    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "default.pt"
    train_evaluator(str(trained[0]), batch_size=16, time_budget=0.2, out=out, **TINY)
    said = capsys.readouterr().out
    n = load_evaluator(out).meta["train"]
    size = int(re.search(r"images \d+x\d+x(\d+),", said).group(1))   # "... 270 images 1x16x16,"
    want = max(4, -(-evaluator_mod.MIN_STEPS * 16 // 270))     # 270 training images here
    assert f"{want} epochs" in said and f"shift={max(1, size // 10)}px" in said, said
    assert n["batch_size"] == 16


# ----------------------------------------------------------------------------- serving
def test_features_shape_dtype_and_batching(ev):
    x = as_float(shapes(10, seed=5)[0])
    f = ev.features(x)
    assert f.shape == (30, ev.feature_dim) and f.dtype == torch.float32
    assert not f.requires_grad and (f >= 0).all()            # post-ReLU penultimate layer
    lg = ev.logits(x)
    assert lg.shape == (30, 3) and lg.dtype == torch.float32
    p = ev.predict(x)
    assert p.dtype == torch.int64 and torch.equal(p, lg.argmax(1))
    f2, lg2 = ev.features_and_logits(x)
    assert torch.equal(f, f2) and torch.equal(lg, lg2)
    ev.batch_size = 7                                       # batch-size independent
    torch.testing.assert_close(ev.features(x), f, rtol=1e-5, atol=1e-5)


def test_save_load_round_trip_gives_identical_features(trained, ev):
    npz, path = trained
    x = as_float(shapes(5, seed=9)[0])
    again = load_evaluator(path)
    assert again.weights_hash == ev.weights_hash
    assert torch.equal(again.features(x), ev.features(x))
    # Through the registry, by file or by dataset spec (the default location).
    by_file = EXTRACTORS.build("domain", weights=str(path))
    assert torch.equal(by_file.features(x), ev.features(x))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GANFORGE_CACHE", str(path.parent.parent))
        by_data = EXTRACTORS.build("domain", data=str(npz))
        assert by_data.path == path
        assert torch.equal(by_data.logits(x), ev.logits(x))


def test_mismatched_size_is_resized_with_one_warning(ev):
    x = as_float(shapes(4, seed=3)[0])
    big = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)
    expected = ev.features(F.interpolate(big, size=(SIZE, SIZE), mode="bilinear",
                                         align_corners=False, antialias=True))
    with pytest.warns(UserWarning, match="trained at 16x16 px; resizing 32x32"):
        got = ev.features(big)
    torch.testing.assert_close(got, expected)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                        # only warned once
        ev.features(big)


def test_channel_mismatch_tiles_or_takes_luma(ev):
    x = as_float(shapes(4, seed=4)[0])
    with pytest.warns(UserWarning, match="converting 3-channel"):
        rgb = ev.features(x.expand(-1, 3, -1, -1))
    torch.testing.assert_close(rgb, ev.features(x), rtol=1e-5, atol=1e-5)


def test_bad_inputs_are_refused_with_clear_errors(ev):
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        ev.features(torch.full((2, 1, SIZE, SIZE), 200.0))
    with pytest.raises(ValueError, match="float"):
        ev.features(torch.zeros((2, 1, SIZE, SIZE), dtype=torch.uint8))


def test_weights_hash_changes_when_weights_change(trained, ev, tmp_path):
    obj = torch.load(trained[1], weights_only=True)
    arch, state = obj["arch"], dict(obj["state_dict"])
    h0 = weights_digest(arch, state)
    k = next(k for k in state if k.endswith("running_mean"))  # even a BN statistic counts
    state[k] = state[k].clone()
    state[k][0] += 1e-6
    assert weights_digest(arch, state) != h0
    # A file whose weights no longer match its stored hash is refused.
    obj["state_dict"] = state
    bad = tmp_path / "tampered.pt"
    torch.save(obj, bad)
    with pytest.raises(EvaluatorError, match="corrupted"):
        load_evaluator(bad)


# ----------------------------------------------------------------------------- errors
def test_missing_evaluator_error_names_the_command(tmp_path, monkeypatch):
    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path))
    with pytest.raises(EvaluatorError, match="ganforge evaluator train --data fashion-mnist"):
        load_evaluator("fashion-mnist")
    with pytest.raises(EvaluatorError, match="ganforge evaluator train --data fashion-mnist "
                                             "--img-size 32"):
        EXTRACTORS.build("domain", data="fashion-mnist", img_size=32)
    with pytest.raises(EvaluatorError, match="does not exist"):
        load_evaluator(tmp_path / "nope.pt")


def test_unlabeled_data_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path / "cache"))
    npz = tmp_path / "unlabeled.npz"
    np.savez(npz, images=shapes(5)[0])
    with pytest.raises(EvaluatorError, match="no class labels"):
        train_evaluator(str(npz), epochs=1, progress=False)


def test_labels_without_class_names_get_numbered_classes(tmp_path, monkeypatch):
    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path / "cache"))
    npz = tmp_path / "numbered.npz"
    x, y = shapes(20)
    np.savez(npz, images=x, labels=y)
    ev = load_evaluator(train_evaluator(str(npz), epochs=1, batch_size=16, progress=False,
                                        **TINY))
    assert ev.class_names == ["0", "1", "2"] and ev.num_classes == 3


# ----------------------------------------------------------------------------- folders
def _write_folder(root: Path, n_per_class: int, seed: int) -> None:
    from PIL import Image
    x, y = shapes(n_per_class, seed=seed)
    for i, (img, label) in enumerate(zip(x, y)):
        d = root / CLASSES[label]
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(d / f"{i:04d}.png")


def test_folder_dataset_with_class_subfolders(tmp_path, monkeypatch):
    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "my shapes"
    _write_folder(folder, 60, seed=1)
    path = train_evaluator(str(folder), epochs=8, batch_size=16, progress=False, **TINY)
    assert path == default_evaluator_path(str(folder), SIZE)
    assert path.name.startswith("my-shapes-")
    ev = load_evaluator(str(folder))                        # found again by the folder path
    assert ev.path == path
    assert ev.class_names == sorted(CLASSES)               # subfolder names, sorted
    assert ev.meta["eval_split"].startswith("holdout") and ev.meta["test_images"] == 18
    assert ev.accuracy >= 0.9


def test_folder_with_train_and_test_subfolders(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "split"
    _write_folder(root / "train", 40, seed=2)
    _write_folder(root / "test", 10, seed=3)
    out = tmp_path / "ev.pt"
    train_evaluator(str(root), epochs=1, batch_size=40, out=out, **TINY)
    assert "from the test split" in capsys.readouterr().out
    ev = load_evaluator(out)
    assert ev.meta["eval_split"] == "test"
    assert ev.meta["train_images"] == 120 and ev.meta["test_images"] == 30
    assert ev.class_names == sorted(CLASSES)


# ----------------------------------------------------------------------------- CLI
def test_cli_train_prints_progress_and_accuracy(trained, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path / "cache"))
    parser = argparse.ArgumentParser(prog="ganforge")
    EVALUATOR.add_to(parser.add_subparsers(dest="command"))
    out = tmp_path / "cli.pt"
    args = parser.parse_args(["evaluator", "train", "--data", str(trained[0]), "--epochs", "1",
                              "--batch-size", "64", "--out", str(out), "--seed", "1",
                              "--no-flip"])
    assert args.func(args) == 0
    text = capsys.readouterr().out
    assert "test accuracy" in text and str(out) in text
    assert load_evaluator(out).meta["train"]["seed"] == 1
    args = parser.parse_args(["evaluator", "info", str(out)])
    assert args.func(args) == 0
    assert "accuracy" in capsys.readouterr().out


# ----------------------------------------------------------------------------- real data
FMNIST_DIR = "/usr/share/datasets/fashion-mnist"


@pytest.mark.realdata
def test_fashion_mnist_short_run(tmp_path, monkeypatch):
    if not os.path.isdir(FMNIST_DIR):
        if os.environ.get("GANFORGE_REQUIRE_DATA") == "1":
            pytest.fail(f"Fashion-MNIST missing at {FMNIST_DIR} but GANFORGE_REQUIRE_DATA=1")
        pytest.skip(f"Fashion-MNIST not installed at {FMNIST_DIR}")
    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path / "cache"))
    path = train_evaluator("fashion-mnist", limit=5000, epochs=1, batch_size=32,
                           progress=False)
    ev = load_evaluator("fashion-mnist")
    assert ev.path == path and path.name == "fashion-mnist-28px.pt"
    assert ev.meta["eval_split"] == "test" and ev.meta["test_images"] == 10000
    assert ev.meta["train_images"] == 5000
    assert ev.accuracy > 0.75, ev
