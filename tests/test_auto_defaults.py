"""A folder trains with no flags (issue 17 part 0): defaults chosen from the data
(ganforge/data/auto.py), the explicit keys recorded by ganforge/core/config.py, and every explicit
flag, preset value or override winning over a chosen default."""
import dataclasses
import io
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from ganforge.cli import main
from ganforge.core.config import Config, all_keys, explicit_keys, load_config
from ganforge.data.auto import (
    MAX_AUTO_SIZE,
    SMALL_DATA,
    FolderFacts,
    choose_data_defaults,
    scan_folder,
    training_folder,
)
from ganforge.models.dcgan import plan
from ganforge.training.tasks import resolve_config


def _dcgan_fits(size: int) -> bool:
    try:
        plan(size)
    except ValueError:
        return False
    return True


def _facts(n: int, side: int) -> FolderFacts:
    return FolderFacts(Path("/nowhere"), n, side)


# --------------------------------------------------------------------------- explicit keys
def test_explicit_keys_record_presets_flags_and_overrides_not_defaults():
    assert explicit_keys(Config()) == frozenset()
    cfg = load_config("dcgan-emoji", {"train.lr_g": 1e-4})
    keys = explicit_keys(cfg)
    assert {"data.img_size", "data.name", "train.batch_size", "model.g_width", "train.lr_g"} <= keys
    assert "aug.diffaug" not in keys and "ema.half_life" not in keys
    # set to its default value on purpose still counts as set
    assert "train.batch_size" in explicit_keys(Config().with_overrides({"train.batch_size": 64}))
    # carried through dataclasses.replace (resolve_config, the runtime's per-process batch)
    assert explicit_keys(resolve_config(cfg)) == keys
    # bookkeeping, not a key: not in the schema, the YAML dump, or ==
    assert "explicit" not in all_keys() and "explicit" not in cfg.to_dict()
    assert cfg == dataclasses.replace(cfg, explicit=frozenset())
    with pytest.raises(Exception, match="unknown config key"):
        Config().with_overrides({"explicit": "x"})


# --------------------------------------------------------------------------- the choosing rule
@pytest.mark.parametrize("n, side, size, batch", [
    (3, 300, 64, 3), (50, 300, 64, 50), (2000, 900, 64, 64), (50, 50, 48, 50), (10, 20, 20, 10)])
def test_size_and_batch_from_the_data(n, side, size, batch):
    cfg, chosen = choose_data_defaults(Config(), fits=_dcgan_fits, facts=_facts(n, side))
    assert cfg.data.img_size == size and _dcgan_fits(size) and size <= min(MAX_AUTO_SIZE, side)
    assert cfg.train.batch_size == batch
    line = "; ".join(map(str, chosen))
    assert f"data.img_size={size} (auto" in line and "override with data.img_size=N" in line
    assert f"train.batch_size={batch} (auto" in line
    assert explicit_keys(cfg) == frozenset()      # chosen values are not the user's


def test_small_data_aids_below_the_threshold_only():
    small, chosen = choose_data_defaults(Config(), fits=_dcgan_fits, facts=_facts(SMALL_DATA - 1, 300))
    assert small.aug.diffaug == "translation,cutout,color" and small.ema.half_life == 10
    assert "override with aug.diffaug=none" in "; ".join(map(str, chosen))
    big, _ = choose_data_defaults(Config(), fits=_dcgan_fits, facts=_facts(SMALL_DATA, 300))
    assert big.aug.diffaug == "" and big.ema.half_life == 0


def test_explicit_values_win_and_are_not_reported():
    cfg = Config().with_overrides({"data.img_size": 32, "train.batch_size": 128,
                                   "aug.diffaug": "none", "ema.half_life": 0})
    out, chosen = choose_data_defaults(cfg, fits=_dcgan_fits, facts=_facts(50, 300))
    assert out == cfg and chosen == []
    cfg = load_config("dcgan-emoji")       # a preset's values count as explicit too
    out, chosen = choose_data_defaults(cfg, fits=_dcgan_fits, facts=_facts(50, 300))
    assert out.data.img_size == 64 and out.train.batch_size == 64
    assert [c.key for c in chosen] == ["aug.diffaug", "ema.half_life"]


def test_batch_splits_over_processes_and_no_size_fits():
    cfg, _ = choose_data_defaults(Config(), fits=_dcgan_fits, world_size=4, facts=_facts(50, 300))
    assert cfg.train.batch_size == 48
    cfg, chosen = choose_data_defaults(Config(), fits=lambda s: False, facts=_facts(50, 300))
    assert cfg.data.img_size == 0 and "data.img_size" not in [c.key for c in chosen]


def test_only_folders_are_looked_at(tmp_path):
    assert training_folder(Config()) is None                      # fashion-mnist
    assert training_folder(Config().with_overrides({"data.name": str(tmp_path / "x.npz")})) is None
    (tmp_path / "cat").mkdir()
    assert training_folder(Config().with_overrides({"data.name": str(tmp_path)})) == tmp_path
    assert training_folder(Config().with_overrides({"data.name": f"{tmp_path}:cat"})) == tmp_path / "cat"


# --------------------------------------------------------------------------- end to end
ASSORTED = [(300, 320, "RGB", "JPEG"), (900, 310, "L", "JPEG"), (420, 600, "RGBA", "PNG"),
            (330, 700, "P", "PNG"), (512, 512, "RGB", "JPEG"), (310, 305, "L", "PNG")]
#: for the 2,000-image folder: about 300 px, mostly JPEG (decoding is then ~3 ms an image
#: here; the large PNGs above cost 5-10x that, which 2,000 times is most of a minute)
SMALL = [(300, 320, "RGB", "JPEG"), (310, 305, "L", "JPEG"), (340, 300, "RGB", "JPEG"),
         (300, 330, "P", "PNG"), (320, 300, "RGBA", "PNG")]


def _blobs(kinds, seed: int = 0):
    """Encoded images of the given (width, height, mode, format), smooth content so that
    they are small files."""
    rng = np.random.default_rng(seed)
    out = []
    for w, h, mode, fmt in kinds:
        a = rng.integers(0, 255, (4, 4, 3), dtype=np.uint8)
        im = Image.fromarray(a).resize((w, h), Image.Resampling.BILINEAR).convert(mode)
        b = io.BytesIO()
        im.save(b, fmt, **({"quality": 40} if fmt == "JPEG" else {}))
        out.append((b.getvalue(), "jpg" if fmt == "JPEG" else "png"))
    return out


def _folder(root: Path, n: int) -> Path:
    """``n`` files cycling through the blobs: writing bytes, no encoding per file, so 2,000
    images take well under a second to make (about 10 MB)."""
    root.mkdir(parents=True)
    blobs = _blobs(SMALL if n > 100 else ASSORTED)
    for i in range(n):
        data, ext = blobs[i % len(blobs)]
        (root / f"im{i:05d}.{ext}").write_bytes(data)
    return root


@pytest.mark.parametrize("n", [3, 50, 2000])
def test_a_folder_trains_with_no_flags(tmp_path, capsys, n):
    """``ganforge train --data FOLDER --steps 1`` and nothing else: default widths (64 px,
    width 64 DCGAN, EMA standing statistics: about 10-30 s on a shared 2-core CPU, mostly the
    EMA's BatchNorm recalibration), so one step."""
    folder = _folder(tmp_path / f"f{n}", n)
    assert scan_folder(folder).n_images == n and scan_folder(folder).min_side == 300
    run = tmp_path / "run"
    assert main(["train", "--data", str(folder), "--steps", "1", "--out", str(run)]) == 0
    err = capsys.readouterr().err
    first = err.lstrip().splitlines()[0]
    assert first.startswith("[ganforge] chosen from the data"), err[:500]
    assert "data.img_size=64 (auto" in first and "override with data.img_size=N" in first
    assert f"train.batch_size={min(64, n)} (auto" in first
    assert "aug.diffaug=translation,cutout,color" in first and "ema.half_life=10" in first
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["data"]["img_size"] == 64 and saved["train"]["batch_size"] == min(64, n)
    assert saved["aug"]["diffaug"] == "translation,cutout,color" and saved["ema"]["half_life"] == 10
    assert (run / "checkpoints" / "latest.pt").is_file()


def test_explicit_flags_win_end_to_end(tmp_path, capsys):
    folder = _folder(tmp_path / "f", 12)
    run = tmp_path / "run"
    assert main(["train", "--data", str(folder), "--steps", "1", "--batch-size", "4",
                 "--out", str(run), "data.img_size=32", "ema.half_life=0", "model.g_width=4",
                 "model.d_width=4", "log.gif=false"]) == 0
    first = capsys.readouterr().err.lstrip().splitlines()[0]
    assert first.startswith("[ganforge] chosen from the data")
    assert "aug.diffaug=translation,cutout,color" in first      # the one key left unset
    assert "data.img_size" not in first and "batch_size" not in first and "ema" not in first
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert (saved["data"]["img_size"], saved["train"]["batch_size"], saved["ema"]["half_life"]) == (32, 4, 0)
    # resuming reads the saved config: every key is explicit, nothing is chosen again
    assert main(["train", "--out", str(run), "--resume", "--steps", "2"]) == 0
    assert "chosen from the data" not in capsys.readouterr().err
