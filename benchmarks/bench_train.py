"""Training throughput: ganforge's loop vs the plain hand-written PyTorch loop of the tutorials.

Run by hand (never part of the test suite)::

    .venv/bin/python benchmarks/bench_train.py                 # full table, about 2 min on 2 idle cores
    .venv/bin/python benchmarks/bench_train.py --quick         # mlp-28, dcgan-32, dcgan-64, 1 repeat
    .venv/bin/python benchmarks/bench_train.py --configs dcgan-32,dcgan-64 --steps 20 --repeats 3
    .venv/bin/python benchmarks/bench_train.py --out benchmarks/results/cpu   # + cpu.json, cpu.md
    .venv/bin/python benchmarks/bench_train.py --configs dcgan-32 --profile    # + op tables
    .venv/bin/python benchmarks/bench_train.py --threads 1 --clock cpu         # on a busy machine

The numbers mean something only on an otherwise idle machine: with two OpenMP threads on two
cores, one descheduled thread stalls every parallel region (measured here: 5-20x slower with a
load average of 6). The script prints the load average and warns; on a shared machine use
``--threads 1 --clock cpu`` (images per CPU-second of one thread, close to the idle-machine
single-thread speed) and compare ratios rather than absolute numbers.

What is compared, for each configuration (same data, architecture, widths, batch, optimiser):

* **ours**: ``ganforge.trainer.Trainer(cfg, dataset=load_dataset(...), quiet=True)`` with all
  logging/sampling/checkpointing effectively off; after a few warm-up steps, ``trainer.step()``
  is timed (one step = one D update + one G update on one batch of real images). The library's
  defaults are used (``train.channels_last=True``); for the conv models the same loop with
  ``train.channels_last=False`` is timed too ("ours NCHW").
* **hand**: what the PyTorch DCGAN tutorial and the classic GAN tutorials do: a
  ``torch.utils.data.Dataset`` that decodes each sample on its own and applies a per-sample
  transform (``Resize`` on a PIL image when the size is not 28, then ``ToTensor()`` and
  ``Normalize((0.5,), (0.5,))``, written out by hand because torchvision is not used here), a
  ``DataLoader(shuffle=True, batch_size=B, num_workers=W)``, the same G and D (built with
  ``ganforge.models.build``) with an ``nn.Sigmoid`` appended to D for ``nn.BCELoss``, the D step
  on real and on ``fake.detach()`` (two backward calls, as in the DCGAN tutorial), the G step
  reusing the same ``fake`` (so D's weight gradients are computed and thrown away, as in the
  tutorial), ``zero_grad()`` at its default, NCHW, and the tutorial's per-iteration
  ``output.mean().item()`` statistics.

Columns:

* ``img/s``: batch_size * steps / seconds, the median of ``--repeats`` (default 5) interleaved
  repeats of about ``--target-seconds`` (1 s) each (ours, hand, ours NCHW, ours, hand, ... so
  that drift of the machine hits all alike), after ``--warmup`` untimed steps.
* ``GFLOP/img``: matmul/conv FLOPs of one training step of *ours* (forward and backward, D and G
  phases), counted with ``torch.utils.flop_counter.FlopCounterMode`` and divided by the batch
  size. This is the work the step needs; the hand-written step executes more (D's weight
  gradients in the G step, shown as ``hand GFLOP/img`` in the JSON), which is counted as waste,
  not as useful work, so both "% of peak" columns use the same FLOPs per image.
* ``% of peak``: images/s * FLOPs/image / the fp32 matmul peak of this machine, measured in the
  same run as the best of several ``torch.mm`` of 1024, 2048 and 4096 square matrices with the
  same thread count. ``peak img/s`` = peak / FLOPs per image: the speed if every FLOP ran at
  matmul peak (the "peak-limited speed"). Note: on AVX-512 CPUs oneDNN's large convolutions
  run up to ~20 % faster than MKL's ``torch.mm``, so a conv model can exceed 100 %.

Data: Fashion-MNIST train split (60 000 images) from the system dataset folder. 28 and 32 px
use 1 channel. 64 px uses 3 channels (the grey image tiled, as ``Grayscale(3)`` would), because
the 64-px preset of this project is the 3-channel emoji DCGAN at width 64: the FLOPs are those
of that preset. The hand-written loop uses ``num_workers=0`` by default: on 2 cores 0, 1
and 2 workers were within 5 % of each other for the DCGAN sizes, and 2 workers were 9 % slower
for the mlp (the workers compete with the two compute threads); ``--hand-workers 2`` is the
DCGAN tutorial's setting.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np
import torch
import torch.nn as nn

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

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


CONFIGS: Dict[str, BenchConfig] = {c.name: c for c in [
    BenchConfig("mlp-28", "mlp", 28, 1, 256),
    BenchConfig("dcgan-28", "dcgan", 28, 1, 32),
    BenchConfig("dcgan-32", "dcgan", 32, 1, 32),
    BenchConfig("dcgan-32-w64", "dcgan", 32, 1, 64),
    BenchConfig("dcgan-64", "dcgan", 64, 3, 64),
]}
QUICK_CONFIGS = ["mlp-28", "dcgan-32", "dcgan-64"]


# ---------------------------------------------------------------------------- the machine's peak
def matmul_peak(clock: Callable[[], float] = time.perf_counter, reps: int = 5) -> Dict[str, float]:
    """Best fp32 GFLOP/s of large square ``torch.mm`` calls (1024, 2048, 4096; best of ``reps``
    timings of about 0.2 s each)."""
    best = {}
    for n in (1024, 2048, 4096):
        a = torch.randn(n, n)
        b = torch.randn(n, n)
        c = torch.empty(n, n)
        torch.mm(a, b, out=c)  # warm-up (MKL init, page faults)
        inner = max(1, int(4e10 / (2 * n ** 3)))
        times = []
        for _ in range(reps):
            t0 = clock()
            for _ in range(inner):
                torch.mm(a, b, out=c)
            times.append((clock() - t0) / inner)
        best[n] = 2 * n ** 3 / min(times) / 1e9
    return {"gflops": max(best.values()), **{f"mm{n}": v for n, v in best.items()}}


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
    Sigmoid output and its DataLoader; G and D are the library's networks (same layers)."""

    def __init__(self, bc: BenchConfig, dataset: torch.utils.data.Dataset, workers: int, seed: int = 0):
        torch.manual_seed(seed)
        self.bc = bc
        self.z_dim = 100
        # the DCGAN tutorial draws (B, nz, 1, 1); the fully-connected tutorials draw (B, nz)
        self.noise_shape = (self.z_dim,) if bc.model == "mlp" else (self.z_dim, 1, 1)
        self.netG = models.build("G", bc.model, img_size=bc.img_size, channels=bc.channels,
                                 z_dim=self.z_dim, width=bc.width)
        self.netD = nn.Sequential(models.build("D", bc.model, img_size=bc.img_size,
                                               channels=bc.channels, width=bc.width), nn.Sigmoid())
        self.criterion = nn.BCELoss()
        self.optD = torch.optim.Adam(self.netD.parameters(), lr=2e-4, betas=(0.5, 0.999))
        self.optG = torch.optim.Adam(self.netG.parameters(), lr=2e-4, betas=(0.5, 0.999))
        self.loader = torch.utils.data.DataLoader(dataset, batch_size=bc.batch, shuffle=True,
                                                  num_workers=workers, drop_last=True)
        self.it = iter(self.loader)
        self.real_label, self.fake_label = 1.0, 0.0

    def next_batch(self):
        try:
            return next(self.it)
        except StopIteration:        # a new epoch, as `for epoch ...: for data in loader` does
            self.it = iter(self.loader)
            return next(self.it)

    def step(self) -> None:
        netD, netG, criterion = self.netD, self.netG, self.criterion
        data = self.next_batch()
        # (1) Update D network: maximize log(D(x)) + log(1 - D(G(z)))
        netD.zero_grad()
        real_cpu = data[0]
        b_size = real_cpu.size(0)
        label = torch.full((b_size,), self.real_label, dtype=torch.float)
        output = netD(real_cpu).view(-1)
        errD_real = criterion(output, label)
        errD_real.backward()
        D_x = output.mean().item()
        noise = torch.randn(b_size, *self.noise_shape)
        fake = netG(noise)
        label.fill_(self.fake_label)
        output = netD(fake.detach()).view(-1)
        errD_fake = criterion(output, label)
        errD_fake.backward()
        D_G_z1 = output.mean().item()
        errD = errD_real + errD_fake
        self.optD.step()
        # (2) Update G network: maximize log(D(G(z)))
        netG.zero_grad()
        label.fill_(self.real_label)
        output = netD(fake).view(-1)
        errG = criterion(output, label)
        errG.backward()
        D_G_z2 = output.mean().item()
        self.optG.step()
        self.last = (errD.item(), errG.item(), D_x, D_G_z1, D_G_z2)


# ---------------------------------------------------------------------------- the library loop
def library_dataset(bc: BenchConfig, cache: Dict):
    key = (bc.img_size, bc.channels)
    if key not in cache:
        from ganforge.data import load_dataset
        cache[key] = load_dataset("fashion-mnist", img_size=bc.img_size, channels=bc.channels)
    return cache[key]


def make_trainer(bc: BenchConfig, dataset, *, channels_last: bool, threads: int, out: str,
                 extra: Optional[Dict] = None):
    from ganforge.config import Config
    from ganforge.trainer import Trainer
    big = 10 ** 9
    overrides = {
        "data.name": "fashion-mnist", "data.img_size": bc.img_size, "data.channels": bc.channels,
        "model.name": bc.model, "model.z_dim": 100, "model.g_width": bc.width, "model.d_width": bc.width,
        "train.batch_size": bc.batch, "train.steps": big, "train.device": "cpu",
        "train.channels_last": channels_last, "train.threads": threads,
        "log.log_every": big, "log.sample_every": big, "log.ckpt_every": big,
        "log.progress": False, "log.tensorboard": False, "log.gif": False, "out": out,
    }
    overrides.update(extra or {})
    cfg = Config().with_overrides(overrides)
    return Trainer(cfg, dataset=dataset, quiet=True)


# ---------------------------------------------------------------------------- measurement
def count_flops(step: Callable[[], object], batch: int) -> float:
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as fc:
        step()
    return fc.get_total_flops() / batch


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


@dataclass
class Variant:
    label: str
    step: Callable[[], object]
    batch: int
    clock: Callable[[], float] = time.perf_counter
    n_steps: int = 0
    rates: List[float] = field(default_factory=list)

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


def bench_config(bc: BenchConfig, args, peak: float, ds_cache: Dict, hand_ds_cache: Dict, tmp: str) -> Dict:
    threads = args.threads
    ds = library_dataset(bc, ds_cache)
    if bc.img_size not in hand_ds_cache or hand_ds_cache[bc.img_size].channels != bc.channels:
        hand_ds_cache[bc.img_size] = TutorialFashionMNIST(find_fashion_dir(), bc.img_size, bc.channels)
    hand_ds = hand_ds_cache[bc.img_size]

    ours = make_trainer(bc, ds, channels_last=True, threads=threads, out=tmp)
    hand = HandLoop(bc, hand_ds, workers=args.hand_workers)
    clock = CLOCKS[args.clock]
    variants = [Variant("ours", ours.step, bc.batch, clock), Variant("hand", hand.step, bc.batch, clock)]
    if bc.model != "mlp":
        ours_nchw = make_trainer(bc, ds, channels_last=False, threads=threads, out=tmp)
        variants.append(Variant("ours_nchw", ours_nchw.step, bc.batch, clock))

    from ganforge.trainer import _cpu_has_bf16
    if _cpu_has_bf16():   # train.amp=bf16: autocast to bfloat16 where the CPU has native bf16
        ours_bf16 = make_trainer(bc, ds, channels_last=True, threads=threads, out=tmp,
                                 extra={"train.amp": "bf16"})
        variants.append(Variant("ours_bf16", ours_bf16.step, bc.batch, clock))

    flops_ours = count_flops(ours.step, bc.batch)
    flops_hand = count_flops(hand.step, bc.batch)
    for v in variants:
        v.calibrate(args.warmup, args.target_seconds, args.steps)
    for _ in range(args.repeats):
        for v in variants:
            v.measure()

    res = {v.label: v.median for v in variants}
    row = {
        "config": bc.name, "model": bc.model, "img_size": bc.img_size, "channels": bc.channels,
        "width": bc.width, "batch": bc.batch,
        "ours_img_s": res["ours"], "hand_img_s": res["hand"],
        "ratio": res["ours"] / res["hand"],
        "gflop_per_img": flops_ours / 1e9, "hand_gflop_per_img": flops_hand / 1e9,
        "ours_pct_peak": 100 * res["ours"] * flops_ours / (peak * 1e9),
        "hand_pct_peak": 100 * res["hand"] * flops_ours / (peak * 1e9),
        "ours_nchw_img_s": res.get("ours_nchw"),
        "ours_bf16_img_s": res.get("ours_bf16"),
        "peak_img_s": peak * 1e9 / flops_ours,
        "steps": {v.label: v.n_steps for v in variants},
        "all_img_s": {v.label: [round(r, 1) for r in v.rates] for v in variants},
    }
    if args.profile:
        row["_profile"] = {"ours": ours.step, "hand": hand.step}
    return row


# ---------------------------------------------------------------------------- output
COLUMNS = ["config", "ours img/s", "hand img/s", "ratio", "GFLOP/img", "ours % of peak",
           "hand % of peak", "ours NCHW img/s", "peak img/s", "ours bf16 img/s", "bf16 ratio"]


def table_cells(r: Dict) -> List[str]:
    nchw = f"{r['ours_nchw_img_s']:.0f}" if r.get("ours_nchw_img_s") else "-"
    return [r["config"], f"{r['ours_img_s']:.0f}", f"{r['hand_img_s']:.0f}", f"{r['ratio']:.2f}x",
            f"{r['gflop_per_img']:.4f}", f"{r['ours_pct_peak']:.1f}%", f"{r['hand_pct_peak']:.1f}%",
            nchw, f"{r['peak_img_s']:.0f}",
            f"{r['ours_bf16_img_s']:.0f}" if r.get("ours_bf16_img_s") else "-",
            f"{r['ours_bf16_img_s'] / r['hand_img_s']:.2f}x" if r.get("ours_bf16_img_s") else "-"]


def format_table(rows: List[Dict], markdown: bool = False) -> str:
    cells = [COLUMNS] + [table_cells(r) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(COLUMNS))]
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


def machine_info(args, peak: Dict) -> Dict:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "interop_threads": torch.get_num_interop_threads(),
            "mkldnn": torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled,
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(unset)"),
            "clock": args.clock, "load_before": loadavg(),
            "peak_gflops": peak["gflops"], "peak_detail": {k: v for k, v in peak.items() if k != "gflops"},
            "hand_workers": args.hand_workers, "repeats": args.repeats}


def write_out(path: str, rows: List[Dict], info: Dict, cmd: str) -> List[Path]:
    p = Path(path)
    stem = p.with_suffix("") if p.suffix in (".json", ".md") else p
    stem.parent.mkdir(parents=True, exist_ok=True)
    clean = [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]
    jp, mp = stem.with_suffix(".json"), stem.with_suffix(".md")
    jp.write_text(json.dumps({"command": cmd, "machine": info, "rows": clean}, indent=2) + "\n")
    mp.write_text(f"`{cmd}`\n\n{info['cpu']}, {info['cores']} cores, torch {info['torch']}, "
                  f"{info['threads']} threads, OMP_WAIT_POLICY={info['omp_wait_policy']}, "
                  f"{info['clock']} clock, load average {info['load_before']:.1f} -> "
                  f"{info.get('load_after', float('nan')):.1f}; fp32 matmul peak "
                  f"{info['peak_gflops']:.0f} GFLOP/s; hand-written DataLoader "
                  f"num_workers={info['hand_workers']}\n\n"
                  + format_table(clean, markdown=True) + "\n")
    return [jp, mp]


def profile_rows(rows: List[Dict], steps: int = 10, top: int = 18) -> None:
    from torch.profiler import ProfilerActivity, profile
    for r in rows:
        for label, step in r.get("_profile", {}).items():
            for _ in range(2):
                step()
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                for _ in range(steps):
                    step()
            print(f"\n=== profile: {r['config']} / {label} ({steps} steps) ===")
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=top))


# ---------------------------------------------------------------------------- main
def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", default=None,
                    help=f"comma-separated, from: {', '.join(CONFIGS)} (default: all; "
                         f"--quick: {', '.join(QUICK_CONFIGS)})")
    ap.add_argument("--quick", action="store_true",
                    help="a rough table fast: fewer configs, 1 repeat, short timings")
    ap.add_argument("--steps", type=int, default=0,
                    help="timed steps per repeat (default: as many as fit in --target-seconds)")
    ap.add_argument("--target-seconds", type=float, default=None,
                    help="time of one timed repeat of one loop when --steps is not given "
                         "(default 1.0; --quick: 0.5)")
    ap.add_argument("--repeats", type=int, default=None,
                    help="interleaved repeats; the median is reported (default 5; --quick: 1)")
    ap.add_argument("--warmup", type=int, default=None,
                    help="untimed steps before timing (default 3; --quick: 2)")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch.set_num_threads for both loops (0: torch's default, one per core)")
    ap.add_argument("--interop-threads", type=int, default=0, help="torch.set_num_interop_threads (0: default)")
    ap.add_argument("--hand-workers", type=int, default=0,
                    help="DataLoader num_workers of the hand-written loop (default 0, the faster "
                         "choice on a 2-core machine; the DCGAN tutorial's 2 competes with the "
                         "compute threads for the same cores)")
    ap.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                    help="wall: images per wall-clock second (the real speed); cpu: images per "
                         "CPU-second of this process, a contention-proof stand-in for the speed on an "
                         "idle machine (needs --threads 1 --hand-workers 0)")
    ap.add_argument("--no-mkldnn", action="store_true", help="torch.backends.mkldnn.enabled = False")
    ap.add_argument("--profile", action="store_true",
                    help="after the table, print torch.profiler op tables of both loops per config")
    ap.add_argument("--out", default="", help="also write the table to PATH.json and PATH.md")
    args = ap.parse_args(argv)
    cmd = "python benchmarks/bench_train.py " + " ".join(argv if argv is not None else sys.argv[1:])

    if args.configs:
        names = [c.strip() for c in args.configs.split(",") if c.strip()]
    else:
        names = QUICK_CONFIGS if args.quick else list(CONFIGS)
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        ap.error(f"--configs: unknown {', '.join(unknown)}; choose from {', '.join(CONFIGS)}")
    for key, full, quick in (("repeats", 5, 1), ("target_seconds", 1.0, 0.5), ("warmup", 3, 2)):
        if getattr(args, key) is None:
            setattr(args, key, quick if args.quick else full)
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
    peak = matmul_peak(CLOCKS[args.clock])
    info = machine_info(args, peak)
    print(f"# {info['cpu']}, {info['cores']} cores, torch {info['torch']}, {info['threads']} threads "
          f"({info['interop_threads']} interop), mkldnn={'on' if info['mkldnn'] else 'off'}, "
          f"OMP_WAIT_POLICY={info['omp_wait_policy']}, {args.clock} clock", flush=True)
    print(f"# fp32 matmul peak: {peak['gflops']:.1f} GFLOP/s (torch.mm "
          + ", ".join(f"{k[2:]}: {v:.1f}" for k, v in info["peak_detail"].items()) + ")", flush=True)
    print(f"# hand-written loop: DataLoader(shuffle=True, num_workers={args.hand_workers}), "
          f"Sigmoid+BCELoss, NCHW; {args.repeats} interleaved repeats, median reported", flush=True)
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
            r = bench_config(CONFIGS[name], args, peak["gflops"], ds_cache, hand_cache, tmp)
            rows.append(r)
            print(f"# {name}: ours {r['ours_img_s']:.0f} img/s, hand {r['hand_img_s']:.0f} img/s "
                  f"({time.perf_counter() - t0:.0f}s; steps per repeat {r['steps']}; load {loadavg():.1f})",
                  flush=True)
        info["load_after"] = loadavg()
        print()
        print(format_table(rows))
        print(f"\n(img/s: {'wall-clock' if args.clock == 'wall' else 'per CPU-second'}, median of "
              f"{args.repeats}. GFLOP/img: matmul+conv FLOPs of one training step of ours, per image; "
              f"both '% of peak' columns use it. peak img/s = {peak['gflops']:.1f} GFLOP/s fp32 mm peak / "
              f"GFLOP/img. Load average {info['load_before']:.1f} -> {info['load_after']:.1f}; "
              f"total {time.perf_counter() - t_start:.0f}s)")
        if args.out:
            for p in write_out(args.out, rows, info, cmd):
                print(f"wrote {p}")
        if args.profile:
            profile_rows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
