"""The MNIST family of named datasets (``fashion-mnist``, ``mnist``): where their IDX files
are found, how they are downloaded and verified, and their class names.

Resolution order (see :mod:`ganforge.data.paths`): ``data_dir``, ``$GANFORGE_DATA``, the user
cache, system folders (Debian's ``dataset-fashion-mnist`` package installs
``/usr/share/datasets/fashion-mnist/*.gz``), and last a download from the official source,
verified by SHA-256.

Where the checksums come from
-----------------------------
``sha256`` is the digest of the official ``.gz`` files as published.

* MNIST: the values used by torchvision (``pytorch/vision``,
  ``torchvision/prototype/datasets/_builtin/mnist.py``) and, independently, by
  ``Britefury/batchup`` (``batchup/datasets/mnist.py``); they agree. Not re-computable here
  (no local copy), so they are taken on the agreement of those sources.
* Fashion-MNIST: torchvision's values (same file). We confirmed them locally: Debian
  recompressed the files (its ``.gz`` bytes differ), but only the gzip header differs. Adding
  back the original header (file name, mtime 2017-08-31) to Debian's deflate streams gives
  files whose MD5s equal the ones published in Zalando's README
  (8d4fb7e6..., 25c81989..., bef4ecab..., bb300cfd...) and whose sizes match the official
  ones (26421880, 29515, 4422102, 5148 bytes); their SHA-256s are the values below. (Some
  projects list other SHA-256s, e.g. 08dc20ab... for train images; those do not match the
  published MD5s and appear to be of an earlier upload.)

``payload_sha256`` is the digest of the *decompressed* IDX data, computed from Debian's copy
for Fashion-MNIST. It lets a mirror that recompressed the files (as Debian did) verify too.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch

from ganforge.data import cache as cache_mod
from ganforge.data.base import DATASETS, DataError, ImageDataset
from ganforge.data.download import (
    DownloadError,
    RemoteFile,
    fetch,
    mirror_env_var,
    mirrors_for,
)
from ganforge.data.idx import read_idx
from ganforge.data.paths import describe_dirs, download_dir, search_dirs
from ganforge.data.transforms import convert_channels, resize_square

SPLIT_FILES: Dict[str, Tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


@dataclass
class IdxDatasetSpec:
    name: str
    class_names: List[str]
    mirrors: List[str]                       # base URLs, tried in order
    sha256: Dict[str, str]                   # "<file>.gz" -> digest of the official .gz
    payload_sha256: Dict[str, str] = field(default_factory=dict)  # "<file>" -> of the IDX data
    apt_package: Optional[str] = None        # Debian/Ubuntu package that provides the files
    homepage: str = ""
    splits: Dict[str, Tuple[str, str]] = field(default_factory=lambda: dict(SPLIT_FILES))

    def remote(self, base: str) -> RemoteFile:
        return RemoteFile(base + ".gz", self.sha256.get(base + ".gz"),
                          self.payload_sha256.get(base))


#: The registered IDX datasets. Looked up at load time, so tests can swap an entry
#: (e.g. with patched checksums) via ``monkeypatch.setitem``.
IDX_DATASETS: Dict[str, IdxDatasetSpec] = {
    "fashion-mnist": IdxDatasetSpec(
        name="fashion-mnist",
        class_names=["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                     "Sneaker", "Bag", "Ankle boot"],
        mirrors=["https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
                 "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
        sha256={
            "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
            "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
            "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
            "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
        },
        payload_sha256={
            "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        },
        apt_package="dataset-fashion-mnist",
        homepage="https://github.com/zalandoresearch/fashion-mnist",
    ),
    "mnist": IdxDatasetSpec(
        name="mnist",
        class_names=[str(i) for i in range(10)],
        mirrors=["https://ossci-datasets.s3.amazonaws.com/mnist/",
                 "https://storage.googleapis.com/cvdf-datasets/mnist/",
                 "http://yann.lecun.com/exdb/mnist/"],
        sha256={
            "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        },
        homepage="http://yann.lecun.com/exdb/mnist/",
    ),
}


def _candidates(base: str) -> List[str]:
    # "train-images.idx3-ubyte" is how some unzip tools / mirrors name the raw files.
    dotted = base.replace("-idx", ".idx")
    return [base + ".gz", base, dotted + ".gz", dotted]


def _find_in(d: Path, base: str) -> Optional[Path]:
    for name in _candidates(base):
        p = d / name
        if p.is_file():
            return p
    return None


def locate(spec: IdxDatasetSpec, split: str, data_dir: Optional[str]) -> Optional[Tuple[Path, Path]]:
    """The first searched folder holding both files of ``split``, or None."""
    img_base, lbl_base = spec.splits[split]
    for d, _ in search_dirs(spec.name, data_dir):
        img, lbl = _find_in(d, img_base), _find_in(d, lbl_base)
        if img is not None and lbl is not None:
            return img, lbl
    return None


def _fixes(spec: IdxDatasetSpec, split: str, data_dir: Optional[str]) -> str:
    img_base, lbl_base = spec.splits[split]
    fixes = []
    if spec.apt_package:
        fixes.append(f"install the system package: sudo apt-get install {spec.apt_package}")
    fixes.append(f"put {img_base}.gz and {lbl_base}.gz (gzip or raw IDX"
                 + (f", from {spec.homepage}" if spec.homepage else "")
                 + f") into {download_dir(spec.name, data_dir)} or another searched folder")
    fixes.append(f"point {mirror_env_var(spec.name)} at a reachable mirror")
    return "Fix: " + "\n  or ".join(fixes)


def _missing_message(spec: IdxDatasetSpec, split: str, data_dir: Optional[str],
                     reason: str) -> str:
    img_base, lbl_base = spec.splits[split]
    return (f"{spec.name} ({split}): {reason}\n"
            f"Files needed: {img_base}.gz, {lbl_base}.gz\n"
            f"Folders searched:\n{describe_dirs(search_dirs(spec.name, data_dir))}\n"
            + _fixes(spec, split, data_dir))


def ensure_files(spec: IdxDatasetSpec, split: str, data_dir: Optional[str],
                 download: bool) -> Tuple[Path, Path]:
    """Local paths of the images and labels files of ``split``, downloading if needed."""
    found = locate(spec, split, data_dir)
    if found is not None:
        return found
    if not download:
        raise DataError(_missing_message(spec, split, data_dir,
                                         "files not found and downloading is disabled "
                                         "(download=False)."))
    dest = download_dir(spec.name, data_dir)
    urls = mirrors_for(spec.name, spec.mirrors)
    paths = []
    for base in spec.splits[split]:
        have = _find_in(dest, base)
        if have is not None:
            paths.append(have)
            continue
        try:
            paths.append(fetch(spec.remote(base), urls, dest))
        except DownloadError as e:
            if e.offline:
                raise DataError(_missing_message(
                    spec, split, data_dir,
                    "files not found locally and the download failed (offline?):\n"
                    + "\n".join(f"  - {r}" for r in e.reasons))) from None
            raise DataError(f"{spec.name} ({split}): a downloaded file failed verification "
                            f"and was deleted.\n{e}\nRetry later (a bad transfer), or\n"
                            + _fixes(spec, split, data_dir)) from None
    return paths[0], paths[1]


def decode(spec: IdxDatasetSpec, split: str, img_path: Path, lbl_path: Path, *,
           img_size: int, channels: int, limit: int) -> ImageDataset:
    images = read_idx(img_path)
    labels = read_idx(lbl_path)
    if images.ndim != 3 or images.dtype.name != "uint8":
        raise DataError(f"{img_path}: expected uint8 images of shape (N, H, W), got "
                        f"{images.dtype} {images.shape}; is this an *-images-idx3-ubyte file?")
    if images.size == 0:
        raise DataError(f"{img_path}: holds no images (shape {images.shape}); delete it so "
                        f"ganforge can fetch it again")
    if labels.ndim != 1 or len(labels) != len(images):
        raise DataError(f"{lbl_path}: expected {len(images)} labels to go with {img_path}, "
                        f"got shape {labels.shape}; the two files do not belong together")
    if labels.dtype.kind not in "iu":
        raise DataError(f"{lbl_path}: labels must be integers (class indices), got "
                        f"{labels.dtype}; is this an *-labels-idx1-ubyte file?")
    n_cls = len(spec.class_names)
    if len(labels) and (labels.min() < 0 or labels.max() >= n_cls):
        raise DataError(f"{lbl_path}: labels must lie in 0..{n_cls - 1}, found "
                        f"{labels.min()}..{labels.max()}")
    if limit:
        images, labels = images[:limit], labels[:limit]
    x = torch.from_numpy(images).unsqueeze(1)
    if img_size:
        x = resize_square(x, img_size)
    x = convert_channels(x, channels, f"{spec.name}:{split}")
    return ImageDataset(images=x.contiguous(), labels=torch.from_numpy(labels.astype("int64")),
                        class_names=list(spec.class_names), name=f"{spec.name}:{split}",
                        source=str(img_path))


def load_idx_dataset(name: str, split: str = "train", *, img_size: int = 0, channels: int = 0,
                     data_dir: Optional[str] = None, strict: bool = False, limit: int = 0,
                     download: bool = True, cache: bool = True) -> ImageDataset:
    spec = IDX_DATASETS[name]
    if split not in spec.splits:
        raise DataError(f"{name}: unknown split '{split}'; choose one of "
                        f"{', '.join(spec.splits)} (e.g. '{name}:test')")
    img_path, lbl_path = ensure_files(spec, split, data_dir, download)
    key = cache_mod.make_key("idx", cache_mod.fingerprint([img_path, lbl_path]), name=name,
                             split=split, img_size=img_size, channels=channels, limit=limit)
    return cache_mod.cached_dataset(
        key, lambda: (decode(spec, split, img_path, lbl_path, img_size=img_size,
                             channels=channels, limit=limit), []),
        enabled=cache, strict=strict)


def _register(name: str, help: str) -> None:
    def loader(split: str = "train", **kw) -> ImageDataset:
        return load_idx_dataset(name, split, **kw)
    loader.__name__ = f"load_{name.replace('-', '_')}"
    DATASETS.register(name, help=help)(loader)


_register("fashion-mnist", "Zalando Fashion-MNIST: 70k 28x28 grayscale clothing images, "
                           "10 classes (train 60k / test 10k)")
_register("mnist", "MNIST handwritten digits: 70k 28x28 grayscale images, 10 classes "
                   "(train 60k / test 10k)")
