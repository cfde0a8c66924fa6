"""A training session at the terminal: the one-line progress bar, and interruption.

The first SIGINT/SIGTERM (Ctrl-C, a cluster's preemption notice) only raises a flag that the
loop checks after each step, so the session ends cleanly with a checkpoint (under torchrun
every process stops at the same step); a second one interrupts at once (the last completed
checkpoint is still on disk).
"""
from __future__ import annotations

import signal
import sys
import threading
from typing import Any, Dict, Optional


def threading_main() -> bool:
    return threading.current_thread() is threading.main_thread()


class Interrupt:
    """Turns the first SIGINT/SIGTERM into a flag (``signal``, the signal's number) the loop
    checks after each step; a second one raises KeyboardInterrupt. Signal handlers can only be
    set from the main thread: elsewhere this does nothing."""

    def __init__(self) -> None:
        self.signal: Optional[int] = None
        self._old: Dict[int, Any] = {}

    def __enter__(self):
        if threading_main():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.signal is not None:
            raise KeyboardInterrupt
        self.signal = signum
        print(f"\n[ganforge] {signal.Signals(signum).name} received: finishing this step and saving "
              f"a checkpoint (press Ctrl-C again to abort without saving)", file=sys.stderr, flush=True)

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)
        return False


class Progress:
    """A one-line progress bar: epoch, step, images/s, ETA and the task's statistics."""

    def __init__(self, total: int, initial: int, enabled: bool, keys):
        self.enabled = enabled
        self.keys = keys
        self.bar = None
        self.postfix = ""
        if enabled:
            from tqdm.auto import tqdm
            self.bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True,
                            file=sys.stderr, smoothing=0.1, mininterval=0.5,
                            bar_format="{desc} {percentage:3.0f}%|{bar:20}| {n_fmt}/{total_fmt} "
                                       "[{elapsed}<{remaining}, {rate_fmt}] {postfix}")

    def update(self, step: int, epoch: float, row: Optional[Dict[str, Any]]) -> None:
        if not self.bar:
            return
        if row is not None:
            parts = [f"{row.get('images_per_sec', 0):.0f} img/s"]
            for k in self.keys:
                if k in row:
                    parts.append(f"{k}={row[k]:.3f}")
            self.postfix = " ".join(parts)
            self.bar.set_postfix_str(self.postfix, refresh=False)
        self.bar.set_description_str(f"epoch {epoch:.2f}", refresh=False)
        self.bar.update(step - self.bar.n)

    def close(self) -> None:
        if self.bar:
            self.bar.close()
