"""The FID Inception-v3, in plain torch (no torchvision).

FID is only comparable across papers when everyone uses the same network: the TensorFlow
Inception-v3 graph of 2015-12-05 (``inception-2015-12-05.tgz``) that Heusel et al.'s TTUR code
and the Inception Score code of Salimans et al. load. pytorch-fid (M. Seitzer) ported its
weights to a PyTorch state dict, ``pt_inception-2015-12-05-6726825d.pth``, for torchvision's
``Inception3`` layout with ``num_classes=1008`` and no auxiliary head. This module rebuilds
that layout, so the file loads with identical parameter/buffer names
(``Conv2d_1a_3x3.conv.weight``, ``Mixed_5b.branch_pool.bn.running_var``, ``fc.bias``, ...).

The 2015 graph differs from torchvision's Inception-v3 in two ways that pytorch-fid patches
(``FIDInceptionA/C/E_1/E_2``) and that we reproduce:

1. TensorFlow's average pooling ignores the zero padding, so the 3x3 avg-pool in the pool
   branch of the A, C and first E blocks uses ``count_include_pad=False``.
2. The last E block (Mixed_7c) uses a 3x3 *max* pool in its pool branch.

Preprocessing follows pytorch-fid: images in [-1, 1] are bilinearly resized to 299 x 299
(``align_corners=False``, no antialiasing); grayscale is tiled to 3 channels. pytorch-fid
resizes inputs in [0, 1] and then maps to [-1, 1]; resizing is linear, so resizing [-1, 1]
inputs directly is the same computation.

Outputs: ``features`` = 2048-d pool3 (global average of Mixed_7c), the FID/KID/PRDC feature;
``logits`` = the 1008-way classifier. By default ``logits`` omits the final bias, because the
original Inception Score code multiplies pool3 by the softmax layer's weight matrix only
(openai/improved-gan ``inception_score/model.py``; torch-fidelity's ``logits_unbiased``).

Weights: :func:`load_inception` / :func:`resolve_weights` (explicit path, then the ganforge
cache, then torch hub's cache where pytorch-fid keeps it, then download with SHA-256 check).
"""
from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path
from typing import Optional, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from ganforge.core.errors import UserError
from ganforge.data.download import DownloadError, RemoteFile, fetch, mirrors_for
from ganforge.data.paths import cache_dir
from ganforge.metrics.extractors import EXTRACTORS, FeatureExtractor

WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
# The release asset pytorch-fid downloads (pytorch_fid/inception.py, FID_WEIGHTS_URL).
# A mirror can be given with $GANFORGE_MIRROR_FID_INCEPTION (see ganforge.data.download).
WEIGHTS_BASE_URL = "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
WEIGHTS_URL = WEIGHTS_BASE_URL + WEIGHTS_FILE
MIRROR_NAME = "fid-inception"
# Full SHA-256 of that file. pytorch-fid itself does not publish a full hash; its file name
# follows torch.hub's naming convention "<name>-<first 8 hex digits of the SHA-256>.pth"
# (torch.hub.download_url_to_file(hash_prefix=...) checks exactly that prefix). The full digest
# below is the one several independent projects pin for this exact URL (and for torch-fidelity's
# byte-identical copy "weights-inception-2015-12-05-6726825d.pth", 95,628,359 bytes); it begins
# with the 6726825d of the file name, which is the consistency check we can make offline.
WEIGHTS_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"
WEIGHTS_BYTES = 95_628_359
INPUT_SIZE = 299
FEATURE_DIM = 2048
NUM_CLASSES = 1008


# --------------------------------------------------------------------------------------------
# Building blocks. Attribute names are the state-dict keys of the weights file: keep them.
# --------------------------------------------------------------------------------------------
class ConvBN(nn.Module):
    """conv (no bias) -> batch norm (eps 1e-3, TF's value) -> ReLU. Keys: ``conv``, ``bn``."""

    def __init__(self, cin: int, cout: int, kernel_size, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=1e-3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg_pool_tf(x: torch.Tensor) -> torch.Tensor:
    # TF averages only over the valid (unpadded) cells of the 3x3 window.
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):
    """35x35 block (Mixed_5b/5c/5d): 1x1 | 1x1->5x5 | 1x1->3x3->3x3 | avgpool->1x1."""

    def __init__(self, cin: int, pool_features: int):
        super().__init__()
        self.branch1x1 = ConvBN(cin, 64, 1)
        self.branch5x5_1 = ConvBN(cin, 48, 1)
        self.branch5x5_2 = ConvBN(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = ConvBN(cin, 64, 1)
        self.branch3x3dbl_2 = ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBN(96, 96, 3, padding=1)
        self.branch_pool = ConvBN(cin, pool_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(_avg_pool_tf(x))
        return torch.cat([self.branch1x1(x), b5, b3, bp], 1)


class ReductionB(nn.Module):
    """35->17 grid reduction (Mixed_6a): stride-2 3x3 | 1x1->3x3->3x3/2 | maxpool/2."""

    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3 = ConvBN(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = ConvBN(cin, 64, 1)
        self.branch3x3dbl_2 = ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBN(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3d = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch3x3(x), b3d, F.max_pool2d(x, 3, stride=2)], 1)


class InceptionC(nn.Module):
    """17x17 block (Mixed_6b..6e) with factorised 7x7 convolutions (1x7 and 7x1)."""

    def __init__(self, cin: int, channels_7x7: int):
        super().__init__()
        c = channels_7x7
        self.branch1x1 = ConvBN(cin, 192, 1)
        self.branch7x7_1 = ConvBN(cin, c, 1)
        self.branch7x7_2 = ConvBN(c, c, (1, 7), padding=(0, 3))
        self.branch7x7_3 = ConvBN(c, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = ConvBN(cin, c, 1)
        self.branch7x7dbl_2 = ConvBN(c, c, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = ConvBN(c, c, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = ConvBN(c, c, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = ConvBN(c, 192, (1, 7), padding=(0, 3))
        self.branch_pool = ConvBN(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        b7d = x
        for conv in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3,
                     self.branch7x7dbl_4, self.branch7x7dbl_5):
            b7d = conv(b7d)
        bp = self.branch_pool(_avg_pool_tf(x))
        return torch.cat([self.branch1x1(x), b7, b7d, bp], 1)


class ReductionD(nn.Module):
    """17->8 grid reduction (Mixed_7a)."""

    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3_1 = ConvBN(cin, 192, 1)
        self.branch3x3_2 = ConvBN(192, 320, 3, stride=2)
        self.branch7x7x3_1 = ConvBN(cin, 192, 1)
        self.branch7x7x3_2 = ConvBN(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = ConvBN(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = ConvBN(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = x
        for conv in (self.branch7x7x3_1, self.branch7x7x3_2, self.branch7x7x3_3,
                     self.branch7x7x3_4):
            b7 = conv(b7)
        return torch.cat([b3, b7, F.max_pool2d(x, 3, stride=2)], 1)


class InceptionE(nn.Module):
    """8x8 block (Mixed_7b, Mixed_7c) with split 1x3 / 3x1 outputs.

    ``pool="avg"`` (Mixed_7b, pytorch-fid's FIDInceptionE_1): TF-style average pool.
    ``pool="max"`` (Mixed_7c, FIDInceptionE_2): max pool, as in the 2015 graph.
    """

    def __init__(self, cin: int, pool: str):
        super().__init__()
        if pool not in ("avg", "max"):
            raise ValueError(f"pool must be 'avg' or 'max', got {pool!r}")
        self.pool = pool
        self.branch1x1 = ConvBN(cin, 320, 1)
        self.branch3x3_1 = ConvBN(cin, 384, 1)
        self.branch3x3_2a = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = ConvBN(cin, 448, 1)
        self.branch3x3dbl_2 = ConvBN(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = ConvBN(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(t), self.branch3x3_2b(t)], 1)
        t = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        b3d = torch.cat([self.branch3x3dbl_3a(t), self.branch3x3dbl_3b(t)], 1)
        pooled = (_avg_pool_tf(x) if self.pool == "avg"
                  else F.max_pool2d(x, 3, stride=1, padding=1))
        return torch.cat([self.branch1x1(x), b3, b3d, self.branch_pool(pooled)], 1)


# --------------------------------------------------------------------------------------------
# The network
# --------------------------------------------------------------------------------------------
class FIDInceptionV3(FeatureExtractor):
    """Inception-v3 as used for FID/IS; a :class:`FeatureExtractor` named ``inception``.

    Built with seeded random weights (useful for tests and smoke runs; ``weights_hash`` says
    ``random-seed<k>``); use :func:`load_inception` for the real network.
    """

    name = "inception"
    input_size = INPUT_SIZE
    feature_dim = FEATURE_DIM
    num_classes = NUM_CLASSES

    def __init__(self, seed: int = 0):
        super().__init__()
        self.Conv2d_1a_3x3 = ConvBN(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = ConvBN(32, 32, 3)
        self.Conv2d_2b_3x3 = ConvBN(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = ConvBN(64, 80, 1)
        self.Conv2d_4a_3x3 = ConvBN(80, 192, 3)
        self.Mixed_5b = InceptionA(192, pool_features=32)
        self.Mixed_5c = InceptionA(256, pool_features=64)
        self.Mixed_5d = InceptionA(288, pool_features=64)
        self.Mixed_6a = ReductionB(288)
        self.Mixed_6b = InceptionC(768, channels_7x7=128)
        self.Mixed_6c = InceptionC(768, channels_7x7=160)
        self.Mixed_6d = InceptionC(768, channels_7x7=160)
        self.Mixed_6e = InceptionC(768, channels_7x7=192)
        self.Mixed_7a = ReductionD(768)
        self.Mixed_7b = InceptionE(1280, pool="avg")
        self.Mixed_7c = InceptionE(2048, pool="max")
        self.fc = nn.Linear(FEATURE_DIM, NUM_CLASSES)
        self.reset_random(seed)
        self.freeze()

    @torch.no_grad()
    def reset_random(self, seed: int = 0) -> None:
        """Deterministic random weights: He-normal convs, identity batch norm, small fc.

        He (fan-in, ReLU gain) scaling keeps activations O(1) through all 94 conv layers in
        eval mode, so the random network gives finite, input-dependent features.
        """
        g = torch.Generator().manual_seed(seed)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_in = m.weight[0].numel()
                m.weight.normal_(0.0, (2.0 / fan_in) ** 0.5, generator=g)
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.fill_(1.0)
                m.bias.zero_()
                m.running_mean.zero_()
                m.running_var.fill_(1.0)
                m.num_batches_tracked.zero_()
        self.fc.weight.normal_(0.0, 0.01, generator=g)
        self.fc.bias.zero_()
        self.weights_hash = f"random-seed{seed}"

    # -- preprocessing -----------------------------------------------------------------------
    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """[-1, 1] NCHW, any size, 1 or 3 channels -> float32 N x 3 x 299 x 299."""
        x = self.prepare(x)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        elif x.shape[1] != 3:
            raise ValueError(f"inception: images must have 1 or 3 channels, got {x.shape[1]}")
        if tuple(x.shape[-2:]) != (INPUT_SIZE, INPUT_SIZE):
            x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear",
                              align_corners=False)
        return x

    # -- forward -----------------------------------------------------------------------------
    def _pool3(self, x: torch.Tensor) -> torch.Tensor:
        x = self.Conv2d_1a_3x3(x)           # 32 x 149 x 149
        x = self.Conv2d_2a_3x3(x)           # 32 x 147 x 147
        x = self.Conv2d_2b_3x3(x)           # 64 x 147 x 147
        x = F.max_pool2d(x, 3, stride=2)    # 64 x 73 x 73
        x = self.Conv2d_3b_1x1(x)           # 80 x 73 x 73
        x = self.Conv2d_4a_3x3(x)           # 192 x 71 x 71
        x = F.max_pool2d(x, 3, stride=2)    # 192 x 35 x 35
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d,   # 288 x 35 x 35
                      self.Mixed_6a,                                  # 768 x 17 x 17
                      self.Mixed_6b, self.Mixed_6c, self.Mixed_6d, self.Mixed_6e,
                      self.Mixed_7a,                                  # 1280 x 8 x 8
                      self.Mixed_7b, self.Mixed_7c):                  # 2048 x 8 x 8
            x = block(x)
        return x.mean(dim=(2, 3))           # global average pool -> N x 2048

    def _head(self, f: torch.Tensor, bias: bool) -> torch.Tensor:
        return F.linear(f, self.fc.weight, self.fc.bias if bias else None)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """2048-d pool3 features, float32, shape (N, 2048)."""
        return self._pool3(self.preprocess(x))

    def logits(self, x: torch.Tensor, bias: bool = False) -> torch.Tensor:
        """1008-way logits; ``bias=False`` (default) matches the original IS code."""
        return self._head(self.features(x), bias)

    def features_and_logits(self, x: torch.Tensor, bias: bool = False
                            ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Both outputs from one forward pass."""
        f = self.features(x)
        return f, self._head(f, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


# --------------------------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------------------------
def sha256_file(path: Union[str, os.PathLike]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def default_weights_path() -> Path:
    """``<ganforge cache>/weights/<file>``; the cache is ``$GANFORGE_CACHE``, else
    ``$XDG_CACHE_HOME/ganforge``, else ``~/.cache/ganforge`` (ganforge.data.paths)."""

    return cache_dir() / "weights" / WEIGHTS_FILE


def _torch_hub_copy() -> Optional[Path]:
    # pytorch-fid downloads through torch.hub, so users who ran it already have the file here.
    try:
        p = Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_FILE
    except Exception:  # pragma: no cover - hub dir unresolvable
        return None
    return p if p.is_file() else None


class InceptionWeightsError(UserError, RuntimeError):
    """The FID Inception weights cannot be had (offline, or a download that did not verify):
    a :class:`~ganforge.core.errors.UserError` (the CLI prints it, exit code 2, saying where to put
    the file) and a ``RuntimeError`` for callers that catch builtins."""


def _missing_weights_message(reason: str) -> str:
    return (f"the FID Inception weights '{WEIGHTS_FILE}' are not available ({reason}).\n"
            f"Download {WEIGHTS_URL}\n"
            f"(SHA-256 {WEIGHTS_SHA256}) and save it as {default_weights_path()}\n"
            f"(or set GANFORGE_CACHE to a folder whose weights/ subfolder holds it, set "
            f"GANFORGE_MIRROR_FID_INCEPTION to a mirror URL, or pass the file with --weights "
            f"PATH). Offline, --extractor domain needs no download.")


def resolve_weights(weights: Union[str, os.PathLike, None] = None, progress: bool = True
                    ) -> Tuple[Path, str]:
    """Find the weights file; return ``(path, sha256)``.

    Order: explicit ``weights`` path; ``$GANFORGE_CACHE/weights/``; torch hub's checkpoint
    folder (pytorch-fid's download location); else download into the ganforge cache.
    A cached or downloaded file must match :data:`WEIGHTS_SHA256`. An explicit file that does
    not match is accepted with a warning (e.g. a deliberately different network), since its
    hash becomes the extractor's ``weights_hash`` and keeps its statistics apart.
    """
    if weights is not None:
        p = Path(weights).expanduser()
        if not p.is_file():
            raise FileNotFoundError(f"Inception weights file not found: {p}")
        digest = sha256_file(p)
        if digest != WEIGHTS_SHA256:
            warnings.warn(f"{p} is not the standard FID Inception weights file (SHA-256 "
                          f"{digest[:16]}..., expected {WEIGHTS_SHA256[:16]}...); scores will "
                          f"not be comparable with published FID values", stacklevel=2)
        return p, digest

    cached = default_weights_path()
    if cached.is_file():
        digest = sha256_file(cached)
        if digest != WEIGHTS_SHA256:
            raise ValueError(f"cached Inception weights {cached} are corrupted (SHA-256 {digest}, "
                             f"expected {WEIGHTS_SHA256}); delete the file to download it again")
        return cached, digest

    hub = _torch_hub_copy()
    if hub is not None and sha256_file(hub) == WEIGHTS_SHA256:
        return hub, WEIGHTS_SHA256

    # Shared downloader (temp file + SHA-256 check + atomic rename, mirrors, progress bar).

    try:
        fetch(RemoteFile(WEIGHTS_FILE, WEIGHTS_SHA256),
              mirrors_for(MIRROR_NAME, [WEIGHTS_BASE_URL]), cached.parent, progress=progress)
    except DownloadError as e:
        reason = "offline: download failed" if e.offline else "download did not verify"
        raise InceptionWeightsError(
            _missing_weights_message(f"{reason}; " + "; ".join(e.reasons))) from e
    return cached, WEIGHTS_SHA256


def load_state(net: FIDInceptionV3, state: dict, source: str = "state dict") -> None:
    """Load a pytorch-fid state dict, requiring exactly our parameter/buffer names.

    Only ``num_batches_tracked`` may be absent (files saved before PyTorch 0.4.1 lack it; it
    is unused in eval mode).
    """
    if not isinstance(state, dict):
        raise ValueError(f"{source} does not hold a state dict (got {type(state).__name__})")
    ours = net.state_dict()
    missing = [k for k in ours if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in ours]
    if missing or unexpected:
        raise ValueError(f"{source} does not match the FID Inception layout: "
                         f"{len(missing)} missing keys {missing[:5]}, "
                         f"{len(unexpected)} unexpected keys {unexpected[:5]}")
    bad = [k for k, v in state.items() if tuple(v.shape) != tuple(ours[k].shape)]
    if bad:
        raise ValueError(f"{source}: shape mismatch for {bad[:5]}")
    net.load_state_dict(state, strict=False)


def load_inception(weights: Union[str, os.PathLike, None] = None, *,
                   device: Union[str, torch.device, None] = None,
                   progress: bool = True) -> FIDInceptionV3:
    """The pretrained FID Inception (see :func:`resolve_weights` for where weights come from)."""
    path, digest = resolve_weights(weights, progress=progress)
    state = torch.load(path, map_location="cpu", weights_only=True)
    net = FIDInceptionV3()
    load_state(net, state, source=str(path))
    net.weights_hash = digest
    net.freeze()
    return net.to(device) if device is not None else net


@EXTRACTORS.register("inception", help="FID Inception-v3 (TF 2015-12-05, pytorch-fid weights): "
                                       "2048-d pool3 features, 1008-way logits")
def build_inception(weights: Union[str, os.PathLike, None] = None, pretrained: bool = True,
                    seed: int = 0, device: Union[str, torch.device, None] = None,
                    progress: bool = True) -> FIDInceptionV3:
    """Registry entry: pretrained by default; ``pretrained=False`` gives seeded random weights."""
    if not pretrained:
        net = FIDInceptionV3(seed=seed)
        return net.to(device) if device is not None else net
    return load_inception(weights, device=device, progress=progress)

