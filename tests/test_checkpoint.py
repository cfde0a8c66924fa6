"""Checkpoints: durable atomic writes, full disks, checksums, fallback to the newest good one,
pruning that keeps a verifying one, and loading that never runs code (ganforge/core/checkpoint.py,
ganforge/core/files.py)."""
import errno
import io
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import warnings
import zipfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ganforge.core import checkpoint as ckpt
from ganforge.core import files
from ganforge.core.checkpoint import (
    CheckpointError,
    CheckpointWarning,
    CheckpointWriteError,
    find_checkpoint,
    latest_step,
    load_checkpoint,
    load_latest_good,
    save_best,
    save_checkpoint,
    state_checksum,
)
from ganforge.core.errors import RunError, UserError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _fresh_cache():
    ckpt._forget()
    yield
    ckpt._forget()


def state(step, n=64, seed=None):
    g = torch.Generator().manual_seed(step if seed is None else seed)
    return {"step": step, "w": torch.randn(n, generator=g), "opt": {"lr": 1e-3, "betas": (0.5, 0.999)},
            "names": ["a", "b"], "ok": True, "none": None}


def ckdir(run):
    return Path(run) / "checkpoints"


def temps(folder):
    return sorted(p.name for p in Path(folder).iterdir() if p.name.startswith(".") and p.name.endswith(".tmp"))


def same_file(a, b):
    return os.path.samefile(a, b)


def one_line(e):
    s = str(e)
    assert "\n" not in s, s
    return s


def storage_offset_in_zip(path, tensor_index=0):
    """Byte offset of the first byte of a tensor storage record inside a torch zip file."""
    with zipfile.ZipFile(path) as z:
        info = next(i for i in z.infolist() if i.filename.endswith(f"/data/{tensor_index}"))
    raw = Path(path).read_bytes()
    off = info.header_offset
    name_len = int.from_bytes(raw[off + 26:off + 28], "little")
    extra_len = int.from_bytes(raw[off + 28:off + 30], "little")
    return off + 30 + name_len + extra_len, info.file_size


def flip_byte(path, pos):
    b = bytearray(Path(path).read_bytes())
    b[pos] ^= 0xFF
    Path(path).write_bytes(bytes(b))


def truncate(path, keep=0.5):
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(int(size * keep))


# --------------------------------------------------------------------------- files.py: durable writes
def test_atomic_write_fsyncs_file_before_rename_and_folder_after(tmp_path, monkeypatch):
    calls = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        import stat
        calls.append("fsync-dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync-file")
        return real_fsync(fd)

    def replace(a, b):
        calls.append("replace")
        return real_replace(a, b)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    target = tmp_path / "sub" / "x.bin"
    files.atomic_write_bytes(target, b"hello")
    assert target.read_bytes() == b"hello"
    assert calls == ["fsync-file", "replace", "fsync-dir"]
    assert temps(target.parent) == []


def test_torch_save_failing_half_way_leaves_old_file_and_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "x.pt"
    files.atomic_save({"v": torch.arange(10)}, target)
    before = target.read_bytes()

    real_save = torch.save

    def half_then_fail(obj, f):
        buf = io.BytesIO()
        real_save(obj, buf)
        f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
        f.flush()
        raise RuntimeError("simulated crash mid-write")

    monkeypatch.setattr(files.torch, "save", half_then_fail)
    with pytest.raises(RuntimeError, match="simulated crash"):
        files.atomic_save({"v": torch.arange(1000)}, target)
    assert target.read_bytes() == before
    assert temps(tmp_path) == []


def test_ctrl_c_mid_write_removes_temp(tmp_path):
    target = tmp_path / "x.bin"
    target.write_bytes(b"old")

    def write(f):
        f.write(b"new but half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        files.atomic_write(target, write)
    assert target.read_bytes() == b"old" and temps(tmp_path) == []


def test_verify_hook_can_refuse_the_file(tmp_path):
    target = tmp_path / "x.bin"
    target.write_bytes(b"old")

    def refuse(tmp):
        assert Path(tmp).read_bytes() == b"new" and Path(tmp).parent == tmp_path
        raise ValueError("refused")

    with pytest.raises(ValueError, match="refused"):
        files.atomic_write(target, lambda f: f.write(b"new"), verify=refuse)
    assert target.read_bytes() == b"old" and temps(tmp_path) == []


def test_torch_full_disk_error_becomes_oserror_with_errno(tmp_path, monkeypatch):
    def full(obj, f):
        f.write(b"PK")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")

    monkeypatch.setattr(files.torch, "save", full)
    with pytest.raises(OSError) as ei:
        files.atomic_save({"a": 1}, tmp_path / "x.pt")
    assert ei.value.errno == errno.ENOSPC and "x.pt" in str(ei.value)
    assert temps(tmp_path) == [] and not (tmp_path / "x.pt").exists()


def test_disk_full_errno_recognises_the_ways_a_full_disk_shows():
    assert files.disk_full_errno(OSError(errno.ENOSPC, "full")) == errno.ENOSPC
    assert files.disk_full_errno(OSError(errno.EFBIG, "too large")) == errno.EFBIG
    assert files.disk_full_errno(OSError(errno.EACCES, "denied")) is None
    assert files.disk_full_errno(ValueError("x")) is None
    torch_err = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")
    assert files.disk_full_errno(torch_err) == errno.ENOSPC          # written to a path: no cause
    try:
        try:
            raise OSError(errno.EFBIG, "File too large")
        except OSError:
            raise torch_err  # noqa: B904 - the implicit chaining (__context__) is what is tested
    except RuntimeError as e:
        assert files.disk_full_errno(e) == errno.EFBIG               # the chained OSError decides
    try:
        try:
            raise OSError(errno.EIO, "I/O error")
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 1 vs 2")  # noqa: B904
    except RuntimeError as e:
        assert files.disk_full_errno(e) is None                      # not a full disk


def test_atomic_link_hard_links_or_copies(tmp_path, monkeypatch):
    src = tmp_path / "a.pt"
    src.write_bytes(b"content")
    files.atomic_link(src, tmp_path / "l.pt")
    assert same_file(src, tmp_path / "l.pt")

    def no_links(a, b):
        raise OSError(errno.EPERM, "no hard links here")

    monkeypatch.setattr(os, "link", no_links)
    files.atomic_link(src, tmp_path / "c.pt")
    assert (tmp_path / "c.pt").read_bytes() == b"content" and not same_file(src, tmp_path / "c.pt")
    assert temps(tmp_path) == []


def test_remove_stale_temps_only_removes_temporaries(tmp_path):
    for n in (".step-000000001.pt.1a2b3c4d.tmp", ".latest.pt.tmp", "step-000000001.pt", "notes.tmp"):
        (tmp_path / n).write_bytes(b"x")
    removed = files.remove_stale_temps(tmp_path)
    assert sorted(p.name for p in removed) == [".latest.pt.tmp", ".step-000000001.pt.1a2b3c4d.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.tmp", "step-000000001.pt"]


def test_slow_write_hook_pauses_half_way_and_before_rename(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(files.SLOW_WRITE_ENV, "0.01")
    target = tmp_path / "x.pt"
    files.atomic_save({"v": torch.arange(100)}, target)
    err = capsys.readouterr().err.splitlines()
    assert [line.split()[1] for line in err] == ["half", "full"]
    assert all(str(target) in line for line in err)
    assert torch.equal(torch.load(target, weights_only=True)["v"], torch.arange(100))


def test_sigkill_inside_a_slow_checkpoint_write_keeps_latest(tmp_path):
    """The hook for kill tests: SIGKILL with the temp file half written; latest.pt survives,
    and the next save sweeps the orphaned temp file."""
    run = tmp_path / "run"
    save_checkpoint(state(1), run, 1)
    script = textwrap.dedent(f"""
        import torch
        from ganforge.core.checkpoint import save_checkpoint
        save_checkpoint({{"step": 2, "w": torch.randn(200000)}}, {str(run)!r}, 2)
    """)
    env = {**os.environ, files.SLOW_WRITE_ENV: "30"}
    p = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
    try:
        line = p.stderr.readline()
        assert line.startswith("ganforge-test-slow-write: half"), line
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        p.stderr.close()
    assert len(temps(ckdir(run))) == 1                     # the orphan a SIGKILL leaves
    assert load_checkpoint(run)["step"] == 1
    assert latest_step(run) == 1
    save_checkpoint(state(3), run, 3)
    assert temps(ckdir(run)) == [] and load_checkpoint(run)["step"] == 3


# --------------------------------------------------------------------------- save_checkpoint
def test_save_checkpoint_writes_checksum_links_latest_and_loads_back(tmp_path):
    run = tmp_path / "run"
    s = state(5)
    path = save_checkpoint(s, run, 5)
    assert path == ckdir(run) / "step-000000005.pt"
    assert "checksum" not in s                               # the caller's dict is untouched
    raw = torch.load(path, weights_only=True)
    assert raw["checksum_scheme"] == "sha256-walk-1" and "checksum_scheme" not in s
    assert raw["checksum"] == state_checksum({**s, "checksum_scheme": "sha256-walk-1"})
    assert raw["checksum"].startswith("sha256:")
    assert same_file(path, ckdir(run) / "latest.pt")
    back = load_checkpoint(run)
    assert "checksum" not in back and "checksum_scheme" not in back and list(back) == list(s)
    assert torch.equal(back["w"], s["w"]) and back["opt"] == s["opt"]
    assert temps(ckdir(run)) == []


def test_pruning_keeps_last_n_and_never_the_latest(tmp_path):
    run = tmp_path / "run"
    for step in range(1, 6):
        save_checkpoint(state(step), run, step, keep_last=2)
    names = sorted(p.name for p in ckdir(run).iterdir())
    assert names == ["latest.pt", "step-000000004.pt", "step-000000005.pt"]
    save_checkpoint(state(6), run, 6, keep_last=0)           # 0 still keeps the newest
    assert sorted(p.name for p in ckdir(run).iterdir()) == ["latest.pt", "step-000000006.pt"]


def test_a_write_that_does_not_read_back_is_refused_and_nothing_is_pruned(tmp_path, monkeypatch):
    """Pruning keeps a verifying checkpoint: the new one is read back before any old one goes."""
    run = tmp_path / "run"
    save_checkpoint(state(1), run, 1, keep_last=1)
    real_save = torch.save

    def corrupting_save(obj, f):      # bytes change between memory and disk (bad RAM/disk)
        bad = dict(obj)
        bad["w"] = obj["w"].clone()
        bad["w"][0] += 1
        real_save(bad, f)

    monkeypatch.setattr(files.torch, "save", corrupting_save)
    with pytest.raises(CheckpointWriteError) as ei:
        save_checkpoint(state(2), run, 2, keep_last=1)
    msg = one_line(ei.value)
    assert "did not read back intact" in msg and "latest.pt (step 1) is intact" in msg
    assert isinstance(ei.value, RunError) and ei.value.exit_code == 1
    assert sorted(p.name for p in ckdir(run).iterdir()) == ["latest.pt", "step-000000001.pt"]
    assert load_checkpoint(run)["step"] == 1


def test_injected_crash_mid_checkpoint_leaves_latest_intact(tmp_path, monkeypatch):
    run = tmp_path / "run"
    save_checkpoint(state(1), run, 1)
    real_save = torch.save

    def half(obj, f):
        buf = io.BytesIO()
        real_save(obj, buf)
        f.write(buf.getvalue()[:100])
        raise RuntimeError("killed")

    monkeypatch.setattr(files.torch, "save", half)
    with pytest.raises(RuntimeError, match="killed"):
        save_checkpoint(state(2), run, 2)
    assert temps(ckdir(run)) == [] and not (ckdir(run) / "step-000000002.pt").exists()
    assert load_checkpoint(run)["step"] == 1


_FULL_DISK_SCRIPT = """
import json, resource, signal, sys, torch
from ganforge.core.checkpoint import CheckpointWriteError, save_checkpoint
from ganforge.core.errors import RunError
run, first = sys.argv[1], sys.argv[2] == "1"
if first:
    save_checkpoint({"step": 1, "w": torch.zeros(10)}, run, 1)
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)     # else the kernel kills us instead of EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
try:
    save_checkpoint({"step": 2, "w": torch.randn(200000)}, run, 2)
except CheckpointWriteError as e:
    print(json.dumps({"msg": str(e), "run_error": isinstance(e, RunError)}))
else:
    print(json.dumps({"msg": None}))
"""


@pytest.mark.parametrize("first", [True, False], ids=["after-a-checkpoint", "no-checkpoint-yet"])
def test_file_size_limit_is_a_clear_run_error(tmp_path, first):
    """A real EFBIG (RLIMIT_FSIZE) inside torch.save, in a subprocess."""
    run = tmp_path / "run"
    r = subprocess.run([sys.executable, "-c", _FULL_DISK_SCRIPT, str(run), "1" if first else "0"],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    import json
    out = json.loads(r.stdout.strip().splitlines()[-1])
    path = ckdir(run) / "step-000000002.pt"
    assert out["run_error"]
    assert out["msg"].startswith(f"no space left on device writing {path}; ")
    assert out["msg"].endswith("; free space and --resume")
    assert ("latest.pt (step 1) is intact" if first else "no checkpoint was written yet") in out["msg"]
    assert "\n" not in out["msg"]
    assert temps(ckdir(run)) == [] and not path.exists()
    if first:
        assert load_checkpoint(run)["step"] == 1


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A 1 MiB tmpfs (root only; skipped where mounting is not allowed)."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("needs root to mount a tmpfs")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_full_tmpfs_is_a_clear_run_error(tiny_tmpfs):
    run = tiny_tmpfs / "run"
    save_checkpoint(state(1), run, 1)
    with pytest.raises(CheckpointWriteError) as ei:
        save_checkpoint({"step": 2, "w": torch.randn(400_000)}, run, 2)     # 1.6 MB > 1 MiB
    msg = one_line(ei.value)
    assert msg == (f"no space left on device writing {ckdir(run) / 'step-000000002.pt'}; "
                   f"latest.pt (step 1) is intact; free space and --resume")
    assert temps(ckdir(run)) == []
    assert load_checkpoint(run)["step"] == 1
    save_checkpoint(state(3), run, 3)                        # space is back: the run goes on
    assert load_checkpoint(run)["step"] == 3


# --------------------------------------------------------------------------- checksum
def test_checksum_survives_save_and_load_of_every_kind_of_value(tmp_path):
    base = torch.randn(2, 3, 4, 4)
    s = {"none": None, "t": True, "f": False, "i": 7, "big": 2 ** 70, "x": float("nan"), "y": -0.0,
         "s": "ünïcode", "b": b"\x00\x01", "tup": (1, 2.5, "x"), "lst": [[], {}, ()],
         "nested": {"a": {"b": [torch.ones(2)]}}, 3: "int key",
         "bf16": torch.randn(5).to(torch.bfloat16), "bool": torch.tensor([True, False]),
         "scalar": torch.tensor(3.0), "empty": torch.zeros(0, 3), "i64": torch.arange(5),
         "channels_last": base.contiguous(memory_format=torch.channels_last),
         "view": base[:, 1], "T": torch.randn(3, 4).t(), "dtype": torch.float16}
    p = tmp_path / "x.pt"
    torch.save(s, p)
    assert state_checksum(torch.load(p, weights_only=True)) == state_checksum(s)
    save_checkpoint(s, tmp_path / "run", 1)
    back = load_checkpoint(tmp_path / "run")
    assert state_checksum(back) == state_checksum(s)


@pytest.mark.parametrize("a,b", [
    ({"v": 1}, {"v": True}), ({"v": 1}, {"v": 1.0}), ({"v": 1}, {"v": "1"}), ({"v": [1]}, {"v": (1,)}),
    ({"v": torch.zeros(4)}, {"v": torch.zeros(2, 2)}), ({"v": torch.zeros(2)}, {"v": torch.zeros(2, dtype=torch.int32)}),
    ({"v": torch.tensor([1.0, 2.0])}, {"v": torch.tensor([1.0, 2.5])}), ({"a": 1, "b": 2}, {"b": 2, "a": 1}),
    ({"v": ["ab", "c"]}, {"v": ["a", "bc"]}), ({"v": None}, {"v": "None"}),
])
def test_checksum_tells_different_states_apart(a, b):
    assert state_checksum(a) != state_checksum(b)


def test_checksum_ignores_its_own_key():
    s = state(1)
    assert state_checksum({**s, "checksum": "sha256:whatever"}) == state_checksum(s)


def test_flipped_byte_in_a_tensor_is_a_checksum_error_naming_the_file(tmp_path):
    run = tmp_path / "run"
    path = save_checkpoint(state(1, n=1000), run, 1)
    off, size = storage_offset_in_zip(path)
    flip_byte(path, off + size // 2)
    with pytest.raises(CheckpointError) as ei:
        load_checkpoint(path)
    msg = one_line(ei.value)
    assert str(path) in msg and "checksum mismatch" in msg
    assert isinstance(ei.value, UserError) and ei.value.exit_code == 2


def test_old_checkpoint_without_checksum_loads_without_warning(tmp_path):
    d = ckdir(tmp_path / "run")
    d.mkdir(parents=True)
    torch.save(state(4), d / "step-000000004.pt")
    os.link(d / "step-000000004.pt", d / "latest.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        back = load_checkpoint(tmp_path / "run")
        assert back["step"] == 4 and "checksum" not in back
        assert load_checkpoint(find_checkpoint(tmp_path / "run"))["step"] == 4


# --------------------------------------------------------------------------- fallback
def three(run, **kw):
    return [save_checkpoint(state(s), run, s, **kw) for s in (1, 2, 3)]


@pytest.mark.parametrize("damage", ["truncate", "checksum", "empty", "garbage"])
def test_damaged_newest_falls_back_to_the_next_older(tmp_path, damage):
    run = tmp_path / "run"
    p1, p2, p3 = three(run)
    if damage == "truncate":
        truncate(p3)
    elif damage == "checksum":
        off, size = storage_offset_in_zip(p3)
        flip_byte(p3, off + 3)
    elif damage == "empty":
        truncate(p3, 0)
    else:
        p3.write_bytes(os.urandom(2000))                     # a new inode: latest.pt keeps the old
        os.unlink(ckdir(run) / "latest.pt")
        os.link(p3, ckdir(run) / "latest.pt")
    with pytest.warns(CheckpointWarning) as rec:
        found = find_checkpoint(run)
    assert found == p2
    assert len(rec) == 1
    msg = str(rec[0].message)
    assert "\n" not in msg and str(p3) in msg and "step-000000003.pt.damaged" in msg and str(p2) in msg
    assert not p3.exists() and (ckdir(run) / "step-000000003.pt.damaged").exists()   # never deleted
    assert same_file(ckdir(run) / "latest.pt", p2)                                   # re-pointed
    assert load_checkpoint(found)["step"] == 2
    assert latest_step(run) == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")                   # settled: no warning the second time
        assert load_checkpoint(run)["step"] == 2


def test_load_checkpoint_on_a_run_folder_falls_back_too(tmp_path):
    run = tmp_path / "run"
    _, p2, p3 = three(run)
    truncate(p3, 0.9)
    with pytest.warns(CheckpointWarning, match="step-000000003.pt"):
        path, st_ = load_latest_good(run)
    assert path == p2 and st_["step"] == 2


def test_every_checkpoint_damaged_is_one_error_and_nothing_is_deleted(tmp_path):
    run = tmp_path / "run"
    paths = three(run)
    for p in paths:
        truncate(p, 0.3)
    with pytest.raises(CheckpointError) as ei:
        find_checkpoint(run)
    msg = one_line(ei.value)
    assert "no checkpoint in" in msg and all(p.name in msg for p in paths)
    left = sorted(p.name for p in ckdir(run).iterdir())
    assert left == [p.name + ".damaged" for p in paths]


def test_latest_copy_damaged_and_numbered_ones_fine(tmp_path):
    """A run folder copied with cp -r: latest.pt is a copy, not a hard link."""
    run = tmp_path / "run"
    three(run)
    latest = ckdir(run) / "latest.pt"
    data = latest.read_bytes()
    latest.unlink()
    latest.write_bytes(data[: len(data) // 2])
    with pytest.warns(CheckpointWarning, match="latest.pt"):
        found = find_checkpoint(run)
    assert found == ckdir(run) / "step-000000003.pt"
    assert (ckdir(run) / "latest.pt.damaged").exists()
    assert load_checkpoint(found)["step"] == 3


def test_latest_copy_good_is_read_once(tmp_path, monkeypatch):
    run = tmp_path / "run"
    three(run)
    latest = ckdir(run) / "latest.pt"
    data = latest.read_bytes()
    latest.unlink()
    latest.write_bytes(data)
    loads = count_loads(monkeypatch)
    assert find_checkpoint(run) == latest and load_checkpoint(latest)["step"] == 3
    assert len(loads) == 1


def test_latest_pt_is_trusted_over_a_higher_numbered_file(tmp_path):
    """A fresh run into a folder that an older, longer run left a step-9 in: latest.pt (this
    run's newest) is used, and the stale file is tried only after older ones."""
    run = tmp_path / "run"
    old = save_checkpoint(state(9), run, 9)
    _, p2, p3 = three(run)
    assert old.exists() and same_file(ckdir(run) / "latest.pt", p3)
    assert find_checkpoint(run) == ckdir(run) / "latest.pt"
    assert load_checkpoint(run)["step"] == 3
    truncate(p3)
    with pytest.warns(CheckpointWarning, match="step-000000003.pt"):
        path, got = load_latest_good(run)
    assert path == p2 and got["step"] == 2


def test_best_without_a_best_checkpoint_is_refused(tmp_path):
    from ganforge.cli import main
    run = tmp_path / "run"
    save_checkpoint({"step": 1}, run, 1)
    with pytest.raises(CheckpointError, match=r"no best\.pt; .*--eval-every N\); use --checkpoint latest"):
        find_checkpoint(run, "best")
    assert main(["sample", str(run), "--checkpoint", "best", "--n", "1", "--out",
                 str(tmp_path / "x.png")]) == 2
    assert not (tmp_path / "x.png").exists()


def test_damaged_best_falls_back_to_latest(tmp_path):
    run = tmp_path / "run"
    p1 = save_checkpoint(state(1), run, 1)
    save_best(run, p1)
    save_checkpoint(state(2), run, 2)
    assert load_checkpoint(find_checkpoint(run, "best"))["step"] == 1
    best = ckdir(run) / "best.pt"
    data = best.read_bytes()
    best.unlink()
    best.write_bytes(data[:50])
    with pytest.warns(CheckpointWarning, match="best.pt"):
        found = find_checkpoint(run, "best")
    assert load_checkpoint(found)["step"] == 2 and (ckdir(run) / "best.pt.damaged").exists()


def count_loads(monkeypatch):
    loads = []
    real = torch.load

    def counting(*a, **k):
        loads.append(a[0] if a else k.get("f"))
        return real(*a, **k)

    monkeypatch.setattr(ckpt.torch, "load", counting)
    return loads


def test_find_then_load_reads_the_file_once(tmp_path, monkeypatch):
    run = tmp_path / "run"
    three(run)
    loads = count_loads(monkeypatch)
    path = find_checkpoint(run)
    st1 = load_checkpoint(path, map_location="cpu")
    assert st1["step"] == 3 and len(loads) == 1
    assert load_checkpoint(run)["step"] == 3 and len(loads) == 2
    assert find_checkpoint(path) == path and len(loads) == 2          # a file is not read
    st2 = load_checkpoint(path)                                        # the cached state was taken
    assert len(loads) == 3 and st2 is not st1


def test_cached_state_is_not_used_once_the_file_changed(tmp_path):
    run = tmp_path / "run"
    three(run)
    path = find_checkpoint(run)
    save_checkpoint(state(99), run, 3)                # same name, new content
    assert load_checkpoint(path)["step"] == 99


def test_pruning_after_fallback_keeps_the_good_one(tmp_path):
    run = tmp_path / "run"
    _, p2, p3 = three(run, keep_last=3)
    truncate(p3)
    with pytest.warns(CheckpointWarning):
        assert load_checkpoint(run)["step"] == 2
    for step in (4, 5):
        save_checkpoint(state(step), run, step, keep_last=1)
    names = sorted(p.name for p in ckdir(run).iterdir())
    assert names == ["latest.pt", "step-000000003.pt.damaged", "step-000000005.pt"]


# --------------------------------------------------------------------------- loading never runs code
class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/ganforge-checkpoint-pwned",))


def _zip_not_torch(p):
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("hello.txt", "hi")


@pytest.mark.parametrize("kind", ["code", "random", "empty", "dir", "zip", "tensor", "truncated", "text"])
def test_bad_files_are_one_line_errors_naming_the_file(tmp_path, kind):
    p = tmp_path / "x.pt"
    if kind == "code":
        torch.save({"x": _Evil()}, p)
    elif kind == "random":
        p.write_bytes(os.urandom(4096))
    elif kind == "empty":
        p.write_bytes(b"")
    elif kind == "dir":
        p.mkdir()
    elif kind == "zip":
        _zip_not_torch(p)
    elif kind == "tensor":
        torch.save(torch.ones(3), p)
    elif kind == "truncated":
        torch.save(state(1), p)
        truncate(p)
    else:
        p.write_text("step: 1\n")
    with pytest.raises(CheckpointError) as ei:
        load_checkpoint(p)
    msg = one_line(ei.value)
    assert str(p) in msg or f"'{p}'" in msg
    assert len(msg) < 400
    if kind == "code":
        assert "run code" in msg and "system" in msg
        assert not os.path.exists("/tmp/ganforge-checkpoint-pwned")
    if kind == "empty":
        assert "empty" in msg
    if kind == "dir":
        assert "directory" in msg


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(min_size=0, max_size=4096))
def test_random_bytes_never_load_and_never_crash(data):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "r.pt"
        p.write_bytes(data)
        with pytest.raises(CheckpointError) as ei:
            load_checkpoint(p)
        one_line(ei.value)


_GOOD = io.BytesIO()
torch.save(ckpt.with_checksum(state(7, n=32)), _GOOD)
_GOOD_BYTES = _GOOD.getvalue()


@settings(max_examples=40, deadline=None)
@given(pos=st.integers(0, len(_GOOD_BYTES) - 1), xor=st.integers(1, 255))
def test_a_flipped_byte_anywhere_is_an_error_or_harmless(pos, xor):
    """Corruption anywhere in the file: a one-line CheckpointError, or (bytes torch never
    reads, e.g. the zip's own metadata) exactly the saved state."""
    b = bytearray(_GOOD_BYTES)
    b[pos] ^= xor
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "f.pt"
        p.write_bytes(bytes(b))
        try:
            got = load_checkpoint(p)
        except CheckpointError as e:
            one_line(e)
            return
    want = state(7, n=32)
    assert state_checksum(got) == state_checksum(want)


@settings(max_examples=25, deadline=None)
@given(cut=st.integers(0, len(_GOOD_BYTES) - 1))
def test_every_truncation_is_an_error(cut):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "t.pt"
        p.write_bytes(_GOOD_BYTES[:cut])
        with pytest.raises(CheckpointError):
            load_checkpoint(p)


def test_missing_paths_keep_their_messages(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        find_checkpoint(tmp_path / "nope")
    with pytest.raises(CheckpointError, match="no checkpoint in"):
        find_checkpoint(tmp_path)
    (tmp_path / "d.pt").mkdir()
    with pytest.raises(CheckpointError, match="is a directory"):
        load_checkpoint(tmp_path / "d.pt")


# --------------------------------------------------------------------------- with the trainer
def test_resume_after_a_truncated_newest_checkpoint_uses_the_older_one(tmp_path):
    from ganforge.training.trainer import Trainer
    from tests.helpers import blobs, tiny_cfg
    run = tmp_path / "run"
    Trainer(tiny_cfg(run), dataset=blobs(), quiet=True).fit()
    newest = ckdir(run) / "step-000000008.pt"
    assert newest.exists() and (ckdir(run) / "step-000000004.pt").exists()
    truncate(newest)
    with pytest.warns(CheckpointWarning, match="step-000000008.pt"):
        tr = Trainer(tiny_cfg(run), dataset=blobs(), quiet=True, resume=True)
    assert tr.step_count == 4
    tr.fit()
    assert load_checkpoint(run)["step"] == 8
    assert (ckdir(run) / "step-000000008.pt.damaged").exists()
