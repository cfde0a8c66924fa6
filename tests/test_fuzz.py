"""Fuzzed inputs: property-based tests (hypothesis) over every kind of input a user hands
ganforge -- image files, decompression bombs, IDX files, .npy/.npz arrays, config overrides
and YAML files, data specs.

The invariant, for each kind: **it works, or a GanforgeError whose message names the input
(the file / spec / key) is raised; never another exception type, a hang, or an unbounded
allocation.** Each property test is named after its input kind (``test_fuzz_<kind>``);
plain tests beside them pin the exhaustive or adversarial cases (every truncation of small
valid images, gzip/zip bombs, billion-laughs YAML, ...).

Examples per property test: ``max_examples=25`` by default, derandomized (the same examples
on every run, so CI is reproducible). More by hand::

    GANFORGE_FUZZ_EXAMPLES=500 .venv/bin/python -m pytest -q tests/test_fuzz.py
    GANFORGE_FUZZ_EXAMPLES=500 GANFORGE_FUZZ_RANDOM=1 ...   # fresh random examples each run

Every example writes into its own temp folder and loads with ``cache=False`` (or under the
per-test ``$GANFORGE_CACHE`` of tests/conftest.py); named datasets never see the system
folders (patched out), so nothing is read from or written to the user's real data.
"""
from __future__ import annotations

import contextlib
import functools
import gzip
import io
import math
import os
import signal
import struct
import tempfile
import threading
import tracemalloc
import warnings
import zipfile
import zlib
from pathlib import Path
from typing import Iterator, List, Optional, Tuple
from unittest import mock

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image, ImageFile

import ganforge.data.emoji as emoji_mod
import ganforge.data.paths as paths_mod
from ganforge.core.config import (
    Config,
    ConfigError,
    all_keys,
    check_values,
    load_config,
    resolve_key,
)
from ganforge.core.errors import GanforgeError
from ganforge.data import DATASETS, DataError, ImageDataset, load_dataset
from ganforge.data.arrays import CLASS_NAME_KEYS, IMAGE_KEYS, LABEL_KEYS
from ganforge.data.decode import decode_file
from ganforge.data.folder import IMAGE_EXTENSIONS
from ganforge.data.idx import IDX_TYPES, read_idx
from ganforge.data.spec import SPLIT_WORDS, parse_spec

# --------------------------------------------------------------------------- settings
FUZZ_EXAMPLES = int(os.environ.get("GANFORGE_FUZZ_EXAMPLES", "25"))
settings.register_profile(
    "ganforge-fuzz",
    max_examples=FUZZ_EXAMPLES,
    deadline=None,                       # decoding times vary with the machine's load
    derandomize=os.environ.get("GANFORGE_FUZZ_RANDOM") != "1",
    database=None,                       # no .hypothesis/ folder in the working tree
    print_blob=True,
    # conftest's autouse cache fixture is per test, not per example: every example here
    # works in its own temp folder (and mostly with cache=False), so sharing it is fine.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                           HealthCheck.data_too_large, HealthCheck.large_base_example],
)
FUZZ = settings.get_profile("ganforge-fuzz")

#: No single example may take longer than this (a hang is a failure, not a slow test).
EXAMPLE_SECONDS = 20
MiB = 1 << 20


@pytest.fixture(scope="module")
def fuzz_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz").resolve()


@contextlib.contextmanager
def example_dir(root: Path) -> Iterator[Path]:
    """A fresh folder per hypothesis example (tmp_path is per test, not per example)."""
    with tempfile.TemporaryDirectory(dir=root) as d:
        yield Path(d).resolve()


class Hang(Exception):
    pass


@contextlib.contextmanager
def no_hang(seconds: float = EXAMPLE_SECONDS) -> Iterator[None]:
    """Fail (rather than hang the suite) when the body runs longer than ``seconds``."""
    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def fire(signum, frame):
        raise Hang(f"no result after {seconds} s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Skipped files warn (DataWarning); that is expected here, not a failure."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@contextlib.contextmanager
def peak_traced(limit: int) -> Iterator[None]:
    """Fail when Python/numpy allocations (tracemalloc sees both) peak above ``limit``."""
    tracemalloc.start()
    try:
        yield
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < limit, f"peak traced allocation {peak / MiB:.1f} MiB >= {limit / MiB:.0f} MiB"


def expect_named(e: BaseException, *names: str) -> None:
    """``e`` is a GanforgeError whose message contains one of ``names``."""
    assert isinstance(e, GanforgeError), f"{type(e).__name__}: {e}"
    msg = str(e)
    assert any(n and n in msg for n in names), f"message names none of {names}: {msg}"


# ====================================================================== 1. image files
def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


@functools.lru_cache(maxsize=None)
def valid_images() -> dict:
    """name -> (bytes, extension) of small valid images in every format and common mode."""
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (6, 9, 3), dtype=np.uint8))
    gray, rgba = rgb.convert("L"), rgb.convert("RGBA")
    pal = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=8)   # a short palette
    i16 = Image.fromarray(rng.integers(0, 65536, (6, 9), dtype=np.uint16))
    exif = Image.Exif()
    exif[0x0112] = 6                     # rotated: the EXIF orientation path
    return {
        "png-rgb": (_encode(rgb, "PNG"), ".png"),
        "png-rgba": (_encode(rgba, "PNG"), ".png"),
        "png-palette-key": (_encode(pal, "PNG", transparency=0), ".png"),
        "png-i16": (_encode(i16, "PNG"), ".png"),
        "png-bilevel": (_encode(gray.convert("1"), "PNG"), ".png"),
        "jpeg": (_encode(rgb, "JPEG", quality=90), ".jpg"),
        "jpeg-gray-progressive": (_encode(gray, "JPEG", progressive=True), ".jpeg"),
        "jpeg-exif": (_encode(rgb, "JPEG", exif=exif.tobytes()), ".jpg"),
        "jpeg-cmyk": (_encode(rgb.convert("CMYK"), "JPEG"), ".jpg"),
        "webp-lossy": (_encode(rgb, "WEBP", quality=80), ".webp"),
        "webp-lossless-alpha": (_encode(rgba, "WEBP", lossless=True), ".webp"),
        "bmp-rgb": (_encode(rgb, "BMP"), ".bmp"),
        "bmp-palette": (_encode(pal, "BMP"), ".bmp"),
        "tiff-raw": (_encode(rgb, "TIFF"), ".tif"),
        "tiff-lzw": (_encode(rgba, "TIFF", compression="tiff_lzw"), ".tiff"),
        "tiff-i16": (_encode(i16, "TIFF"), ".tif"),
    }


#: starts of other formats Pillow knows, so random tails reach their parsers too
MAGICS = [b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"RIFF\x00\x00\x00\x00WEBPVP8 ",
          b"RIFF\x00\x00\x00\x00WEBPVP8X", b"BM", b"II*\x00", b"MM\x00*", b"GIF89a",
          b"%!PS-Adobe-3.0 EPSF-3.0\n", b"\x00\x00\x01\x00", b"8BPS", b"icns", b"P6\n"]


@st.composite
def image_file(draw) -> Tuple[bytes, str]:
    """(content, extension): random bytes, or a valid image truncated, mutated or whole."""
    how = draw(st.sampled_from(["random", "truncated", "mutated", "valid"]))
    ext = draw(st.sampled_from(IMAGE_EXTENSIONS))
    if how == "random":
        return draw(st.sampled_from(MAGICS)) + draw(st.binary(max_size=512)), ext
    data, own_ext = valid_images()[draw(st.sampled_from(sorted(valid_images())))]
    if draw(st.booleans()):
        ext = own_ext                        # else misnamed: Pillow goes by the content
    if how == "truncated":
        data = data[:draw(st.integers(0, len(data) - 1))]
    elif how == "mutated":
        b = bytearray(data)
        for i, v in draw(st.lists(st.tuples(st.integers(0, len(b) - 1), st.integers(0, 255)),
                                  min_size=1, max_size=8)):
            b[i] = v
        data = bytes(b)
    return data, ext


def check_decode_file(p: Path, size: int) -> None:
    """``decode_file`` (what ``ganforge translate`` uses per file): an image, or a DataError
    naming the file."""
    try:
        a, gray = decode_file(p, size)
    except Exception as e:  # noqa: BLE001 - the property is about the exception type
        expect_named(e, str(p))
        return
    assert a.dtype == np.uint8 and a.shape == (size, size, 1 if gray else 3)


def check_folder(folder: Path, paths: List[Path], *, img_size: int, channels: int,
                 strict: bool, cache: bool) -> Optional[ImageDataset]:
    try:
        with quiet():
            ds = load_dataset(str(folder), img_size=img_size, channels=channels, strict=strict,
                              cache=cache)
    except Exception as e:  # noqa: BLE001
        if strict and "memory" not in str(e):
            expect_named(e, *map(str, paths))         # strict: the bad file
        else:
            expect_named(e, str(folder), *map(str, paths))
        return None
    assert len(ds) + ds.skipped == len(paths) and len(ds) >= 1
    assert not (strict and ds.skipped)
    n, c, h, w = ds.images.shape
    assert h == w and h >= 1 and c in ((channels,) if channels else (1, 3))
    if img_size:
        assert h == img_size
    return ds


@FUZZ
@given(files=st.lists(image_file(), min_size=1, max_size=4),
       img_size=st.sampled_from([0, 5, 8]), channels=st.sampled_from([0, 1, 3]),
       strict=st.booleans(), cache=st.booleans())
@example(files=[(b"", ".png")], img_size=8, channels=0, strict=True, cache=False)
@example(files=[(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\n", ".png"),
                (valid_images()["png-rgb"][0], ".png")],
         img_size=0, channels=0, strict=False, cache=False)
def test_fuzz_image_files(fuzz_root, files, img_size, channels, strict, cache):
    with example_dir(fuzz_root) as d, no_hang():
        folder = d / "images"
        folder.mkdir()
        paths = []
        for i, (data, ext) in enumerate(files):
            p = folder / f"f{i}{ext}"
            p.write_bytes(data)
            paths.append(p)
        with quiet():
            for p in paths:
                check_decode_file(p, img_size or 4)
        check_folder(folder, paths, img_size=img_size, channels=channels, strict=strict,
                     cache=cache)


@pytest.mark.parametrize("name", sorted(valid_images()))
def test_image_files_every_truncation(tmp_path, name):
    """Every prefix of each small valid file: decode_file and the folder loader either
    decode it or raise a DataError naming it; non-strict loading keeps the rest."""
    data, ext = valid_images()[name]
    folder = tmp_path / name
    folder.mkdir()
    paths = []
    for n in range(len(data) + 1):
        p = folder / f"cut{n:05d}{ext}"
        p.write_bytes(data[:n])
        paths.append(p)
    with no_hang(60), quiet():
        for p in paths:
            check_decode_file(p, 4)
        ds = check_folder(folder, paths, img_size=0, channels=0, strict=False, cache=False)
        assert ds is not None and ds.skipped >= 1            # at least the empty file
        with pytest.raises(DataError) as e:
            load_dataset(str(folder), img_size=4, strict=True, cache=False)
        expect_named(e.value, str(paths[0]))                  # the empty file sorts first


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes (POSIX)")
def test_special_files_never_block(tmp_path):
    """A FIFO named like an image, array, IDX or config file would block the reader
    forever: every loader refuses it (the folder loader leaves it out) instead."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    (folder / "ok.png").write_bytes(valid_images()["png-rgb"][0])
    fifos = {name: tmp_path / name for name in ("pipe.png", "pipe.npy", "pipe.yaml",
                                                 "train-images-idx3-ubyte")}
    for f in fifos.values():
        os.mkfifo(f)
    os.mkfifo(folder / "pipe.jpg")
    with no_hang(10):
        assert len(load_dataset(str(folder), cache=False)) == 1
        for call, f in [(lambda f: decode_file(f, 8), fifos["pipe.png"]),
                        (lambda f: load_dataset(str(f), cache=False), fifos["pipe.npy"]),
                        (read_idx, fifos["train-images-idx3-ubyte"]),
                        (load_config, fifos["pipe.yaml"])]:
            with pytest.raises(GanforgeError) as e:
                call(f)
            expect_named(e.value, str(f))


# ====================================================================== 2. decompression bombs
def _png(w: int, h: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 4096)) + chunk(b"IEND", b""))


def _bmp(w: int, h: int) -> bytes:
    b = bytearray(_encode(Image.new("RGB", (2, 2), (9, 9, 9)), "BMP"))
    b[18:26] = struct.pack("<ii", w, h)
    return bytes(b)


def _tiff(w: int, h: int) -> bytes:
    entries = [(256, 4, 1, w), (257, 4, 1, h), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1),
               (273, 4, 1, 8 + 2 + 12 * 9 + 4), (277, 3, 1, 1), (278, 4, 1, h),
               (279, 4, 1, min(w * h, 2**32 - 1))]
    ifd = struct.pack("<H", len(entries))
    for tag, typ, count, value in entries:
        ifd += struct.pack("<HHI", tag, typ, count) + (struct.pack("<HH", value, 0) if typ == 3
                                                       else struct.pack("<I", value))
    return b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0) + b"\x00" * 256


def _jpeg(w: int, h: int) -> bytes:
    b = bytearray(_encode(Image.new("RGB", (8, 8), (9, 9, 9)), "JPEG"))
    i = b.index(b"\xff\xc0")
    b[i + 5:i + 9] = struct.pack(">HH", h, w)
    return bytes(b)


def _webp(w: int, h: int) -> bytes:
    b = bytearray(_encode(Image.new("RGB", (4, 4), (9, 9, 9)), "WEBP", lossless=True))
    assert b[12:16] == b"VP8L" and b[20] == 0x2F
    bits = struct.unpack("<I", b[21:25])[0] & ~((1 << 28) - 1)   # keep alpha + version bits
    b[21:25] = struct.pack("<I", bits | (w - 1) | ((h - 1) << 14))
    return bytes(b)


BOMBS = {"png": (_png, ".png", 2**31 - 1), "bmp": (_bmp, ".bmp", 2**31 - 1),
         "tiff": (_tiff, ".tif", 2**32 - 1), "jpeg": (_jpeg, ".jpg", 65535),
         "webp": (_webp, ".webp", 16384)}


@st.composite
def bomb(draw) -> Tuple[str, int, int]:
    """(format, width, height) with width * height above Pillow's MAX_IMAGE_PIXELS (the
    warning range up to 2x and the error range beyond)."""
    fmt = draw(st.sampled_from(sorted(BOMBS)))
    top = BOMBS[fmt][2]
    limit = Image.MAX_IMAGE_PIXELS
    w = draw(st.integers(limit // top + 1, top))
    low = limit // w + 1
    assume(low <= top)
    h = draw(st.one_of(st.integers(low, min(top, 2 * low)), st.integers(low, top)))
    if draw(st.booleans()):
        w, h = h, w
    return fmt, w, h


@contextlib.contextmanager
def no_pixel_allocation() -> Iterator[List[tuple]]:
    """Record every image over MAX_IMAGE_PIXELS whose pixels Pillow is asked to load
    (``ImageFile.load`` allocates the whole image)."""
    loaded: List[tuple] = []
    real = ImageFile.ImageFile.load

    def spy(self):
        w, h = self.size
        if w * h > Image.MAX_IMAGE_PIXELS:
            loaded.append((self.format, w, h))
        return real(self)

    with mock.patch.object(ImageFile.ImageFile, "load", spy):
        yield loaded


@FUZZ
@given(b=bomb(), strict=st.booleans(), img_size=st.sampled_from([0, 8]))
@example(b=("png", 100_000, 100_000), strict=True, img_size=8)
@example(b=("png", 10_000, 10_000), strict=False, img_size=0)      # warning range only
def test_fuzz_decompression_bombs(fuzz_root, b, strict, img_size):
    fmt, w, h = b
    make, ext, _ = BOMBS[fmt]
    with example_dir(fuzz_root) as d, no_hang(), quiet(), no_pixel_allocation() as loaded:
        folder = d / "bombs"
        folder.mkdir()
        p = folder / f"a_bomb{ext}"
        p.write_bytes(make(w, h))
        ok = folder / "b_ok.png"
        ok.write_bytes(valid_images()["png-rgb"][0])
        with pytest.raises(DataError) as e:
            decode_file(p, 8)
        expect_named(e.value, str(p))
        if strict:
            with pytest.raises(DataError) as e:
                load_dataset(str(folder), img_size=img_size, strict=True, cache=False)
            expect_named(e.value, str(p))
        else:
            ds = load_dataset(str(folder), img_size=img_size, cache=False)
            assert len(ds) == 1 and ds.skipped == 1
        assert loaded == [], f"pixels of a bomb were allocated: {loaded}"


def _rss_peak_reset() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")                      # resets VmHWM, the peak resident size
        return True
    except OSError:
        return False


def _rss_peak() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise OSError("no VmHWM")


def test_decompression_bombs_peak_memory(tmp_path):
    """Peak resident memory (not only the spy above) stays bounded while a folder of bombs
    of every format, in the warning and in the error range, is refused."""
    if not _rss_peak_reset():
        pytest.skip("needs Linux /proc/self/clear_refs to measure peak memory")
    folder = tmp_path / "bombs"
    folder.mkdir()
    paths = []
    for fmt, (make, ext, top) in BOMBS.items():
        for w, h in [(min(top, 10_000), 10_000), (min(top, 16_000), min(top, 16_000) + 9)]:
            p = folder / f"{fmt}-{w}x{h}{ext}"
            p.write_bytes(make(w, h))
            paths.append(p)
    with quiet():
        for p in paths:                   # warm up imports and thread pools first
            with pytest.raises(DataError):
                decode_file(p, 8)
    _rss_peak_reset()
    before = _rss_peak()
    with no_hang(60), quiet():
        for p in paths:
            with pytest.raises(DataError):
                decode_file(p, 8)
        for strict in (False, True):
            with quiet(), pytest.raises(DataError):
                load_dataset(str(folder), img_size=0, strict=strict, cache=False)
    grew = _rss_peak() - before
    assert grew < 64 * MiB, f"peak RSS grew by {grew / MiB:.0f} MiB"


# ====================================================================== 3. IDX files
def idx_bytes(arr: np.ndarray) -> bytes:
    """``arr`` as raw IDX bytes (big-endian payload)."""
    code = next(c for c, dt in IDX_TYPES.items()
                if dt.kind == arr.dtype.kind and dt.itemsize == arr.dtype.itemsize)
    return (bytes([0, 0, code, arr.ndim]) + np.asarray(arr.shape, ">u4").tobytes()
            + arr.astype(IDX_TYPES[code]).tobytes())


def _damage(draw, raw: bytes) -> bytes:
    """Maybe gzip, maybe truncate (before or after compressing)."""
    if draw(st.integers(0, 3)) == 0:
        raw = raw[:draw(st.integers(0, len(raw)))]
    if draw(st.booleans()):
        raw = gzip.compress(raw, mtime=0)
        if draw(st.integers(0, 3)) == 0:
            raw = raw[:draw(st.integers(0, len(raw)))]
    return raw


@st.composite
def idx_file(draw) -> bytes:
    """An IDX file: a valid one, or random magic / type / dims / payload length; maybe
    truncated, maybe gzipped."""
    if draw(st.booleans()):
        shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=6))
        dtype = np.dtype(draw(st.sampled_from([np.uint8, np.int8, np.int16, np.int32,
                                               np.float32, np.float64])))
        return _damage(draw, idx_bytes(draw(hnp.arrays(dtype, shape))))
    zero = draw(st.sampled_from([b"\x00\x00", b"\x00\x01", b"\x1f\x8b"]))
    code = draw(st.one_of(st.sampled_from(sorted(IDX_TYPES)), st.integers(0, 255)))
    ndim = draw(st.one_of(st.integers(0, 5), st.integers(0, 255)))
    dims = draw(st.lists(st.one_of(st.integers(0, 7), st.integers(0, 2**32 - 1)),
                         min_size=min(ndim, 8), max_size=min(ndim, 8)))
    header = zero + bytes([code, ndim]) + b"".join(struct.pack(">I", d) for d in dims)
    itemsize = IDX_TYPES[code].itemsize if code in IDX_TYPES else 1
    need = math.prod(dims) * itemsize if dims else 0
    n = draw(st.sampled_from([need, max(0, need - 1), need + 3])) if need <= 4096 else 0
    return _damage(draw, header + bytes([draw(st.integers(0, 255))]) * n)


@st.composite
def mnist_pair(draw) -> Tuple[bytes, bytes]:
    """(images, labels) IDX files: both random, or a plausible pair (uint8 N x H x W and N
    labels, maybe out of range, of another length or dtype), maybe damaged."""
    if draw(st.booleans()):
        return draw(idx_file()), draw(idx_file())
    n, h, w = draw(st.integers(0, 5)), draw(st.integers(0, 6)), draw(st.integers(0, 6))
    x = draw(hnp.arrays(np.uint8, draw(st.sampled_from([(n, h, w), (n, h), (n, h, w, 1)]))))
    y_dtype = np.dtype(draw(st.sampled_from([np.uint8, np.int8, np.int32, np.float32, np.float64])))
    y_len = draw(st.sampled_from([n, n, n + 1, max(0, n - 1)]))
    y = draw(hnp.arrays(y_dtype, (y_len,), elements=st.integers(0, 12) if y_dtype.kind != "f"
                        else st.floats(-1, 12, width=y_dtype.itemsize * 8)))
    return _damage(draw, idx_bytes(x)), _damage(draw, idx_bytes(y))


@FUZZ
@given(raw=idx_file())
@example(raw=b"\x00\x00\x08\x03" + struct.pack(">III", 2**32 - 1, 2**32 - 1, 2**32 - 1))
@example(raw=b"\x00\x00\x08\x04" + struct.pack(">IIII", 2**16, 2**16, 2**16, 2**16) + b"\x00" * 8)
@example(raw=gzip.compress(b"\x00\x00\x0e\x02" + struct.pack(">II", 2**31, 2**31)))
def test_fuzz_idx_files(fuzz_root, raw):
    with example_dir(fuzz_root) as d, no_hang():
        p = d / "train-images-idx3-ubyte"
        p.write_bytes(raw)
        with peak_traced(16 * MiB + 4 * len(raw)):
            try:
                arr = read_idx(p)
            except Exception as e:  # noqa: BLE001
                expect_named(e, str(p))
                return
        assert isinstance(arr, np.ndarray) and arr.ndim >= 1 and arr.flags.writeable


@FUZZ
@given(pair=mnist_pair(), img_size=st.sampled_from([0, 7]), limit=st.sampled_from([0, 2]))
@example(pair=(idx_bytes(np.zeros((0, 28, 28), np.uint8)), idx_bytes(np.zeros(0, np.uint8))),
         img_size=0, limit=0)                                   # a valid pair, no images
@example(pair=(idx_bytes(np.zeros((2, 4, 4), np.uint8)), idx_bytes(np.array([0, np.nan], np.float32))),
         img_size=0, limit=0)                                   # NaN labels
def test_fuzz_idx_mnist_files(fuzz_root, pair, img_size, limit):
    """The named MNIST loader over random IDX image/label files in data_dir."""
    images, labels = pair
    with example_dir(fuzz_root) as d, no_hang(), pytest.MonkeyPatch.context() as mp:
        mp.setattr(paths_mod, "SYSTEM_ROOTS", [])
        mp.delenv("GANFORGE_DATA", raising=False)
        root = d / "mnist"
        root.mkdir()
        img, lbl = root / "train-images-idx3-ubyte", root / "train-labels-idx1-ubyte"
        img.write_bytes(images)
        lbl.write_bytes(labels)
        with peak_traced(32 * MiB + 8 * (img.stat().st_size + lbl.stat().st_size)):
            try:
                ds = load_dataset("mnist", data_dir=str(d), download=False, cache=False,
                                  img_size=img_size, limit=limit)
            except Exception as e:  # noqa: BLE001
                expect_named(e, str(img), str(lbl))
                return
        assert len(ds) >= 1 and ds.labels is not None and len(ds.labels) == len(ds)
        assert 0 <= int(ds.labels.min()) and int(ds.labels.max()) < 10


@functools.lru_cache(maxsize=None)
def _zeros_member() -> bytes:
    return gzip.compress(b"\x00" * (8 * MiB), compresslevel=9, mtime=0)


def _gzip_bomb(header: bytes, zeros: int) -> bytes:
    """A multi-member gzip file (gzip readers concatenate members): ``header`` then
    ``zeros`` zero bytes (a multiple of 8 MiB), about 1000x smaller than it inflates."""
    return gzip.compress(header, mtime=0) + _zeros_member() * (zeros // (8 * MiB))


def test_idx_gzip_bomb_is_bounded(tmp_path):
    """A small .gz that inflates to far more than its header declares is inflated only a
    little past what the header says, then refused; one that declares more than it holds
    is truncated. Either way a DataError names the file and memory stays bounded."""
    p = tmp_path / "t10k-labels-idx1-ubyte.gz"
    p.write_bytes(_gzip_bomb(b"\x00\x00\x08\x01" + struct.pack(">I", 10), 1024 * MiB))
    assert p.stat().st_size < 2 * MiB
    with peak_traced(16 * MiB), pytest.raises(DataError, match="more than its IDX header") as e:
        read_idx(p)
    expect_named(e.value, str(p))
    p.write_bytes(_gzip_bomb(b"\x00\x00\x08\x01" + struct.pack(">I", 256 * MiB), 32 * MiB))
    with peak_traced(96 * MiB), pytest.raises(DataError, match="truncated") as e:
        read_idx(p)
    expect_named(e.value, str(p))
    p.write_bytes(_gzip_bomb(b"\x00\x00\x08\x03" + struct.pack(">III", 2**32 - 1, 2**32 - 1, 9), 0))
    with peak_traced(MiB), pytest.raises(DataError, match="memory") as e:
        read_idx(p)
    expect_named(e.value, str(p))


# ====================================================================== 4. .npy / .npz arrays
PICKLE_RAN: List[str] = []


def _pickle_side_effect() -> str:
    PICKLE_RAN.append("unpickled")
    return "boom"


class Boom:
    """Unpickling one runs code: proves arrays are never loaded with allow_pickle=True."""

    def __reduce__(self):
        return (_pickle_side_effect, ())


DTYPES = [np.uint8, np.bool_, np.uint16, np.int8, np.int16, np.int32, np.int64, np.uint64,
          np.float16, np.float32, np.float64, np.complex64, "M8[s]", "m8[ms]", "U2", "S2",
          [("a", "u1"), ("b", "<f4")]]


@st.composite
def image_array(draw) -> np.ndarray:
    """Image-like arrays (N x H x W[, C] / N x C x H x W, plausible dtypes and values) or
    anything: every dtype, rank 0-5, empty sides, NaN/inf."""
    if draw(st.booleans()):
        n, h, w, c = (draw(st.integers(0, 4)), draw(st.integers(0, 6)), draw(st.integers(0, 6)),
                      draw(st.sampled_from([1, 2, 3, 4])))
        shape = draw(st.sampled_from([(n, h, w), (n, h, w, c), (n, c, h, w)]))
        dtype = draw(st.sampled_from([np.uint8, np.bool_, np.uint16, np.int64, np.float32,
                                      np.float64]))
        if np.issubdtype(dtype, np.floating):
            elements = st.one_of(st.floats(-1, 1, width=32), st.floats(width=32))
            return draw(hnp.arrays(dtype, shape, elements=elements))
        return draw(hnp.arrays(dtype, shape))
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=5))
    return draw(hnp.arrays(dtype, shape))


@st.composite
def labels_array(draw, n: int) -> np.ndarray:
    if draw(st.booleans()):
        k = draw(st.integers(1, 12))
        y = np.arange(n) % k
        return y.astype(draw(st.sampled_from([np.int64, np.uint8, np.float32, np.int8, np.uint64])))
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    shape = draw(st.one_of(st.just((n,)), hnp.array_shapes(min_dims=0, max_dims=2, max_side=6)))
    return draw(hnp.arrays(dtype, shape))


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=True)
    return buf.getvalue()


def _npz_bytes(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _npy_header(descr: str, shape: tuple, fortran: bool = False) -> bytes:
    body = repr({"descr": descr, "fortran_order": fortran, "shape": shape}).encode("latin1")
    pad = (64 - (10 + len(body) + 1) % 64) % 64
    body += b" " * pad + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(body)) + body


@st.composite
def array_file(draw) -> Tuple[bytes, str]:
    """(content, suffix) of a .npy or .npz file: random arrays under random keys, object
    (pickled) arrays, crafted headers declaring huge shapes, members that are not arrays,
    truncated or flipped bytes."""
    how = draw(st.sampled_from(["npy", "npz", "npz", "header", "raw"]))
    if how == "raw":
        magic = draw(st.sampled_from([b"", b"\x93NUMPY", b"\x93NUMPY\x01\x00", b"PK\x03\x04"]))
        return magic + draw(st.binary(max_size=256)), draw(st.sampled_from([".npy", ".npz"]))
    if how == "header":
        descr = draw(st.sampled_from(["|u1", "<f4", "<f8", "|b1", "<u2", "|O", "<U3", "|V4",
                                      "xyz", "<i8"]))
        shape = tuple(draw(st.lists(st.one_of(st.integers(0, 9), st.integers(0, 2**40),
                                              st.integers(-3, -1)), max_size=5)))
        data = _npy_header(descr, shape, draw(st.booleans())) + draw(st.binary(max_size=64))
        if draw(st.booleans()):
            return data, ".npy"
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr(draw(st.sampled_from(["images.npy", "x.npy", "arr_0.npy"])), data)
        return buf.getvalue(), ".npz"
    images = draw(image_array())
    if draw(st.integers(0, 9)) == 0:
        images = np.array([Boom(), 1, None], dtype=object)
    if how == "npy":
        data, suffix = _npy_bytes(images), ".npy"
    else:
        members = {draw(st.sampled_from(IMAGE_KEYS + ("pixels", "stuff"))): images}
        n = len(images) if images.ndim else 0
        if draw(st.booleans()):
            members[draw(st.sampled_from(LABEL_KEYS + ("arr_1",)))] = draw(labels_array(n))
        if draw(st.booleans()):
            members[draw(st.sampled_from(CLASS_NAME_KEYS))] = draw(st.one_of(
                st.just(np.array([f"c{i}" for i in range(draw(st.integers(0, 12)))])),
                st.just(np.array([Boom(), "x"], dtype=object)),
                hnp.arrays(np.dtype(draw(st.sampled_from(DTYPES))),
                           hnp.array_shapes(min_dims=0, max_dims=2, max_side=4))))
        buf = io.BytesIO()
        compress = draw(st.booleans())
        with quiet(), zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED if compress
                                      else zipfile.ZIP_STORED) as z:
            for k, v in members.items():
                z.writestr(k + ".npy", _npy_bytes(v))
            if draw(st.integers(0, 4)) == 0:       # a member that is not an array at all
                z.writestr(draw(st.sampled_from(["images.npy", "x", "labels.npy", "notes"])),
                           draw(st.binary(max_size=32)))
        data, suffix = buf.getvalue(), ".npz"
    damage = draw(st.sampled_from(["none", "none", "truncate", "flip"]))
    if damage == "truncate":
        data = data[:draw(st.integers(0, len(data)))]
    elif damage == "flip":
        b = bytearray(data)
        for i, v in draw(st.lists(st.tuples(st.integers(0, len(b) - 1), st.integers(0, 255)),
                                  min_size=1, max_size=4)):
            b[i] = v
        data = bytes(b)
    return data, suffix


def check_arrays(p: Path, *, img_size: int, channels: int, limit: int) -> None:
    try:
        ds = load_dataset(str(p), img_size=img_size, channels=channels, limit=limit,
                          cache=False)
    except Exception as e:  # noqa: BLE001
        expect_named(e, str(p))
        return
    n, c, h, w = ds.images.shape
    assert n >= 1 and h == w >= 1 and c in ((channels,) if channels else (1, 3))
    assert not limit or n <= limit
    if ds.labels is not None:
        assert len(ds.labels) == n and int(ds.labels.min()) >= 0
        assert ds.class_names is not None and int(ds.labels.max()) < len(ds.class_names)


@FUZZ
@given(f=array_file(), img_size=st.sampled_from([0, 4]), channels=st.sampled_from([0, 1, 3]),
       limit=st.sampled_from([0, 1, 3]))
@example(f=(_npy_bytes(np.array([Boom(), 1], dtype=object)), ".npy"), img_size=0, channels=0, limit=0)
@example(f=(_npy_header("<f8", (10**6, 10**6, 10**3)) + b"\x00" * 64, ".npy"), img_size=0,
         channels=0, limit=0)
@example(f=(_npz_bytes(images=np.zeros((2, 4, 4), np.uint8), labels=np.array([0, 10**12])),
            ".npz"), img_size=0, channels=0, limit=0)           # one class name per index?
@example(f=(_npz_bytes(images=np.zeros((3, 0, 0), np.uint8)), ".npz"), img_size=4, channels=0,
         limit=0)
def test_fuzz_array_files(fuzz_root, f, img_size, channels, limit):
    data, suffix = f
    with example_dir(fuzz_root) as d, no_hang():
        p = d / f"images{suffix}"
        p.write_bytes(data)
        with peak_traced(32 * MiB + 64 * len(data)):
            check_arrays(p, img_size=img_size, channels=channels, limit=limit)
    assert PICKLE_RAN == [], "an array file was unpickled"


def test_array_object_dtype_is_refused_unpickled(tmp_path):
    for name, save in [("a.npy", lambda p, a: np.save(p, a, allow_pickle=True)),
                       ("b.npz", lambda p, a: np.savez(p, images=np.zeros((2, 4, 4), np.uint8),
                                                      labels=a)),
                       ("c.npz", lambda p, a: np.savez(p, images=a))]:
        p = tmp_path / name
        save(p, np.array([Boom(), Boom()], dtype=object))
        with pytest.raises(DataError, match="pickle") as e:
            load_dataset(str(p), cache=False)
        expect_named(e.value, str(p))
    assert PICKLE_RAN == []


def test_array_huge_declared_shapes_are_bounded(tmp_path):
    """.npy files and .npz members whose header declares far more than they hold (here 16
    TiB in a 4 MiB deflated member) are refused before numpy allocates the array."""
    header = _npy_header("|u1", (1 << 40, 4, 4))
    npy = tmp_path / "huge.npy"
    npy.write_bytes(header + b"\x00" * 4096)
    npz = tmp_path / "huge.npz"
    with zipfile.ZipFile(npz, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("images.npy", header + b"\x00" * (4 * MiB))
    for p in (npy, npz):
        with peak_traced(16 * MiB), pytest.raises(DataError) as e:
            load_dataset(str(p), cache=False)
        expect_named(e.value, str(p))


# ====================================================================== 5. config
KEYS = all_keys()
FIELDS = sorted({k.rpartition(".")[2] for k in KEYS})
SECTIONS = sorted({k.partition(".")[0] for k in KEYS if "." in k})
ODD_VALUES = ["", " ", "none", "null", "None", "nan", "inf", "-inf", "1e400", "-1e400", "1e-400",
              "1" + "0" * 400, "9" * 5000, "0x10", "1_000", "0b1", "+1", "-0", "true", "off",
              "auto", "cuda:0", "cuda:x", "cuda:99999999999999999999", "projection", "[1, 2]",
              "{a: 1}", "\x00", "é", "1,2,3", "translation,cutout", "none,x"]


def _key_variants(k: str) -> st.SearchStrategy:
    return st.sampled_from([k, k.upper(), k.replace("_", "-"), k + ".", "." + k, k + ".x",
                            k.rpartition(".")[2], f" {k} ", k.replace(".", "..")])


key_text = st.one_of(st.sampled_from(KEYS + FIELDS + SECTIONS), st.sampled_from(KEYS).flatmap(_key_variants),
                     st.text(max_size=20))
value_text = st.one_of(st.sampled_from(ODD_VALUES), st.text(max_size=30),
                       st.integers().map(str), st.floats().map(repr))
override = st.one_of(st.builds(lambda k, v: f"{k}={v}", key_text, value_text),
                     st.text(max_size=30))


def _named_by_override(item: str) -> List[str]:
    if "=" not in item:
        return [item.strip(), f"'{item}'"]
    k = item.split("=", 1)[0].strip()
    names = [k, k.replace("-", "_"), f"'{k}'", f"'{item}'"]
    try:
        sec, name = resolve_key(k)
        names.append(f"{sec}.{name}" if sec else name)
    except ConfigError:
        pass
    return names


@FUZZ
@given(items=st.lists(override, min_size=1, max_size=4))
@example(items=["train.lr_g=" + "1" + "0" * 400])
@example(items=["train.steps=" + "9" * 5000, "=1", "noequals"])
def test_fuzz_config_overrides(items):
    with no_hang():
        try:
            cfg = Config().with_overrides(items)
        except Exception as e:  # noqa: BLE001
            assert isinstance(e, ConfigError), f"{type(e).__name__}: {e}"
            expect_named(e, *[n for it in items for n in _named_by_override(it)])
            return
    assert isinstance(cfg, Config)
    check_values(cfg)


yaml_scalar = st.one_of(st.none(), st.booleans(), st.integers(),
                        st.integers(min_value=10**300, max_value=10**400), st.floats(),
                        st.text(max_size=12), st.sampled_from(ODD_VALUES))
yaml_value = st.recursive(yaml_scalar, lambda inner: st.one_of(
    st.lists(inner, max_size=3),
    st.dictionaries(st.one_of(st.sampled_from(FIELDS), st.text(max_size=6), st.integers()),
                    inner, max_size=3)), max_leaves=8)
yaml_key = st.one_of(st.sampled_from(SECTIONS + KEYS + FIELDS), st.text(max_size=8),
                     st.integers(), st.booleans(), st.none(), st.floats())
yaml_doc = st.dictionaries(
    yaml_key,
    st.one_of(yaml_value, st.dictionaries(st.one_of(st.sampled_from(FIELDS), st.text(max_size=6),
                                                    st.integers(), st.none()),
                                          yaml_value, max_size=4)),
    max_size=4)

_LOL = "".join(f"  - &{c} [{', '.join([f'*{p}'] * 9) if p else ', '.join(['lol'] * 9)}]\n"
               for p, c in zip([""] + list("abcdefgh"), "abcdefghi"))
ADVERSARIAL_YAML = [
    "", "---", "--- 1\n--- 2\n", "[" * 1000, "[" * 1000 + "]" * 1000, "{a: " * 700 + "}" * 700,
    "a:\n" + "".join(" " * i + "b:\n" for i in range(1, 700)), "out:\n" + _LOL + "train: {lr_g: *i}\n",
    "out: [" + "[" * 1000 + "]" * 1001,
    "train:\n  lr_g: " + "1" * 5000 + "\n", "train:\n  lr_g: 1" + "0" * 400 + "\n",
    "train:\n  steps: 1" + "0" * 400 + "\n", "1: 2\n", "~: 2\n", "null: 1\n", "true: x\n",
    "3.5: x\n", "train:\n  1: 2\n", "train: 5\n", "train: [1, 2]\n", "- 1\n- 2\n", "just text",
    "out: !!binary aGVsbG8=\n", "out: 2001-12-14\n", "!!python/object/apply:os.system ['true']\n",
    "? [a, b]\n: c\n", "data: {name: *undefined}\n", "train:\n\tlr_g: 1\n", "\x00\x01",
    "train: {lr_g: .nan}\n", "train: {lr_g: .inf, steps: -.inf}\n", "log: {n_samples: 1e9}\n",
]


@FUZZ
@given(text=st.one_of(yaml_doc.map(lambda d: yaml.safe_dump(d, sort_keys=False)),
                      st.text(max_size=200)),
       raw=st.one_of(st.none(), st.binary(max_size=64)))
def test_fuzz_config_yaml_files(fuzz_root, text, raw):
    with example_dir(fuzz_root) as d, no_hang():
        p = d / "config.yaml"
        p.write_bytes(raw if raw is not None else text.encode("utf-8", "surrogatepass"))
        try:
            cfg = load_config(p)
        except Exception as e:  # noqa: BLE001
            assert isinstance(e, ConfigError), f"{type(e).__name__}: {e}"
            expect_named(e, str(p))
            return
    assert isinstance(cfg, Config)
    check_values(cfg)


@pytest.mark.parametrize("text", ADVERSARIAL_YAML, ids=range(len(ADVERSARIAL_YAML)))
def test_config_yaml_adversarial(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    with no_hang():
        try:
            load_config(p)
        except Exception as e:  # noqa: BLE001
            assert isinstance(e, ConfigError), f"{type(e).__name__}: {e}"
            expect_named(e, str(p))


def test_config_file_that_is_not_a_file(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path)                        # a folder
    expect_named(e.value, str(tmp_path))
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes(b"description: caf\xe9\n\xff\xfe")
    with pytest.raises(ConfigError) as e:
        load_config(bad)
    expect_named(e.value, str(bad))


# ====================================================================== 6. data specs
@pytest.fixture(scope="module")
def spec_root(fuzz_root) -> Path:
    """A folder with class subfolders, an .npy and an .npz, for specs that name paths."""
    root = fuzz_root / "specs"
    for cls in ("cat", "dog"):
        (root / "pets" / cls).mkdir(parents=True)
        for i in range(2):
            (root / "pets" / cls / f"{i}.png").write_bytes(valid_images()["png-rgb"][0])
    np.save(root / "x.npy", np.zeros((3, 4, 4), np.uint8))
    np.savez(root / "y.npz", images=np.zeros((3, 4, 4), np.uint8), labels=np.arange(3))
    (root / "empty").mkdir()
    (root / "notes.txt").write_text("hello")
    return root


SPEC_WORDS = (DATASETS.names() + list(SPLIT_WORDS)
              + ["", "x", "sneaker", "Sneaker", "cat", "dog", "~", "..", ".", "/", "~nosuchuser",
                 "{root}/pets", "{root}/x.npy", "{root}/y.npz", "{root}/empty", "{root}/notes.txt",
                 "{root}/pets/cat", "{root}/missing", "{root}/pets/", "{root}//pets",
                 "missing.npy", "C:\\x", "\x00", "a\x00b", "é", "x" * 300])
spec_text = st.one_of(
    st.text(max_size=40),
    st.lists(st.one_of(st.sampled_from(SPEC_WORDS), st.text(max_size=6)), min_size=1,
             max_size=4).map(":".join),
)


def _safe_path(s: str) -> Path:
    try:
        return Path(s).expanduser()
    except (RuntimeError, ValueError):       # ~user that does not exist, ~ with a NUL
        return Path(s)


def _exists(p: Path) -> bool:
    try:
        return p.exists()
    except (OSError, ValueError):
        return False


@FUZZ
@given(spec=spec_text, split=st.one_of(st.sampled_from(list(SPLIT_WORDS) + ["cat", "x"]),
                                       st.text(max_size=6)))
@example(spec="~nosuchuser/x", split="train")
@example(spec="~\x00", split="train")
@example(spec="fashion-mnist:a:b:c", split="train")
@example(spec="{root}/pets:cat", split="test")
def test_fuzz_data_specs(spec_root, spec, split):
    spec = spec.replace("{root}", str(spec_root))
    with pytest.MonkeyPatch.context() as mp, no_hang():
        mp.setattr(paths_mod, "SYSTEM_ROOTS", [])
        mp.setattr(emoji_mod, "SYSTEM_FONT_PATHS", [])
        mp.delenv("GANFORGE_DATA", raising=False)
        mp.chdir(spec_root / "empty")
        p = _safe_path(spec.strip())
        for q in (p, p / split):   # never let a fuzzed spec scan the real file system
            if _exists(q):
                assume(str(q.resolve()).startswith(str(spec_root)))
        names = [spec.strip()]
        try:
            parsed = parse_spec(spec)
        except Exception as e:  # noqa: BLE001
            expect_named(e, spec.strip())
        else:
            names += [parsed.source, str(_safe_path(parsed.source))]
        try:
            ds = load_dataset(spec, split=split, download=False, data_dir=str(spec_root / "empty"),
                              limit=2, cache=False)
        except Exception as e:  # noqa: BLE001
            if not spec.strip():
                assert isinstance(e, DataError), f"{type(e).__name__}: {e}"
                return
            expect_named(e, *names, str(_safe_path(spec.strip()).resolve()) if "\x00" not in spec else "",
                         split)
            return
    assert isinstance(ds, ImageDataset) and 1 <= len(ds) <= 2
