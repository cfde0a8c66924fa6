"""The ``domain`` feature extractor: a small CNN classifier trained on the user's own data.

Why: the FID Inception-v3 was trained on ImageNet photos at 299 px. On 28 px grayscale
clothing or digits its features are a poor yardstick (and slow on a CPU). Papers on small
datasets therefore also report distances in the feature space of a classifier trained on the
dataset itself ("domain" FID; e.g. the LeNet features used for MNIST FID). This module holds
what that extractor needs to exist and be loaded (pure: tensors in, features and logits out):
the network (:class:`DomainCNN`), its file format (:func:`save_evaluator`,
:func:`load_evaluator`, :func:`weights_digest`), where evaluator files live
(:func:`find_evaluator`), and the extractor itself, registered as ``domain`` in
``EXTRACTORS``. Training an evaluator and the ``ganforge evaluator`` command are use-time
code in :mod:`ganforge.metrics.domain.train`.

:class:`DomainEvaluator` serves a trained network as a :class:`FeatureExtractor`:

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

import hashlib
import json
import os
import re
import shlex
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from ganforge.core.errors import UserError
from ganforge.core.files import atomic_save
from ganforge.core.version import __version__
from ganforge.data.paths import cache_dir
from ganforge.data.spec import registered_name
from ganforge.metrics.extractors import EXTRACTORS, FeatureExtractor

FORMAT = "ganforge-domain-evaluator"
FORMAT_VERSION = 1
ARCH_FAMILY = "domain-cnn"
#: Images per forward pass when extracting features / evaluating.
INFER_BATCH = 500

PathLike = Union[str, os.PathLike]


class EvaluatorError(UserError, ValueError):
    """A user-facing problem with a domain evaluator: missing, unreadable, or unusable data.

    A :class:`~ganforge.core.errors.UserError` (the CLI prints it as one line, exit code 2) and a
    ``ValueError`` for callers that catch builtins."""


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
    return cache_dir() / "evaluators"


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", s).strip("-.") or "data"


def dataset_key(data_spec: PathLike) -> str:
    """File-name stem for a dataset: the registered name (``fashion-mnist``), or for a path
    its folder/file name plus a short hash of the absolute path (two folders called
    ``train`` must not share an evaluator)."""
    name = registered_name(data_spec)
    if name is not None:
        return name
    p = Path(str(data_spec)).expanduser().resolve()
    tag = hashlib.sha256(str(p).encode()).hexdigest()[:8]
    return f"{_slug(p.stem if p.is_file() else p.name)}-{tag}"


def default_evaluator_path(data_spec: PathLike, img_size: int) -> Path:
    return evaluators_dir() / f"{dataset_key(data_spec)}-{int(img_size)}px.pt"


def train_command(data_spec: PathLike, img_size: int = 0) -> str:
    """The ``ganforge evaluator train`` command line for ``data_spec`` at ``img_size``."""
    name = registered_name(data_spec)     # an evaluator is per dataset, not per split or class
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
            f"  {train_command(data_spec, img_size)}\n"
            f"or pass an evaluator file with --weights FILE.pt (needs labels: a folder must "
            f"have one subfolder per class; for one without, use an evaluator of similar "
            f"labelled images, or --extractor inception).")
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

    @property
    def label(self) -> str:
        ds = self.dataset.get("spec") or self.dataset.get("name", "?")
        return f"domain {ds} {self.input_size}px {self.weights_hash[:12]}"

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
                                    f"{train_command(self.dataset.get('spec', 'DATA'), h)}")
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
                             f"`{train_command(obj.get('dataset', {}).get('spec', 'DATA'))}`")
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
