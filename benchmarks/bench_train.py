"""Training throughput: ganforge's loop vs the plain hand-written PyTorch loop of the tutorials.

Run by hand (never part of the test suite)::

    .venv/bin/python benchmarks/bench_train.py                 # full table, about 2.5 min on 2 idle cores
    .venv/bin/python benchmarks/bench_train.py --quick         # mlp-28, dcgan-32, dcgan-64, 1 repeat
    .venv/bin/python benchmarks/bench_train.py --configs dcgan-32,dcgan-64 --steps 20 --repeats 3
    .venv/bin/python benchmarks/bench_train.py --out benchmarks/results/cpu   # + cpu.json, cpu.md
    .venv/bin/python benchmarks/bench_train.py --configs dcgan-32 --profile    # + op tables
    .venv/bin/python benchmarks/bench_train.py --threads 1 --clock cpu         # on a busy machine
    .venv/bin/python benchmarks/bench_train.py --configs cyclegan              # the CycleGAN row only

On a GPU (``--device auto``, the default, picks CUDA when there is one)::

    python benchmarks/bench_train.py --device cuda --configs mlp-28,dcgan-64 --batch 128 \\
        --out benchmarks/results/train-h100-fp32
    python benchmarks/bench_train.py --device cuda --configs mlp-28,dcgan-64 --batch 128 \\
        --amp bf16 --compile --out benchmarks/results/train-h100
    python benchmarks/bench_train.py --device cuda                 # every config at its own batch

The CPU numbers mean something only on an otherwise idle machine: with two OpenMP threads on two
cores, one descheduled thread stalls every parallel region (measured here: 5-20x slower with a
load average of 6). The script prints the load average and warns; on a shared machine use
``--threads 1 --clock cpu`` (images per CPU-second of one thread, close to the idle-machine
single-thread speed) and compare ratios rather than absolute numbers.

What is compared, for each configuration (same data, architecture, widths, batch, optimiser,
device):

* **ours**: ``ganforge.training.trainer.Trainer(cfg, dataset=load_dataset(...), quiet=True)`` with all
  logging/sampling/checkpointing effectively off; after a few warm-up steps, ``trainer.step()``
  is timed (one step = one D update + one G update on one batch of real images). The library's
  defaults are used (``train.channels_last=True``; the training set resident on the device,
  as the trainer does when it fits), except that ``train.amp`` and ``train.compile`` are
  always set from ``--amp`` (default ``none``) and ``--compile`` (default off), so that the
  precision of the "ours" column is the one printed, whatever the library's defaults are. For
  the conv models the same loop with ``train.channels_last=False`` is timed too ("ours NCHW";
  ``--no-nchw`` skips it).
* **hand**: what the PyTorch DCGAN tutorial and the classic GAN tutorials do: a
  ``torch.utils.data.Dataset`` that decodes each sample on its own and applies a per-sample
  transform (``Resize`` on a PIL image when the size is not 28, then ``ToTensor()`` and
  ``Normalize((0.5,), (0.5,))``, written out by hand because torchvision is not used here), a
  ``DataLoader(shuffle=True, batch_size=B, num_workers=W, pin_memory=<on CUDA>)``, each batch
  moved with ``data[0].to(device)`` and labels/noise made on the device, the same G and D
  (built with ``ganforge.models.build``, moved with ``.to(device)``) with an ``nn.Sigmoid``
  appended to D for ``nn.BCELoss``, the D step on real and on ``fake.detach()`` (two backward
  calls, as in the DCGAN tutorial), the G step reusing the same ``fake`` (so D's weight
  gradients are computed and thrown away, as in the tutorial), ``zero_grad()`` at its default,
  plain ``torch.optim.Adam``, NCHW, fp32, not compiled, and the tutorial's per-iteration
  ``output.mean().item()`` statistics.
* **hand amp** (only with ``--amp bf16|fp16`` where ours' autocast is in effect): the same
  tutorial loop with the usual AMP recipe added, for a like-for-like second column: each
  network call under ``torch.autocast(device, dtype)``, the loss computed on
  ``output.float()`` outside it (``nn.BCELoss`` refuses to run under autocast), and for fp16
  one ``torch.amp.GradScaler``. It is not compiled, even with ``--compile``.
* **cyclegan**: ours is the preset ``cyclegan-sneaker-boot`` (Fashion-MNIST sneaker <-> ankle
  boot, 28 px, batch 4, ResNet G width 16 / 6 blocks, PatchGAN width 16 / 2 layers); hand is the
  loop of ``bench_cyclegan.py`` (the structure of the CycleGAN authors' code: per-sample
  ``UnalignedDataset``, DataLoader, ImagePool, MSE/L1 losses, ``set_requires_grad``), imported
  from there. One step = the G phase over both generators + the D phase over both
  discriminators on one batch of *each* domain; its ``img/s`` counts the images of *one*
  domain (batch size x steps / s), as ``bench_cyclegan.py`` does.

Columns:

* ``batch``: the batch size (per domain for cyclegan); ``--batch N`` sets it for every config.
* ``img/s``: batch_size * steps / seconds, the median of ``--repeats`` (default 5) interleaved
  repeats of about ``--target-seconds`` (1 s) each (ours, hand, ours NCHW, ours, hand, ... so
  that drift of the machine hits all alike), after ``--warmup`` untimed steps. On CUDA the
  clock is read after ``torch.cuda.synchronize()``.
* ``GFLOP/img``: matmul/conv FLOPs of one training step of *ours* (forward and backward, D and G
  phases), counted with ``torch.utils.flop_counter.FlopCounterMode`` (on an uncompiled copy
  with ``--compile``) and divided by the batch size. This is the work the step needs; the
  hand-written step executes more (D's weight gradients in the G step, shown as
  ``hand GFLOP/img`` in the JSON), which is counted as waste, not as useful work, so both "% of
  peak" columns use the same FLOPs per image.
* ``% of peak``: images/s * FLOPs/image / the matmul peak of this device, measured in the same
  run, at the precision ours computes in: fp32 without ``--amp`` (on CUDA with the TF32 setting
  as it is, printed; PyTorch's default is true fp32 for matmuls but TF32 for cuDNN
  convolutions, so an fp32 conv model can exceed 100 % of it: the TF32 peak is printed and in
  the JSON too), else the bf16 or fp16 peak. CPU: the best of several ``torch.mm`` of 1024,
  2048 and 4096 square matrices with the same thread count; CUDA: of 4096 and 8192.
  ``peak img/s`` = peak / FLOPs per image: the speed if every FLOP ran at matmul peak (the
  "peak-limited speed"). Note: on AVX-512 CPUs oneDNN's large convolutions run up to ~20 %
  faster than MKL's ``torch.mm``, so a conv model can exceed 100 % there too.
* ``ours MiB``, ``hand MiB``: on CUDA, the peak of ``torch.cuda.max_memory_allocated`` while that
  side is built and warmed up (networks, optimiser state, ours' resident training set, the
  activations of a step; ``torch.compile`` workspace included), minus what was allocated
  before, so the other side's tensors are not counted. Allocated, not reserved by the caching
  allocator. Ours' resident data alone is ``ours_data_mib`` in the JSON. On CPU it is "-":
  both sides run in one process, whose peak resident set size is a single high-water mark
  (``resource.getrusage``; it is printed once, with the machine), and PyTorch keeps no per-side
  statistics of CPU allocations.
* ``ours bf16 img/s`` (CPUs with native bf16, without ``--amp``): ours with
  ``train.amp=bf16``; ``bf16 ratio`` = that / hand. ``hand amp img/s`` and ``amp ratio`` (= ours /
  hand amp): with ``--amp``. These and ``ours NCHW img/s`` are shown only when some row has them.

Data: Fashion-MNIST train split (60 000 images) from the system dataset folder. 28 and 32 px
use 1 channel. 64 px uses 3 channels (the grey image tiled, as ``Grayscale(3)`` would), because
the 64-px preset of this project is the 3-channel emoji DCGAN at width 64: the FLOPs are those
of that preset. The hand-written loop uses ``num_workers=0`` by default on CPU: on 2 cores 0, 1
and 2 workers were within 5 % of each other for the DCGAN sizes, and 2 workers were 9 % slower
for the mlp (the workers compete with the two compute threads); on CUDA its default is the
DCGAN tutorial's ``num_workers=2``, which overlaps the per-sample decoding with the GPU's work
(``--hand-workers`` sets either).
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import gzip
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np
import torch
import torch.nn as nn

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
HERE = Path(__file__).resolve().parent

from ganforge import models  # noqa: E402

FASHION_DIRS = [os.environ.get("GANFORGE_BENCH_FASHION", ""), "/usr/share/datasets/fashion-mnist"]


# ---------------------------------------------------------------------------- configurations
@dataclass(frozen=True)
class BenchConfig:
    name: str
    model: str
    img_size: int
    channels: int
    width: int
    batch: int = 64
    preset: str = ""      # the cyclegan row: a ganforge preset, which sets size, widths, batch


# The noise-to-image configurations (whatif_train.py iterates this dict and expects them only).
CONFIGS: Dict[str, BenchConfig] = {c.name: c for c in [
    BenchConfig("mlp-28", "mlp", 28, 1, 256),
    BenchConfig("dcgan-28", "dcgan", 28, 1, 32),
    BenchConfig("dcgan-32", "dcgan", 32, 1, 32),
    BenchConfig("dcgan-32-w64", "dcgan", 32, 1, 64),
    BenchConfig("dcgan-64", "dcgan", 64, 3, 64),
]}
# Every row of this script's table: the above plus CycleGAN (size, widths and batch 4 are the
# preset's; the values here are only what the row shows if the preset keeps them).
ALL_CONFIGS: Dict[str, BenchConfig] = {**CONFIGS, "cyclegan": BenchConfig(
    "cyclegan", "cyclegan", 28, 1, 16, batch=4, preset="cyclegan-sneaker-boot")}
QUICK_CONFIGS = ["mlp-28", "dcgan-32", "dcgan-64"]


# ---------------------------------------------------------------------------- device and clock
def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        why = ("this torch is a CPU-only build (torch.version.cuda is None)" if torch.version.cuda is None
               else f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no GPU "
                    f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '(unset)')})")
        raise SystemExit(f"bench_train: --device cuda, but CUDA is not available: {why}. "
                         f"Use --device cpu (or auto) here, or run on a machine with a GPU.")
    return torch.device(name)


def cuda_clock() -> float:
    """Wall clock after waiting for the GPU: what was queued before counts as done."""
    torch.cuda.synchronize()
    return time.perf_counter()


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


# ---------------------------------------------------------------------------- the machine's peak
DTYPES = {"fp32": torch.float32, "tf32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@contextlib.contextmanager
def _tf32_matmuls(on: bool):
    """cuBLAS fp32 matmuls with TF32 allowed (or not) inside, the setting restored after."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        old = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = on
    try:
        yield
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.backends.cuda.matmul.allow_tf32 = old


def matmul_peak(clock: Callable[[], float] = time.perf_counter, reps: int = 5,
                device: torch.device | str = "cpu", kind: str = "fp32") -> Dict[str, float]:
    """Best GFLOP/s of large square ``torch.mm`` calls in precision ``kind`` (fp32, tf32, bf16,
    fp16) on ``device``: 1024, 2048, 4096 on CPU; 4096, 8192 on CUDA; best of ``reps``
    timings of about 0.2 s each. ``kind="fp32"`` keeps the TF32 setting as it is; ``"tf32"``
    allows TF32 for the measurement."""
    dev = torch.device(device)
    cuda = dev.type == "cuda"
    sizes = (4096, 8192) if cuda else (1024, 2048, 4096)
    best = {}
    ctx = _tf32_matmuls(True) if (cuda and kind == "tf32") else contextlib.nullcontext()
    with ctx:
        for n in sizes:
            a = torch.randn(n, n, device=dev).to(DTYPES[kind])
            b = torch.randn(n, n, device=dev).to(DTYPES[kind])
            c = torch.empty(n, n, device=dev, dtype=DTYPES[kind])
            torch.mm(a, b, out=c)  # warm-up (MKL/cuBLAS init, page faults)
            if cuda or kind != "fp32":
                torch.mm(a, b, out=c)
                t0 = clock()
                torch.mm(a, b, out=c)
                inner = max(1, min(1000, int(0.2 / max(clock() - t0, 1e-7))))
            else:
                inner = max(1, int(4e10 / (2 * n ** 3)))
            times = []
            for _ in range(reps):
                t0 = clock()
                for _ in range(inner):
                    torch.mm(a, b, out=c)
                times.append((clock() - t0) / inner)
            best[n] = 2 * n ** 3 / min(times) / 1e9
            del a, b, c
    if cuda:
        torch.cuda.empty_cache()
    return {"gflops": max(best.values()), **{f"mm{n}": v for n, v in best.items()}}


class Peaks:
    """The matmul peaks of one device, measured once each, on first need."""

    def __init__(self, device: torch.device, clock: Callable[[], float]):
        self.device, self.clock = device, clock
        self.by_kind: Dict[str, Dict[str, float]] = {}

    def get(self, kind: str) -> Dict[str, float]:
        if kind not in self.by_kind:
            self.by_kind[kind] = matmul_peak(self.clock, device=self.device, kind=kind)
        return self.by_kind[kind]

    def gflops(self, kind: str) -> float:
        return self.get(kind)["gflops"]


def amp_kind(dtype: Optional[torch.dtype]) -> str:
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


def fmt_flops(gflops: float) -> str:
    return f"{gflops / 1e3:.1f} TFLOP/s" if gflops >= 1e4 else f"{gflops:.1f} GFLOP/s"


# ---------------------------------------------------------------------------- the tutorial loop
def find_fashion_dir() -> Path:
    for d in FASHION_DIRS:
        if d and (Path(d) / "train-images-idx3-ubyte.gz").exists():
            return Path(d)
    raise SystemExit("bench_train: Fashion-MNIST not found; looked in "
                     + ", ".join(d for d in FASHION_DIRS if d)
                     + " (set GANFORGE_BENCH_FASHION to the folder with train-images-idx3-ubyte.gz)")


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (.gz) as a numpy array, the way the tutorials' dataset classes read it."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


class TutorialFashionMNIST(torch.utils.data.Dataset):
    """``torchvision.datasets.FashionMNIST(transform=Compose([Resize(s), (Grayscale(3)),
    ToTensor(), Normalize((0.5,)*C, (0.5,)*C)]))``, written out: every ``__getitem__`` makes a
    PIL image of one sample and runs the transform on it, as torchvision does."""

    def __init__(self, root: Path, img_size: int, channels: int):
        from PIL import Image
        self.Image = Image
        self.data = read_idx(root / "train-images-idx3-ubyte.gz")     # (N, 28, 28) uint8
        self.targets = torch.from_numpy(read_idx(root / "train-labels-idx1-ubyte.gz").astype(np.int64))
        self.img_size, self.channels = img_size, channels
        self.mean = torch.tensor([0.5] * channels).view(-1, 1, 1)
        self.std = torch.tensor([0.5] * channels).view(-1, 1, 1)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int):
        img = self.Image.fromarray(self.data[i], mode="L")                 # datasets.FashionMNIST
        if img.size != (self.img_size, self.img_size):                     # transforms.Resize
            img = img.resize((self.img_size, self.img_size), self.Image.BILINEAR)
        if self.channels == 3:                                             # transforms.Grayscale(3)
            img = img.convert("RGB")
        arr = np.array(img, np.uint8, copy=True)                           # transforms.ToTensor
        x = torch.from_numpy(arr).view(img.size[1], img.size[0], len(img.getbands()))
        x = x.permute(2, 0, 1).contiguous().to(torch.float32).div(255)
        x = x.sub_(self.mean).div_(self.std)                               # transforms.Normalize
        return x, self.targets[i]


class HandLoop:
    """The PyTorch DCGAN tutorial's training iteration, with the tutorial's BCELoss on a
    Sigmoid output and its DataLoader; G and D are the library's networks (same layers).

    ``device``: where the networks live; each batch is moved there with ``.to(device)`` as in
    the tutorial (from pinned memory on CUDA). ``amp_dtype``: ``None`` is the tutorial (fp32);
    a dtype adds the usual AMP recipe (network calls under autocast, the loss on
    ``output.float()`` outside it, a GradScaler for float16)."""

    def __init__(self, bc: BenchConfig, dataset: torch.utils.data.Dataset, workers: int, seed: int = 0,
                 device: torch.device | str = "cpu", amp_dtype: Optional[torch.dtype] = None):
        torch.manual_seed(seed)
        self.bc = bc
        self.device = torch.device(device)
        self.z_dim = 100
        # the DCGAN tutorial draws (B, nz, 1, 1); the fully-connected tutorials draw (B, nz)
        self.noise_shape = (self.z_dim,) if bc.model == "mlp" else (self.z_dim, 1, 1)
        self.netG = models.build("G", bc.model, img_size=bc.img_size, channels=bc.channels,
                                 z_dim=self.z_dim, width=bc.width).to(self.device)
        self.netD = nn.Sequential(models.build("D", bc.model, img_size=bc.img_size,
                                               channels=bc.channels, width=bc.width),
                                  nn.Sigmoid()).to(self.device)
        self.criterion = nn.BCELoss()
        self.optD = torch.optim.Adam(self.netD.parameters(), lr=2e-4, betas=(0.5, 0.999))
        self.optG = torch.optim.Adam(self.netG.parameters(), lr=2e-4, betas=(0.5, 0.999))
        self.loader = torch.utils.data.DataLoader(dataset, batch_size=bc.batch, shuffle=True,
                                                  num_workers=workers, drop_last=True,
                                                  pin_memory=self.device.type == "cuda")
        self.it = iter(self.loader)
        self.real_label, self.fake_label = 1.0, 0.0
        self.amp_dtype = amp_dtype
        self.scaler = torch.amp.GradScaler(self.device.type) if amp_dtype == torch.float16 else None

    def next_batch(self):
        try:
            return next(self.it)
        except StopIteration:        # a new epoch, as `for epoch ...: for data in loader` does
            self.it = iter(self.loader)
            return next(self.it)

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def optimizer_step(self, opt) -> None:
        self.scaler.step(opt) if self.scaler is not None else opt.step()

    def step(self) -> None:
        netD, netG, criterion, device = self.netD, self.netG, self.criterion, self.device
        data = self.next_batch()
        # (1) Update D network: maximize log(D(x)) + log(1 - D(G(z)))
        netD.zero_grad()
        real_cpu = data[0].to(device)
        b_size = real_cpu.size(0)
        label = torch.full((b_size,), self.real_label, dtype=torch.float, device=device)
        with self.autocast():
            output = netD(real_cpu)
        output = output.float().view(-1)      # .float(): a no-op in fp32
        errD_real = criterion(output, label)
        self.backward(errD_real)
        D_x = output.mean().item()
        noise = torch.randn(b_size, *self.noise_shape, device=device)
        with self.autocast():
            fake = netG(noise)
        label.fill_(self.fake_label)
        with self.autocast():
            output = netD(fake.detach())
        output = output.float().view(-1)
        errD_fake = criterion(output, label)
        self.backward(errD_fake)
        D_G_z1 = output.mean().item()
        errD = errD_real + errD_fake
        self.optimizer_step(self.optD)
        # (2) Update G network: maximize log(D(G(z)))
        netG.zero_grad()
        label.fill_(self.real_label)
        with self.autocast():
            output = netD(fake)
        output = output.float().view(-1)
        errG = criterion(output, label)
        self.backward(errG)
        D_G_z2 = output.mean().item()
        self.optimizer_step(self.optG)
        if self.scaler is not None:
            self.scaler.update()
        self.last = (errD.item(), errG.item(), D_x, D_G_z1, D_G_z2)


# ---------------------------------------------------------------------------- the library loop
def library_dataset(bc: BenchConfig, cache: Dict):
    key = (bc.img_size, bc.channels)
    if key not in cache:
        from ganforge.data import load_dataset
        cache[key] = load_dataset("fashion-mnist", img_size=bc.img_size, channels=bc.channels)
    return cache[key]


def make_trainer(bc: BenchConfig, dataset, *, channels_last: bool, threads: int, out: str,
                 extra: Optional[Dict] = None, device: str = "cpu", amp: str = "none",
                 compile: bool = False):
    from ganforge.core.config import Config
    from ganforge.training.trainer import Trainer
    big = 10 ** 9
    overrides = {
        "data.name": "fashion-mnist", "data.img_size": bc.img_size, "data.channels": bc.channels,
        "model.name": bc.model, "model.z_dim": 100, "model.g_width": bc.width, "model.d_width": bc.width,
        "train.batch_size": bc.batch, "train.steps": big, "train.device": str(device),
        "train.amp": amp, "train.compile": compile,
        "train.channels_last": channels_last, "train.threads": threads,
        "log.log_every": big, "log.sample_every": big, "log.ckpt_every": big,
        "log.progress": False, "log.tensorboard": False, "log.gif": False, "out": out,
    }
    overrides.update(extra or {})
    cfg = Config().with_overrides(overrides)
    return Trainer(cfg, dataset=dataset, quiet=True)


def _bench_cyclegan():
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    import bench_cyclegan
    return bench_cyclegan


# ---------------------------------------------------------------------------- measurement
def count_flops(step: Callable[[], object], batch: int) -> float:
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as fc:
        step()
    return fc.get_total_flops() / batch


@dataclass
class Variant:
    label: str
    step: Callable[[], object]
    batch: int
    clock: Callable[[], float] = time.perf_counter
    n_steps: int = 0
    rates: List[float] = field(default_factory=list)
    peak_mib: Optional[float] = None

    def calibrate(self, warmup: int, target_s: float, fixed_steps: int) -> None:
        for _ in range(warmup):
            self.step()
        if fixed_steps:
            self.n_steps = fixed_steps
            return
        t0 = self.clock()
        k = 2
        for _ in range(k):
            self.step()
        per = max(1e-6, (self.clock() - t0) / k)
        self.n_steps = int(min(400, max(3, round(target_s / per))))

    def measure(self) -> float:
        t0 = self.clock()
        for _ in range(self.n_steps):
            self.step()
        dt = self.clock() - t0
        rate = self.batch * self.n_steps / dt
        self.rates.append(rate)
        return rate

    @property
    def median(self) -> float:
        return statistics.median(self.rates)


class PeakMemory:
    """CUDA: the peak of allocated device memory inside the block, minus what was allocated
    when it began (MiB, in ``.mib``). CPU: ``.mib`` stays None (see the module docstring)."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.device = device
        self.mib: Optional[float] = None

    def __enter__(self):
        if self.cuda:
            torch.cuda.synchronize(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        return self

    def __exit__(self, *exc):
        if self.cuda and exc[0] is None:
            torch.cuda.synchronize(self.device)
            self.mib = (torch.cuda.max_memory_allocated(self.device) - self.base) / 2 ** 20
        return False


def bench_config(bc: BenchConfig, args, peaks: Peaks, ds_cache: Dict, hand_ds_cache: Dict, tmp: str) -> Dict:
    threads, device = args.threads, args.device
    if args.batch:
        bc = replace(bc, batch=args.batch)
    if bc.model == "cyclegan":
        bcg = _bench_cyclegan()
        over = {"train.device": str(device), "train.amp": args.amp, "train.compile": args.compile,
                "out": tmp}
        if args.batch:
            over["train.batch_size"] = args.batch
        cfg = bcg.make_config(bc.preset, threads, over)
        key = ("cyclegan", bc.preset)
        if key not in ds_cache:
            from ganforge.training.tasks.cyclegan import CycleGANTask
            ds_cache[key] = CycleGANTask.load_data(cfg)
        pair = ds_cache[key]
        bc = replace(bc, img_size=pair.img_size, channels=pair.channels, width=cfg.model.g_width,
                     batch=cfg.train.batch_size)

        def build_ours(channels_last: bool, extra: Optional[Dict] = None):
            from ganforge.training.trainer import Trainer
            c = cfg.with_overrides({"train.channels_last": channels_last, **(extra or {})})
            return Trainer(c, dataset=pair, quiet=True)

        def build_hand(amp_dtype=None):
            return bcg.hand_loop(cfg, pair, device=device, workers=args.hand_workers, amp_dtype=amp_dtype)
    else:
        ds = library_dataset(bc, ds_cache)
        if bc.img_size not in hand_ds_cache or hand_ds_cache[bc.img_size].channels != bc.channels:
            hand_ds_cache[bc.img_size] = TutorialFashionMNIST(find_fashion_dir(), bc.img_size, bc.channels)
        hand_ds = hand_ds_cache[bc.img_size]

        def build_ours(channels_last: bool, extra: Optional[Dict] = None):
            return make_trainer(bc, ds, channels_last=channels_last, threads=threads, out=tmp,
                                device=str(device), amp=args.amp, compile=args.compile, extra=extra)

        def build_hand(amp_dtype=None):
            return HandLoop(bc, hand_ds, workers=args.hand_workers, device=device, amp_dtype=amp_dtype).step

    clock = cuda_clock if device.type == "cuda" else CLOCKS[args.clock]
    variants: List[Variant] = []

    def add(label: str, build: Callable[[], Callable[[], object]]) -> None:
        """Build one loop, warm it up and calibrate it; on CUDA, note its peak memory."""
        with PeakMemory(device) as mem:
            step = build()
            v = Variant(label, step, bc.batch, clock)
            v.calibrate(args.warmup, args.target_seconds, args.steps)
        v.peak_mib = mem.mib
        variants.append(v)

    ours = None

    def build_ours_main():
        nonlocal ours
        ours = build_ours(True)
        return ours.step

    add("ours", build_ours_main)
    add("hand", build_hand)
    hand_step = variants[-1].step
    if bc.model != "mlp" and not args.no_nchw:
        add("ours_nchw", lambda: build_ours(False).step)
    amp_dtype = getattr(ours, "amp_dtype", None)
    kind = amp_kind(amp_dtype)      # the precision ours computes in, whatever --amp asked for
    if amp_dtype is not None:
        add("hand_amp", lambda: build_hand(amp_dtype))
    else:
        from ganforge.training.runtime import cpu_has_bf16
        if device.type == "cpu" and args.amp == "none" and cpu_has_bf16():
            # train.amp=bf16: autocast to bfloat16 where the CPU has native bf16
            add("ours_bf16", lambda: build_ours(True, {"train.amp": "bf16"}).step)

    # FLOPs: FlopCounterMode sees the ops of eager mode, so with --compile count an uncompiled copy.
    compiled = bool(getattr(ours, "_train_modules", None)) or any(
        hasattr(m, "_orig_mod") for m in ours.task.modules.values())
    if compiled:
        plain = build_ours(True, {"train.compile": False})
        flops_ours = count_flops(plain.step, bc.batch)
        del plain
    else:
        flops_ours = count_flops(ours.step, bc.batch)
    flops_hand = count_flops(hand_step, bc.batch)

    for _ in range(args.repeats):
        for v in variants:
            v.measure()

    peak = peaks.gflops(kind)
    res = {v.label: v.median for v in variants}
    mem = {v.label: (round(v.peak_mib, 1) if v.peak_mib is not None else None) for v in variants}
    data_mib = None
    if device.type == "cuda":
        held = _loader_tensors(ours.loader)
        if held:
            on_device = all(t.device.type == "cuda" for t in held)
            data_mib = round(sum(t.numel() * t.element_size() for t in held) / 2 ** 20, 1) if on_device else 0.0
    row = {
        "config": bc.name, "model": bc.model, "img_size": bc.img_size, "channels": bc.channels,
        "width": bc.width, "batch": bc.batch, "device": device.type, "precision": kind,
        "compile": compiled,
        "ours_img_s": res["ours"], "hand_img_s": res["hand"],
        "ratio": res["ours"] / res["hand"],
        "gflop_per_img": flops_ours / 1e9, "hand_gflop_per_img": flops_hand / 1e9,
        "peak_kind": kind, "peak_gflops": peak,
        "ours_pct_peak": 100 * res["ours"] * flops_ours / (peak * 1e9),
        "hand_pct_peak": 100 * res["hand"] * flops_ours / (peak * 1e9),
        "ours_nchw_img_s": res.get("ours_nchw"),
        "ours_bf16_img_s": res.get("ours_bf16"),
        "hand_amp_img_s": res.get("hand_amp"),
        "amp_ratio": res["ours"] / res["hand_amp"] if "hand_amp" in res else None,
        "peak_img_s": peak * 1e9 / flops_ours,
        "ours_peak_mib": mem["ours"], "hand_peak_mib": mem["hand"], "peak_mib": mem,
        "ours_data_mib": data_mib,
        "steps": {v.label: v.n_steps for v in variants},
        "all_img_s": {v.label: [round(r, 1) for r in v.rates] for v in variants},
    }
    if args.profile:
        row["_profile"] = {"ours": ours.step, "hand": hand_step}
    return row


def _loader_tensors(loader) -> List[torch.Tensor]:
    """The image tensors a ganforge loader holds (to tell whether the data is on the device)."""
    found = []
    for obj in (loader, getattr(loader, "loader", None), getattr(loader, "a", None), getattr(loader, "b", None)):
        t = getattr(obj, "images", None) if obj is not None else None
        if isinstance(t, torch.Tensor):
            found.append(t)
    return found


# ---------------------------------------------------------------------------- output
def _num(v: Optional[float], fmt: str = "{:.0f}") -> str:
    return fmt.format(v) if v is not None else "-"


# (header, cell, shown only when some row has this key set)
COLUMN_SPECS = [
    ("config", lambda r: r["config"], None),
    ("batch", lambda r: str(r["batch"]), None),
    ("ours img/s", lambda r: f"{r['ours_img_s']:.0f}", None),
    ("hand img/s", lambda r: f"{r['hand_img_s']:.0f}", None),
    ("ratio", lambda r: f"{r['ratio']:.2f}x", None),
    ("GFLOP/img", lambda r: f"{r['gflop_per_img']:.4f}", None),
    ("ours % of peak", lambda r: f"{r['ours_pct_peak']:.1f}%", None),
    ("hand % of peak", lambda r: f"{r['hand_pct_peak']:.1f}%", None),
    ("ours NCHW img/s", lambda r: _num(r.get("ours_nchw_img_s")), "ours_nchw_img_s"),
    ("peak img/s", lambda r: f"{r['peak_img_s']:.0f}", None),
    ("ours MiB", lambda r: _num(r.get("ours_peak_mib")), None),
    ("hand MiB", lambda r: _num(r.get("hand_peak_mib")), None),
    ("hand amp img/s", lambda r: _num(r.get("hand_amp_img_s")), "hand_amp_img_s"),
    ("amp ratio", lambda r: _num(r.get("amp_ratio"), "{:.2f}x"), "hand_amp_img_s"),
    ("ours bf16 img/s", lambda r: _num(r.get("ours_bf16_img_s")), "ours_bf16_img_s"),
    ("bf16 ratio", lambda r: (f"{r['ours_bf16_img_s'] / r['hand_img_s']:.2f}x"
                              if r.get("ours_bf16_img_s") else "-"), "ours_bf16_img_s"),
]


def format_table(rows: List[Dict], markdown: bool = False) -> str:
    specs = [s for s in COLUMN_SPECS if s[2] is None or any(r.get(s[2]) is not None for r in rows)]
    cells = [[s[0] for s in specs]] + [[s[1](r) for s in specs] for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(specs))]
    lines = []
    for j, c in enumerate(cells):
        line = " | ".join(s.ljust(w) if i == 0 else s.rjust(w) for i, (s, w) in enumerate(zip(c, widths)))
        lines.append(f"| {line} |" if markdown else line)
        if j == 0:
            sep = "-|-".join("-" * w for w in widths)
            lines.append(f"|-{sep}-|" if markdown else sep)
    return "\n".join(lines)


def loadavg() -> float:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return float("nan")


def peak_rss_mib() -> Optional[float]:
    """This process's peak resident set size (Linux: ru_maxrss in KiB; macOS: bytes)."""
    try:
        import resource
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    except (ImportError, OSError):
        return None
    return rss / 2 ** 20 if sys.platform == "darwin" else rss / 2 ** 10


def machine_info(args, peaks: Peaks) -> Dict:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    fp32 = peaks.get("fp32")
    info = {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "interop_threads": torch.get_num_interop_threads(),
            "mkldnn": torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled,
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(unset)"),
            "clock": args.clock if args.device.type == "cpu" else "wall (after cuda.synchronize)",
            "load_before": loadavg(),
            "device": args.device.type, "amp": args.amp, "compile": args.compile, "batch": args.batch or None,
            "peak_gflops": fp32["gflops"], "peak_detail": {k: v for k, v in fp32.items() if k != "gflops"},
            "peaks": peaks.by_kind,
            "hand_workers": args.hand_workers, "repeats": args.repeats}
    if args.device.type == "cuda":
        i = args.device.index if args.device.index is not None else torch.cuda.current_device()
        p = torch.cuda.get_device_properties(i)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tf32_mm, tf32_conv = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
        info.update({"gpu": torch.cuda.get_device_name(i), "gpu_capability": f"{p.major}.{p.minor}",
                     "gpu_mem_gib": round(p.total_memory / 2 ** 30, 1), "cuda": torch.version.cuda,
                     "cudnn": torch.backends.cudnn.version(), "tf32_matmul": bool(tf32_mm),
                     "tf32_cudnn": bool(tf32_conv),
                     "float32_matmul_precision": torch.get_float32_matmul_precision(),
                     "cudnn_benchmark": bool(torch.backends.cudnn.benchmark)})
    return info


def describe_machine(info: Dict) -> str:
    host = (f"{info['cpu']}, {info['cores']} cores, torch {info['torch']}, {info['threads']} threads, "
            f"OMP_WAIT_POLICY={info['omp_wait_policy']}")
    if info["device"] == "cuda":
        return (f"{info['gpu']} (sm {info['gpu_capability']}, {info['gpu_mem_gib']} GiB), CUDA {info['cuda']}, "
                f"cuDNN {info['cudnn']}; TF32 for fp32 matmuls {'on' if info['tf32_matmul'] else 'off'} "
                f"(float32_matmul_precision={info['float32_matmul_precision']}), for cuDNN convolutions "
                f"{'on' if info['tf32_cudnn'] else 'off'}; host: {host}")
    return host


def describe_peaks(info: Dict) -> str:
    parts = []
    for kind, p in info["peaks"].items():
        sizes = ", ".join(f"{k[2:]}: {fmt_flops(v)}" for k, v in p.items() if k != "gflops")
        parts.append(f"{kind} {fmt_flops(p['gflops'])} ({sizes})")
    return "; ".join(parts)


def describe_settings(info: Dict) -> str:
    return (f"device {info['device']}, --amp {info['amp']}{', --compile' if info['compile'] else ''}, "
            f"batch {info['batch'] or 'per config'}, {info['clock']} clock; hand-written DataLoader "
            f"num_workers={info['hand_workers']}")


def write_out(path: str, rows: List[Dict], info: Dict, cmd: str) -> List[Path]:
    p = Path(path)
    stem = p.with_suffix("") if p.suffix in (".json", ".md") else p
    stem.parent.mkdir(parents=True, exist_ok=True)
    clean = [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]
    jp, mp = stem.with_suffix(".json"), stem.with_suffix(".md")
    jp.write_text(json.dumps({"command": cmd, "machine": info, "rows": clean}, indent=2) + "\n")
    rss = info.get("peak_rss_mib")
    mp.write_text(f"`{cmd}`\n\n{describe_machine(info)}; {describe_settings(info)}; load average "
                  f"{info['load_before']:.1f} -> {info.get('load_after', float('nan')):.1f}; "
                  f"process peak RSS {_num(rss)} MiB\n\nmatmul peaks: {describe_peaks(info)}\n\n"
                  + format_table(clean, markdown=True) + "\n\n" + footnote(clean, info) + "\n")
    return [jp, mp]


def footnote(rows: List[Dict], info: Dict) -> str:
    kinds = sorted({r["peak_kind"] for r in rows})
    ref = ", ".join(f"{k} {fmt_flops(info['peaks'][k]['gflops'])}" for k in kinds)
    clock = "wall-clock" if not info["clock"].startswith("cpu") else "per CPU-second"
    mem = ("MiB: peak allocated CUDA memory of that side (built, warmed up), incl. ours' resident data"
           if info["device"] == "cuda" else
           f"MiB: '-' on CPU (no per-side statistics; process peak RSS {_num(info.get('peak_rss_mib'))} MiB)")
    text = (f"(img/s: {clock}, median of {info['repeats']}; cyclegan: images of one domain. GFLOP/img: "
            f"matmul+conv FLOPs of one training step of ours, per image; both '% of peak' columns use "
            f"it. % of peak and peak img/s against the matmul peak at ours' precision: {ref}. {mem}.")
    if any(r.get("hand_amp_img_s") is not None for r in rows):
        text += " hand amp: the tutorial loop with autocast (+ GradScaler for fp16); amp ratio = ours / hand amp."
    return text + ")"


def profile_rows(rows: List[Dict], device: torch.device, steps: int = 10, top: int = 18) -> None:
    from torch.profiler import ProfilerActivity, profile
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    sort = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    for r in rows:
        for label, step in r.get("_profile", {}).items():
            for _ in range(2):
                step()
            with profile(activities=acts) as prof:
                for _ in range(steps):
                    step()
                if device.type == "cuda":
                    torch.cuda.synchronize()
            print(f"\n=== profile: {r['config']} / {label} ({steps} steps) ===")
            print(prof.key_averages().table(sort_by=sort, row_limit=top))


# ---------------------------------------------------------------------------- main
def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", default=None,
                    help=f"comma-separated, from: {', '.join(ALL_CONFIGS)} (default: all; "
                         f"--quick: {', '.join(QUICK_CONFIGS)})")
    ap.add_argument("--quick", action="store_true",
                    help="a rough table fast: fewer configs, 1 repeat, short timings")
    ap.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                    help="where both loops run (default auto: cuda when available, else cpu)")
    ap.add_argument("--batch", type=int, default=0,
                    help="batch size of every config (default: each config's own: 64, cyclegan 4)")
    ap.add_argument("--amp", choices=["none", "bf16", "fp16"], default="none",
                    help="train.amp of ours (default none); with bf16/fp16 the hand-written loop is "
                         "also timed with the same autocast ('hand amp' column)")
    ap.add_argument("--compile", action="store_true",
                    help="train.compile=true for ours (the trainer compiles on CUDA only); the "
                         "hand-written loop is never compiled")
    ap.add_argument("--no-nchw", action="store_true", help="skip the 'ours NCHW' loop")
    ap.add_argument("--steps", type=int, default=0,
                    help="timed steps per repeat (default: as many as fit in --target-seconds)")
    ap.add_argument("--target-seconds", type=float, default=None,
                    help="time of one timed repeat of one loop when --steps is not given "
                         "(default 1.0; --quick: 0.5)")
    ap.add_argument("--repeats", type=int, default=None,
                    help="interleaved repeats; the median is reported (default 5; --quick: 1)")
    ap.add_argument("--warmup", type=int, default=None,
                    help="untimed steps before timing (default 3; --quick: 2; with --compile on "
                         "CUDA at least 3, the compilation happens there)")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch.set_num_threads for both loops (0: torch's default, one per core)")
    ap.add_argument("--interop-threads", type=int, default=0, help="torch.set_num_interop_threads (0: default)")
    ap.add_argument("--hand-workers", type=int, default=None,
                    help="DataLoader num_workers of the hand-written loop (default: 0 on CPU, the "
                         "faster choice on a 2-core machine, where the DCGAN tutorial's 2 compete with "
                         "the compute threads for the same cores; 2 on CUDA, as the tutorial)")
    ap.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                    help="wall: images per wall-clock second (the real speed); cpu: images per "
                         "CPU-second of this process, a contention-proof stand-in for the speed on an "
                         "idle machine (needs --threads 1 --hand-workers 0; CPU only)")
    ap.add_argument("--no-mkldnn", action="store_true", help="torch.backends.mkldnn.enabled = False")
    ap.add_argument("--profile", action="store_true",
                    help="after the table, print torch.profiler op tables of both loops per config")
    ap.add_argument("--out", default="", help="also write the table to PATH.json and PATH.md")
    args = ap.parse_args(argv)
    cmd = "python benchmarks/bench_train.py " + " ".join(argv if argv is not None else sys.argv[1:])

    if args.configs:
        names = [c.strip() for c in args.configs.split(",") if c.strip()]
    else:
        names = QUICK_CONFIGS if args.quick else list(ALL_CONFIGS)
    unknown = [n for n in names if n not in ALL_CONFIGS]
    if unknown:
        ap.error(f"--configs: unknown {', '.join(unknown)}; choose from {', '.join(ALL_CONFIGS)}")
    if args.batch < 0:
        ap.error("--batch must be positive")
    args.device = pick_device(args.device)
    cuda = args.device.type == "cuda"
    for key, full, quick in (("repeats", 5, 1), ("target_seconds", 1.0, 0.5), ("warmup", 3, 2)):
        if getattr(args, key) is None:
            setattr(args, key, quick if args.quick else full)
    if args.compile and cuda:
        args.warmup = max(args.warmup, 3)
    if args.hand_workers is None:
        args.hand_workers = 2 if cuda else 0
    if cuda and args.clock == "cpu":
        ap.error("--clock cpu counts this process's CPU time, which says nothing about GPU work: "
                 "use the default wall clock with --device cuda")
    if args.clock == "cpu" and (args.threads != 1 or args.hand_workers != 0):
        ap.error("--clock cpu counts this process's CPU time, which only measures speed with one "
                 "thread and no DataLoader workers: add --threads 1 --hand-workers 0")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.interop_threads > 0:
        torch.set_num_interop_threads(args.interop_threads)
    if args.no_mkldnn:
        torch.backends.mkldnn.enabled = False

    t_start = time.perf_counter()
    peaks = Peaks(args.device, cuda_clock if cuda else CLOCKS[args.clock])
    peaks.get("fp32")
    if cuda:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tf32_on = torch.backends.cuda.matmul.allow_tf32
        if not tf32_on:
            peaks.get("tf32")
        if torch.cuda.is_bf16_supported():
            peaks.get("bf16")
        peaks.get("fp16")
    info = machine_info(args, peaks)
    print(f"# {describe_machine(info)}, mkldnn={'on' if info['mkldnn'] else 'off'}", flush=True)
    print(f"# matmul peak (torch.mm): {describe_peaks(info)}", flush=True)
    print(f"# {describe_settings(info)}", flush=True)
    print(f"# hand-written loop: DataLoader(shuffle=True, num_workers={args.hand_workers}"
          f"{', pin_memory=True' if cuda else ''}), Sigmoid+BCELoss, NCHW, fp32; {args.repeats} "
          f"interleaved repeats, median reported", flush=True)
    if args.compile and not cuda:
        print("# note: --compile: the trainer compiles on CUDA only; ours runs uncompiled here", flush=True)
    if args.amp != "none" and not cuda:
        from ganforge.training.runtime import cpu_has_bf16
        if args.amp == "fp16" or not cpu_has_bf16():
            print(f"# note: --amp {args.amp} has no effect on this CPU (the trainer autocasts on CPU "
                  f"only to bf16, where the CPU has native bf16): ours runs fp32", flush=True)
    busy = info["load_before"]
    if busy > 0.5 * (os.cpu_count() or 1):
        print(f"# WARNING: load average {busy:.1f} on {os.cpu_count()} cores before starting: other "
              f"processes are using the CPU and wall-clock numbers will be low and noisy (multi-"
              f"threaded runs suffer most). Re-run on an idle machine, or use --threads 1 --clock cpu.",
              flush=True)

    rows: List[Dict] = []
    ds_cache: Dict = {}
    hand_cache: Dict = {}
    with tempfile.TemporaryDirectory(prefix="ganforge-bench-") as tmp:
        for name in names:
            t0 = time.perf_counter()
            r = bench_config(ALL_CONFIGS[name], args, peaks, ds_cache, hand_cache, tmp)
            rows.append(r)
            mem = (f", peak memory ours {_num(r['ours_peak_mib'])} MiB (data {_num(r['ours_data_mib'])}), "
                   f"hand {_num(r['hand_peak_mib'])} MiB" if cuda else "")
            print(f"# {name}: batch {r['batch']}, ours {r['ours_img_s']:.0f} img/s, hand "
                  f"{r['hand_img_s']:.0f} img/s{mem} ({time.perf_counter() - t0:.0f}s; steps per repeat "
                  f"{r['steps']}; load {loadavg():.1f})", flush=True)
            gc.collect()
            if cuda:
                torch.cuda.empty_cache()
        info["load_after"] = loadavg()
        info["peaks"] = peaks.by_kind          # a peak measured on first need (CPU bf16) included
        info["peak_rss_mib"] = peak_rss_mib()
        print()
        print(format_table(rows))
        print()
        print(footnote(rows, info))
        print(f"(load average {info['load_before']:.1f} -> {info['load_after']:.1f}; process peak RSS "
              f"{_num(info['peak_rss_mib'])} MiB; total {time.perf_counter() - t_start:.0f}s)")
        if args.out:
            for p in write_out(args.out, rows, info, cmd):
                print(f"wrote {p}")
        if args.profile:
            profile_rows(rows, args.device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
