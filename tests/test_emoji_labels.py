"""Colour quality measured offline (issue 17 part 1): the emoji dataset labelled by Unicode
emoji group, and `ganforge evaluator train` + `ganforge eval` on emoji and on a colour folder
with class subfolders at 64 px."""
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ganforge.cli import main
from ganforge.data import DataError, emoji

SAMPLE = """\
# emoji-test.txt
# Version: 15.0

# group: Smileys & Emotion
# subgroup: face-smiling
1F600                                                  ; fully-qualified     # 😀 E1.0 grinning face
263A FE0F                                              ; fully-qualified     # ☺️ E0.6 smiling face
263A                                                   ; unqualified         # ☺ E0.6 smiling face

# group: People & Body
1F44B 1F3FB                                            ; fully-qualified     # 👋🏻 E1.0 waving hand: light skin tone

# group: Component
1F3FB                                                  ; component           # 🏻 E1.0 light skin tone

# group: Animals & Nature
1F436                                                  ; fully-qualified     # 🐶 E0.6 dog face

# group: Symbols
0030 FE0F 20E3                                         ; fully-qualified     # 0️⃣ E0.6 keycap: 0

# group: Flags
1F1E6 1F1E8                                            ; fully-qualified     # 🇦🇨 E2.0 flag: Ascension Island
"""


def test_groups_follow_the_standard_file():
    chars = ["\U0001F600", "\u263A", "\U0001F3FB", "\U0001F436", "0", "\U0001F1E6", "\u20E3", "A"]
    idx, groups = emoji.emoji_groups(SAMPLE, chars)
    assert groups == ["Smileys & Emotion", "People & Body", "Component", "Animals & Nature",
                      "Symbols", "Flags"]
    named = [groups[i] if i is not None else None for i in idx]
    # listed alone (any qualification) / alone as a component / first of a sequence
    # (keycap base, regional indicator) / inside a sequence / nowhere
    assert named == ["Smileys & Emotion", "Smileys & Emotion", "Component", "Animals & Nature",
                     "Symbols", "Flags", "Symbols", None]


def test_not_the_file_is_an_error():
    with pytest.raises(DataError, match="emoji-test"):
        emoji.parse_emoji_test("hello\nworld\n")


def test_missing_file_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setattr(emoji, "SYSTEM_EMOJI_TEST_PATHS", [str(tmp_path / "none.txt")])
    monkeypatch.setenv("GANFORGE_DATA", str(tmp_path))
    with pytest.raises(DataError, match="apt-get install unicode-data"):
        emoji.find_emoji_test(str(tmp_path))


def _have_emoji() -> bool:
    try:
        emoji.find_font(download=False)
        emoji.find_emoji_test()
    except DataError:
        return False
    return True


needs_emoji = pytest.mark.skipif(not _have_emoji(), reason="needs fonts-noto-color-emoji and "
                                 "unicode-data (scripts/setup.sh installs both)")


@needs_emoji
def test_real_emoji_dataset_has_the_unicode_groups():
    with warnings.catch_warnings():     # the font's non-emoji code points (NUL, CR, space,
        warnings.simplefilter("error")  # tags) drop out quietly: no "unreadable image" warning
        ds = emoji.load_emoji(img_size=8)
    assert ds.skipped == 0
    assert ds.class_names[0] == "Smileys & Emotion" and "Flags" in ds.class_names
    assert len(ds.class_names) >= 9 and len(ds) > 1300
    assert ds.labels.shape == (len(ds),) and int(ds.labels.max()) == len(ds.class_names) - 1
    counts = np.bincount(ds.labels.numpy())
    assert (counts > 0).all()


TINY = ["model.g_width=4", "model.d_width=4", "model.z_dim=8", "log.progress=false",
        "log.tensorboard=false", "log.gif=false", "--batch-size", "8"]
SCORES = ("fid", "kid_mean", "precision", "recall", "density", "coverage", "hf_ratio")


def _evaluate(run: Path, out: Path, n: int) -> dict:
    assert main(["eval", str(run), "--n", str(n), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    for k in SCORES:
        assert k in result and result[k] == result[k], (k, result.get(k))   # present, not NaN
    return result


@needs_emoji
def test_emoji_evaluator_then_eval_of_a_colour_run(tmp_path):
    assert main(["evaluator", "train", "--data", "emoji", "--img-size", "16", "--epochs", "1",
                 "--limit", "400"]) == 0
    run = tmp_path / "run"
    assert main(["train", "--data", "emoji", "data.img_size=16", "data.limit=64", "--steps", "2",
                 "--out", str(run), *TINY]) == 0
    result = _evaluate(run, tmp_path / "scores.json", 40)
    assert result["real"].startswith("emoji")


def test_colour_folder_with_class_subfolders_at_64_px(tmp_path):
    root = tmp_path / "shapes"
    g = np.random.default_rng(0)
    for cls, colour in (("red", (220, 30, 30)), ("green", (30, 200, 30)), ("blue", (30, 30, 220))):
        (root / cls).mkdir(parents=True)
        for i in range(12):
            a = np.full((80, 72, 3), 255, np.uint8)
            y, x = g.integers(0, 40, 2)
            a[y:y + 30, x:x + 30] = colour
            Image.fromarray(a).save(root / cls / f"{i}.jpg", quality=90)
    assert main(["evaluator", "train", "--data", str(root), "--img-size", "64", "--epochs", "1"]) == 0
    run = tmp_path / "run"
    assert main(["train", "--data", str(root), "data.img_size=64", "--steps", "2",
                 "--out", str(run), *TINY]) == 0
    _evaluate(run, tmp_path / "scores.json", 20)
