"""CycleGAN: training throughput of ganforge's Trainer vs a plain hand-written loop, and the
translation scores of a trained run.

Run by hand (never part of the test suite)::

    .venv/bin/python benchmarks/bench_cyclegan.py                      # it/s table, ~2 min
    .venv/bin/python benchmarks/bench_cyclegan.py --steps 10 --repeats 3 --threads 1
    .venv/bin/python benchmarks/bench_cyclegan.py --eval runs/cyclegan-sneaker-boot \
        --evaluator ~/.cache/ganforge/evaluators/fashion-mnist-28px.pt    # scores of a run

What is compared (same data, networks, widths, batch, losses, optimisers): the preset
``cyclegan-sneaker-boot`` (Fashion-MNIST sneaker <-> ankle boot, 28 px), overridable with
``key=value`` pairs.

* **ours**: ``Trainer(cfg, dataset=pair, quiet=True)``; after warm-up steps, ``trainer.step()``
  is timed (one step = the G phase over both generators + the D phase over both
  discriminators, one batch of each domain). Library defaults (``train.channels_last=True``).
* **hand**: the structure of the authors' PyTorch code (``pytorch-CycleGAN-and-pix2pix``:
  ``UnalignedDataset`` + ``CycleGANModel.optimize_parameters``): a ``Dataset`` whose
  ``__getitem__`` converts one A image and one *randomly drawn* B image (``ToTensor`` +
  ``Normalize``, written out because torchvision is not used), a ``DataLoader(shuffle=True,
  num_workers=0)`` (workers would only compete for the same cores here), the same four networks
  built with ``ganforge.models.build``, ``nn.MSELoss`` against 1/0 target maps (lsgan) and
  ``nn.L1Loss``, ``set_requires_grad(D, False)`` around the G step, the authors' ImagePool
  (Python ``random``), D_A and D_B each halved and backpropagated on their own, NCHW.

Columns: ``it/s`` (training steps per second; median of ``--repeats`` interleaved repeats) and
``img/s`` (= it/s x batch size, images *per domain*).

``bench_train.py`` imports the hand-written loop from here (``hand_loop``, which also takes a
device and an autocast dtype) and the preset (``make_config``) for the ``cyclegan`` row of its
table (same columns as its GAN rows: FLOPs per image, % of the matmul peak, peak memory, and
CUDA when present).
"""
from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ganforge import models  # noqa: E402
from ganforge.core.config import load_config  # noqa: E402


# --------------------------------------------------------------------------- the hand loop
class UnalignedDataset(torch.utils.data.Dataset):
    """As the authors' UnalignedDataset: item i = A[i % |A|] and a random B image."""

    def __init__(self, a_u8, b_u8):
        self.a, self.b = a_u8.numpy(), b_u8.numpy()

    def __len__(self):
        return max(len(self.a), len(self.b))

    @staticmethod
    def _transform(arr):
        # ToTensor() then Normalize((0.5,), (0.5,)), one image at a time.
        return (torch.from_numpy(arr.copy()).float().div(255.0) - 0.5) / 0.5

    def __getitem__(self, i):
        a = self.a[i % len(self.a)]
        b = self.b[random.randint(0, len(self.b) - 1)]
        return {"A": self._transform(a), "B": self._transform(b)}


class HandImagePool:
    """The authors' ImagePool (util/image_pool.py)."""

    def __init__(self, size):
        self.size, self.images = size, []

    def query(self, images):
        if self.size == 0:
            return images
        out = []
        for image in images:
            image = image.data.unsqueeze(0)
            if len(self.images) < self.size:
                self.images.append(image)
                out.append(image)
            elif random.uniform(0, 1) > 0.5:
                j = random.randint(0, self.size - 1)
                tmp = self.images[j].clone()
                self.images[j] = image
                out.append(tmp)
            else:
                out.append(image)
        return torch.cat(out, 0)


class HandCycleGAN:
    """``device``: where the networks live (the batches are moved there by the caller, as the
    authors' ``set_input`` does). ``amp_dtype``: ``None`` (the authors' fp32 code) or a
    ``torch.autocast`` dtype around the forward passes and losses, with one ``GradScaler`` for
    float16 (the usual AMP recipe; not in the authors' code)."""

    def __init__(self, cfg, img_size, channels, device="cpu", amp_dtype=None):
        c, m, t = cfg.cyclegan, cfg.model, cfg.train
        self.device = torch.device(device)
        gkw = dict(img_size=img_size, channels=channels, width=m.g_width, n_blocks=c.n_blocks)
        dkw = dict(img_size=img_size, channels=channels, width=m.d_width, n_layers=c.d_layers)
        torch.manual_seed(t.seed)
        self.G_A, self.G_B = models.build("G", c.generator, **gkw), models.build("G", c.generator, **gkw)
        self.D_A, self.D_B = models.build("D", c.discriminator, **dkw), models.build("D", c.discriminator, **dkw)
        for net in (self.G_A, self.G_B, self.D_A, self.D_B):
            net.to(self.device)
        self.amp_dtype = amp_dtype
        self.scaler = torch.amp.GradScaler(self.device.type) if amp_dtype == torch.float16 else None
        betas = (t.beta1, t.beta2)
        self.opt_G = torch.optim.Adam(itertools.chain(self.G_A.parameters(), self.G_B.parameters()), lr=t.lr_g, betas=betas)
        self.opt_D = torch.optim.Adam(itertools.chain(self.D_A.parameters(), self.D_B.parameters()), lr=t.lr_d, betas=betas)
        self.mse, self.l1 = nn.MSELoss(), nn.L1Loss()
        self.lc, self.li = c.lambda_cyc, c.lambda_id
        self.pool_A, self.pool_B = HandImagePool(c.pool_size), HandImagePool(c.pool_size)

    def gan(self, pred, real: bool):
        return self.mse(pred, torch.ones_like(pred) if real else torch.zeros_like(pred))

    @staticmethod
    def set_requires_grad(nets, flag):
        for n in nets:
            for p in n.parameters():
                p.requires_grad = flag

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def backward(self, loss):
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def optimizer_step(self, opt):
        self.scaler.step(opt) if self.scaler is not None else opt.step()

    def step(self, real_A, real_B):
        # forward()
        with self.autocast():
            fake_B = self.G_A(real_A)
            rec_A = self.G_B(fake_B)
            fake_A = self.G_B(real_B)
            rec_B = self.G_A(fake_A)
        # G_A and G_B
        self.set_requires_grad([self.D_A, self.D_B], False)
        self.opt_G.zero_grad()
        with self.autocast():
            loss_idt = 0.0
            if self.li > 0:
                loss_idt = (self.l1(self.G_A(real_B), real_B) * self.lc * self.li
                            + self.l1(self.G_B(real_A), real_A) * self.lc * self.li)
            loss_G = (self.gan(self.D_A(fake_B), True) + self.gan(self.D_B(fake_A), True)
                      + self.l1(rec_A, real_A) * self.lc + self.l1(rec_B, real_B) * self.lc + loss_idt)
        self.backward(loss_G)
        self.optimizer_step(self.opt_G)
        # D_A and D_B (the authors' netD_A judges domain B)
        self.set_requires_grad([self.D_A, self.D_B], True)
        self.opt_D.zero_grad()
        for D, real, fake in ((self.D_A, real_B, self.pool_B.query(fake_B)),
                              (self.D_B, real_A, self.pool_A.query(fake_A))):
            with self.autocast():
                loss_D = (self.gan(D(real), True) + self.gan(D(fake.detach()), False)) * 0.5
            self.backward(loss_D)
        self.optimizer_step(self.opt_D)
        if self.scaler is not None:
            self.scaler.update()


# --------------------------------------------------------------------------- timing
def time_ours(cfg, pair, steps, warmup):
    from ganforge.training.trainer import Trainer
    tr = Trainer(cfg, dataset=pair, quiet=True)
    for _ in range(warmup):
        tr.step()
    t0 = time.perf_counter()
    for _ in range(steps):
        tr.step()
    return steps / (time.perf_counter() - t0)


def hand_loop(cfg, pair, *, device="cpu", workers=0, amp_dtype=None):
    """The hand-written loop as a zero-argument function doing one training step: the
    authors' DataLoader (``pin_memory`` on CUDA, as their code does with GPUs) and each batch
    moved to ``device`` with ``.to(device)`` (their ``set_input``)."""
    random.seed(cfg.train.seed)
    device = torch.device(device)
    model = HandCycleGAN(cfg, pair.img_size, pair.channels, device=device, amp_dtype=amp_dtype)
    loader = torch.utils.data.DataLoader(UnalignedDataset(pair.a.images, pair.b.images),
                                         batch_size=cfg.train.batch_size, shuffle=True,
                                         num_workers=workers, drop_last=True,
                                         pin_memory=device.type == "cuda")
    it = iter(loader)

    def one():
        nonlocal it
        try:
            batch = next(it)
        except StopIteration:
            it = iter(loader)
            batch = next(it)
        model.step(batch["A"].to(device), batch["B"].to(device))
    one.model = model
    return one


def time_hand(cfg, pair, steps, warmup):
    one = hand_loop(cfg, pair)
    for _ in range(warmup):
        one()
    t0 = time.perf_counter()
    for _ in range(steps):
        one()
    return steps / (time.perf_counter() - t0)


def make_config(preset="cyclegan-sneaker-boot", threads=0, overrides=None):
    """The preset with logging off and a step budget that never ends, plus ``overrides``."""
    over = {"log.progress": False, "log.tensorboard": False, "out": "/tmp/ganforge-bench-cyclegan",
            "train.steps": 10 ** 6, "train.threads": threads}
    over.update(overrides or {})
    return load_config(preset, over)


def bench(args) -> None:
    from ganforge.training.tasks.cyclegan import CycleGANTask
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = make_config(args.config, args.threads, dict(kv.split("=", 1) for kv in args.overrides))
    pair = CycleGANTask.load_data(cfg)
    bs = cfg.train.batch_size
    load = os.getloadavg()
    print(f"# {pair}\n# {args.config} batch {bs}, g_width {cfg.model.g_width}, d_width "
          f"{cfg.model.d_width}, n_blocks {cfg.cyclegan.n_blocks}, d_layers {cfg.cyclegan.d_layers}"
          f"\n# torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{platform.processor() or platform.machine()}, load average at start "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", flush=True)
    res = {"ours": [], "hand": []}
    for r in range(args.repeats):
        for name, fn in (("ours", time_ours), ("hand", time_hand)):
            v = fn(cfg, pair, args.steps, args.warmup)
            res[name].append(v)
            print(f"  repeat {r + 1}: {name:<5} {v:6.3f} it/s", flush=True)
    print(f"\n| loop | it/s (median of {args.repeats}) | img/s per domain | runs |\n|---|---|---|---|")
    for name in ("ours", "hand"):
        med = statistics.median(res[name])
        print(f"| {name} | {med:.3f} | {med * bs:.1f} | {', '.join(f'{v:.3f}' for v in res[name])} |")
    print(f"\nours / hand = {statistics.median(res['ours']) / statistics.median(res['hand']):.2f}x; "
          f"load average at end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def evaluate(args) -> None:
    from ganforge.use.faces.cyclegan import format_translation
    from ganforge.use.load import load_run
    if args.threads:
        torch.set_num_threads(args.threads)
    scores = load_run(args.eval).translation_scores(evaluator=args.evaluator, n=args.n)
    print(f"{args.eval} ({args.n} test images per domain at most)\n{format_translation(scores)}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="cyclegan-sneaker-boot")
    p.add_argument("--steps", type=int, default=15, help="timed steps per repeat")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--eval", metavar="RUN", help="score a trained run instead of timing")
    p.add_argument("--evaluator", help="domain evaluator file or dataset (default: the stored one)")
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("overrides", nargs="*", metavar="key=value")
    args = p.parse_args()
    evaluate(args) if args.eval else bench(args)


if __name__ == "__main__":
    main()
