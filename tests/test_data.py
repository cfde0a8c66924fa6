"""Tests for ganforge.data: IDX datasets and their download, image folders, arrays, caching,
and (marked ``realdata``) the real Fashion-MNIST and emoji datasets.

Every test runs with ``$GANFORGE_CACHE``/``$GANFORGE_DATA`` in a temp folder, no system
dataset folders and all mirrors pointed at a closed local port, so nothing touches the real
user cache or the network.
"""
from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import http.server
import os
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import ganforge.data as gd
from ganforge.data import (
    DATASETS,
    DataError,
    DataWarning,
    ImageDataset,
    dataset_names,
    load_dataset,
    to_float,
    to_uint8,
)
from ganforge.data import cache as cache_mod
from ganforge.data import emoji as emoji_mod
from ganforge.data import folder as folder_mod
from ganforge.data import mnist as mnist_mod
from ganforge.data import paths as paths_mod
from ganforge.data.download import mirror_env_var
from ganforge.data.idx import parse_idx, read_idx, write_idx

REAL_SYSTEM_ROOTS = list(paths_mod.SYSTEM_ROOTS)
REAL_FONT_PATHS = list(emoji_mod.SYSTEM_FONT_PATHS)
REQUIRE_DATA = os.environ.get("GANFORGE_REQUIRE_DATA") == "1"
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(autouse=True)
def hermetic(tmp_path, monkeypatch):
    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("GANFORGE_DATA", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    dead = f"http://127.0.0.1:{_closed_port()}/"
    for name in ("FASHION_MNIST", "MNIST", "EMOJI"):
        monkeypatch.setenv(f"GANFORGE_MIRROR_{name}", dead)
    monkeypatch.setattr(paths_mod, "SYSTEM_ROOTS", [])
    monkeypatch.setattr(emoji_mod, "SYSTEM_FONT_PATHS", [])


def cache_files() -> list[Path]:
    d = cache_mod.array_dir()
    return sorted(d.glob("*.npy")) if d.exists() else []


# --------------------------------------------------------------------------- IDX helpers
def make_idx(folder: Path, n_train=12, n_test=5, size=28, gz=True, seed=0) -> dict:
    """Write the four MNIST-style files; return the arrays written."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        x = rng.integers(0, 256, (n, size, size), dtype=np.uint8)
        y = (np.arange(n) % 10).astype(np.uint8)
        suffix = ".gz" if gz else ""
        write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", x, compress=gz)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", y, compress=gz)
        out[prefix] = (x, y)
    return out


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------- API basics
def test_public_api_and_registry():
    assert dataset_names() == ["avatars", "emoji", "fashion-mnist", "mnist", "wesnoth"]
    assert set(DATASETS.names()) == set(dataset_names())
    assert issubclass(DataError, ValueError)
    for name in ("DATASETS", "DataError", "ImageDataset", "load_dataset", "dataset_names",
                 "to_float", "to_uint8"):
        assert hasattr(gd, name)


def test_to_float_to_uint8_roundtrip():
    x = torch.arange(256, dtype=torch.uint8).reshape(1, 1, 16, 16)
    f = to_float(x)
    assert f.dtype == torch.float32 and f.min() == -1 and f.max() == 1
    assert torch.equal(to_uint8(f), x)
    assert torch.equal(to_uint8(torch.tensor([-3.0, 0.0, 7.0])),
                       torch.tensor([0, 128, 255], dtype=torch.uint8))
    with pytest.raises(TypeError):
        to_float(f)
    with pytest.raises(TypeError):
        to_uint8(x)


# --------------------------------------------------------------------------- IDX format
@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.float32])
def test_idx_roundtrip(tmp_path, gz, dtype):
    a = (np.arange(2 * 3 * 4) - 5).astype(dtype).reshape(2, 3, 4)
    if dtype == np.uint8:
        a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    p = tmp_path / ("a.idx.gz" if gz else "a.idx")
    write_idx(p, a)
    assert (p.read_bytes()[:2] == b"\x1f\x8b") == gz
    b = read_idx(p)
    assert b.dtype == a.dtype and np.array_equal(a, b) and b.flags.writeable


def test_idx_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad-images-idx3-ubyte"
    bad.write_bytes(b"\x12\x34\x56\x78rest")
    with pytest.raises(DataError, match="bad-images-idx3-ubyte.*not an IDX"):
        read_idx(bad)
    full = tmp_path / "full"
    write_idx(full, np.zeros((10, 4, 4), np.uint8), compress=False)
    cut = tmp_path / "cut-idx3-ubyte"
    cut.write_bytes(full.read_bytes()[:-7])
    with pytest.raises(DataError, match="cut-idx3-ubyte.*truncated"):
        read_idx(cut)
    badgz = tmp_path / "x.gz"
    badgz.write_bytes(gzip.compress(full.read_bytes())[:-30])
    with pytest.raises(DataError, match="x.gz.*gzip"):
        read_idx(badgz)
    with pytest.raises(DataError):
        parse_idx(b"")


# --------------------------------------------------------------------------- named IDX
@pytest.mark.parametrize("gz", [True, False])
def test_named_idx_from_data_dir(tmp_path, gz):
    data = make_idx(tmp_path / "d" / "mnist", gz=gz)
    ds = load_dataset("mnist", data_dir=str(tmp_path / "d"))
    x, y = data["train"]
    assert isinstance(ds, ImageDataset) and len(ds) == 12
    assert ds.images.dtype == torch.uint8 and ds.images.shape == (12, 1, 28, 28)
    assert ds.images.is_contiguous()
    assert torch.equal(ds.images[:, 0], torch.from_numpy(x))
    assert ds.labels.dtype == torch.int64 and torch.equal(ds.labels, torch.from_numpy(y).long())
    assert ds.class_names == [str(i) for i in range(10)] and ds.num_classes == 10
    assert ds.name == "mnist:train" and ds.source.endswith(
        "train-images-idx3-ubyte" + (".gz" if gz else ""))
    # name:split overrides split
    t = load_dataset("mnist:test", split="train", data_dir=str(tmp_path / "d"))
    assert t.name == "mnist:test" and len(t) == 5
    assert torch.equal(t.images[:, 0], torch.from_numpy(data["t10k"][0]))
    assert len(load_dataset("mnist", split="test", data_dir=str(tmp_path / "d"))) == 5


def test_fashion_class_names_and_debian_layout(tmp_path, monkeypatch):
    make_idx(tmp_path / "sys" / "fashion-mnist", n_train=20)
    monkeypatch.setattr(paths_mod, "SYSTEM_ROOTS", [str(tmp_path / "sys")])
    ds = load_dataset("fashion-mnist")
    assert ds.class_names == ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                              "Shirt", "Sneaker", "Bag", "Ankle boot"]
    assert ds.source.startswith(str(tmp_path / "sys" / "fashion-mnist"))


def test_resolution_order(tmp_path, monkeypatch):
    """data_dir, then $GANFORGE_DATA, then the user cache, then system folders."""
    make_idx(tmp_path / "sys" / "mnist", n_train=4)
    monkeypatch.setattr(paths_mod, "SYSTEM_ROOTS", [str(tmp_path / "sys")])
    assert len(load_dataset("mnist", cache=False)) == 4
    make_idx(tmp_path / "cache" / "mnist", n_train=5)
    assert len(load_dataset("mnist", cache=False)) == 5
    make_idx(tmp_path / "env" / "mnist", n_train=6)
    monkeypatch.setenv("GANFORGE_DATA", str(tmp_path / "env"))
    assert len(load_dataset("mnist", cache=False)) == 6
    make_idx(tmp_path / "explicit" / "mnist", n_train=7)
    assert len(load_dataset("mnist", data_dir=str(tmp_path / "explicit"), cache=False)) == 7
    # data_dir may also point straight at the files
    assert len(load_dataset("mnist", data_dir=str(tmp_path / "explicit" / "mnist"),
                            cache=False)) == 7


def test_idx_resize_channels_limit(tmp_path):
    make_idx(tmp_path / "mnist", n_train=30)
    ds = load_dataset("mnist", data_dir=str(tmp_path), img_size=32, channels=3, limit=10)
    assert ds.images.shape == (10, 3, 32, 32) and ds.labels.shape == (10,)
    assert torch.equal(ds.images[:, 0], ds.images[:, 1])
    small = load_dataset("mnist", data_dir=str(tmp_path), img_size=14)
    assert small.images.shape == (30, 1, 14, 14)
    # antialiased downscale of a constant image stays constant
    const = torch.full((2, 1, 28, 28), 77, dtype=torch.uint8)
    from ganforge.data.transforms import resize_square
    assert torch.all(resize_square(const, 9) == 77)


def test_named_dataset_errors(tmp_path):
    make_idx(tmp_path / "mnist")
    with pytest.raises(DataError, match="split 'dev'.*train, test"):
        load_dataset("mnist:dev", data_dir=str(tmp_path))
    # val / train-minus-val are carved out of train (ganforge/data/resolve.py)
    assert len(load_dataset("mnist:valid", data_dir=str(tmp_path))) >= 1
    with pytest.raises(DataError, match="unknown dataset 'fashon-mnist'.*fashion-mnist"):
        load_dataset("fashon-mnist")
    with pytest.raises(DataError, match="emoji, fashion-mnist, mnist"):
        load_dataset("cifar10")
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(str(tmp_path / "nope" / "images"))
    with pytest.raises(DataError, match="channels"):
        load_dataset("mnist", data_dir=str(tmp_path), channels=2)
    with pytest.raises(DataError, match="img_size"):
        load_dataset("mnist", data_dir=str(tmp_path), img_size=-1)
    with pytest.raises(DataError, match="download=False"):
        load_dataset("fashion-mnist", download=False)


# --------------------------------------------------------------------------- download
class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/files/", root / "files"
    httpd.shutdown()
    httpd.server_close()


def _patch_checksums(monkeypatch, name: str, files: Path, **override):
    sums = {p.name: sha256(p) for p in files.glob("*.gz")}
    sums.update(override)
    spec = dataclasses.replace(mnist_mod.IDX_DATASETS[name], sha256=sums, payload_sha256={})
    monkeypatch.setitem(mnist_mod.IDX_DATASETS, name, spec)
    return spec


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*")) if folder.exists() else []


def test_download_verified_and_atomic(server, monkeypatch, tmp_path, capfd):
    url, files = server
    data = make_idx(files, n_train=9, n_test=3)
    _patch_checksums(monkeypatch, "mnist", files)
    monkeypatch.setenv("GANFORGE_MIRROR_MNIST", url)
    ds = load_dataset("mnist")
    dest = tmp_path / "cache" / "mnist"
    assert _leftovers(dest) == ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]
    assert torch.equal(ds.images[:, 0], torch.from_numpy(data["train"][0]))
    assert "downloading" in capfd.readouterr().err           # progress on stderr
    # the downloaded copy is used from now on: the network is not needed any more
    monkeypatch.setenv("GANFORGE_MIRROR_MNIST", f"http://127.0.0.1:{_closed_port()}/")
    assert len(load_dataset("mnist", cache=False)) == 9


def test_download_mirror_fallback_and_data_dir_target(server, monkeypatch, tmp_path):
    url, files = server
    make_idx(files)
    _patch_checksums(monkeypatch, "mnist", files)
    monkeypatch.setenv("GANFORGE_MIRROR_MNIST", f"http://127.0.0.1:{_closed_port()}/ {url}")
    ds = load_dataset("mnist:test", data_dir=str(tmp_path / "mine"))
    assert len(ds) == 5
    assert _leftovers(tmp_path / "mine" / "mnist") == ["t10k-images-idx3-ubyte.gz",
                                                       "t10k-labels-idx1-ubyte.gz"]


def test_download_corrupt_is_rejected_and_deleted(server, monkeypatch, tmp_path):
    url, files = server
    make_idx(files)
    _patch_checksums(monkeypatch, "mnist", files, **{"train-images-idx3-ubyte.gz": "0" * 64})
    monkeypatch.setenv("GANFORGE_MIRROR_MNIST", url)
    with pytest.raises(DataError) as e:
        load_dataset("mnist")
    msg = str(e.value)
    assert "checksum mismatch" in msg and "train-images-idx3-ubyte.gz" in msg
    assert "deleted" in msg
    assert _leftovers(tmp_path / "cache") == []                # no partial, no temp file


def test_download_recompressed_mirror_accepted_by_payload(server, monkeypatch):
    url, files = server
    data = make_idx(files)
    payload = {}
    for p in files.glob("*.gz"):
        payload[p.name[:-3]] = hashlib.sha256(gzip.decompress(p.read_bytes())).hexdigest()
    spec = dataclasses.replace(mnist_mod.IDX_DATASETS["mnist"],
                               sha256={k + ".gz": "f" * 64 for k in payload},
                               payload_sha256=payload)
    monkeypatch.setitem(mnist_mod.IDX_DATASETS, "mnist", spec)
    monkeypatch.setenv("GANFORGE_MIRROR_MNIST", url)
    ds = load_dataset("mnist")
    assert torch.equal(ds.images[:, 0], torch.from_numpy(data["train"][0]))


class _ShortHandler(http.server.BaseHTTPRequestHandler):
    """Promises 100000 bytes, sends 100, hangs up: an interrupted transfer."""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "100000")
        self.end_headers()
        self.wfile.write(b"\x1f\x8b" + b"x" * 98)
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args):
        pass


def test_download_interrupted_leaves_nothing(monkeypatch, tmp_path):
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ShortHandler)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True).start()
    try:
        monkeypatch.setenv("GANFORGE_MIRROR_MNIST", f"http://127.0.0.1:{httpd.server_address[1]}/")
        with pytest.raises(DataError, match="train-images-idx3-ubyte.gz") as e:
            load_dataset("mnist")
        assert "closed early" in str(e.value) or "IncompleteRead" in str(e.value)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert _leftovers(tmp_path / "cache") == []


def test_offline_error_is_clear(tmp_path):
    with pytest.raises(DataError) as e:
        load_dataset("fashion-mnist")
    msg = str(e.value)
    for needle in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                   "apt-get install dataset-fashion-mnist", "offline",
                   str(tmp_path / "cache" / "fashion-mnist"), "GANFORGE_MIRROR_FASHION_MNIST"):
        assert needle in msg, needle
    assert _leftovers(tmp_path / "cache") == []


# --------------------------------------------------------------------------- folders
def _save(img: Image.Image, path: Path, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **kw)
    return path


def _pixel(ds: ImageDataset, i: int) -> tuple:
    return tuple(int(v) for v in ds.images[i, :, 0, 0])


def test_folder_every_mode(tmp_path):
    d = tmp_path / "modes"
    s = (8, 8)
    _save(Image.new("L", s, 100), d / "01_gray.png")
    _save(Image.new("RGB", s, (10, 200, 30)), d / "02_rgb.bmp")
    _save(Image.new("RGBA", s, (255, 0, 0, 128)), d / "03_rgba.png")
    _save(Image.new("RGBA", s, (0, 0, 0, 0)), d / "04_transparent.webp", lossless=True)
    _save(Image.new("LA", s, (0, 128)), d / "05_la.png")
    pal = Image.new("P", s, 1)
    pal.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)           # index 0 black, 1 blue
    _save(pal, d / "06_palette.png")
    palt = Image.new("P", s, 0)
    palt.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    _save(palt, d / "07_palette_transparent.png", transparency=0)
    _save(Image.new("CMYK", s, (0, 255, 255, 0)), d / "08_cmyk.tif")
    _save(Image.new("CMYK", s, (0, 255, 255, 0)), d / "09_cmyk.jpg", quality=100)
    _save(Image.fromarray(np.full((8, 8), 65535, np.uint16)), d / "10_i16_max.png")
    _save(Image.fromarray(np.full((8, 8), 1000, np.uint16)), d / "11_i16_low.png")
    _save(Image.fromarray(np.full((8, 8), 32768, np.int32), "I"), d / "12_i32.tif")
    _save(Image.new("1", s, 1), d / "13_bilevel.png")
    _save(Image.new("RGB", s, (250, 250, 5)), d / "14_photo.jpeg", quality=100)
    ds = load_dataset(str(d))
    assert ds.images.shape == (14, 3, 8, 8) and ds.labels is None and ds.skipped == 0
    exact = {0: (100,) * 3, 1: (10, 200, 30), 2: (255, 127, 127), 3: (255,) * 3,
             4: (127,) * 3, 5: (0, 0, 255), 6: (255,) * 3, 7: (255, 0, 0),
             9: (255,) * 3, 10: (4,) * 3, 11: (128,) * 3, 12: (255,) * 3}
    for i, want in exact.items():
        assert _pixel(ds, i) == want, (i, _pixel(ds, i), want)
    for i, want in {8: (255, 0, 0), 13: (250, 250, 5)}.items():   # lossy JPEG
        assert np.abs(np.subtract(_pixel(ds, i), want)).max() <= 8, (i, _pixel(ds, i))


def test_folder_channels(tmp_path):
    gray = tmp_path / "gray"
    _save(Image.new("L", (6, 6), 50), gray / "a.png")
    _save(Image.fromarray(np.full((6, 6), 65535, np.uint16)), gray / "b.png")
    _save(Image.new("LA", (6, 6), (200, 255)), gray / "c.png")
    g = load_dataset(str(gray))
    assert g.images.shape == (3, 1, 6, 6)                      # every image gray -> 1 channel
    assert load_dataset(str(gray), channels=3).images.shape == (3, 3, 6, 6)
    color = tmp_path / "color"
    _save(Image.new("RGB", (6, 6), (255, 0, 0)), color / "red.png")
    _save(Image.new("L", (6, 6), 9), color / "gray.png")
    c = load_dataset(str(color))
    assert c.images.shape == (2, 3, 6, 6)
    assert _pixel(c, 0) == (9, 9, 9)                            # gray tiled (sorted: gray, red)
    luma = load_dataset(str(color), channels=1)
    assert luma.images.shape == (2, 1, 6, 6) and _pixel(luma, 1) == (76,)   # 0.299 * 255


def test_folder_classes_and_order(tmp_path):
    d = tmp_path / "pets"
    _save(Image.new("RGB", (4, 4), (1, 1, 1)), d / "dog" / "x.png")
    _save(Image.new("RGB", (4, 4), (2, 2, 2)), d / "cat" / "b.jpg", quality=100)
    _save(Image.new("RGB", (4, 4), (3, 3, 3)), d / "cat" / "deep" / "a.png")
    _save(Image.new("RGB", (4, 4), (4, 4, 4)), d / "dog" / ".hidden.png")
    (d / "dog" / "notes.txt").write_text("not an image")
    ds = load_dataset(str(d))
    assert ds.class_names == ["cat", "dog"] and ds.num_classes == 2
    assert ds.labels.tolist() == [0, 0, 1]                     # cat/b, cat/deep/a, dog/x
    assert ds.name == str(d)
    _save(Image.new("RGB", (4, 4), (5, 5, 5)), d / "loose.png")   # mixed: no labels
    mixed = load_dataset(str(d))
    assert mixed.labels is None and mixed.class_names is None and len(mixed) == 4


def test_folder_resize_and_center_crop(tmp_path):
    d = tmp_path / "wide"
    a = np.zeros((10, 60, 3), np.uint8)                       # red | green | blue bands;
    a[:, :15] = (255, 0, 0)                                    # the center crop (25..35) and
    a[:, 15:45] = (0, 255, 0)                                  # its filter support are green
    a[:, 45:] = (0, 0, 255)
    _save(Image.fromarray(a), d / "bands.png")
    _save(Image.new("RGB", (40, 40), (0, 255, 0)), d / "square.png")
    ds = load_dataset(str(d), img_size=5)
    assert ds.images.shape == (2, 3, 5, 5)
    assert torch.all(ds.images[0, 1] >= 250) and torch.all(ds.images[0, [0, 2]] <= 5)
    auto = load_dataset(str(d))                                 # img_size=0: smallest side
    assert auto.images.shape == (2, 3, 10, 10)
    up = load_dataset(str(d), img_size=64, limit=1)
    assert up.images.shape == (1, 3, 64, 64)


def _bad_files(d: Path) -> None:
    good = _save(Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3),
                                                                  dtype=np.uint8)),
                 d / "tmp_full.png")
    (d / "truncated.png").write_bytes(good.read_bytes()[:len(good.read_bytes()) // 2])
    good.unlink()
    (d / "garbage.jpg").write_bytes(b"this is not a jpeg at all")


def test_folder_skips_unreadable_or_strict_fails(tmp_path):
    d = tmp_path / "some_bad"
    _save(Image.new("RGB", (8, 8), (1, 2, 3)), d / "ok1.png")
    _save(Image.new("RGB", (8, 8), (4, 5, 6)), d / "ok2.png")
    _bad_files(d)
    with pytest.warns(DataWarning, match="unreadable image") as rec:
        ds = load_dataset(str(d), img_size=8, cache=False)
    shown = " ".join(str(w.message) for w in rec)
    assert "truncated.png" in shown and "garbage.jpg" in shown
    assert len(ds) == 2 and ds.skipped == 2
    with pytest.raises(DataError, match="garbage.jpg|truncated.png") as e:
        load_dataset(str(d), img_size=8, strict=True, cache=False)
    assert "strict" in str(e.value)
    # a cached result that had skips is not trusted under strict
    with pytest.warns(DataWarning):
        load_dataset(str(d), img_size=8)
    with pytest.warns(DataWarning, match="skipped"):
        assert load_dataset(str(d), img_size=8).skipped == 2   # from the cache
    with pytest.raises(DataError, match="strict"):
        load_dataset(str(d), img_size=8, strict=True)


def test_folder_all_bad_and_empty(tmp_path):
    bad = tmp_path / "all_bad"
    bad.mkdir()
    _bad_files(bad)
    with pytest.warns(DataWarning):
        with pytest.raises(DataError, match="none of the 2 image files could be read"):
            load_dataset(str(bad))
    with pytest.warns(DataWarning):
        with pytest.raises(DataError, match="none of the 2"):
            load_dataset(str(bad), img_size=16)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match=r"empty.*no images found.*\.png.*\.jpg"):
        load_dataset(str(empty))
    (empty / "readme.txt").write_text("hi")
    with pytest.raises(DataError, match=r"\.txt x1.*accepted extensions"):
        load_dataset(str(empty))
    with pytest.raises(DataError, match="not a .npy/.npz"):
        load_dataset(str(empty / "readme.txt"))


def test_folder_split_means_subfolder(tmp_path):
    d = tmp_path / "ds"
    _save(Image.new("L", (4, 4), 1), d / "train" / "a.png")
    _save(Image.new("L", (4, 4), 2), d / "test" / "b.png")
    assert len(load_dataset(str(d), split="test")) == 1
    with pytest.raises(DataError, match="split 'dev'"):
        load_dataset(str(d), split="dev")


# --------------------------------------------------------------------------- arrays
def test_npy_layouts_and_ranges(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (5, 12, 12), dtype=np.uint8)
    np.save(tmp_path / "nhw.npy", x)
    ds = load_dataset(str(tmp_path / "nhw.npy"))
    assert ds.images.shape == (5, 1, 12, 12) and torch.equal(ds.images[:, 0], torch.from_numpy(x))
    assert ds.labels is None
    rgb = rng.integers(0, 256, (4, 10, 10, 3), dtype=np.uint8)
    np.save(tmp_path / "nhwc01.npy", rgb.astype(np.float32) / 255)
    a = load_dataset(str(tmp_path / "nhwc01.npy"))
    assert torch.equal(a.images, torch.from_numpy(rgb).permute(0, 3, 1, 2))
    np.save(tmp_path / "nchw11.npy", rgb.transpose(0, 3, 1, 2).astype(np.float64) / 127.5 - 1)
    b = load_dataset(str(tmp_path / "nchw11.npy"))
    assert torch.equal(b.images, a.images)
    rgba = np.zeros((2, 6, 6, 4), np.uint8)
    rgba[..., 0] = 255                                         # red, fully transparent
    np.save(tmp_path / "rgba.npy", rgba)
    assert torch.all(load_dataset(str(tmp_path / "rgba.npy")).images == 255)
    c = load_dataset(str(tmp_path / "nhwc01.npy"), img_size=5, channels=1, limit=3)
    assert c.images.shape == (3, 1, 5, 5)


def test_npz_keys_and_labels(tmp_path):
    x = np.random.default_rng(1).integers(0, 256, (6, 8, 8), dtype=np.uint8)
    y = np.array([0, 1, 2, 0, 1, 2])
    np.savez(tmp_path / "named.npz", images=x, labels=y,
             class_names=np.array(["a", "b", "c"]))
    ds = load_dataset(str(tmp_path / "named.npz"))
    assert ds.labels.tolist() == y.tolist() and ds.class_names == ["a", "b", "c"]
    np.savez_compressed(tmp_path / "xy.npz", x=x, y=y)
    assert load_dataset(str(tmp_path / "xy.npz")).class_names == ["0", "1", "2"]
    np.savez(tmp_path / "pos.npz", x, y)                       # arr_0 / arr_1
    pos = load_dataset(str(tmp_path / "pos.npz"), limit=4)
    assert len(pos) == 4 and pos.labels.tolist() == [0, 1, 2, 0]
    np.savez(tmp_path / "only.npz", pictures=x)
    assert len(load_dataset(str(tmp_path / "only.npz"))) == 6


def test_bad_arrays(tmp_path):
    cases = {
        "flat.npy": (np.zeros((5, 64), np.uint8), "3 or 4 dimensions"),
        "chan.npy": (np.zeros((5, 7, 8, 9), np.uint8), "channel axis"),
        "range.npy": (np.full((2, 4, 4), 3.5, np.float32), r"\[0, 1\] or \[-1, 1\]"),
        "nan.npy": (np.full((2, 4, 4), np.nan, np.float32), "NaN"),
        "int.npy": (np.full((2, 4, 4), 300, np.int32), "0..255"),
    }
    for fname, (arr, pattern) in cases.items():
        np.save(tmp_path / fname, arr)
        with pytest.raises(DataError, match=pattern) as e:
            load_dataset(str(tmp_path / fname))
        assert fname in str(e.value)
    np.savez(tmp_path / "two.npz", a=np.zeros((2, 4, 4)), b=np.zeros((2, 4, 4)))
    with pytest.raises(DataError, match="which array holds the images.*a, b"):
        load_dataset(str(tmp_path / "two.npz"))
    np.savez(tmp_path / "badlabels.npz", images=np.zeros((3, 4, 4), np.uint8), labels=[0, 1])
    with pytest.raises(DataError, match="one entry per image"):
        load_dataset(str(tmp_path / "badlabels.npz"))
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="pickle"):
        load_dataset(str(tmp_path / "obj.npy"))
    (tmp_path / "junk.npy").write_bytes(b"nope")
    with pytest.raises(DataError, match="junk.npy"):
        load_dataset(str(tmp_path / "junk.npy"))


# --------------------------------------------------------------------------- cache
def test_second_load_comes_from_cache(tmp_path, monkeypatch):
    d = tmp_path / "imgs"
    for i in range(3):
        _save(Image.new("RGB", (8, 8), (i, 2 * i, 3 * i)), d / f"{i}.png")
    first = load_dataset(str(d), img_size=4)
    files = cache_files()
    assert len(files) == 1 and files[0].parent == tmp_path / "cache" / "arrays"
    assert not list(files[0].parent.glob("*.partial")) and files[0].with_suffix(".json").exists()
    calls = []
    real = folder_mod.decode_chunks
    monkeypatch.setattr(folder_mod, "decode_chunks",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    second = load_dataset(str(d), img_size=4)
    assert calls == [] and torch.equal(first.images, second.images)
    assert np.load(files[0], allow_pickle=False).shape == (3, 3, 4, 4)
    # another size is another entry; a changed file invalidates
    load_dataset(str(d), img_size=2)
    assert len(cache_files()) == 2 and calls == [1]
    time.sleep(0.01)
    _save(Image.new("RGB", (8, 8), (99, 99, 99)), d / "1.png")
    changed = load_dataset(str(d), img_size=4)
    assert calls == [1, 1] and _pixel(changed, 1) == (99, 99, 99)
    # cache=False neither reads nor writes
    n = len(cache_files())
    load_dataset(str(d), img_size=3, cache=False)
    assert len(cache_files()) == n and calls == [1, 1, 1]


def test_idx_cache_and_corrupt_cache_entry(tmp_path):
    make_idx(tmp_path / "mnist")
    a = load_dataset("mnist", data_dir=str(tmp_path))
    (entry,) = cache_files()
    entry.write_bytes(b"torn")
    with pytest.warns(DataWarning, match="unreadable cache file"):
        b = load_dataset("mnist", data_dir=str(tmp_path))
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert b.class_names == a.class_names and len(cache_files()) == 1
    c = load_dataset("mnist", data_dir=str(tmp_path))
    assert torch.equal(a.images, c.images)


# --------------------------------------------------------------------------- mapped cache, parallel decode
def _mixed_folder(d: Path, n: int = 30, bad: bool = True) -> Path:
    """n images in two class folders: RGB and gray, several sizes and formats (+ 2 bad files)."""
    rng = np.random.default_rng(3)
    for i in range(n):
        h, w = int(rng.integers(10, 30)), int(rng.integers(10, 30))
        if i % 3 == 0:
            img = Image.fromarray(rng.integers(0, 255, (h, w), dtype=np.uint8), "L")
        else:
            img = Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), "RGB")
        _save(img, d / ("cats" if i % 2 else "dogs") / f"{i:03d}.{'png' if i % 4 else 'jpg'}")
    if bad:
        _bad_files(d / "cats")
    return d


def test_cache_is_a_memory_mapped_npy(tmp_path, monkeypatch):
    d = _mixed_folder(tmp_path / "imgs", bad=False)
    small = load_dataset(str(d), img_size=8)                 # 30x3x8x8: read into memory
    assert not small.mapped and small.images.is_contiguous()
    monkeypatch.setenv(cache_mod.IN_MEMORY_ENV, "0")         # everything above 0 MB: mapped
    big = load_dataset(str(d), img_size=8)
    (npy,) = cache_files()
    assert big.mapped and torch.equal(big.images, small.images)
    assert torch.equal(big.labels, small.labels) and big.class_names == ["cats", "dogs"]
    arr = np.load(npy, mmap_mode="r")
    assert isinstance(arr, np.memmap) and arr.dtype == np.uint8 and arr.shape == (30, 3, 8, 8)
    maps = Path("/proc/self/maps")
    if maps.exists():                                          # the tensor is the file's mapping
        assert str(npy) in maps.read_text()
    meta = __import__("json").loads(npy.with_suffix(".json").read_text())
    assert meta["shape"] == [30, 3, 8, 8] and meta["skipped"] == 0 and len(meta["labels"]) == 30
    assert meta["fingerprint"] and meta["class_names"] == ["cats", "dogs"]
    # a subset of a mapped dataset is an index into the map, not a copy of the pixels
    sub = big.subset(torch.tensor([5, 1, 7]), name="sub")
    assert sub.mapped and sub.base_images.data_ptr() == big.base_images.data_ptr()
    assert torch.equal(sub.images, small.images[[5, 1, 7]]) and sub.labels.tolist() == \
        small.labels[[5, 1, 7]].tolist()
    assert torch.equal(sub.subset(torch.tensor([2]), "one").images, small.images[[7]])
    # and batches come from the map through the index
    from ganforge.data.batching import BatchLoader
    bl = BatchLoader(sub.base_images, sub.labels, batch_size=3, seed=0, index=sub.index)
    x, y = bl.next()
    got = sorted(map(tuple, to_uint8(x).flatten(1).tolist()))
    assert got == sorted(map(tuple, sub.images.flatten(1).tolist()))


def test_interrupted_decode_is_not_used_and_resumes(tmp_path, monkeypatch):
    d = _mixed_folder(tmp_path / "imgs", bad=False)
    expect = load_dataset(str(d), img_size=8, cache=False).images
    monkeypatch.setattr(folder_mod, "CHUNK", 4)
    real = folder_mod._decode_chunk
    calls = []

    def interrupted(*a, **k):
        if len(calls) == 3:
            raise KeyboardInterrupt               # Ctrl-C during the 4th chunk
        calls.append(a[1])
        return real(*a, **k)

    monkeypatch.setattr(folder_mod, "_decode_chunk", interrupted)
    with pytest.raises(KeyboardInterrupt):
        load_folder_serial(d)
    assert cache_files() == [] and not list(cache_mod.array_dir().glob("*.json"))
    (part,) = cache_mod.array_dir().glob("*.partial")
    assert len(list(part.glob("chunk-*.npz"))) == 3             # the finished chunks are kept
    # a torn array with no metadata (a crash between the two writes) is not used either
    torn = cache_mod.array_dir() / (part.name.split(".")[0] + ".npy")
    torn.write_bytes(b"\x93NUMPY torn")
    calls.clear()
    monkeypatch.setattr(folder_mod, "_decode_chunk", lambda *a, **k: calls.append(a[1]) or real(*a, **k))
    ds = load_folder_serial(d)
    assert calls == [12, 16, 20, 24, 28]                      # only the chunks not yet decoded
    assert torch.equal(ds.images, expect) and not part.exists()
    assert len(cache_files()) == 1
    calls.clear()
    assert torch.equal(load_folder_serial(d).images, expect) and calls == []   # from the cache


def load_folder_serial(d: Path, **kw) -> ImageDataset:
    return folder_mod.load_folder(d, img_size=8, workers=1, **kw)


@pytest.mark.parametrize("cache", [False, True])
def test_parallel_and_serial_decode_identical(tmp_path, monkeypatch, cache):
    d = _mixed_folder(tmp_path / "imgs")
    monkeypatch.setattr(folder_mod, "CHUNK", 5)
    out = {}
    for workers in (1, 3):
        monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path / f"cache{workers}"))
        with pytest.warns(DataWarning, match="unreadable image") as rec:
            out[workers] = folder_mod.load_folder(d, img_size=0, workers=workers, cache=cache)
        shown = " ".join(str(w.message) for w in rec)
        assert "truncated.png" in shown and "garbage.jpg" in shown
    a, b = out[1], out[3]
    assert a.shape == b.shape == (30, 3, 10, 10) and torch.equal(a.images, b.images)
    assert torch.equal(a.labels, b.labels) and a.skipped == b.skipped == 2
    with pytest.raises(DataError, match="garbage.jpg|truncated.png"):
        folder_mod.load_folder(d, img_size=8, workers=3, strict=True, cache=cache)


def test_gray_folder_stays_one_channel_and_limit(tmp_path, monkeypatch):
    d = tmp_path / "gray"
    for i in range(11):
        _save(Image.new("L", (6, 6), i * 10), d / f"{i:02d}.png")
    monkeypatch.setattr(folder_mod, "CHUNK", 4)
    ds = folder_mod.load_folder(d, workers=2)
    assert ds.shape == (11, 1, 6, 6) and [_pixel(ds, i)[0] for i in range(11)] == list(range(0, 110, 10))
    lim = folder_mod.load_folder(d, workers=2, limit=6)
    assert lim.shape == (6, 1, 6, 6) and torch.equal(lim.images, ds.images[:6])


# --------------------------------------------------------------------------- real data
def _need(path: Path, what: str):
    if not path.exists():
        if REQUIRE_DATA:
            pytest.fail(f"{what} missing at {path} and GANFORGE_REQUIRE_DATA=1")
        pytest.skip(f"{what} not installed ({path})")


@pytest.mark.realdata
def test_real_fashion_mnist(monkeypatch):
    _need(FASHION_DIR / "train-images-idx3-ubyte.gz", "Fashion-MNIST (dataset-fashion-mnist)")
    monkeypatch.setattr(paths_mod, "SYSTEM_ROOTS", REAL_SYSTEM_ROOTS)
    t0 = time.perf_counter()
    train = load_dataset("fashion-mnist", download=False)
    first = time.perf_counter() - t0
    assert train.images.shape == (60000, 1, 28, 28) and train.images.dtype == torch.uint8
    assert len(train.class_names) == 10 and train.class_names[9] == "Ankle boot"
    assert torch.bincount(train.labels).tolist() == [6000] * 10
    test = load_dataset("fashion-mnist:test", download=False)
    assert test.images.shape == (10000, 1, 28, 28)
    assert torch.bincount(test.labels).tolist() == [1000] * 10
    t0 = time.perf_counter()
    again = load_dataset("fashion-mnist", download=False)
    cached = time.perf_counter() - t0
    assert torch.equal(again.images, train.images)
    print(f"fashion-mnist train: first load {first:.2f}s, cached {cached:.3f}s")


@pytest.mark.realdata
def test_real_emoji(monkeypatch):
    font = Path(REAL_FONT_PATHS[0])
    _need(font, "Noto Color Emoji font (fonts-noto-color-emoji)")
    monkeypatch.setattr(emoji_mod, "SYSTEM_FONT_PATHS", REAL_FONT_PATHS)
    t0 = time.perf_counter()
    ds = load_dataset("emoji", download=False)
    first = time.perf_counter() - t0
    assert len(ds) >= 1000 and ds.images.shape[1:] == (3, 64, 64) and ds.num_classes >= 9  # Unicode emoji groups
    x = ds.images.float()
    assert (x[:, 0] - x[:, 1]).abs().mean() > 5               # really in colour
    assert ds.images[:, :, 0, 0].float().mean() > 200          # mostly white corners
    t0 = time.perf_counter()
    again = load_dataset("emoji", download=False)
    cached = time.perf_counter() - t0
    assert torch.equal(again.images, ds.images) and cached < 1.0
    print(f"emoji: {len(ds)} images, first load {first:.2f}s, cached {cached:.3f}s")


def test_emoji_missing_font_offline_is_clear(tmp_path):
    with pytest.raises(DataError) as e:
        load_dataset("emoji")
    msg = str(e.value)
    assert "apt-get install fonts-noto-color-emoji" in msg and "NotoColorEmoji.ttf" in msg
    assert str(tmp_path / "cache" / "emoji") in msg
    assert _leftovers(tmp_path / "cache") == []
    with pytest.raises(DataError, match="split"):
        load_dataset("emoji:test")


EMOJI_TEST_REAL = Path("/usr/share/unicode/emoji/emoji-test.txt")


def test_emoji_groups_file_is_downloaded_and_verified(server, monkeypatch, tmp_path):
    """Without a local emoji-test.txt, the file is fetched from the mirror (127.0.0.1 here)
    and checked against its SHA-256; a changed file is refused with the reason."""
    _need(EMOJI_TEST_REAL, "Unicode emoji-test.txt (unicode-data)")
    url, files = server
    files.mkdir(parents=True)
    monkeypatch.setattr(emoji_mod, "SYSTEM_EMOJI_TEST_PATHS", [])
    monkeypatch.setenv(mirror_env_var("emoji"), url)
    (files / "emoji-test.txt").write_bytes(EMOJI_TEST_REAL.read_bytes() + b"# tampered\n")
    with pytest.raises(DataError, match="download failed"):
        emoji_mod.find_emoji_test(str(tmp_path / "d1"))
    with pytest.raises(DataError, match="unicode-data"):
        emoji_mod.find_emoji_test(str(tmp_path / "d1"), download=False)
    (files / "emoji-test.txt").write_bytes(EMOJI_TEST_REAL.read_bytes())
    got = emoji_mod.find_emoji_test(str(tmp_path / "d2"))
    assert got.read_bytes() == EMOJI_TEST_REAL.read_bytes() and str(tmp_path / "d2") in str(got)
