"""The ``domain`` feature extractor: a small CNN classifier trained on the user's own data.

Why: the FID Inception-v3 was trained on ImageNet photos at 299 px. On 28 px grayscale
clothing or digits its features are a poor yardstick (and slow on a CPU). Papers on small
datasets therefore also report distances in the feature space of a classifier trained on the
dataset itself ("domain" FID; e.g. the LeNet features used for MNIST FID). This module trains
that classifier (``ganforge evaluator train --data fashion-mnist``), stores it with its test
accuracy and the data it saw, and serves it as a :class:`FeatureExtractor`:

- ``features(x)``: the penultimate activations (a 256-unit ReLU layer on the last conv
  block pooled to a 4 x 4 grid), for FID / KID / precision-recall / density-coverage;
- ``logits(x)`` / ``predict(x)``: class predictions, for IS-like scores, class coverage and
  conditional accuracy.

The evaluator file is a plain dict loaded with ``torch.load(weights_only=True)``: the
architecture travels as constructor kwargs (``arch``), never as pickled code (DESIGN lesson 5).
``weights_hash`` is the SHA-256 of the architecture and every tensor of the state dict, so
reference statistics computed with one evaluator are never reused with another.

Default location: ``$GANFORGE_CACHE/evaluators/<dataset>-<img_size>px.pt``.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import shlex
import time
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from ganforge.checkpoint import CheckpointError, atomic_save
from ganforge.metrics.extractors import EXTRACTORS, FeatureExtractor

FORMAT = "ganforge-domain-evaluator"
FORMAT_VERSION = 1
ARCH_FAMILY = "domain-cnn"
#: Fraction of a dataset held out for the test accuracy when it has no test split.
HOLDOUT_FRACTION = 0.1
#: Images per forward pass when extracting features / evaluating.
INFER_BATCH = 500

PathLike = Union[str, os.PathLike]


class EvaluatorError(CheckpointError):
    """A user-facing problem with a domain evaluator: missing, unreadable, or unusable data.

    Subclasses :class:`~ganforge.checkpoint.CheckpointError` (an evaluator file is a
    checkpoint of a classifier), so the CLI prints it without a traceback."""


# --------------------------------------------------------------------------------------------
# The network
# --------------------------------------------------------------------------------------------
def default_widths(img_size: int) -> Tuple[int, ...]:
    """Stage widths for an input size: (16, 32, 64) up to 32 px (two 2x poolings), one more
    stage (and pooling) per doubling beyond, so the last convolution always works on a map
    of at most 8 x 8 and the cost grows slowly with the image size.

    Why so narrow: on Fashion-MNIST (28 px, seed 0, 1 CPU thread) 4 epochs of (16, 32, 64)
    reach 91.3 % test accuracy in ~57 CPU-seconds, while 2 epochs of (32, 64, 128) reach
    90.8 % in ~78 s and 4 epochs of (24, 48, 96) 92.0 % in ~102 s: more passes over the
    data beat more width for a fixed CPU budget."""
    widths = [16, 32, 64]
    size = 32
    while img_size > size:
        widths.append(min(256, widths[-1] * 2))
        size *= 2
    return tuple(widths)


class DomainCNN(nn.Module):
    """conv3x3-BN-ReLU stages with 2x max-pooling between them (pooling right after each
    stage's last convolution), then an adaptive average
    pool to a ``pool`` x ``pool`` grid, a fully connected ``fc``-unit ReLU layer (the
    penultimate features) and a linear classifier.

    Pooling to a fixed grid (rather than a global average) keeps the coarse spatial layout,
    which Fashion-MNIST needs (shirt vs. pullover vs. coat), and still lets the network take
    any image size; the evaluator nevertheless resizes inputs to the size it was trained at,
    because features change with scale. ``features`` is ``fc``-dimensional and non-negative
    (post-ReLU, like Inception's pool3); ``forward`` returns class logits.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10,
                 widths: Sequence[int] = (16, 32, 64), pool: int = 4, fc: int = 256,
                 convs_per_stage: int = 1, pool_first: bool = True):
        super().__init__()
        if in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 or 3, got {in_channels}")
        if num_classes < 2:
            raise ValueError(f"a classifier needs at least 2 classes, got {num_classes}")
        layers: List[nn.Module] = []
        c = in_channels
        for i, w in enumerate(widths):
            for j in range(convs_per_stage):
                layers.append(nn.Conv2d(c, w, 3, padding=1, bias=False))
                pool_here = j == convs_per_stage - 1 and i < len(widths) - 1
                if pool_here and pool_first:
                    # Max-pool right after the convolution, before BN and ReLU: BN and ReLU
                    # then touch 4x fewer values (on a CPU they cost about as much as the
                    # convolutions: 1.2-1.4x faster training). Pooling commutes with ReLU.
                    layers.append(nn.MaxPool2d(2))
                layers += [nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
                if pool_here and not pool_first:
                    layers.append(nn.MaxPool2d(2))
                c = w
        self.body = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(pool)
        self.fc = nn.Linear(c * pool * pool, fc)
        self.head = nn.Linear(fc, num_classes)
        self.in_channels, self.num_classes, self.feature_dim = in_channels, num_classes, fc
        # Constructor kwargs, stored with the weights (plain types for weights_only loading).
        self.arch_kwargs = {"in_channels": int(in_channels), "num_classes": int(num_classes),
                            "widths": [int(w) for w in widths], "pool": int(pool),
                            "fc": int(fc), "convs_per_stage": int(convs_per_stage),
                            "pool_first": bool(pool_first)}
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.fc(self.pool(self.body(x)).flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def build_net(arch: Dict[str, Any]) -> DomainCNN:
    """Rebuild the network from its stored ``arch`` spec (family + constructor kwargs)."""
    if not isinstance(arch, dict) or arch.get("family") != ARCH_FAMILY:
        raise EvaluatorError(f"unknown evaluator architecture {arch!r}; expected family "
                             f"'{ARCH_FAMILY}' (file from a newer ganforge?)")
    kw = dict(arch.get("kwargs", {}))
    kw.setdefault("pool_first", False)      # files written before the option existed
    if "widths" in kw:
        kw["widths"] = tuple(int(w) for w in kw["widths"])
    return DomainCNN(**kw)


def weights_digest(arch: Dict[str, Any], state_dict: Dict[str, torch.Tensor]) -> str:
    """SHA-256 over the architecture spec and every tensor (name, dtype, shape, bytes).

    Independent of how the file was written (torch.save metadata, zip layout), so re-saving the
    same weights keeps the hash, and any change to any weight or BN statistic changes it."""
    h = hashlib.sha256()
    h.update(json.dumps(arch, sort_keys=True).encode())
    for k in sorted(state_dict):
        t = state_dict[k].detach().cpu().contiguous()
        h.update(f"\0{k}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


# --------------------------------------------------------------------------------------------
# Where evaluators live
# --------------------------------------------------------------------------------------------
def evaluators_dir() -> Path:
    """``$GANFORGE_CACHE/evaluators`` (same cache root as the data and Inception weights)."""
    from ganforge.data.paths import cache_dir
    return cache_dir() / "evaluators"


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", s).strip("-.") or "data"


def _split_named(spec: str) -> Tuple[Optional[str], Optional[str]]:
    from ganforge.data.resolve import parse_spec
    return parse_spec(str(spec))


def dataset_key(data_spec: PathLike) -> str:
    """File-name stem for a dataset: the registered name (``fashion-mnist``), or for a path
    its folder/file name plus a short hash of the absolute path (two folders called
    ``train`` must not share an evaluator)."""
    name, _ = _split_named(str(data_spec))
    if name is not None:
        return name
    p = Path(str(data_spec)).expanduser().resolve()
    tag = hashlib.sha256(str(p).encode()).hexdigest()[:8]
    return f"{_slug(p.stem if p.is_file() else p.name)}-{tag}"


def default_evaluator_path(data_spec: PathLike, img_size: int) -> Path:
    return evaluators_dir() / f"{dataset_key(data_spec)}-{int(img_size)}px.pt"


def _train_command(data_spec: PathLike, img_size: int = 0) -> str:
    name, _ = _split_named(str(data_spec))     # an evaluator is per dataset, not per split
    cmd = f"ganforge evaluator train --data {shlex.quote(name or str(data_spec))}"
    return cmd + (f" --img-size {img_size}" if img_size else "")


def find_evaluator(data_spec: PathLike, img_size: int = 0) -> Path:
    """The stored evaluator for ``data_spec``: the one trained at ``img_size`` if there is
    one, else the one trained at the closest size (inputs are then resized). ``img_size=0``
    takes the smallest size trained (usually the dataset's own). Raises
    :class:`EvaluatorError` naming the command to train one when there is none."""
    d = evaluators_dir()
    key = dataset_key(data_spec)
    pat = re.compile(re.escape(key) + r"-(\d+)px\.pt$")
    found = sorted((int(m.group(1)), p) for p in (d.iterdir() if d.is_dir() else [])
                   if (m := pat.match(p.name)) and p.is_file())
    if not found:
        shown = str(data_spec)
        raise EvaluatorError(
            f"no domain evaluator has been trained for '{shown}' yet (looked for "
            f"{d / (key + '-<size>px.pt')}). Train one (a few CPU minutes) with:\n"
            f"  {_train_command(data_spec, img_size)}\n"
            f"or pass the path of an evaluator file.")
    if img_size:
        for size, p in found:
            if size == img_size:
                return p
        return min(found, key=lambda sp: (abs(sp[0] - img_size), -sp[0]))[1]
    return found[0][1]


# --------------------------------------------------------------------------------------------
# The extractor
# --------------------------------------------------------------------------------------------
class DomainEvaluator(FeatureExtractor):
    """A trained :class:`DomainCNN` behind the :class:`FeatureExtractor` contract.

    Inputs: float images in [-1, 1], NCHW, any size, 1 or 3 channels. They are converted to
    the training channel count (gray -> RGB by tiling, RGB -> gray by BT.601 luma) and resized
    to ``input_size`` (bilinear, antialiased; warns once) when they differ. All outputs are
    computed under ``torch.inference_mode()`` in batches of ``batch_size``.
    """

    name = "domain"

    def __init__(self, net: DomainCNN, *, weights_hash: str, input_size: int,
                 class_names: Sequence[str], accuracy: float, meta: Dict[str, Any],
                 path: Optional[Path] = None, batch_size: int = INFER_BATCH):
        super().__init__()
        # channels_last: oneDNN's fast layout on CPUs (about 3x faster inference here).
        self.net = net.to(memory_format=torch.channels_last)
        self.weights_hash = weights_hash
        self.input_size = int(input_size)
        self.channels = net.in_channels
        self.feature_dim = net.feature_dim
        self.num_classes = net.num_classes
        self.class_names = list(class_names)
        self.accuracy = float(accuracy)
        self.meta = meta
        self.dataset = meta.get("dataset", {})
        self.path = path
        self.batch_size = batch_size
        self._warned: set = set()
        self.freeze()

    def __repr__(self) -> str:
        ds = self.dataset.get("name", "?")
        return (f"DomainEvaluator({ds}, {self.input_size}px x{self.channels}, "
                f"{self.num_classes} classes, test accuracy {self.accuracy:.2%}, "
                f"{self.feature_dim}-d features, hash {self.weights_hash[:12]})")

    # ------------------------------------------------------------------ input adaptation
    def _warn_once(self, key: str, msg: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(msg, stacklevel=5)  # the caller of features()/logits()

    def adapt(self, x: torch.Tensor) -> torch.Tensor:
        """Checks, channel conversion and resizing to what the network was trained on."""
        x = self.prepare(x)
        c = x.shape[1]
        if c != self.channels:
            if c == 1 and self.channels == 3:
                x = x.expand(-1, 3, -1, -1)
            elif c == 3 and self.channels == 1:
                # BT.601 luma; the weights sum to 1, so it is valid on [-1, 1] values.
                x = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
            else:
                raise ValueError(f"domain evaluator: images must have 1 or 3 channels, got {c}")
            self._warn_once("channels", f"domain evaluator ({self.dataset.get('name', '?')}) "
                                        f"was trained on {self.channels}-channel images; "
                                        f"converting {c}-channel inputs")
        h, w = x.shape[-2:]
        s = self.input_size
        if (h, w) != (s, s):
            self._warn_once("size", f"domain evaluator ({self.dataset.get('name', '?')}) was "
                                    f"trained at {s}x{s} px; resizing {h}x{w} inputs "
                                    f"(bilinear, antialiased). Scores are most meaningful "
                                    f"with an evaluator trained at the images' own size: "
                                    f"{_train_command(self.dataset.get('spec', 'DATA'), h)}")
            x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False,
                              antialias=True)
        return x

    def _run(self, x: torch.Tensor, what: str) -> Tuple[torch.Tensor, ...]:
        if not isinstance(x, torch.Tensor) or x.dim() != 4:
            self.prepare(x)  # raises the shared, descriptive error
        feats, logits = [], []
        with torch.inference_mode():
            for i in range(0, max(1, x.shape[0]), self.batch_size):
                xb = self.adapt(x[i:i + self.batch_size])
                xb = xb.contiguous(memory_format=torch.channels_last)
                f = self.net.features(xb)
                if what in ("features", "both"):
                    feats.append(f.float())
                if what in ("logits", "both"):
                    logits.append(self.net.head(f).float())
        out = []
        if what in ("features", "both"):
            out.append(torch.cat(feats))
        if what in ("logits", "both"):
            out.append(torch.cat(logits))
        return tuple(out)

    # ------------------------------------------------------------------ public outputs
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features, float32 ``(N, feature_dim)``."""
        return self._run(x, "features")[0]

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits, float32 ``(N, num_classes)``."""
        return self._run(x, "logits")[0]

    def features_and_logits(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        f, lg = self._run(x, "both")
        return f, lg

    def probs(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(x).softmax(dim=1)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Predicted class indices, int64 ``(N,)`` (names: ``class_names``)."""
        return self.logits(x).argmax(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


# --------------------------------------------------------------------------------------------
# Saving and loading
# --------------------------------------------------------------------------------------------
def _state_cpu(net: nn.Module) -> Dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}


def save_evaluator(net: DomainCNN, path: PathLike, *, class_names: Sequence[str],
                   accuracy: float, meta: Dict[str, Any]) -> Path:
    arch = {"family": ARCH_FAMILY, "kwargs": dict(net.arch_kwargs)}
    state = _state_cpu(net)
    from ganforge import __version__
    obj = {"format": FORMAT, "format_version": FORMAT_VERSION, "arch": arch,
           "state_dict": state, "weights_hash": weights_digest(arch, state),
           "class_names": [str(c) for c in class_names], "accuracy": float(accuracy),
           "ganforge_version": __version__, "torch_version": str(torch.__version__)}
    obj.update({k: v for k, v in meta.items() if k not in obj})
    path = Path(path).expanduser()
    atomic_save(obj, path)
    return path


def load_evaluator(spec_or_path: PathLike, *, img_size: int = 0,
                   device: Union[str, torch.device, None] = None,
                   batch_size: int = INFER_BATCH) -> DomainEvaluator:
    """The domain evaluator for a dataset spec (``fashion-mnist``, a folder, ...) or from an
    evaluator file (``*.pt``). ``img_size`` picks among several trained sizes (the exact
    one, else the closest). Raises :class:`EvaluatorError` naming the train command when
    none exists."""
    p = Path(str(spec_or_path)).expanduser()
    if p.is_file() and p.suffix.lower() not in (".npy", ".npz"):   # not a dataset file
        path = p
    elif str(spec_or_path).endswith(".pt"):
        raise EvaluatorError(f"evaluator file '{spec_or_path}' does not exist; train one with "
                             f"`ganforge evaluator train --data DATA --out {spec_or_path}`")
    else:
        path = find_evaluator(spec_or_path, img_size)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise EvaluatorError(f"cannot read evaluator '{path}': {e.__class__.__name__}: {e}. "
                             f"Delete it and train again.") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise EvaluatorError(f"'{path}' is not a ganforge domain evaluator file")
    if int(obj.get("format_version", 0)) > FORMAT_VERSION:
        raise EvaluatorError(f"'{path}' was written by a newer ganforge "
                             f"({obj.get('ganforge_version')}); upgrade ganforge to use it")
    arch, state = obj["arch"], obj["state_dict"]
    digest = weights_digest(arch, state)
    if digest != obj.get("weights_hash"):
        raise EvaluatorError(f"evaluator '{path}' is corrupted (its weights do not match the "
                             f"stored SHA-256); delete it and train again with "
                             f"`{_train_command(obj.get('dataset', {}).get('spec', 'DATA'))}`")
    try:
        net = build_net(arch)
        net.load_state_dict(state)
    except (TypeError, ValueError, RuntimeError) as e:
        raise EvaluatorError(f"evaluator '{path}' does not match its architecture spec "
                             f"({e.__class__.__name__}: {str(e).splitlines()[0]}); train it "
                             f"again") from None
    meta = {k: v for k, v in obj.items() if k not in ("state_dict",)}
    ev = DomainEvaluator(net, weights_hash=digest, input_size=obj["dataset"]["img_size"],
                         class_names=obj["class_names"], accuracy=obj["accuracy"], meta=meta,
                         path=path, batch_size=batch_size)
    return ev.to(device) if device is not None else ev


@EXTRACTORS.register("domain", help="small CNN classifier trained on the dataset itself "
                                    "(`ganforge evaluator train --data NAME`): penultimate "
                                    "features and class logits")
def build_domain(data: Optional[PathLike] = None, weights: Optional[PathLike] = None,
                 img_size: int = 0, device: Union[str, torch.device, None] = None,
                 **_: Any) -> DomainEvaluator:
    """Registry entry: ``weights`` (an evaluator file) or ``data`` (a dataset spec whose
    stored evaluator is used)."""
    if weights is not None:
        return load_evaluator(weights, device=device)
    if data is None:
        raise EvaluatorError("the 'domain' feature extractor needs the dataset it was trained "
                             "on (data=NAME or a folder) or an evaluator file (weights=PATH); "
                             "train one with `ganforge evaluator train --data NAME`")
    return load_evaluator(data, img_size=img_size, device=device)


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------
#: Named datasets whose classes survive a horizontal flip (clothes do; digits do not).
FLIP_SAFE = {"fashion-mnist"}


def _relabel(test, train_names: List[str], where: str):
    """Map a test split's labels onto the train split's class order (folders list their own
    subfolders, which may come in a different set)."""
    if test.class_names is None:
        test.class_names = [str(i) for i in range(test.num_classes)]
    if test.class_names == train_names:
        return test.labels
    missing = [c for c in test.class_names if c not in train_names]
    if missing:
        raise EvaluatorError(f"{where}: the test split has classes {missing[:5]} that the "
                             f"train split lacks; both need the same class subfolders")
    lut = torch.tensor([train_names.index(c) for c in test.class_names], dtype=torch.int64)
    return lut[test.labels]


def _holdout(n: int, labels: torch.Tensor, fraction: float, seed: int
             ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Seeded, per-class (stratified) split into (train indices, test indices)."""
    g = torch.Generator().manual_seed(10_007 + seed)
    test_idx = []
    for c in labels.unique().tolist():
        idx = (labels == c).nonzero().flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        k = int(round(len(idx) * fraction))
        if len(idx) >= 2:
            k = max(1, min(k, len(idx) - 1))
        else:
            k = 0
        test_idx.append(idx[:k])
    test = torch.cat(test_idx).sort().values
    mask = torch.ones(n, dtype=torch.bool)
    mask[test] = False
    return mask.nonzero().flatten(), test


def load_splits(data_spec: PathLike, *, data_dir: Optional[str] = None, img_size: int = 0,
                channels: int = 0, limit: int = 0, seed: int = 0, log=print):
    """(train dataset, test images, test labels, how the test set was chosen).

    Named datasets use their ``test`` split; a folder with ``train/`` and ``test/``
    subfolders uses those; anything else holds out a seeded, stratified 10 %."""
    from ganforge.data import DataError, ImageDataset, load_dataset
    spec = str(data_spec)
    name, _split = _split_named(spec)
    base = name if name is not None else spec
    opts = dict(img_size=img_size, channels=channels, data_dir=data_dir)
    path = Path(base).expanduser()
    split_dirs = name is None and (path / "train").is_dir() and (path / "test").is_dir()
    train = load_dataset(str(path / "train") if split_dirs else base, "train", limit=limit,
                         **opts)
    if train.labels is not None and not train.class_names:   # labels without names (.npz)
        train.class_names = [str(i) for i in range(train.num_classes)]
    if train.labels is None or not train.class_names or len(train.class_names) < 2:
        raise EvaluatorError(
            f"dataset '{spec}' has no class labels (or only one class); a domain evaluator is "
            f"a classifier and needs labeled data: a named dataset with labels, or a folder "
            f"with one subfolder per class (root/cat/*.png, root/dog/*.png)")
    # The test split at the train split's size and channels, so both feed the same network.
    opts.update(img_size=train.img_size, channels=train.channels)
    test = None
    reason = ""
    if name is not None or split_dirs:
        try:
            test = load_dataset(base, "test", **opts)
        except DataError as e:
            reason = str(e).splitlines()[0]
    if test is not None and test.labels is not None:
        y = _relabel(test, train.class_names, spec)
        log(f"test set: {len(test)} images from the test split ({test.name})")
        return train, test.images, y, "test"
    n = len(train)
    tr, te = _holdout(n, train.labels, HOLDOUT_FRACTION, seed)
    if len(te) == 0:
        raise EvaluatorError(f"dataset '{spec}' is too small to hold out a test set "
                             f"({n} images); add more images per class")
    log(f"test set: no test split{f' ({reason})' if reason else ''}; holding out a seeded "
        f"{HOLDOUT_FRACTION:.0%} ({len(te)} of {n} images, stratified by class)")
    kept = ImageDataset(images=train.images[tr], labels=train.labels[tr],
                        class_names=train.class_names, name=train.name, source=train.source,
                        skipped=train.skipped)
    return kept, train.images[te], train.labels[te], f"holdout-{HOLDOUT_FRACTION:g}"


def _augment(x: torch.Tensor, gen: torch.Generator, flip: bool, shift: int) -> torch.Tensor:
    """Per-image random horizontal flip and random translation by up to ``shift`` px
    (replicate-padded random crop), vectorised over the batch."""
    n, _, h, w = x.shape
    if flip:
        m = (torch.rand(n, generator=gen) < 0.5).view(n, 1, 1, 1)
        x = torch.where(m, x.flip(3), x)
    if shift:
        xp = F.pad(x, (shift, shift, shift, shift), mode="replicate")
        dy = torch.randint(0, 2 * shift + 1, (n, 1), generator=gen)
        dx = torch.randint(0, 2 * shift + 1, (n, 1), generator=gen)
        iy = (dy + torch.arange(h)).unsqueeze(2)          # (n, h, 1)
        ix = (dx + torch.arange(w)).unsqueeze(1)          # (n, 1, w)
        x = xp[torch.arange(n).view(n, 1, 1), :, iy, ix]  # (n, h, w, c)
        x = x.permute(0, 3, 1, 2).contiguous()
    return x


def _lr_at(progress: float, peak: float, warmup: float = 0.15) -> float:
    """One-cycle schedule (Smith & Topin 2019): linear warm-up to ``peak`` over the first
    ``warmup`` of training, then cosine annealing to ~0."""
    if progress < warmup:
        return peak * (0.04 + 0.96 * progress / warmup)
    t = min(1.0, (progress - warmup) / (1 - warmup))
    return peak * (0.5 * (1 + math.cos(math.pi * t)) * 0.999 + 0.001)


def evaluate_accuracy(net: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                      batch_size: int = INFER_BATCH) -> float:
    """Top-1 accuracy of ``net`` on uint8 images (eval mode, inference mode)."""
    from ganforge.data import to_float
    was = net.training
    net.eval()
    correct = 0
    dev = next(net.parameters()).device
    with torch.inference_mode():
        for i in range(0, len(images), batch_size):
            x = to_float(images[i:i + batch_size].to(dev))
            x = x.contiguous(memory_format=torch.channels_last)
            correct += int((net(x).argmax(1) == labels[i:i + batch_size].to(dev)).sum())
    net.train(was)
    return correct / max(1, len(images))


def _auto_threads() -> Tuple[int, str]:
    """torch's thread count, lowered to the number of cores other processes leave idle."""
    n = torch.get_num_threads()
    try:
        load = os.getloadavg()[0]
    except (OSError, AttributeError):  # not available on this platform
        return n, ""
    cores = os.cpu_count() or n
    free = max(1, min(n, int(cores - load + 0.5)))
    return free, (f" (load average {load:.1f} on {cores} cores; set --threads to override)"
                  if free < n else "")


def _fmt_time(s: float) -> str:
    s = int(round(s))
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def train_evaluator(data_spec: PathLike, *, data_dir: Optional[str] = None, img_size: int = 0,
                    channels: int = 0, epochs: float = 4, batch_size: int = 128,
                    lr: float = 3e-3, weight_decay: float = 5e-4, seed: int = 0,
                    flip: Optional[bool] = None, shift: int = 0,
                    widths: Optional[Sequence[int]] = None, fc: int = 256, limit: int = 0,
                    out: Optional[PathLike] = None, time_budget: Optional[float] = None,
                    device: Union[str, torch.device] = "cpu", threads: int = 0,
                    progress: bool = True) -> Path:
    """Train a domain evaluator on ``data_spec``'s train split; return the saved file's path.

    - ``epochs`` passes over the train split (fractions allowed), AdamW with a one-cycle
      learning-rate schedule peaking at ``lr``; ``seed`` fixes initialisation, batch order
      and augmentation.
    - ``time_budget``: seconds of training (loading and the final evaluation come on top);
      the schedule follows whichever of steps or time is further along, so training ends in
      about that time with a properly annealed learning rate.
    - Augmentation: horizontal flips when ``flip`` (default: only for datasets known to be
      flip-invariant, i.e. Fashion-MNIST; never for digits or text), random translation by
      up to ``shift`` px (default 0: with a schedule of a few epochs it costs accuracy).
    - ``widths``/``fc``: network size (default :func:`default_widths` of the image size).
    - ``threads``: torch CPU threads while training; 0 (default): torch's setting, reduced
      to the cores left idle by other processes (1-minute load average), -1: torch's
      setting as is. On a shared, busy machine this matters a lot: every multi-threaded op
      waits for its slowest thread, and a descheduled thread stalls all of them (measured
      on 2 busy cores: 345 s wall with 2 threads, 82 s with 1).
    - ``limit``: use only the first N train images.

    The test accuracy is measured on the test split (or a seeded, stratified 10 % hold-out
    when there is none) and stored with the weights, the architecture and the provenance of
    the data. ``out`` defaults to :func:`default_evaluator_path`; the write is atomic.
    """
    if threads >= 0 and torch.device(device).type == "cpu":
        before = torch.get_num_threads()
        n, why = (threads, "") if threads > 0 else _auto_threads()
        torch.set_num_threads(n)
        if progress and n != before:
            print(f"using {n} CPU thread{'s' if n > 1 else ''}{why}", flush=True)
        try:
            return train_evaluator(
                data_spec, data_dir=data_dir, img_size=img_size, channels=channels,
                epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                seed=seed, flip=flip, shift=shift, widths=widths, fc=fc, limit=limit, out=out,
                time_budget=time_budget, device=device, threads=-1, progress=progress)
        finally:
            torch.set_num_threads(before)
    from ganforge.data.batching import BatchLoader

    log = (lambda *a: print(*a, flush=True)) if progress else (lambda *a: None)
    t_start = time.time()
    spec = str(data_spec)
    train, test_x, test_y, eval_split = load_splits(spec, data_dir=data_dir,
                                                    img_size=img_size, channels=channels,
                                                    limit=limit, seed=seed, log=log)
    n, c, size = len(train), train.channels, train.img_size
    if train.images.shape[-2] != train.images.shape[-1]:
        raise EvaluatorError(f"dataset '{spec}' has non-square {tuple(train.images.shape[-2:])} "
                             f"images; pass img_size to load it square")
    name, _ = _split_named(spec)
    if flip is None:
        flip = name in FLIP_SAFE
    if shift is None:
        shift = 0
    widths = tuple(widths) if widths else default_widths(size)
    n_cls = len(train.class_names)
    bs = max(1, min(batch_size, n))
    log(f"training domain evaluator on {train.name}: {n} images {c}x{size}x{size}, "
        f"{n_cls} classes; widths {list(widths)}, {epochs:g} epochs, batch {bs}, "
        f"flip={'on' if flip else 'off'}, shift={shift}px"
        + (f", time budget {_fmt_time(time_budget)}" if time_budget else ""))

    dev = torch.device(device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = DomainCNN(c, n_cls, widths, fc=fc).to(dev)
    net = net.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    loader = BatchLoader(train.images, train.labels, batch_size=bs, seed=seed, device=dev)
    aug_gen = torch.Generator().manual_seed(seed + 1)
    total = max(1, int(round(epochs * loader.steps_per_epoch)))
    net.train()
    t0 = time.time()
    last_log = t0
    seen = correct = 0
    loss_sum = 0.0
    step = 0
    progress_frac = 0.0
    while progress_frac < 1.0:
        progress_frac = step / total
        if time_budget:
            progress_frac = max(progress_frac, (time.time() - t0) / time_budget)
        if progress_frac >= 1.0:
            break
        for g in opt.param_groups:
            g["lr"] = _lr_at(progress_frac, lr)
        x, y = loader.next()
        if flip or shift:
            x = _augment(x.cpu(), aug_gen, flip, shift).to(dev)
        x = x.contiguous(memory_format=torch.channels_last)
        logits = net(x)
        loss = F.cross_entropy(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        seen += len(y)
        loss_sum += float(loss.detach()) * len(y)
        correct += int((logits.argmax(1) == y).sum())
        now = time.time()
        if progress and (now - last_log >= 5 or step == total):
            rate = step / (now - t0)
            left = (total - step) / rate
            if time_budget:
                left = min(left, max(0.0, time_budget - (now - t0)))
            log(f"  epoch {loader.epoch_float:5.2f}  step {step}/{total}  "
                f"loss {loss_sum / seen:.4f}  train acc {correct / seen:6.2%}  "
                f"{rate * bs:.0f} img/s  ETA {_fmt_time(left)}")
            last_log, seen, correct, loss_sum = now, 0, 0, 0.0
    train_seconds = time.time() - t0
    acc = evaluate_accuracy(net, test_x, test_y)
    total_seconds = time.time() - t_start
    log(f"test accuracy {acc:.2%} on {len(test_x)} {eval_split} images "
        f"(training {_fmt_time(train_seconds)}, total {_fmt_time(total_seconds)})")

    meta = {
        "dataset": {"spec": spec, "key": dataset_key(spec), "name": train.name,
                    "split": "train", "source": train.source, "img_size": size,
                    "channels": c, "data_dir": str(data_dir) if data_dir else ""},
        "train_images": n, "test_images": int(len(test_x)), "eval_split": eval_split,
        "train": {"epochs": float(loader.epoch_float), "steps": step, "batch_size": bs,
                  "lr": lr, "weight_decay": weight_decay, "seed": seed, "flip": bool(flip),
                  "shift": int(shift), "seconds": round(train_seconds, 2),
                  "threads": torch.get_num_threads(),
                  "time_budget": float(time_budget or 0), "optimizer": "AdamW one-cycle"},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    path = Path(out).expanduser() if out else default_evaluator_path(spec, size)
    net = net.cpu().to(memory_format=torch.contiguous_format)
    save_evaluator(net, path, class_names=train.class_names, accuracy=acc, meta=meta)
    log(f"saved {path}")
    return path


# --------------------------------------------------------------------------------------------
# CLI: `ganforge evaluator train ...` (wired into ganforge/cli.py)
# --------------------------------------------------------------------------------------------
def cli_evaluator_train(args: argparse.Namespace) -> int:
    path = train_evaluator(args.data, data_dir=args.data_dir, img_size=args.img_size or 0,
                           channels=getattr(args, "channels", 0) or 0, epochs=args.epochs,
                           batch_size=args.batch_size, seed=args.seed,
                           flip=getattr(args, "flip", None), shift=getattr(args, "shift", 0),
                           out=args.out, time_budget=getattr(args, "time_budget", None),
                           limit=getattr(args, "limit", 0) or 0,
                           threads=getattr(args, "threads", 0) or 0, progress=True)
    ev = load_evaluator(path)
    print(f"domain evaluator: test accuracy {ev.accuracy:.2%} "
          f"({ev.meta['test_images']} {ev.meta['eval_split']} images), "
          f"{ev.feature_dim}-d features, weights_hash {ev.weights_hash[:16]}\n"
          f"  {path}")
    return 0


def cli_evaluator_info(args: argparse.Namespace) -> int:
    ev = load_evaluator(args.data, img_size=args.img_size or 0)
    ds, tr = ev.dataset, ev.meta.get("train", {})
    print(f"{ev.path}\n  dataset      {ds.get('spec')} ({ds.get('name')}, {ds.get('source')})\n"
          f"  images       {ds.get('img_size')}px x{ds.get('channels')}, "
          f"{ev.meta.get('train_images')} train / {ev.meta.get('test_images')} "
          f"{ev.meta.get('eval_split')}\n"
          f"  accuracy     {ev.accuracy:.2%}\n"
          f"  classes      {', '.join(ev.class_names)}\n"
          f"  features     {ev.feature_dim}-d\n  weights_hash {ev.weights_hash}\n"
          f"  trained      {ev.meta.get('created')}, {tr.get('epochs', 0):.3g} epochs in "
          f"{tr.get('seconds', 0):.0f}s")
    return 0


def add_evaluator_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``evaluator {train,info}`` to the top-level CLI's subparsers."""
    e = subparsers.add_parser("evaluator", help="train / inspect the domain classifier used "
                                                "by the 'domain' metrics extractor")
    esub = e.add_subparsers(dest="evaluator_command", metavar="ACTION", required=True)
    t = esub.add_parser("train", help="train a small CNN classifier on a labeled dataset",
                        description="Train the domain evaluator for a labeled dataset (a "
                                    "named dataset or a folder with one subfolder per class) "
                                    "and store it in $GANFORGE_CACHE/evaluators/.")
    t.add_argument("--data", required=True, help="dataset name (fashion-mnist, mnist) or a "
                                                 "folder with class subfolders")
    t.add_argument("--data-dir", help="where named datasets are stored")
    t.add_argument("--img-size", type=int, default=0, metavar="PX",
                   help="train at this size (default: the dataset's own)")
    t.add_argument("--channels", type=int, default=0, choices=(0, 1, 3),
                   help="1 or 3 (default: the dataset's own)")
    t.add_argument("--epochs", type=float, default=4, metavar="N", help="default 4")
    t.add_argument("--batch-size", type=int, default=128, metavar="N", help="default 128")
    t.add_argument("--time-budget", type=float, metavar="SECONDS",
                   help="fit the schedule into about this many seconds")
    t.add_argument("--flip", dest="flip", action="store_true", default=None,
                   help="random horizontal flips (default: only for fashion-mnist)")
    t.add_argument("--no-flip", dest="flip", action="store_false")
    t.add_argument("--shift", type=int, default=0, metavar="PX",
                   help="random translations by up to PX pixels (default 0)")
    t.add_argument("--limit", type=int, default=0, metavar="N",
                   help="use only the first N train images")
    t.add_argument("--out", metavar="PATH", help="evaluator file (default "
                                                 "$GANFORGE_CACHE/evaluators/<data>-<size>px.pt)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int, default=0, metavar="N",
                   help="torch CPU threads (default 0: as many as the machine has idle cores)")
    t.set_defaults(func=cli_evaluator_train)
    i = esub.add_parser("info", help="show a stored evaluator's accuracy and training data")
    i.add_argument("data", metavar="DATA_OR_FILE")
    i.add_argument("--img-size", type=int, default=0, metavar="PX")
    i.set_defaults(func=cli_evaluator_info)
    return e
