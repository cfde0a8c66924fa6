"""Two unpaired image domains (CycleGAN's X and Y, here A and B) and their batch loader.

A *domain spec* names one set of images:

- ``fashion-mnist:sneaker``: one class of a labeled named dataset (train split);
  ``fashion-mnist:test:sneaker`` picks the split. Class names match case-insensitively with
  ``-``, ``_``, space and ``/`` equivalent (``t-shirt-top`` is "T-shirt/top"); an unknown class
  is an error listing the valid ones;
- ``path/to/folder``: every image in a folder; ``path/to/folder:cats`` one class subfolder;
- a ``.npy``/``.npz`` file, as for :func:`ganforge.data.load_dataset`.

Without explicit domains, ``data.name`` may be a root folder in the common CycleGAN layout
``root/{trainA,trainB,testA,testB}`` (``test*`` optional).

The test split of a domain (for the progress grids, ``ganforge translate`` and the metrics)
is derived from its spec: ``fashion-mnist:sneaker`` -> ``fashion-mnist:test:sneaker``,
``root/trainA`` -> ``root/testA``; when there is none, the training images stand in.

:class:`TwoDomainLoader` composes two :class:`~ganforge.data.batching.BatchLoader` s, one per
domain, each shuffled on its own random stream, so unequal domain sizes need no pairing: the
smaller domain simply starts its next epoch sooner. An "epoch" is one pass over the larger
domain. Optional jitter (pad-and-random-crop) and horizontal flips are applied to the float
batches in one vectorised step each; their random stream is part of the loader's state, so a
resumed run sees exactly the batches it would have seen.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F

from ganforge.data.base import DATASETS, DataError, ImageDataset
from ganforge.data.batching import BatchLoader
from ganforge.data.classes import normalize_class_name
from ganforge.data.resolve import load_dataset
from ganforge.data.spec import (
    DataSpec,
    local_path,
    parse_spec,
    path_exists,
    path_is_dir,
)
from ganforge.data.transforms import convert_channels, resize_square

# --------------------------------------------------------------------------- class names
#: ``"T-shirt/top"`` -> ``"t-shirt-top"`` (the same spelling rules as ``--class``).
normalize_class = normalize_class_name


def find_class(wanted: str, class_names: List[str], where: str) -> int:
    """Index of ``wanted`` in ``class_names`` (matched as :func:`normalize_class` does)."""
    key = normalize_class(wanted)
    hits = [i for i, c in enumerate(class_names) if normalize_class(c) == key]
    if len(hits) == 1:
        return hits[0]
    valid = ", ".join(normalize_class(c) for c in class_names)
    raise DataError(f"{where}: no class '{wanted}'; valid classes: {valid} "
                    f"(case and -/_/space/'/'/'&' do not matter)")


# --------------------------------------------------------------------------- specs
def parse_domain(spec: str) -> DataSpec:
    """Read a domain spec (see the module docstring; the syntax is
    :func:`ganforge.data.spec.parse_spec`'s); unlike a dataset spec, a domain must exist."""
    spec = str(spec).strip()
    if not spec:
        raise DataError("empty domain spec; give e.g. fashion-mnist:sneaker or a folder of images")
    parsed = parse_spec(spec)
    if parsed.named or path_exists(local_path(parsed.source)):
        return parsed
    names = ", ".join(DATASETS.names())
    raise DataError(f"domain '{spec}': neither an existing folder/file nor a registered "
                    f"dataset ({names}); write e.g. fashion-mnist:sneaker, "
                    f"fashion-mnist:test:ankle-boot, or a path to a folder of images")


def to_test_split(spec: DataSpec) -> Optional[DataSpec]:
    """The test split of a training domain, or None when there is no such thing."""
    if spec.source in DATASETS:
        return spec.with_split("test") if spec.split in (None, "train") else None
    p = local_path(spec.source)
    if path_is_dir(p) and "train" in p.name:
        q = p.with_name(p.name.replace("train", "test", 1))
        if q.is_dir():
            return DataSpec(str(q), None, spec.cls)
    return None


# --------------------------------------------------------------------------- loading
def load_domain(spec: str | DataSpec, split: str = "train", *, img_size: int = 0,
                channels: int = 0, data_dir: Optional[str] = None, strict: bool = False,
                limit: int = 0, download: bool = True, cache: bool = True) -> ImageDataset:
    """One domain as an :class:`ImageDataset` (labels dropped when a class was selected).
    ``split`` is the default when the spec names none; ``limit`` keeps the first N images
    *of the domain* (after class selection)."""
    ds_spec = spec if isinstance(spec, DataSpec) else parse_domain(spec)
    named = ds_spec.source in DATASETS
    sp = ds_spec.split or split
    # A path names its images itself ("train" = the path as given); a split applies to names.
    ds = load_dataset(ds_spec.source, sp if named else "train", img_size=img_size, channels=channels,
                      data_dir=data_dir, strict=strict, limit=0 if ds_spec.cls else limit,
                      download=download, cache=cache)
    name = str(ds_spec.with_split(sp)) if named else str(ds_spec)
    if ds_spec.cls is None:
        sel = ds
    else:
        if ds.labels is None or not ds.class_names:
            raise DataError(f"domain '{ds_spec}': '{ds_spec.source}' has no classes (a folder "
                            f"needs one subfolder per class to select '{ds_spec.cls}'); "
                            f"point the domain at the folder of its images instead")
        k = find_class(ds_spec.cls, ds.class_names, f"domain '{ds_spec}'")
        idx = (ds.labels == k).nonzero().flatten()
        if idx.numel() == 0:
            raise DataError(f"domain '{ds_spec}': class '{ds.class_names[k]}' has no images in "
                            f"{ds.name}")
        cls = normalize_class(ds.class_names[k])
        name = f"{ds_spec.source}:{sp}:{cls}" if named else f"{ds_spec.source}:{cls}"
        # a subset: a view of the map when the dataset is memory-mapped, else a copy
        sel = ds.subset(idx[:limit] if limit else idx)
        sel = ImageDataset(sel.base_images, None, None, name, ds.source, ds.skipped,
                           index=sel.index, mapped=sel.mapped)
        return sel
    if limit and len(sel) > limit:
        sel = sel.subset(torch.arange(limit))
    return ImageDataset(sel.base_images, sel.labels, sel.class_names, name, ds.source,
                        ds.skipped, index=sel.index, mapped=sel.mapped)


@dataclass
class DomainPair:
    """Training images of domains A and B, and their test images when there are any."""
    a: ImageDataset
    b: ImageDataset
    test_a: Optional[ImageDataset] = None
    test_b: Optional[ImageDataset] = None
    spec_a: str = ""
    spec_b: str = ""

    @property
    def name(self) -> str:
        return f"{self.a.name} <-> {self.b.name}"

    def fingerprint(self) -> str:
        """Both training domains' :meth:`ImageDataset.fingerprint`, ``A+B``."""
        return f"{self.a.fingerprint()}+{self.b.fingerprint()}"

    @property
    def channels(self) -> int:
        return self.a.channels

    @property
    def img_size(self) -> int:
        return self.a.img_size

    def test(self, which: str) -> ImageDataset:
        """The test images of domain ``which`` ('a'/'b'), else its training images."""
        t = self.test_a if which == "a" else self.test_b
        return t if t is not None else (self.a if which == "a" else self.b)

    def __repr__(self) -> str:
        t = "" if self.test_a is None else f", test {len(self.test_a)}/{len(self.test_b or [])}"
        return (f"DomainPair(A={self.a.name!r} x{len(self.a)}, B={self.b.name!r} x{len(self.b)}, "
                f"{self.channels}x{self.img_size}x{self.img_size}{t})")


def _harmonise(ds: ImageDataset, size: int, channels: int) -> ImageDataset:
    if ds.shape[1:] == (channels, size, size):
        return ds                       # as it is (a mapped dataset stays mapped)
    x = ds.images
    if x.shape[-1] != size or x.shape[-2] != size:
        x = resize_square(x, size)
    x = convert_channels(x, channels, ds.name)
    if x is ds.images:
        return ds
    return ImageDataset(images=x.contiguous(), labels=ds.labels, class_names=ds.class_names,
                        name=ds.name, source=ds.source, skipped=ds.skipped)


def domain_specs(data_name: str, domain_a: str, domain_b: str) -> Tuple[str, str]:
    """The two training domain specs: the explicit ones, or ``data_name/trainA|trainB``."""
    if domain_a or domain_b:
        if not (domain_a and domain_b):
            missing = "--domain-b (cyclegan.domain_b)" if domain_a else "--domain-a (cyclegan.domain_a)"
            raise DataError(f"cyclegan needs two domains; {missing} is missing (e.g. "
                            f"--domain-a fashion-mnist:sneaker --domain-b fashion-mnist:ankle-boot)")
        return domain_a, domain_b
    root = local_path(data_name)
    if path_is_dir(root):
        for a, b in (("trainA", "trainB"), ("A", "B")):
            if (root / a).is_dir() and (root / b).is_dir():
                return str(root / a), str(root / b)
    raise DataError(f"cyclegan: no domains given and '{data_name}' is not a folder with "
                    f"trainA/ and trainB/ subfolders; pass --domain-a and --domain-b (e.g. "
                    f"fashion-mnist:sneaker and fashion-mnist:ankle-boot, or two folders), or "
                    f"--data ROOT with ROOT/trainA, ROOT/trainB (and optionally testA, testB)")


def load_domain_pair(domain_a: str, domain_b: str, *, img_size: int = 0, channels: int = 0,
                     data_dir: Optional[str] = None, strict: bool = False, limit: int = 0,
                     download: bool = True, with_test: bool = True,
                     cache: bool = True) -> DomainPair:
    """Load both domains (and their test splits) at one common size and channel count:
    ``img_size``/``channels`` when given, else the smaller size and the larger channel count
    of the two training domains."""
    kw = dict(img_size=img_size, channels=channels, data_dir=data_dir, strict=strict,
              download=download, cache=cache)
    sa, sb = parse_domain(domain_a), parse_domain(domain_b)
    a = load_domain(sa, "train", limit=limit, **kw)
    b = load_domain(sb, "train", limit=limit, **kw)
    ta = tb = None
    if with_test:
        qa, qb = to_test_split(sa), to_test_split(sb)
        if qa is not None and qb is not None:
            ta, tb = load_domain(qa, "test", **kw), load_domain(qb, "test", **kw)
    size = img_size or min(a.img_size, b.img_size)
    ch = channels or max(a.channels, b.channels)
    for d in (a, b):
        if d.shape[-1] != d.shape[-2] and not img_size:
            raise DataError(f"domain '{d.name}' has non-square images; pass data.img_size")
    fix = lambda d: None if d is None else _harmonise(d, size, ch)  # noqa: E731
    return DomainPair(fix(a), fix(b), fix(ta), fix(tb), spec_a=str(domain_a), spec_b=str(domain_b))


# --------------------------------------------------------------------------- augmentation
def random_jitter(x: torch.Tensor, pad: int, gen: torch.Generator) -> torch.Tensor:
    """Pad by ``pad`` px (edge replicated) and crop back at a random offset per image: a
    random translation by up to ``pad`` px. For small images this stands in for the paper's
    "resize to 286, random crop 256" (same jitter, no resampling blur)."""
    if pad <= 0:
        return x
    n, c, h, w = x.shape
    xp = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    off = torch.randint(0, 2 * pad + 1, (n, 2), generator=gen).to(x.device)
    rows = off[:, :1] + torch.arange(h, device=x.device)            # (N, H)
    cols = off[:, 1:] + torch.arange(w, device=x.device)            # (N, W)
    n_idx = torch.arange(n, device=x.device)[:, None, None]
    out = xp[n_idx, :, rows[:, :, None], cols[:, None, :]]          # (N, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous()


def random_flip(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Mirror each image left-right with probability ½."""
    mask = (torch.rand(x.shape[0], generator=gen) < 0.5).to(x.device)
    return torch.where(mask[:, None, None, None], x.flip(-1), x)


def jitter_and_flip(x: torch.Tensor, crop: int, flip: bool, gen: torch.Generator) -> torch.Tensor:
    """:func:`random_jitter` by ``crop`` px (0: none), then :func:`random_flip` (when
    ``flip``), both from ``gen``: the training-time augmentation of the image-to-image tasks
    (CycleGAN's domains; pix2pix's pairs, one tensor so both halves move together)."""
    if crop:
        x = random_jitter(x, crop, gen)
    if flip:
        x = random_flip(x, gen)
    return x


# --------------------------------------------------------------------------- the loader
class TwoDomainLoader:
    """``next()`` -> ``(x_a, x_b)``: one float batch in [-1, 1] from each domain."""

    def __init__(self, images_a: torch.Tensor, images_b: torch.Tensor, *, batch_size: int,
                 seed: int = 0, device: torch.device | str = "cpu", channels_last: bool = False,
                 crop: int = 0, flip: bool = False, names: Tuple[str, str] = ("A", "B"),
                 rank: int = 0, world_size: int = 1):
        loaders = []
        for k, (imgs, name) in enumerate(zip((images_a, images_b), names)):
            if batch_size * world_size > imgs.shape[0]:
                raise DataError(f"--batch-size {batch_size * world_size} is larger than domain {name} "
                                f"({imgs.shape[0]} images); use a batch size of at most "
                                f"{imgs.shape[0]}")
            # Each domain has its own shuffle stream (seed, seed + 1): unpaired by construction.
            loaders.append(BatchLoader(imgs, None, batch_size=batch_size, seed=seed + k,
                                       device=device, channels_last=False, rank=rank,
                                       world_size=world_size))
        self.a, self.b = loaders
        self.batch_size = batch_size
        self.channels_last = channels_last
        self.crop, self.flip = int(crop), bool(flip)
        self.aug_gen = torch.Generator().manual_seed(seed + 2 + 1000 * rank)
        # The epoch counter follows the larger domain (one epoch = one pass over it).
        self._main = self.a if self.a.n >= self.b.n else self.b

    def _augment(self, x: torch.Tensor) -> torch.Tensor:
        x = jitter_and_flip(x, self.crop, self.flip, self.aug_gen)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def next(self) -> Tuple[torch.Tensor, torch.Tensor]:
        xa, _ = self.a.next()
        xb, _ = self.b.next()
        return self._augment(xa), self._augment(xb)

    @property
    def epoch_float(self) -> float:
        return self._main.epoch_float

    @property
    def steps_per_epoch(self) -> int:
        return self._main.steps_per_epoch

    def state_dict(self) -> Dict[str, Any]:
        return {"a": self.a.state_dict(), "b": self.b.state_dict(), "aug": self.aug_gen.get_state()}

    def load_state_dict(self, s: Dict[str, Any]) -> None:
        self.a.load_state_dict(s["a"])
        self.b.load_state_dict(s["b"])
        self.aug_gen.set_state(s["aug"])
