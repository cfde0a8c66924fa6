"""The `ganforge` command end to end (in-process via cli.main, and one real subprocess)."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from ganforge.cli import main
from ganforge.core.checkpoint import load_checkpoint
from tests.helpers import require_fashion_mnist


@pytest.fixture
def img_folder(tmp_path):
    """Two classes of small RGB images in subfolders."""
    root = tmp_path / "imgs"
    g = np.random.default_rng(0)
    for cls, colour in (("red", (220, 30, 30)), ("blue", (30, 30, 220))):
        (root / cls).mkdir(parents=True)
        for i in range(24):
            a = np.full((20, 20, 3), 255, np.uint8)
            y, x = g.integers(0, 12, 2)
            a[y:y + 8, x:x + 8] = colour
            Image.fromarray(a).save(root / cls / f"{i}.png")
    return root


TINY = ["model.g_width=4", "model.d_width=4", "model.z_dim=8", "log.progress=false",
        "log.sample_every=5", "log.log_every=5", "log.tensorboard=false"]


def test_train_then_sample_grid_and_npy(tmp_path, img_folder, capsys):
    run = tmp_path / "run"
    rc = main(["train", "--data", str(img_folder), "--model", "dcgan", "--steps", "10", "--batch-size", "8",
               "--out", str(run), "--seed", "3", "data.img_size=16", *TINY])
    assert rc == 0
    assert (run / "samples" / "step-0000010.png").exists()
    st = load_checkpoint(run)
    assert st["config"]["train"]["seed"] == 3 and st["data"]["channels"] == 3

    assert main(["sample", str(run), "--n", "9", "--out", str(tmp_path / "g.png")]) == 0
    assert Image.open(tmp_path / "g.png").size[0] > 16 * 3
    assert main(["sample", str(run / "checkpoints" / "latest.pt"), "--n", "5", "--out",
                 str(tmp_path / "s.npy"), "--seed", "1"]) == 0
    arr = np.load(tmp_path / "s.npy")
    assert arr.shape == (5, 3, 16, 16) and arr.dtype == np.float32
    assert arr.min() >= -1 and arr.max() <= 1
    # same seed, same samples; the checkpoint alone suffices (no flags repeated)
    main(["sample", str(run), "--n", "5", "--out", str(tmp_path / "t.npy"), "--seed", "1"])
    assert np.array_equal(arr, np.load(tmp_path / "t.npy"))


def test_unknown_key_is_an_error_naming_it(tmp_path, capsys):
    rc = main(["train", "--out", str(tmp_path / "r"), "train.lr_gg=1"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "train.lr_gg" in err and "train.lr_g" in err


def test_preset_by_its_file_name(capsys):
    assert main(["train", "--config", "dcgan-emoji.yaml", "--print-config"]) == 0
    assert "name: emoji" in capsys.readouterr().out


def test_wrong_type_flag_value(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "r"), "log.sample_every=often"]) == 2
    assert "log.sample_every" in capsys.readouterr().err


def test_bad_data_path_is_clear(tmp_path, capsys):
    rc = main(["train", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "r")])
    assert rc == 2
    assert str(tmp_path / "nope") in capsys.readouterr().err


def test_refused_train_leaves_no_run_folder(tmp_path, img_folder, capsys):
    # a size the family cannot reach is the user's input: one line, exit 2, no "internal error"
    run = tmp_path / "run"
    rc = main(["train", "--data", str(img_folder), "--steps", "1", "--out", str(run),
               "data.img_size=15", *TINY])
    assert rc == 2
    err = capsys.readouterr().err
    assert "data.img_size=15" in err and "internal error" not in err
    assert not run.exists()                       # the folder it made is gone again
    # an unknown dataset name: the same, and the message says it is no folder here either
    assert main(["train", "--data", "nosuchdir", "--out", str(run)]) == 2
    assert "no folder" in capsys.readouterr().err and not run.exists()
    # a folder that existed before is never removed
    run.mkdir()
    assert main(["train", "--data", "nosuchdir", "--out", str(run)]) == 2
    assert run.is_dir()


def test_relative_data_folder_is_stored_absolute(tmp_path, img_folder, monkeypatch):
    # trained from the folder's parent with a relative --data, resumed from elsewhere
    monkeypatch.chdir(img_folder.parent)
    run = tmp_path / "run"
    args = ["--steps", "2", "--batch-size", "8", "data.img_size=16", *TINY]
    assert main(["train", "--data", "imgs", "--out", str(run), *args]) == 0
    saved = (run / "config.yaml").read_text()
    assert f"name: {img_folder}\n" in saved
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["train", "--out", str(run), "--resume", "--steps", "3", *TINY]) == 0


def test_loose_images_beside_class_folders_are_named(tmp_path, img_folder, capsys):
    Image.new("RGB", (20, 20), "white").save(img_folder / "stray.png")
    rc = main(["train", "--task", "conditional", "--data", str(img_folder), "--steps", "1",
               "--out", str(tmp_path / "r"), "data.img_size=16", *TINY])
    assert rc == 2
    err = capsys.readouterr().err
    assert "stray.png" in err and "2 class subfolders" in err


def test_sample_without_checkpoint_is_clear(tmp_path, img_folder, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["sample", str(tmp_path / "empty")]) == 2
    assert "no checkpoint" in capsys.readouterr().err
    # a folder of images is not a run (and no `train --out PHOTOS` is suggested)
    assert main(["sample", str(img_folder)]) == 2
    err = capsys.readouterr().err
    assert "folder of images, not a run" in err and "--out" in err and "train --out" not in err


def test_list(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for word in ("dcgan", "mlp", "nonsaturating", "minimax", "fashion-mnist", "mnist", "emoji",
                 "dcgan-fashion-mnist", "dcgan-emoji"):
        assert word in out


def test_print_config_applies_preset_then_flags(capsys):
    assert main(["train", "--config", "dcgan-fashion-mnist", "--batch-size", "32", "--print-config",
                 "train.lr_d=0.001"]) == 0
    out = capsys.readouterr().out
    assert "batch_size: 32" in out and "lr_d: 0.001" in out and "img_size: 32" in out


@pytest.mark.realdata
def test_real_fashion_mnist_dcgan_end_to_end(tmp_path):
    """The README's main job, shortened: a real subprocess on real data with the preset."""
    require_fashion_mnist()
    run = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "ganforge", "train", "--config", "dcgan-fashion-mnist",
                        "--steps", "20", "--out", str(run), "log.sample_every=10", "log.log_every=10",
                        "model.g_width=8", "model.d_width=8"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "fashion-mnist" in r.stderr
    rows = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 20
    st = load_checkpoint(run)
    assert st["data"]["class_names"][9] == "Ankle boot"
    assert st["data"]["img_size"] == 32
    for f in ("training.gif", "curves.png", "config.yaml", "samples/step-0000020.png"):
        assert (run / f).exists(), f


@pytest.mark.realdata
@pytest.mark.parametrize("preset", ["dcgan-emoji", "dcgan-resize-emoji", "fastgan-emoji"])
def test_emoji_colour_preset_trains(tmp_path, preset):
    """The colour presets: 64 px RGB on the rendered emoji font (tiny width, 2 steps)."""
    import os
    font = "/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf"
    if not os.path.exists(font):
        if os.environ.get("GANFORGE_REQUIRE_DATA") == "1":
            pytest.fail(f"{font} missing but GANFORGE_REQUIRE_DATA=1 (apt-get install fonts-noto-color-emoji)")
        pytest.skip("Noto Color Emoji font not installed")
    run = tmp_path / "emoji"
    assert main(["train", "--config", preset, "--steps", "2", "--out", str(run), *TINY]) == 0
    st = load_checkpoint(run)
    assert st["data"]["channels"] == 3 and st["data"]["img_size"] == 64
    assert main(["sample", str(run), "--n", "4", "--out", str(tmp_path / "e.npy")]) == 0
    assert np.load(tmp_path / "e.npy").shape == (4, 3, 64, 64)


# ----------------------------------------------------------------------------- plain mistakes
def _one_line_error(capsys, *words):
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for w in words:
        assert w in err, (w, err)
    return err


@pytest.mark.parametrize("flags,word", [
    (["--steps", "0"], "--steps"), (["--steps", "-5"], "--steps"), (["--epochs", "0"], "--epochs"),
    (["--epochs", "-1"], "--epochs"), (["--batch-size", "0"], "--batch-size"),
    (["--batch-size", "-4"], "--batch-size"), (["--steps", "two"], "--steps")])
def test_bad_numeric_flags_are_one_line_exit_2_and_write_nothing(tmp_path, img_folder, capsys, flags, word):
    run = tmp_path / "run"
    assert main(["train", "--data", str(img_folder), "--out", str(run), *flags, *TINY]) == 2
    _one_line_error(capsys, word)
    assert not run.exists()


def test_more_batch_than_images_names_both(tmp_path, capsys):
    root = tmp_path / "three"
    root.mkdir()
    for i in range(3):
        Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(root / f"{i}.png")
    # an explicit batch larger than the data (the default one is lowered to fit: issue 17)
    # (every data-chosen key set too, so that the error is the only line on stderr)
    assert main(["train", "--data", str(root), "--steps", "1", "--batch-size", "64",
                 "data.img_size=8", "aug.diffaug=none", "ema.half_life=0",
                 "--out", str(tmp_path / "r"), *TINY]) == 2
    _one_line_error(capsys, "3 images", "--batch-size 3")


def test_overrides_may_stand_between_flags(tmp_path, img_folder, capsys):
    run = tmp_path / "run"
    assert main(["train", "--data", str(img_folder), "data.img_size=16", "--steps", "1",
                 "model.g_width=4", "--batch-size", "4", "model.d_width=4", "--out", str(run),
                 "log.progress=false", "log.tensorboard=false"]) == 0
    st = load_checkpoint(run)
    assert st["config"]["model"]["g_width"] == 4 and st["config"]["data"]["img_size"] == 16
    capsys.readouterr()
    assert main(["train", "--data", str(img_folder), "stray", "--steps", "1"]) == 2
    _one_line_error(capsys, "'stray'", "key=value")
    assert main(["train", "--data", str(img_folder), "--steps", "1", "stray"]) == 2
    _one_line_error(capsys, "stray")


def test_sample_errors_are_one_line(tmp_path, img_folder, capsys):
    run = tmp_path / "run"
    assert main(["train", "--data", str(img_folder), "--steps", "1", "--batch-size", "4",
                 "--out", str(run), "data.img_size=16", *TINY]) == 0
    capsys.readouterr()
    (tmp_path / "grid.png").mkdir()
    assert main(["sample", str(run), "--out", str(tmp_path / "grid.png")]) == 2
    _one_line_error(capsys, "grid.png", "folder")
    assert main(["sample", str(run), "--n", "0"]) == 2
    _one_line_error(capsys, "--n")
    if not torch.cuda.is_available():
        assert main(["sample", str(run), "--device", "cuda", "--out", str(tmp_path / "s.png")]) == 2
        _one_line_error(capsys, "CUDA is not available", "--device cpu")
    assert main(["sample", str(run), "--device", "gpu", "--out", str(tmp_path / "s.png")]) == 2
    _one_line_error(capsys, "--device gpu", "cpu")
    assert main(["eval", str(run), "--n", "0"]) == 2
    _one_line_error(capsys, "--n")


def test_eval_with_too_few_images_names_the_side(tmp_path, capsys):
    from ganforge.metrics.domain.train import train_evaluator
    root = tmp_path / "shapes"
    g = np.random.default_rng(0)
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(12):
            Image.fromarray(g.integers(0, 255, (8, 8), dtype=np.uint8)).save(root / cls / f"{i}.png")
    train_evaluator(str(root), epochs=1, batch_size=8, progress=False)
    two = tmp_path / "two"
    two.mkdir()
    for i in range(2):
        Image.fromarray(g.integers(0, 255, (8, 8), dtype=np.uint8)).save(two / f"{i}.png")
    capsys.readouterr()
    assert main(["eval", "--real", str(root), "--fake", str(two), "--metrics", "fid,pr"]) == 2
    err = capsys.readouterr().err       # progress bars of the feature extraction, then one line
    last = err.strip().splitlines()[-1]
    assert "Traceback" not in err and last.startswith("ganforge eval: error:")
    assert "--fake" in last and "2 image" in last and "at least 4" in last


def test_internal_error_is_one_line_with_the_traceback_in_a_file(tmp_path, capsys, monkeypatch):
    import ganforge.cli as cli

    def boom(args):
        raise ZeroDivisionError("integer modulo by zero")
    monkeypatch.delenv("GANFORGE_TRACEBACK", raising=False)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    parser = cli.build_parser()
    parser._subparsers._group_actions[0].choices["list"].set_defaults(func=boom)
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    assert cli.main(["list"]) == 1
    err = _one_line_error(capsys, "internal error", "ZeroDivisionError", "traceback in")
    log = err.split("traceback in ")[1].split(";")[0]
    assert "Traceback" in open(log).read()


# --------------------------------------------------------------------------- one file to add a task
def test_a_task_declares_its_config_section_and_flags_beside_its_code(tmp_path, capsys):
    """A task is its own file: its settings' section and its train flags are declared there
    and appear everywhere a section does (overrides, the schema, --help-config, train --help),
    with no change to the config or the CLI."""
    from dataclasses import dataclass

    from ganforge.core import config as config_mod
    from ganforge.core.command import Flag
    from ganforge.core.config import Config, help_config, key
    from ganforge.training.tasks import TASKS
    from ganforge.training.tasks.gan import GANTask

    @dataclass(frozen=True)
    class ToyConfig:
        """Settings of a toy task."""
        knob: int = key(3, "how far the toy turns", low=1)
        loud: bool = key(False, "whether it squeaks")

    try:
        @TASKS.register("toy", help="a toy task")
        class ToyTask(GANTask):
            config_section = "toy"
            config_class = ToyConfig
            flags = (Flag("--toy-knob", "toy.knob", metavar="N"), Flag("--loud", "toy.loud"))

        cfg = Config().with_overrides({"toy.knob": 5})
        assert cfg.toy.knob == 5 and cfg.to_dict()["toy"] == {"knob": 5, "loud": False}
        assert "toy.knob = 3" in help_config()
        assert main(["train", "--help"]) == 0
        out = capsys.readouterr().out
        assert "--toy-knob N" in out and "--loud" in out and "toy.knob" in out
        assert main(["train", "--task", "gan", "--toy-knob", "0", "--out", str(tmp_path / "r")]) == 2
        assert "toy.knob=0 must be >= 1" in capsys.readouterr().err
    finally:
        TASKS._entries.pop("toy", None)
        config_mod._TASK_SECTIONS.pop("toy", None)
        config_mod._SCHEMA.clear()


@pytest.mark.parametrize("argv, words", [
    (["--batch-size", "0"], ("--batch-size", "train.batch_size=0 must be in [1, 65536]")),
    (["--seed", "-1"], ("--seed", "train.seed=-1 must be in [0, 9223372036854775807]")),
    (["--freeze-d", "x"], ("--freeze-d", "train.freeze_d", "int")),
])
def test_flags_take_their_keys_ranges(tmp_path, capsys, argv, words):
    assert main(["train", *argv, "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert all(w in err for w in words), err
    assert not (tmp_path / "r").exists()
