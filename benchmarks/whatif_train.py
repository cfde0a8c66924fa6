"""What-if companion of ``bench_train.py``: times the library's training step with proposed
library changes applied *from outside* (monkeypatching one Trainer instance), next to the
library as it is and the hand-written tutorial loop, so each proposal's effect is measured on
this machine before anyone edits the library. Run by hand; never part of the test suite::

    .venv/bin/python benchmarks/whatif_train.py                       # all configs, wall clock
    .venv/bin/python benchmarks/whatif_train.py --threads 1 --clock cpu --configs dcgan-32

Proposals (each is a column; "fp32 best" combines the fp32 ones; a proposal that does not apply
to a model, e.g. ``layers`` to the mlp, leaves it as it is, so its column shows the noise):

* ``fused``:  ``torch.optim.Adam(..., fused=True)`` on CPU too (trainer.py builds the
  optimisers with ``fused`` only on CUDA; PyTorch has a fused CPU Adam since 2.4).
* ``layers``: DCGAN's three matmul-shaped layers computed as matmuls, with the same parameters
  (checkpoints unchanged): G's 1x1 -> s0 x s0 ``ConvTranspose2d`` is a ``z @ W`` ; G's output
  ``ConvTranspose2d`` with 1 or 3 output channels is ``x @ W`` followed by ``F.fold``; D's
  s0 x s0 -> 1x1 logit ``Conv2d`` is a dot product. oneDNN runs these shapes at 1-35 % of peak.
* ``concat``: for a D without batch-dependent layers (no BatchNorm: the mlp family), one D call
  on ``cat(real, fake.detach())`` instead of two calls of half the batch in the D phase; the same
  maths, fewer and larger GEMMs (tasks/gan.py).
* ``bf16``: ``torch.autocast("cpu", dtype=torch.bfloat16)`` around the losses (what
  ``train.amp=bf16`` could do on CPUs with AVX512-BF16/AMX; today it is ignored on CPU).
  Numerics change (bf16 matmuls, fp32 accumulation), so this is an opt-in, not a default.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import types
import warnings
from pathlib import Path
from typing import Dict, List

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_train as bt  # noqa: E402


# ---------------------------------------------------------------------------- proposals
def _proj_forward(self, z):
    """ConvTranspose2d(z_dim, C, kernel=s0) on a 1x1 input == z @ W (output in NHWC order,
    returned as a channels_last NCHW view, or made NCHW-contiguous)."""
    b = z.shape[0]
    cin, cout, k, _ = self.weight.shape
    w = self.weight.permute(0, 2, 3, 1).reshape(cin, k * k * cout)
    out = torch.mm(z.reshape(b, cin), w).view(b, k, k, cout).permute(0, 3, 1, 2)
    if self.bias is not None:
        out = out + self.bias.view(1, -1, 1, 1)
    return out if self._channels_last else out.contiguous()


def _fold_forward(self, x):
    """ConvTranspose2d(Cin, C, k, s, p) == col2im(x @ W): a GEMM plus ``F.fold``."""
    b, cin, h, w_ = x.shape
    _, cout, k, _ = self.weight.shape
    s, p = self.stride[0], self.padding[0]
    cols = torch.mm(x.permute(0, 2, 3, 1).reshape(b * h * w_, cin), self.weight.reshape(cin, cout * k * k))
    cols = cols.view(b, h * w_, cout * k * k).transpose(1, 2)
    out = F.fold(cols, output_size=((h - 1) * s - 2 * p + k, (w_ - 1) * s - 2 * p + k),
                 kernel_size=k, stride=s, padding=p)
    if self.bias is not None:
        out = out + self.bias.view(1, -1, 1, 1)
    return out


def _head_forward(self, h):
    """Conv2d(C, 1, kernel=s0) over the s0 x s0 map == a dot product per image."""
    b = h.shape[0]
    w = self.weight.permute(0, 2, 3, 1).reshape(self.weight.shape[0], -1)
    return F.linear(h.permute(0, 2, 3, 1).reshape(b, -1), w, self.bias).view(b, -1, 1, 1)


def apply_layers(tr) -> None:
    if tr.cfg.model.name != "dcgan":
        return
    G, D = tr.task.modules["G"], tr.task.modules["D"]
    proj = G.blocks[0][0]
    proj._channels_last = tr.cfg.train.channels_last
    proj.forward = types.MethodType(_proj_forward, proj)
    out = G.blocks[-1][0]
    if out.out_channels <= 4:
        out.forward = types.MethodType(_fold_forward, out)
    D.head.forward = types.MethodType(_head_forward, D.head)


def apply_fused(tr) -> None:
    for ph in tr.phases:
        g = tr.optimizers[ph.name].param_groups[0]
        opt = torch.optim.Adam(tr.params[ph.name], lr=g["lr"], betas=g["betas"], fused=True)
        tr.optimizers[ph.name] = opt
        tr.schedulers[ph.name] = torch.optim.lr_scheduler.LambdaLR(opt, tr._lr_lambda)


def _concat_loss(self, phase, batch, *, last_repeat=True):
    if phase == "D" and last_repeat:
        from ganforge.losses.adversarial import d_prob
        real = batch[0]
        n = real.shape[0]
        fake = self.G(self.noise(n))
        self._fake = fake
        logits = self.D(torch.cat([real, fake.detach()]))
        real_logits, fake_logits = logits[:n], logits[n:]
        loss = self.objective.d_loss(real_logits, fake_logits)
        return loss, {"loss_D": loss.detach(), "D(x)": d_prob(real_logits),
                      "D(G(z))": d_prob(fake_logits)}
    return type(self).loss(self, phase, batch, last_repeat=last_repeat)


def apply_concat(tr) -> None:
    D = tr.task.modules["D"]
    if any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in D.modules()):
        return      # BatchNorm: one call on the mixed batch would change D's statistics
    tr.task.loss = types.MethodType(_concat_loss, tr.task)


def apply_bf16(tr) -> None:
    tr._autocast = lambda: torch.autocast("cpu", dtype=torch.bfloat16)


PROPOSALS = {
    "ours": [],
    "fused": [apply_fused],
    "layers": [apply_layers],
    "concat": [apply_concat],
    "fp32 best": [apply_fused, apply_layers, apply_concat],
    "bf16": [apply_bf16],
    "fp32 best+bf16": [apply_fused, apply_layers, apply_concat, apply_bf16],
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", default=",".join(bt.CONFIGS))
    ap.add_argument("--variants", default=",".join(PROPOSALS) + ",hand",
                    help=f"from: {', '.join(PROPOSALS)}, hand")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--target-seconds", type=float, default=0.7)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--clock", choices=sorted(bt.CLOCKS), default="wall")
    args = ap.parse_args(argv)
    if args.clock == "cpu" and args.threads != 1:
        ap.error("--clock cpu needs --threads 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message=".*lr_scheduler.step.*")
    clock = bt.CLOCKS[args.clock]
    wanted = [v.strip() for v in args.variants.split(",") if v.strip()]
    print(f"# {torch.get_num_threads()} threads, {args.clock} clock, load {bt.loadavg():.1f}; img/s, median of "
          f"{args.repeats} interleaved repeats; (x.xx) = relative to 'ours'", flush=True)
    rows: List[Dict] = []
    with tempfile.TemporaryDirectory(prefix="ganforge-whatif-") as tmp:
        for name in [c.strip() for c in args.configs.split(",") if c.strip()]:
            bc = bt.CONFIGS[name]
            ds = bt.library_dataset(bc, {})
            variants = []
            for v in wanted:
                if v == "hand":
                    hand = bt.HandLoop(bc, bt.TutorialFashionMNIST(bt.find_fashion_dir(), bc.img_size, bc.channels), 0)
                    variants.append(bt.Variant(v, hand.step, bc.batch, clock))
                    continue
                tr = bt.make_trainer(bc, ds, channels_last=True, threads=args.threads, out=tmp)
                for fn in PROPOSALS[v]:
                    fn(tr)
                variants.append(bt.Variant(v, tr.step, bc.batch, clock))
            for v in variants:
                v.calibrate(2, args.target_seconds, 0)
            for _ in range(args.repeats):
                for v in variants:
                    v.measure()
            base = next((v.median for v in variants if v.label == "ours"), None)
            cells = {v.label: v.median for v in variants}
            rows.append({"config": name, **cells})
            print(f"{name:13s} " + "  ".join(
                f"{v.label} {v.median:.0f}" + (f" ({v.median / base:.2f})" if base else "")
                for v in variants) + f"   [load {bt.loadavg():.1f}]", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
