"""Which device a command runs on: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` (``mps`` where torch
has it), checked before any work so a wrong one is a one-line error, not a failure to read a
checkpoint half-way through."""
from __future__ import annotations

import torch

from ganforge.core.errors import UserError


def resolve_device(name: str | torch.device, flag: str = "--device") -> torch.device:
    """``name`` as a torch device; ``auto`` is CUDA when available, else the CPU.

    Raises :class:`UserError` naming ``flag`` for an unknown device name, a CUDA device on a
    machine without CUDA, or a CUDA index the machine does not have."""
    if isinstance(name, torch.device):
        name = str(name)
    text = str(name).strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(text)
    except (RuntimeError, ValueError):
        raise UserError(f"{flag} {name}: not a device; use cpu, cuda, cuda:N or auto") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"{flag} {name}: CUDA is not available on this machine; use {flag} cpu "
                            f"(or auto)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UserError(f"{flag} {name}: this machine has {torch.cuda.device_count()} CUDA "
                            f"device(s) (cuda:0 .. cuda:{torch.cuda.device_count() - 1})")
    elif dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UserError(f"{flag} {name}: MPS is not available on this machine; use {flag} cpu")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise UserError(f"{flag} {name}: unsupported device type '{dev.type}'; use cpu, cuda or cuda:N")
    return dev
