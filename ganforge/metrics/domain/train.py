"""Train and inspect the domain evaluator (use-time).

The ``domain`` feature extractor (:mod:`ganforge.metrics.domain.network`) scores images in the
feature space of a small CNN classifier trained on the dataset itself. That module only
defines the network, its file format and how a stored evaluator is found and loaded; this
module makes one:

- :func:`train_evaluator`: load a labeled dataset's train split and a test set
  (:func:`load_splits`: the ``test`` split, ``train/`` + ``test/`` subfolders, or a seeded,
  stratified hold-out of ``HOLDOUT_FRACTION``), train a :class:`DomainCNN` with AdamW and a
  one-cycle schedule (optionally within a time budget), measure its test accuracy and save
  it with :func:`~ganforge.metrics.domain.network.save_evaluator` (default:
  ``$GANFORGE_CACHE/evaluators/<dataset>-<img_size>px.pt``);
- the ``ganforge evaluator {train,info}`` command (:data:`COMMAND`, listed in
  :mod:`ganforge.cli`).
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from ganforge.core.argtypes import at_least, positive, seed
from ganforge.core.command import Command
from ganforge.core.devices import resolve_device
from ganforge.data import DataError, load_dataset, to_float
from ganforge.data.batching import BatchLoader
from ganforge.data.spec import registered_name
from ganforge.metrics.domain.network import (
    INFER_BATCH,
    DomainCNN,
    EvaluatorError,
    dataset_key,
    default_evaluator_path,
    default_widths,
    evaluators_dir,
    find_evaluator,
    load_evaluator,
    save_evaluator,
    train_command,
)

#: Fraction of a dataset held out for the test accuracy when it has no test split.
HOLDOUT_FRACTION = 0.1
#: Default schedule: at least this many steps (small datasets get more epochs).
MIN_STEPS = 400
#: Named datasets whose classes survive a horizontal flip (clothes, emoji groups, a face's
#: drawing style and a sprite's race do; digits do not).
FLIP_SAFE = {"fashion-mnist", "emoji", "avatars", "wesnoth"}

PathLike = Union[str, os.PathLike]


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------
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
    spec = str(data_spec)
    name = registered_name(spec)
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
            f"with one subfolder per class (root/cat/*.png, root/dog/*.png). To score images "
            f"without classes, use an evaluator trained on similar labelled images (ganforge "
            f"eval --weights FILE.pt, e.g. the one `ganforge evaluator train --data emoji` "
            f"writes) or --extractor "
            f"inception")
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
    kept = train.subset(tr)      # a view of the map when the data is memory-mapped
    return kept, train.gather(te), train.labels[te], f"holdout-{HOLDOUT_FRACTION:g}"


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------
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
                    channels: int = 0, epochs: Optional[float] = None, batch_size: int = 128,
                    lr: float = 3e-3, weight_decay: float = 5e-4, seed: int = 0,
                    flip: Optional[bool] = None, shift: Optional[int] = None,
                    widths: Optional[Sequence[int]] = None, fc: int = 256, limit: int = 0,
                    out: Optional[PathLike] = None, time_budget: Optional[float] = None,
                    device: Union[str, torch.device] = "cpu", threads: int = 0,
                    progress: bool = True) -> Path:
    """Train a domain evaluator on ``data_spec``'s train split; return the saved file's path.

    - ``epochs`` passes over the train split (fractions allowed), AdamW with a one-cycle
      learning-rate schedule peaking at ``lr``; ``seed`` fixes initialisation, batch order
      and augmentation. Default (None): 4, or as many as make :data:`MIN_STEPS` steps on a
      small dataset (emoji, 1,282 training images: 40 epochs).
    - ``time_budget``: seconds of training (loading and the final evaluation come on top);
      the schedule follows whichever of steps or time is further along, so training ends in
      about that time with a properly annealed learning rate.
    - Augmentation: horizontal flips when ``flip`` (default: only for datasets known to be
      flip-invariant, i.e. Fashion-MNIST; never for digits or text), random translation by
      up to ``shift`` px (default None: 0 for a schedule of a few epochs, where it costs
      accuracy; a tenth of the image size when the default schedule makes many passes over a
      small dataset, which it would otherwise memorise: emoji's holdout accuracy 60 % -> 67 %
      with flips and 6 px shifts).
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

    log = (lambda *a: print(*a, flush=True)) if progress else (lambda *a: None)
    t_start = time.time()
    spec = str(data_spec)
    train, test_x, test_y, eval_split = load_splits(spec, data_dir=data_dir,
                                                    img_size=img_size, channels=channels,
                                                    limit=limit, seed=seed, log=log)
    n, c, size = len(train), train.channels, train.img_size
    if train.shape[-2] != train.shape[-1]:
        raise EvaluatorError(f"dataset '{spec}' has non-square {tuple(train.shape[-2:])} "
                             f"images; pass img_size to load it square")
    name = registered_name(spec)
    if flip is None:
        flip = name in FLIP_SAFE
    bs = max(1, min(batch_size, n))
    if epochs is None:   # a few epochs of a large dataset, enough steps on a small one
        epochs = max(4.0, math.ceil(MIN_STEPS * bs / n))
    if shift is None:
        shift = 0 if epochs <= 8 else max(1, size // 10)
    widths = tuple(widths) if widths else default_widths(size)
    n_cls = len(train.class_names)
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
    loader = BatchLoader(train.base_images, train.labels, batch_size=bs, seed=seed, device=dev,
                         index=train.index)
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


def ensure_evaluator(data_spec: PathLike, img_size: int = 0, *, data_dir: Optional[str] = None,
                     log=None) -> Path:
    """The stored evaluator for ``data_spec`` (:func:`find_evaluator`), trained now when none
    exists yet, as torch-fidelity fetches its network on first use: once, cached in
    :func:`evaluators_dir`, with a progress bar and a line saying what it does. Only for a
    named dataset (its labels and recipe are known: about 1-3 minutes on 2 CPU cores); for a
    folder or an array the caller gets one line with the command, since whether its labels
    make a trustworthy ruler is the user's call. Raises :class:`EvaluatorError`."""
    try:
        return find_evaluator(data_spec, img_size)
    except EvaluatorError:
        pass
    name = registered_name(str(data_spec))
    cmd = train_command(data_spec, img_size)
    if name is None:
        raise EvaluatorError(
            f"no domain evaluator has been trained for '{data_spec}' yet; train one first with "
            f"`{cmd}` (needs one subfolder per class), or score with --extractor inception")
    say = log or (lambda m: print(f"[ganforge] {m}", file=sys.stderr, flush=True))
    say(f"no domain evaluator for {name}{f' at {img_size} px' if img_size else ''} yet: "
        f"training one now, once (about 1-3 minutes on 2 CPU cores; stored in "
        f"{evaluators_dir()}; the same as `{cmd}`)")
    return train_evaluator(name, data_dir=data_dir, img_size=img_size, progress=True)


# --------------------------------------------------------------------------------------------
# CLI: `ganforge evaluator train ...` (wired into ganforge/cli.py)
# --------------------------------------------------------------------------------------------
def cli_evaluator_train(args: argparse.Namespace) -> int:
    path = train_evaluator(args.data, data_dir=args.data_dir, img_size=args.img_size or 0,
                           channels=getattr(args, "channels", 0) or 0, epochs=args.epochs,
                           batch_size=args.batch_size, seed=args.seed,
                           flip=getattr(args, "flip", None), shift=getattr(args, "shift", None),
                           out=args.out, time_budget=getattr(args, "time_budget", None),
                           limit=getattr(args, "limit", 0) or 0,
                           threads=getattr(args, "threads", 0) or 0,
                           device=resolve_device(getattr(args, "device", "cpu")), progress=True)
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


def arguments(e: argparse.ArgumentParser) -> None:
    esub = e.add_subparsers(dest="evaluator_command", metavar="ACTION", required=True)
    t = esub.add_parser("train", help="train a small CNN classifier on a labeled dataset",
                        description="Train the domain evaluator for a labeled dataset (a "
                                    "named dataset or a folder with one subfolder per class) "
                                    "and store it in $GANFORGE_CACHE/evaluators/.")
    t.add_argument("--data", required=True, help="dataset name (fashion-mnist, mnist) or a "
                                                 "folder with class subfolders")
    t.add_argument("--data-dir", help="where named datasets are stored")
    t.add_argument("--img-size", type=at_least(0, "the dataset's own", most=4096), default=0, metavar="PX",
                   help="train at this size (default: the dataset's own)")
    t.add_argument("--channels", type=int, default=0, choices=(0, 1, 3),
                   help="1 or 3 (default: the dataset's own)")
    t.add_argument("--epochs", type=positive(float, most=10000), default=None, metavar="N",
                   help=f"default 4, or enough for {MIN_STEPS} steps on a small dataset")
    t.add_argument("--batch-size", type=at_least(1, most=65536), default=128, metavar="N", help="default 128")
    t.add_argument("--time-budget", type=positive(float, most=10**7), metavar="SECONDS",
                   help="fit the schedule into about this many seconds")
    t.add_argument("--flip", dest="flip", action="store_true", default=None,
                   help="random horizontal flips (default: only for fashion-mnist, emoji, "
                        "avatars and wesnoth)")
    t.add_argument("--no-flip", dest="flip", action="store_false")
    t.add_argument("--shift", type=at_least(0, "off", most=1024), default=None, metavar="PX",
                   help="random translations by up to PX pixels (default 0; a tenth of the "
                        "image size when the default schedule makes more than 8 epochs)")
    t.add_argument("--limit", type=at_least(0, "all", most=10**9), default=0, metavar="N",
                   help="use only the first N train images")
    t.add_argument("--out", metavar="PATH", help="evaluator file (default "
                                                 "$GANFORGE_CACHE/evaluators/<data>-<size>px.pt)")
    t.add_argument("--seed", type=seed(), default=0)
    t.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto")
    t.add_argument("--threads", type=at_least(0, "as many as the machine has idle cores"), default=0, metavar="N",
                   help="torch CPU threads (default 0: as many as the machine has idle cores)")
    t.set_defaults(action=cli_evaluator_train)
    i = esub.add_parser("info", help="show a stored evaluator's accuracy and training data")
    i.add_argument("data", metavar="DATA_OR_FILE")
    i.add_argument("--img-size", type=at_least(0, "the smallest trained", most=4096), default=0, metavar="PX")
    i.set_defaults(action=cli_evaluator_info)


def run(args: argparse.Namespace) -> int:
    """``ganforge evaluator ACTION``: the action's own function."""
    return args.action(args)


COMMAND = Command("evaluator", "train / inspect the domain classifier used by the 'domain' "
                               "metrics extractor", arguments, run)
