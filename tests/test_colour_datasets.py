"""The colour datasets ``avatars`` (DiceBear faces rendered offline) and ``wesnoth`` (the game's
unit sprites), on a handful of images each: rendered avatars; the installed sprites when
Debian's wesnoth-1.16-data is present, else a sprite tree made here."""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganforge.data import DataError, load_dataset
from ganforge.data import avatars as av
from ganforge.data import wesnoth as wn
from ganforge.data.domains import load_domain


# --------------------------------------------------------------------------- avatars
@pytest.fixture
def few(monkeypatch):
    """Two training and one test image per style (12 + 6)."""
    monkeypatch.setattr(av, "COUNTS", {"train": 2, "test": 1})


def test_avatars_render_once_deterministic_and_labelled(few):
    ds = load_dataset("avatars")
    assert ds.images.shape == (12, 3, 64, 64) and ds.class_names == list(av.STYLES)
    assert ds.labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert (ds.images[:, :, 0, 0] == torch.tensor(av.BACKGROUND, dtype=torch.uint8)).all()
    rows = av.attributes("train")
    assert len(rows) == 12 and rows[0]["file"] == "adventurer/00000.png"
    assert rows[0]["style"] == "adventurer" and "eyesVariant" in rows[0]["options"]
    a, opts = av.render("micah", av.seed_of("micah", "train", 1))
    assert np.array_equal(a, ds.images[7].permute(1, 2, 0).numpy())        # the same seed, the same face
    assert opts == rows[7]["options"]
    test = load_dataset("avatars:test", img_size=32)
    assert test.images.shape == (6, 3, 32, 32) and test.labels.tolist() == [0, 1, 2, 3, 4, 5]


def test_avatars_resume_renders_only_what_is_missing(few):
    folder = av.render_split("train", progress=False)
    keep, gone = folder / "avataaars" / "00000.png", folder / "personas" / "00001.png"
    before = keep.stat().st_mtime_ns
    gone.unlink()
    (folder / av.ATTRIBUTES).unlink()              # an interrupted render: no attributes yet
    time.sleep(0.01)
    av.render_split("train", progress=False)
    assert gone.is_file() and keep.stat().st_mtime_ns == before
    assert len((folder / av.ATTRIBUTES).read_text().splitlines()) == 12


def test_avatars_render_in_parallel(monkeypatch, tmp_path):
    monkeypatch.setattr(av, "COUNTS", {"train": 10, "test": 1})
    out = av.render_split("train", root=tmp_path, workers=2, progress=False)
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert len(files) == 60 and files[0] == "adventurer/00000.png"
    serial, _ = av.render("open-peeps", av.seed_of("open-peeps", "train", 9))
    assert np.array_equal(np.asarray(Image.open(out / "open-peeps" / "00009.png")), serial)


def test_avatars_as_domains_and_a_missing_package(few, monkeypatch):
    dom = load_domain("avatars:big-smile")
    assert len(dom) == 2 and dom.labels is None
    import builtins
    real = builtins.__import__

    def no_dicebear(name, *a, **k):
        if name.startswith("dicebear"):
            raise ImportError(name)
        return real(name, *a, **k)
    monkeypatch.setattr(builtins, "__import__", no_dicebear)
    monkeypatch.setattr(av, "set_dir", lambda size, data_dir=None: Path(os.environ["GANFORGE_CACHE"]) / "none")
    with pytest.raises(DataError, match=r'pip install "ganforge\[avatars\]"'):
        load_dataset("avatars")
    with pytest.raises(DataError, match="unknown split 'val2'"):
        av.load_avatars("val2")


def test_avatars_download_false_never_renders(tmp_path):
    with pytest.raises(DataError, match=r"not rendered in .*rendering is off \(download=False\)"):
        load_dataset("avatars", download=False, data_dir=str(tmp_path))
    assert not any(tmp_path.rglob("*.png"))


# --------------------------------------------------------------------------- wesnoth
SYSTEM_UNITS = [p for p in (Path(g) for pat in wn.UNIT_DIRS for g in __import__("glob").glob(pat))
                if p.is_dir()]


def _sprite_tree(root: Path) -> Path:
    """A units/ tree of two 'races' with 52 72x72 RGBA frames each (a coloured blob with a
    magenta team-colour patch) and a 90x90 frame that must be left out, plus the game's
    team-colors.cfg two folders up, as in data/core/images/units."""
    units = root / "data" / "core" / "images" / "units"
    g = np.random.default_rng(0)
    for race, colour in (("elves", (40, 160, 40)), ("dwarves", (150, 90, 30))):
        (units / race / "fighter").mkdir(parents=True)
        for i in range(52):
            a = np.zeros((72, 72, 4), np.uint8)
            y, x = g.integers(10, 30, 2)
            a[y:y + 30, x:x + 20] = colour + (255,)
            a[y:y + 5, x:x + 5] = (0xD6, 0x00, 0x7F, 255)           # a magenta palette colour
            Image.fromarray(a, "RGBA").save(units / race / "fighter" / f"f-{i}.png")
        Image.new("RGBA", (90, 90)).save(units / race / "big.png")
    (units.parents[1] / "team-colors.cfg").write_text(
        "[color_range]\n    id=red\n    rgb=FF0000,FFFFFF,000000,FF0000\n[/color_range]\n"
        "[color_palette]\n    magenta=F49AC1,3F0016,D6007F,FDE9F1\n[/color_palette]\n")
    return units


def test_wesnoth_sprites_classes_split_and_team_colour(tmp_path, monkeypatch):
    units = _sprite_tree(tmp_path)
    monkeypatch.setattr(wn, "UNIT_DIRS", (str(units),))
    train, test = load_dataset("wesnoth"), load_dataset("wesnoth:test")
    assert train.class_names == ["dwarves", "elves"] and len(train) + len(test) == 104
    assert 0 < len(test) < 25 and train.images.shape[1:] == (3, 64, 64)
    assert (train.images[:, :, 0, 0] == torch.tensor(wn.BACKGROUND, dtype=torch.uint8)).all()
    table = wn.team_colors(units)
    assert table[0xD6007F] == (147, 0, 0)     # brightness 114 of the reference 197: 0.58 of mid red
    img = train.images.permute(0, 2, 3, 1).reshape(-1, 3)
    magenta = (img[:, 0] > 150) & (img[:, 1] < 60) & (img[:, 2] > 100)
    assert not magenta.any()                             # recoloured as side 1 (red)
    files, races = wn.frames(units)
    assert len(files) == 104 and all(Image.open(f).size == (72, 72) for f in files)
    assert {wn.split_of(units, f) for f in files} == {"train", "test"}
    # the same frames go to the same split wherever the tree is
    assert [wn.split_of(units, f) for f in files] == \
        [("test" if __import__("zlib").crc32(f.relative_to(units).as_posix().encode()) % 10 < 1
          else "train") for f in files]


def test_wesnoth_missing_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(wn, "UNIT_DIRS", (str(tmp_path / "none"),))
    with pytest.raises(DataError, match=r"wesnoth-1\.16-data.*--data FOLDER"):
        load_dataset("wesnoth")


@pytest.mark.skipif(not SYSTEM_UNITS, reason="Debian's wesnoth-1.16-data is not installed")
def test_wesnoth_installed_sprites_a_handful():
    ds = load_dataset("wesnoth", limit=8, img_size=32)
    assert ds.images.shape == (8, 3, 32, 32) and len(ds.class_names) >= 19
    assert "dwarves" in ds.class_names and "ogres" not in ds.class_names


# --------------------------------------------------------------------------- presets
TINY = ["model.g_width=4", "model.d_width=4", "model.z_dim=8", "log.progress=false",
        "log.sample_every=1", "log.tensorboard=false", "train.amp=none"]


@pytest.mark.parametrize("preset", ["dcgan-avatars", "dcgan-hinge-avatars", "cdcgan-avatars",
                                    "dcgan-hinge-avatars-32", "dcgan-wesnoth",
                                    "dcgan-hinge-wesnoth", "dcgan-hinge-wesnoth-32", "cdcgan-wesnoth"])
def test_colour_presets_train_and_sample(preset, few, tmp_path, monkeypatch):
    """Every avatars / sprites preset trains (2 steps, tiny widths) on a handful of images and
    samples RGB at its size; the conditional one samples the style asked for."""
    from ganforge.cli import main
    from ganforge.core.config import load_yaml
    monkeypatch.setattr(wn, "UNIT_DIRS", (str(_sprite_tree(tmp_path / "w")),))
    spec = load_yaml(preset)
    size = spec["data"]["img_size"]
    run = tmp_path / "run"
    assert main(["train", "--config", preset, "--steps", "2", "--batch-size", "4",
                 "--out", str(run), *TINY]) == 0
    import ganforge
    g = ganforge.load(run)
    assert g.info.img_size == size and g.info.channels == 3
    if spec["train"].get("task") == "conditional" and spec["data"]["name"] == "avatars":
        assert g.class_names == list(av.STYLES)
        x = g.sample(2, classes="micah", seed=0)
    elif spec["train"].get("task") == "conditional":           # sprites by race
        assert len(g.class_names) >= 2
        x = g.sample(2, classes=g.class_names[-1], seed=0)
    else:
        x = g.sample(2, seed=0)
    assert x.shape == (2, 3, size, size) and x.min() >= -1 and x.max() <= 1
