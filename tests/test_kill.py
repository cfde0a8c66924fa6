"""Crash safety, tested by killing: SIGKILL at seeded random moments, then carry on.

Every file ganforge writes in place must survive a SIGKILL at any moment: after the kill it is
the previous complete file, or absent / the new complete file, never a torn one, and the next
writer leaves no stray temporary file behind (or, for the shared caches, one that is harmless:
never read, see each test).

How: the work runs in a child forked from this process, which has already imported ganforge
and torch (a fresh ``python -m ganforge`` costs ~2 s of imports here); the child runs
``ganforge.cli.main([...])`` (or a library call) and ``os._exit``-s with its code, its stderr
going to a pipe this process reads. Kills inside a write use the test-only hook of
ganforge/core/files.py: with ``GANFORGE_TEST_SLOW_WRITE=SECONDS`` each atomic write pauses twice
(half written / fully written but not renamed) after printing a marker line, and the test
kills the child right after the marker (where one write is the target, a forked child pauses
at its marker only: a wrapper of the hook's pause, in the child). A forked child also reports each metrics row and each
finished checkpoint on stderr (``kill-test: row N`` / ``kill-test: saved N``: a wrapper around
two functions, in the child only), which the test uses to time kills and to record, per kill,
the step last checkpointed and the step reached. A real ``python -m ganforge train``
subprocess is killed and resumed too, as users run it.

Run with ``-s`` to see the figures (kills, steps redone, kills inside a checkpoint write,
runtime) and the table of kills.
"""
from __future__ import annotations

import importlib
import json
import os
import random
import re
import select
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import numpy as np
import pytest
import torch
from PIL import Image

import ganforge.cli as cli
from ganforge.core import checkpoint as ckpt
from ganforge.core import runfolder
from ganforge.core.files import SLOW_WRITE_ENV
from tests.helpers import assert_same_checkpoint

REPO = Path(__file__).resolve().parents[1]
#: the pause of each slow write in the sessions of the random kills (seconds)
SLOW = 0.05
#: the pause at the one marker where a child is killed (it never sleeps that long)
STALL = 30.0


# --------------------------------------------------------------------------- children
def _say(msg: str) -> None:
    print(f"kill-test: {msg}", file=sys.stderr, flush=True)


def _report_progress(tear: Optional[tuple] = None) -> None:
    """In a forked child: say ``kill-test: row N`` after each metrics row is written and
    ``kill-test: saved N`` after each checkpoint is complete (latest.pt pointing at it).
    ``tear=(k, fraction, pause)``: write the session's k-th row in two parts, the first
    ``1 + int(fraction * (len - 2))`` bytes (1 to all but the newline), then say
    ``kill-test: torn-row N CUT/LEN`` and pause before the rest (a kill now tears the row)."""
    from ganforge.core import checkpoint
    from ganforge.training.callbacks import artifacts
    log, save = artifacts.Artifacts.log, checkpoint.save_checkpoint
    count = [0]

    def logged(self, row):
        count[0] += 1
        if tear is not None and count[0] == tear[0] and self.write:
            line = (json.dumps(row) + "\n").encode()
            cut = 1 + int(tear[1] * (len(line) - 2))
            with open(self.run_dir / "metrics.jsonl", "ab") as f:
                f.write(line[:cut])
                f.flush()
                _say(f"torn-row {row['step']} {cut}/{len(line)}")
                time.sleep(tear[2])
                f.write(line[cut:])
        else:
            log(self, row)
        if "resumed" not in row:
            _say(f"row {row['step']}")

    def saved(state, run_dir, step, keep_last=3):
        path = save(state, run_dir, step, keep_last=keep_last)
        _say(f"saved {step}")
        return path

    artifacts.Artifacts.log = logged
    checkpoint.save_checkpoint = saved


#: the children of the running test (those still alive when it ends are killed)
_CHILDREN: List["Child"] = []


@pytest.fixture(autouse=True)
def _no_child_outlives_its_test():
    yield
    while _CHILDREN:
        c = _CHILDREN.pop()
        if c.rc is None:
            c.kill()


class Child:
    """``fn()`` in a child forked from this process (its return value is the exit code), or
    ``argv`` as a real ``python -m ganforge`` subprocess; stderr is read through a pipe."""

    def __init__(self, fn: Optional[Callable[[], Any]] = None, *, argv: Optional[List[str]] = None,
                 env: Optional[Dict[str, str]] = None, setup: Optional[Callable[[], None]] = None):
        self.t0 = time.monotonic()
        self.text = ""
        self.events: List[tuple] = []        # (seconds since start, line)
        self._partial = ""
        self.rc: Optional[int] = None
        self.proc = None
        _CHILDREN.append(self)
        if fn is None:
            self.via = "subprocess"
            self.proc = subprocess.Popen([sys.executable, "-m", "ganforge", *argv], cwd=REPO,
                                         env={**os.environ, **(env or {})},
                                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.PIPE)
            self.pid, self.fd = self.proc.pid, self.proc.stderr.fileno()
            return
        self.via = "fork"
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:                                   # the child: never returns
            code = 70
            try:
                os.close(r)
                null = os.open(os.devnull, os.O_RDWR)
                os.dup2(null, 0)
                os.dup2(null, 1)
                os.dup2(w, 2)
                sys.stdout = open(1, "w", closefd=False)
                sys.stderr = open(2, "w", buffering=1, closefd=False)
                os.environ.update(env or {})
                torch.set_num_threads(1)
                if setup is not None:
                    setup()
                code = int(fn() or 0)
            except BaseException:
                traceback.print_exc()
            finally:
                try:
                    sys.stderr.flush()
                finally:
                    os._exit(code)
        os.close(w)
        self.pid, self.fd = pid, r

    # ---- reading stderr
    def _read(self, timeout: float) -> bool:
        """Read what is there (waiting up to ``timeout``); False at end of file."""
        if self.fd is None:
            return False
        ready, _, _ = select.select([self.fd], [], [], max(0.0, timeout))
        if not ready:
            return True
        chunk = os.read(self.fd, 1 << 16)
        if not chunk:
            return False
        t = time.monotonic() - self.t0
        text = chunk.decode(errors="replace")
        self.text += text
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        self.events += [(t, line) for line in lines]
        return True

    def expect(self, pattern: str, n: int = 1, timeout: float = 120.0) -> Optional[re.Match]:
        """The ``n``-th match of ``pattern`` (re.M) in stderr, waiting for it; None when the
        child ended first."""
        rx = re.compile(pattern, re.M)
        deadline = time.monotonic() + timeout
        while True:
            found = list(rx.finditer(self.text))
            if len(found) >= n:
                return found[n - 1]
            if not self._read(deadline - time.monotonic()):
                return None
            assert time.monotonic() < deadline, f"timed out waiting for {pattern!r}:\n{self.text[-3000:]}"

    def sleep(self, seconds: float) -> bool:
        """Wait ``seconds`` reading stderr; False when the child ended meanwhile."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if not self._read(deadline - time.monotonic()):
                return False
        return True

    # ---- ending
    def _reap(self, block: bool = True) -> Optional[int]:
        if self.rc is None:
            if self.proc is not None:
                self.rc = self.proc.wait() if block else self.proc.poll()
            else:
                pid, status = os.waitpid(self.pid, 0 if block else os.WNOHANG)
                if pid:
                    self.rc = os.waitstatus_to_exitcode(status)
        return self.rc

    def _drain(self) -> None:
        deadline = time.monotonic() + 10.0
        while self._read(1.0) and time.monotonic() < deadline:
            pass
        if self.fd is not None:
            if self.proc is not None:
                self.proc.stderr.close()
            else:
                os.close(self.fd)
            self.fd = None

    def kill(self) -> int:
        """SIGKILL (unless it already ended); returns the exit code (-9 when killed)."""
        if self._reap(block=False) is None:
            os.kill(self.pid, signal.SIGKILL)
        rc = self._reap()
        self._drain()
        return rc

    def finish(self, timeout: float = 300.0) -> int:
        deadline = time.monotonic() + timeout
        while self._read(deadline - time.monotonic()):
            assert time.monotonic() < deadline, f"child still running after {timeout} s:\n{self.text[-3000:]}"
        rc = self._reap()
        self._drain()
        return rc

    def seconds(self) -> float:
        return time.monotonic() - self.t0


def _ok(child: Child, timeout: float = 300.0) -> Child:
    rc = child.finish(timeout)
    assert rc == 0, f"{child.via} child failed with exit code {rc}:\n{child.text[-4000:]}"
    return child


def _stall_at(part: str, which: str) -> None:
    """In a forked child running with the slow-write hook on: pause only at the marker
    ``which`` (``half``/``full``) of a write whose target contains ``part``, for long (the test
    kills it there), and not at all at the others' markers (a wrapper of the hook's pause)."""
    from ganforge.core import files
    pause = files._slow_pause

    def stall(seconds, what, tmp, path):
        pause(STALL if part in str(path) and what == which else 0.0, what, tmp, path)

    files._slow_pause = stall


def _kill_in_write(fn: Callable[[], Any], part: str, which: str = "half",
                   setup: Optional[Callable[[], None]] = None) -> tuple:
    """Run ``fn`` in a forked child and SIGKILL it at the slow-write marker ``which`` of the
    first write whose target contains ``part``: half of the content in the temporary file, or
    all of it, not renamed. Returns (temporary file, target); the temporary file is checked to
    be there (the kill came inside the write)."""
    def prepare() -> None:
        if setup is not None:
            setup()
        _stall_at(part, which)

    child = Child(fn, env={SLOW_WRITE_ENV: "1"}, setup=prepare)
    m = child.expect(rf"^ganforge-test-slow-write: {which} (.+?) -> (.*{re.escape(part)}.*)$")
    if m is None:
        raise AssertionError(f"the child ended ({child.finish()}) before writing {part}:\n{child.text[-3000:]}")
    rc = child.kill()
    assert rc == -signal.SIGKILL, f"exit code {rc}, not the SIGKILL:\n{child.text[-3000:]}"
    tmp, target = Path(m.group(1)), Path(m.group(2))
    assert tmp.exists(), f"the kill came after the write of {target}"
    return tmp, target


def _temps(folder: Path) -> List[Path]:
    return sorted(p for p in Path(folder).rglob(".*") if p.is_file())


def _preimport() -> None:
    """What every child would otherwise import for itself, imported once here: torch._dynamo
    (torch.optim's first optimizer imports it: ~2 s), matplotlib for the curves, PIL's
    plugins; and torch single-threaded before any fork."""
    import matplotlib
    matplotlib.use("Agg")
    for name in ("torch._dynamo", "matplotlib.backends.backend_agg", "matplotlib.pyplot",
                 "ganforge.metrics.domain.train", "ganforge.metrics.scoring"):
        importlib.import_module(name)
    Image.init()
    torch.set_num_threads(1)


def _blobs_npz(path: Path, n: int = 64, size: int = 8, seed: int = 0, labels: bool = False) -> Path:
    """uint8 (n, size, size): a bright square at a random place (labels: 3 brightnesses)."""
    r = np.random.default_rng(seed)
    x = r.integers(0, 30, size=(n, size, size)).astype(np.uint8)
    y = np.arange(n) % 3
    s = max(2, size // 3)
    for i in range(n):
        a, b = r.integers(0, size - s + 1, 2)
        x[i, a:a + s, b:b + s] = (255, 170, 110)[y[i]] if labels else 255
    np.savez(path, images=x, **({"labels": y} if labels else {}))
    return path


def _rows(path: Path) -> List[dict]:
    """metrics.jsonl: every line must be one complete JSON object, the file ending in a newline."""
    text = path.read_text()
    assert text.endswith("\n"), f"{path} ends in a torn line: {text[-200:]!r}"
    out = []
    for i, line in enumerate(text.split("\n")[:-1], 1):
        try:
            out.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"{path} line {i} is not one JSON row: {line!r}") from None
    return out


def _all_but_last_line_parse(path: Path) -> None:
    """After a kill only the last line of metrics.jsonl may be torn."""
    lines = path.read_text().split("\n")
    for i, line in enumerate(lines[:-2], 1):
        try:
            json.loads(line)
        except ValueError:
            raise AssertionError(f"{path} line {i} (not the last) is torn: {line!r}") from None


def _pixels(path: Path) -> List[np.ndarray]:
    """Every frame of an image file, decoded (fails on a torn file)."""
    with Image.open(path) as im:
        frames = []
        for i in range(getattr(im, "n_frames", 1)):
            im.seek(i)
            frames.append(np.asarray(im.convert("RGB")).copy())
    return frames


# --------------------------------------------------------------------------- 1. the kill test
STEPS = 48          # training steps of the run that is killed
CKPT_EVERY = 2
MIN_KILLS = 30
MAX_KILLS = 45      # then one last session (a real subprocess) runs to the end
SEED = 20261130
#: sessions (numbered from 1) run as a real `python -m ganforge train ... --resume`, killed
#: inside their second checkpoint write: the first resumes what a forked session wrote, the
#: second what the first wrote (and the last session, when MAX_KILLS is reached)
SUBPROCESS_ATTEMPTS = (2, 3)
#: how each kill is timed: (kind, weight)
KINDS = (("startup", 0.10), ("step", 0.38), ("ckpt-write", 0.32), ("other-write", 0.06),
         ("torn-row", 0.14))
#: kinds imposed on some sessions (numbered from 1), so that every kind happens in any run
FORCED = {5: "torn-row", 10: "other-write", 15: "torn-row", 20: "startup", 25: "torn-row"}


def _train_argv(npz: Path, out: Path, steps: int = STEPS, *over: str) -> List[str]:
    return ["train", "--data", str(npz), "--model", "dcgan", "--steps", str(steps),
            "--batch-size", "8", "--seed", "3", "--out", str(out),
            "model.g_width=4", "model.d_width=4", "model.z_dim=8", "ema.half_life=0.05",
            f"log.ckpt_every={CKPT_EVERY}", "log.log_every=1", "log.sample_every=24",
            "log.n_samples=4", "log.keep_last=2", "train.threads=1", "train.device=cpu",
            "log.progress=false", "log.tensorboard=false", *over]


@dataclass
class Kill:
    attempt: int
    via: str
    kind: str
    start: Optional[int]           # the step this session resumed from (None: killed before it said)
    saved: Optional[int]           # the last checkpoint this session completed (None: none)
    reached: Optional[int]         # the last step this session logged (None: none)
    in_ckpt_write: bool = False    # killed with a checkpoint's temporary file not yet renamed
    torn: bool = False             # killed with metrics.jsonl ending in a torn row
    next_start: Optional[int] = None
    seconds: float = 0.0

    @property
    def redone(self) -> int:
        """Steps logged before this kill that the run had to train again."""
        if self.reached is None or self.next_start is None:
            return 0
        return max(0, self.reached - self.next_start)


def _next_argv(argv: List[str], run: Path) -> List[str]:
    """What a user types after a kill: ``--resume`` once the folder holds a run (a kill during
    start-up can leave none: ``--resume`` is then refused, so they start it plainly)."""
    started = runfolder.holds_run(run) or runfolder.started_without_checkpoint(run)
    return argv + (["--resume"] if started else [])


def _start_of(child: Child) -> Optional[int]:
    m = re.search(r"resumed from .* at step (\d+)", child.text)
    if m:
        return int(m.group(1))
    if "has no checkpoint yet" in child.text or "[ganforge] training " in child.text:
        return 0    # started again from step 0 (a kill before the first checkpoint)
    return None


def _fill_next_start(kills: List[Kill], start: Optional[int]) -> None:
    """``start`` (where a session resumed) is where the run went on after the kills before
    it that no later session has yet told (sessions killed before they said where)"""
    if start is None:
        return
    for k in kills[::-1]:
        if k.next_start is not None:
            break
        k.next_start = start


def _plan(rng: random.Random) -> Dict[str, Any]:
    """One kill, drawn before the child starts (so the plan depends on the seed alone)."""
    kind = rng.choices([k for k, _ in KINDS], [w for _, w in KINDS])[0]
    return {"kind": kind, "u": rng.random(), "j": rng.randint(1, 3), "n": rng.randint(1, 4),
            "frac": rng.random()}


@pytest.mark.slow
def test_training_survives_sigkill_at_random_moments(tmp_path):
    """A tiny DCGAN run (48 steps, a checkpoint every 2) is SIGKILLed at 30-45 seeded random
    moments (during start-up, between and inside steps, inside checkpoint writes, inside
    other atomic writes, mid-way through a metrics row) and resumed with --resume after each
    kill; the finished run is bit-identical to an uninterrupted one, and so is its log."""
    t_begin = time.monotonic()
    _preimport()
    npz = _blobs_npz(tmp_path / "blobs.npz")
    ref, run = tmp_path / "ref", tmp_path / "run"

    # The uninterrupted run (it also times a session: start-up, and one step).
    c = _ok(Child(lambda: cli.main(_train_argv(npz, ref)), setup=_report_progress))
    ref_seconds = c.seconds()
    row_times = [t for t, line in c.events if line.startswith("kill-test: row ")]
    assert len(row_times) == STEPS
    t_first = row_times[0]
    period = (row_times[-1] - row_times[0]) / (STEPS - 1)

    rng = random.Random(SEED)
    kills: List[Kill] = []
    sessions: List[Child] = []
    attempt = 0
    while True:
        final = len(kills) >= MAX_KILLS
        plan = None if final else _plan(rng)
        if plan and attempt + 1 in FORCED:
            plan["kind"] = FORCED[attempt + 1]
        if attempt + 1 in SUBPROCESS_ATTEMPTS:    # `python -m ganforge train`, as users run it
            plan = {"kind": "ckpt-write", "n": 3, "u": 0.0, "j": 1, "frac": 0.0}
        via = "subprocess" if final or attempt + 1 in SUBPROCESS_ATTEMPTS else "fork"
        kind = plan["kind"] if plan else "none"
        env = {SLOW_WRITE_ENV: str(SLOW)} if kind in ("ckpt-write", "other-write") else {}
        argv = _next_argv(_train_argv(npz, run), run)
        if via == "subprocess":
            child = Child(argv=argv, env=env)
        else:
            tear = (plan["j"], plan["frac"], STALL) if kind == "torn-row" else None
            child = Child(lambda argv=argv: cli.main(argv), env=env,
                          setup=lambda tear=tear: _report_progress(tear))
        sessions.append(child)
        attempt += 1

        ended, in_write, torn = False, False, False
        if kind == "startup":
            ended = not child.sleep(plan["u"] * t_first)
        elif kind == "step":
            m = child.expect(r"^(?:\[ganforge\] resumed from .* at step (\d+)|"
                             r"\[ganforge\] (?:--resume: .* has no checkpoint yet|training ).*)$")
            if m is None:
                ended = True
            else:
                target = int(m.group(1) or 0) + plan["j"]
                ended = child.expect(rf"^kill-test: row {target}$") is None \
                    or not child.sleep(plan["u"] * 1.5 * period)
        elif kind in ("ckpt-write", "other-write"):
            pat = (r"^ganforge-test-slow-write: (?:half|full) (.+?) -> .*/checkpoints/step-\d+\.pt$"
                   if kind == "ckpt-write" else
                   r"^ganforge-test-slow-write: (?:half|full) (.+?) -> (?!.*/checkpoints/).*$")
            m = child.expect(pat, plan["n"] if kind == "ckpt-write" else 1 + plan["n"] % 2)
            if m is None:
                ended = True
            else:
                tmp = Path(m.group(1))
        elif kind == "torn-row":
            ended = child.expect(r"^kill-test: torn-row \d+ \d+/\d+$") is None
        else:
            ended = True

        if ended or kind == "none":
            rc = child.finish()
            assert rc == 0, (f"session {attempt} ({child.via}, {kind}) failed by itself with "
                             f"exit code {rc}:\n{child.text[-4000:]}")
            _fill_next_start(kills, _start_of(child))
            break
        rc = child.kill()
        assert rc == -signal.SIGKILL, (f"session {attempt} ended with exit code {rc} before the "
                                       f"kill:\n{child.text[-4000:]}")
        if kind in ("ckpt-write", "other-write"):
            in_write = tmp.exists()
        if kind == "torn-row":
            torn = not (run / "metrics.jsonl").read_bytes().endswith(b"\n")
            assert torn
        if (run / "metrics.jsonl").exists():
            _all_but_last_line_parse(run / "metrics.jsonl")
        start = _start_of(child)
        _fill_next_start(kills, start)
        if via == "fork":
            saved = [int(x) for x in re.findall(r"^kill-test: saved (\d+)$", child.text, re.M)]
            rows = [int(x) for x in re.findall(r"^kill-test: row (\d+)$", child.text, re.M)]
        else:       # a subprocess says no more than users see: read the run folder
            saved = []
            rows = [r["step"] for r in _complete_rows(run / "metrics.jsonl")
                    if start is not None and r["step"] > start and "resumed" not in r]
        kills.append(Kill(attempt, via, kind, start, max(saved) if saved else None,
                          max(rows) if rows else None, in_write and kind == "ckpt-write",
                          torn, seconds=child.seconds()))

    # ---- the figures
    killed = len(kills)
    redone = max((k.redone for k in kills if k.next_start is not None), default=0)
    in_ckpt = sum(k.in_ckpt_write for k in kills)
    torn = sum(k.torn for k in kills)
    runtime = time.monotonic() - t_begin   # so far: the finished run is checked below
    print(f"\nkill test: {killed} SIGKILLs survived ({sum(k.via == 'subprocess' for k in kills)} of a "
          f"`python -m ganforge train` subprocess), {STEPS} steps, a checkpoint "
          f"every {CKPT_EVERY}; most steps redone after a kill: {redone}; kills inside a checkpoint "
          f"write: {in_ckpt}; mid-row of metrics.jsonl: {torn}; runtime {runtime:.1f} s "
          f"(uninterrupted run {ref_seconds:.1f} s)")
    print("  #  via         kind         resumed-from  last-saved  reached  next-start  redone  seconds")
    for k in kills:
        print(f"  {k.attempt:<3}{k.via:<12}{k.kind + ('*' if k.in_ckpt_write or k.torn else ''):<13}"
              f"{_dash(k.start):>12}{_dash(k.saved):>12}{_dash(k.reached):>9}{_dash(k.next_start):>12}"
              f"{k.redone:>8}{k.seconds:>9.2f}")
    print(f"  (* inside a checkpoint write / a metrics row torn); final session {sessions[-1].via}, "
          f"{sessions[-1].seconds():.1f} s")
    # ---- every kill: the run went on from its last complete checkpoint, or a newer one
    for k in kills:
        assert k.next_start is not None, f"no session after kill {k.attempt} said where it resumed"
        if k.start is not None:
            assert k.next_start >= k.start, k
        if k.saved is not None:
            assert k.next_start in (k.saved, k.saved + CKPT_EVERY), k
        if k.reached is not None:
            assert k.next_start <= k.reached, k
            assert k.redone <= CKPT_EVERY, k
    for s in sessions:
        assert "is damaged" not in s.text, s.text[-3000:]

    # ---- the finished run is the uninterrupted one, bit for bit
    a, b = ckpt.load_checkpoint(ref), ckpt.load_checkpoint(run)
    assert a["step"] == b["step"] == STEPS
    assert_same_checkpoint(a, b)
    ra, rb = _rows(ref / "metrics.jsonl"), _rows(run / "metrics.jsonl")
    assert [r["step"] for r in rb] == list(range(1, STEPS + 1))       # no step missing or twice
    wall = ("time", "images_per_sec")
    assert [{k: v for k, v in r.items() if k not in wall} for r in ra] == \
           [{k: v for k, v in r.items() if k not in wall} for r in rb]
    assert sorted(p.name for p in (run / "samples").iterdir()) == \
           sorted(p.name for p in (ref / "samples").iterdir())
    for p in (ref / "samples").iterdir():
        assert all(np.array_equal(x, y) for x, y in zip(_pixels(p), _pixels(run / "samples" / p.name)))
    assert len(_pixels(run / "training.gif")) == len(list((ref / "samples").iterdir()))
    _pixels(run / "curves.png")
    assert _temps(run) == [], f"stray files after the run finished: {_temps(run)}"
    assert not list(run.rglob("*.damaged*"))

    assert killed >= MIN_KILLS, f"the run finished after only {killed} kills"
    assert in_ckpt >= 5 and torn >= 3
    assert redone <= CKPT_EVERY


def _dash(v: Optional[int]) -> str:
    return "-" if v is None else str(v)


def _complete_rows(path: Path) -> List[dict]:
    """The rows of metrics.jsonl that are complete lines (a torn last line left out)."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text().split("\n")[:-1]:
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


# --------------------------------------------------------------------------- 2. metrics.jsonl
def test_a_torn_metrics_row_is_repaired_on_resume(tmp_path):
    """Kills mid-row: a "resumed" row cut just before its newline, a metrics row cut in the
    middle, a "resumed" row cut after its first byte. After each kill only the last line is
    torn; after the run finishes the log parses line by line, has every step once, and ends
    at the final step. (A single small append is one write(2), which a SIGKILL does not cut;
    the child writes the row in two parts to stand for what a power cut or a full disk leaves.)"""
    _preimport()
    npz = _blobs_npz(tmp_path / "blobs.npz")
    run, log = tmp_path / "run", tmp_path / "run" / "metrics.jsonl"
    _ok(Child(lambda: cli.main(_train_argv(npz, run, 4))))
    # Resumed with a higher --steps: each session's first row is a "resumed" row at step 4.
    for k, frac in ((1, 1.0), (3, 0.5), (1, 0.0)):
        child = Child(lambda: cli.main(_train_argv(npz, run, 8) + ["--resume"]),
                      setup=lambda k=k, frac=frac: _report_progress((k, frac, STALL)))
        m = child.expect(r"^kill-test: torn-row (\d+) (\d+)/(\d+)$")
        assert m is not None, child.text[-3000:]
        assert child.kill() == -signal.SIGKILL
        assert not log.read_bytes().endswith(b"\n")         # torn
        _all_but_last_line_parse(log)
    _ok(Child(lambda: cli.main(_train_argv(npz, run, 8) + ["--resume"])))
    rows = _rows(log)
    metrics = [r["step"] for r in rows if "resumed" not in r]
    assert metrics == list(range(1, 9)) and rows[-1]["step"] == 8
    assert {r["step"] for r in rows if "resumed" in r} == {4}
    assert ckpt.load_checkpoint(run)["step"] == 8
    assert _temps(run) == []


@pytest.mark.parametrize("resume_step", [3, 2])
def test_repair_log_mends_any_cut_of_the_last_row(tmp_path, resume_step):
    """The last row cut at every byte (a crash mid-append): the repaired log is whole lines
    only (the cut row kept when it is complete and not after the resume step) and the next
    append makes a line of its own."""
    from ganforge.core.runfolder import repair_log
    head = "".join(json.dumps({"step": s, "loss_D": 0.5 + s}) + "\n" for s in (1, 2))
    last = json.dumps({"step": 3, "resumed": True, "changed": {"train.steps": [3, 9]}}) + "\n"
    path = tmp_path / "metrics.jsonl"
    for cut in range(len(last) + 1):
        path.write_text(head + last[:cut])
        repair_log(tmp_path, resume_step)
        with open(path, "a") as f:                 # what the trainer does next (Artifacts.log)
            f.write(json.dumps({"step": resume_step + 1}) + "\n")
        rows = _rows(path)
        kept = cut >= len(last) - 1 and resume_step >= 3
        assert [r["step"] for r in rows] == [1, 2] + ([3] if kept else []) + [resume_step + 1], cut


# --------------------------------------------------------------------------- 2. the data cache
def test_decoded_data_cache_write_killed(tmp_path):
    """The decoded-dataset cache (ganforge/data/cache.py, an .npy array + a .json metadata
    file that is written last): killed half-way through the array's first write, there is no
    entry; the next load decodes again, gives the same images and writes the entry; a writer
    replacing an entry, killed with the new array written but not renamed, leaves the old one,
    which still loads. Stray temporary files stay in the shared cache folder (not swept:
    several processes may write it at once, e.g. torchrun ranks); they are harmless: hidden
    ``.<key>.npy.<random>.tmp`` names that no reader opens."""
    from ganforge.data import cache, load_dataset
    _preimport()
    npz = _blobs_npz(tmp_path / "d.npz", n=40)
    direct = load_dataset(str(npz), cache=False).images

    def load() -> int:
        load_dataset(str(npz))
        return 0

    tmp, entry = _kill_in_write(load, "/arrays/", "half")
    assert entry.suffix == ".npy" and 0 < tmp.stat().st_size
    assert not entry.exists() and not entry.with_suffix(".json").exists()
    assert torch.equal(load_dataset(str(npz)).images, direct)
    assert entry.exists() and entry.with_suffix(".json").exists()
    old = entry.read_bytes()

    def replace() -> int:
        ds = cache.load(entry.stem)
        ds.base_images = 255 - ds.images
        cache.save(entry.stem, ds)
        return 0

    _kill_in_write(replace, entry.name, "full")
    assert entry.read_bytes() == old
    assert torch.equal(cache.load(entry.stem).images, direct)
    assert torch.equal(load_dataset(str(npz)).images, direct)
    left = _temps(entry.parent)
    assert len(left) == 2 and all(p.name.startswith(f".{entry.name}.") and p.name.endswith(".tmp")
                                  for p in left)
    print(f"\ndata cache: {len(left)} temporary files of killed writes left in {entry.parent.name}/ "
          f"(never read; not swept)")


# ------------------------------------------------------------ 2. evaluator file, reference features
def test_evaluator_file_and_reference_features_writes_killed(tmp_path):
    """The domain evaluator file (train_evaluator -> save_evaluator): retrained over an
    existing one and killed with the new file written but not renamed, the old one loads
    unchanged; a new one killed half-way is absent (a clear "does not exist"); the next
    writer leaves the new file complete, and the evaluator is found by its dataset despite the
    temporary files next to it. The reference-feature cache (scoring.real_features): killed
    half-way through its first write, there is no entry; the next call computes the same
    features and writes it. Temporary files of killed writes stay in the shared cache folders
    (harmless, never read; not swept)."""
    from ganforge.metrics.domain.network import (
        EvaluatorError,
        default_evaluator_path,
        load_evaluator,
    )
    from ganforge.metrics.domain.train import train_evaluator
    from ganforge.metrics.scoring import get_extractor, real_features
    _preimport()
    npz = _blobs_npz(tmp_path / "shapes.npz", n=48, size=16, labels=True)
    path = default_evaluator_path(str(npz), 16)

    def train(seed: int, out: Optional[Path] = None) -> Callable[[], int]:
        def run() -> int:
            train_evaluator(str(npz), epochs=1, batch_size=16, seed=seed, out=out, progress=False,
                            threads=1, widths=(8, 16, 32), fc=32)
            return 0
        return run

    _ok(Child(train(0)))
    h0 = load_evaluator(path).weights_hash
    _kill_in_write(train(1), path.name, "full")
    assert load_evaluator(path).weights_hash == h0
    new = tmp_path / "new.pt"
    _kill_in_write(train(1, new), new.name, "half")
    assert not new.exists()
    with pytest.raises(EvaluatorError, match="does not exist"):
        load_evaluator(new)
    _ok(Child(train(1)))
    ev = load_evaluator(str(npz))
    assert ev.path == path and ev.weights_hash != h0
    left = [p for p in _temps(path.parent)] + [p for p in _temps(tmp_path) if p.parent == tmp_path]
    assert len(left) == 2

    ex = get_extractor("domain", data_spec=str(npz))

    def features() -> int:
        real_features(ex, str(npz), "train")
        return 0

    _, entry = _kill_in_write(features, "/refstats/", "half")
    assert not entry.exists()
    got = real_features(ex, str(npz), "train")
    assert entry.exists()
    want = real_features(ex, str(npz), "train", cache=False)
    assert torch.equal(got["features"], want["features"]) and got["key"] == want["key"]
    again = torch.load(entry, map_location="cpu", weights_only=True)
    assert torch.equal(again["features"], want["features"])
    assert len(_temps(entry.parent)) == 1
    print(f"\nevaluator/refstats: {len(left) + 1} temporary files of killed writes left in the "
          f"cache and --out folders (never read; not swept)")


# --------------------------------------------------------------------------- 2. grids and GIF
def _pause_before_probe_removal() -> None:
    """In a forked child: before removing a ``.ganforge-write-test*`` probe file, say
    ``kill-test: probe PATH`` and pause (the test kills the child there)."""
    import pathlib
    unlink = pathlib.Path.unlink

    def paused(self, *a, **k):
        if self.name.startswith(".ganforge-write-test"):
            _say(f"probe {self}")
            time.sleep(STALL)
        return unlink(self, *a, **k)

    pathlib.Path.unlink = paused


def test_sample_grids_and_gif_writes_killed(tmp_path):
    """The --out writability probe, killed before it is removed; grids (samples/step-N.png)
    and training.gif, killed half-way through a first write
    (absent), and through a rewrite with the new file written but not renamed (the old one,
    byte for byte); a kill in the final GIF write after the last checkpoint, then --resume:
    the GIF is made. At the end every grid and the GIF equal an uninterrupted run's, and no
    temporary file is left in the run folder (the next session sweeps them)."""
    _preimport()
    npz = _blobs_npz(tmp_path / "blobs.npz")
    ref, run = tmp_path / "ref", tmp_path / "run"
    over = ("log.ckpt_every=4", "log.sample_every=4", "log.log_every=2")
    _ok(Child(lambda: cli.main(_train_argv(npz, ref, 8, *over))))
    grid = lambda s: run / "samples" / f"step-{s:07d}.png"   # noqa: E731
    gif = run / "training.gif"

    def argv() -> List[str]:    # what a user types next (see _next_argv)
        return _next_argv(_train_argv(npz, run, 8, *over), run)

    def killed(part: str, which: str) -> None:
        _kill_in_write(lambda: cli.main(argv()), part, which)

    # Killed between the write and the removal of the --out writability probe (a wrapper of
    # Path.unlink in the child pauses there): the probe file is left, for the next session.
    child = Child(lambda: cli.main(argv()), setup=_pause_before_probe_removal)
    m = child.expect(r"^kill-test: probe (.+)$")
    assert m is not None and child.kill() == -signal.SIGKILL, child.text[-3000:]
    assert Path(m.group(1)).exists()
    killed("samples/step-0000004.png", "half")          # a new grid: absent
    assert not grid(4).exists() and grid(0).exists()
    before = grid(0).read_bytes()
    killed("samples/step-0000000.png", "full")          # a new run rewrites its first grid
    assert grid(0).read_bytes() == before
    killed("checkpoints/step-000000008.pt", "full")     # resumes from step 4 next
    before = grid(8).read_bytes()
    killed("samples/step-0000008.png", "half")          # the grid of step 8 again
    assert grid(8).read_bytes() == before
    killed("training.gif", "half")                      # after the last checkpoint
    assert not gif.exists() and ckpt.load_checkpoint(run)["step"] == 8
    c = _ok(Child(lambda: cli.main(argv())))            # nothing left to train...
    assert "nothing to do" in c.text
    assert gif.exists(), "the GIF a kill prevented was not made on --resume"   # ...but the GIF
    before = gif.read_bytes()
    killed("training.gif", "full")
    assert gif.read_bytes() == before
    _ok(Child(lambda: cli.main(argv())))
    for p in (ref / "samples").iterdir():
        assert all(np.array_equal(a, b) for a, b in zip(_pixels(p), _pixels(run / "samples" / p.name)))
    assert sorted(p.name for p in (run / "samples").iterdir()) == \
           sorted(p.name for p in (ref / "samples").iterdir())
    a, b = _pixels(ref / "training.gif"), _pixels(gif)
    assert len(a) == len(b) == 3 and all(np.array_equal(x, y) for x, y in zip(a, b))
    assert _temps(run) == [], _temps(run)
