"""Multi-process training on PyTorch's own engine: ``torchrun`` + DistributedDataParallel.

Launch::

    torchrun --nproc_per_node 4 -m ganforge train --config dcgan-fashion-mnist
    torchrun --nnodes 2 --node_rank 0 --nproc_per_node 8 --rdzv_backend c10d \\
             --rdzv_endpoint HOST:29500 -m ganforge train ...        # on each machine

``torchrun`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` ... in each process's environment;
:func:`setup` reads them, joins the process group (NCCL on GPUs, gloo on CPUs) and picks the
device (``cuda:LOCAL_RANK``). Without those variables everything here is a no-op and a run is
a plain single process.

Semantics (the same maths as one process, whatever the number of processes):

* ``train.batch_size`` is the *global* batch. Each of the N processes draws ``batch_size / N``
  real images: its own slice of one shared per-epoch permutation (every image once per epoch,
  reshuffled each epoch), and its own slice of one global noise draw. DDP averages the
  gradients over processes, so one optimiser step sees exactly the global batch's mean loss
  and the learning rates need no scaling: change ``train.batch_size`` (and the lr, if you like
  the linear-scaling rule) deliberately, not as a side effect of adding GPUs. A checkpoint
  resumes with a different number of processes and the same global batch.
* Each trained module is wrapped in its own DDP. A phase's backward runs only through its own
  parameters (``backward(inputs=...)``), so a module that the phase only *uses* (D inside G's
  loss) is called inside ``no_sync()``: its reducer must not wait for gradients that never come.
  These modules are listed per phase by the task (``Phase.uses``).
* BatchNorm: converted to ``SyncBatchNorm`` on GPUs (batch statistics over the global batch).
  torch's SyncBatchNorm has no CPU kernel, so on CPU/gloo BatchNorm statistics are per process
  (per local batch), which changes the maths slightly for BN models (dcgan, cyclegan's
  instance norm is unaffected); models without BatchNorm (mlp, resnet D) match one process.
* Only rank 0 writes: logs, samples, checkpoints, evaluation. Logged statistics are averaged
  over processes. Stop requests (Ctrl-C / SIGTERM from torchrun, time limits) are agreed on at
  each log step so every process stops at the same step.
"""
from __future__ import annotations

import contextlib
import datetime
import os
from dataclasses import dataclass
from typing import Iterable, Optional

import torch
import torch.distributed as dist
import torch.nn as nn


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


SINGLE = DistInfo()


def env_info() -> DistInfo:
    """The process's place in a torchrun job, from the environment (single process if unset)."""
    if "WORLD_SIZE" not in os.environ or "RANK" not in os.environ:
        return SINGLE
    ws = int(os.environ["WORLD_SIZE"])
    return DistInfo(rank=int(os.environ["RANK"]), world_size=ws,
                    local_rank=int(os.environ.get("LOCAL_RANK", 0)),
                    local_world_size=int(os.environ.get("LOCAL_WORLD_SIZE", ws)))


def setup(device_name: str) -> tuple[DistInfo, Optional[torch.device]]:
    """Join the torchrun process group when launched by torchrun.

    Returns ``(info, device)``; ``device`` is the process's GPU when ``device_name`` is auto or
    cuda and GPUs exist, else None (the caller resolves the device as usual).
    """
    info = env_info()
    if not info.enabled:
        return info, None
    use_cuda = device_name in ("auto", "cuda") and torch.cuda.is_available()
    device = None
    if use_cuda:
        device = torch.device("cuda", info.local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo",
                                timeout=datetime.timedelta(minutes=30))
    return info, device


def cpu_threads_per_process(info: DistInfo) -> int:
    """Cores per process when several CPU processes share a machine (0: leave torch's default).
    Each process would otherwise start one OpenMP thread per core, and N processes x all
    cores oversubscribe the machine (measured: several times slower)."""
    if info.local_world_size <= 1:
        return 0
    return max(1, (os.cpu_count() or 1) // info.local_world_size)


def convert_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """SyncBatchNorm on GPUs; unchanged on CPU (torch's SyncBatchNorm is GPU-only)."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return module


def wrap(module: nn.Module, device: torch.device) -> nn.Module:
    """One DDP per trained module. Buffers are not broadcast on every forward: BN running
    statistics are only read by rank 0's samples and checkpoints, and with SyncBatchNorm they
    are identical on every rank anyway; skipping the broadcast saves a collective per call."""
    kw = {"device_ids": [device.index]} if device.type == "cuda" else {}
    return nn.parallel.DistributedDataParallel(module, broadcast_buffers=False, **kw)


def unwrap(module: nn.Module) -> nn.Module:
    """The plain module under DDP and/or torch.compile wrappers."""
    while True:
        if isinstance(module, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            module = module.module
        elif isinstance(getattr(module, "_orig_mod", None), nn.Module):
            module = module._orig_mod
        else:
            return module


def no_sync(modules: Iterable[nn.Module]) -> contextlib.ExitStack:
    """Suspend DDP gradient synchronisation of ``modules`` (those a phase uses but does not
    train); plain modules are ignored."""
    stack = contextlib.ExitStack()
    for m in modules:
        m = getattr(m, "_orig_mod", m)      # torch.compile(DDP(module))
        if isinstance(m, nn.parallel.DistributedDataParallel):
            stack.enter_context(m.no_sync())
    return stack


def all_reduce_mean(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Mean of ``t`` over processes (in place); identity for a single process."""
    if info.enabled:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        t.div_(info.world_size)
    return t


def any_process(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """True on every process when ``flag`` is true on at least one (a collective: call it at
    the same step on all processes)."""
    if not info.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def local_slice(n_local: int, info: DistInfo) -> slice:
    """This process's rows of a global draw of ``n_local * world_size`` rows."""
    return slice(info.rank * n_local, (info.rank + 1) * n_local)


def shutdown() -> None:
    """Leave the process group: wait for every process first, so that none tears down its
    communication threads while another still finishes its last step or writes (tearing down
    early aborted a gloo process with "terminate called without an active exception")."""
    if dist.is_available() and dist.is_initialized():
        try:
            dist.barrier()
        except Exception:   # a peer already gone: nothing left to wait for
            pass
        dist.destroy_process_group()
