"""Old runs are users' work: runs and exports written by ganforge 0.1.0 (before the package
was regrouped into wings; tests/fixtures/v0.1.0/make.py made them) load, give what 0.1.0 gave
for the same requests, and resume.

"The same" is bit for bit on a machine like the one that made the fixtures (the same torch and
CPU instruction set: ``expected.json``); elsewhere convolution kernels may round differently, so
there it is within 1e-5, and the resumed run's checksum is not compared with 0.1.0's (the
resumption is still checked bit for bit against itself: 4 -> 8 equals 4 -> 6 -> 8).
"""
from __future__ import annotations

import json
import platform
import shutil
from pathlib import Path

import pytest
import torch

import ganforge
from ganforge.cli import main
from ganforge.core.checkpoint import CheckpointError, load_checkpoint, state_checksum
from ganforge.core.config import Config, load_yaml
from ganforge.training.trainer import Trainer
from ganforge.use.export import ExportFormatError
from tests.helpers import bars, blobs, domain_pair

FIXTURES = Path(__file__).parent / "fixtures" / "v0.1.0"
TASKS = ("gan", "conditional", "cyclegan")
DATA = {"gan": lambda: blobs(n=64), "conditional": lambda: bars(n=48), "cyclegan": domain_pair}
#: checkpoint entries that are not the training itself (as make.py's checksum leaves them out)
NOT_TRAINING = ("version", "config", "elapsed", "run_id")


def expected(task: str):
    meta = json.loads((FIXTURES / task / "expected.json").read_text())
    outs = torch.load(FIXTURES / task / "expected.pt", weights_only=True)
    m = meta["machine"]
    same = (m["torch"] == torch.__version__ and m["arch"] == platform.machine()
            and m["cpu"] == torch.backends.cpu.get_cpu_capability())
    return meta, outs, same


def requests(g, task: str) -> dict:
    """What 0.1.0's make.py asked its faces, asked of this version's face."""
    if task == "cyclegan":
        pair = domain_pair()
        xa = pair.test("a").images[:4].float() / 127.5 - 1
        xb = pair.test("b").images[:4].float() / 127.5 - 1
        out = {}
        out["a2b"], out["a2b_rec"] = g.round_trip(xa, "a2b")
        out["b2a"], out["b2a_rec"] = g.round_trip(xb, "b2a")
        out["inputs_a"], out["inputs_b"] = xa, xb
        return out
    out = {"seed0": g.sample(4, seed=0), "seed1": g.sample(5, seed=1),
           "psi0.7": g.sample(4, seed=2, truncation=0.7)}
    if task == "conditional":
        out["classes"] = g.sample(6, seed=0, classes=[0, 1, 2, 0, 1, 2])
        out["by_name"] = g.sample(3, seed=3, classes="class 1")
    # make.py walked ganforge.load(source): the EMA face, also for its raw-weights key
    out["walk"] = ganforge.load(g.info.source).interpolate([1, 2], frames=4)
    return out


def assert_same(got: dict, want: dict, bitwise: bool, where: str) -> None:
    assert set(got) == set(want), where
    for k in want:
        if bitwise:
            assert torch.equal(got[k], want[k]), f"{where}: {k} differs from what 0.1.0 gave"
        else:
            torch.testing.assert_close(got[k], want[k], rtol=0, atol=1e-5, msg=f"{where}: {k}")


@pytest.mark.parametrize("task", TASKS)
def test_old_runs_and_exports_sample_as_before(task):
    meta, outs, same = expected(task)
    assert meta["ganforge"] == "0.1.0" and meta["task"] == task
    run, export = FIXTURES / task / "run", FIXTURES / task / "export"
    for key, g in (("run", ganforge.load(run)), ("run_raw", ganforge.load(run, ema=False)),
                   ("export", ganforge.load(export))):
        assert isinstance(g, ganforge.Generator) and g.info.task == task and g.info.step == 4
        assert_same(requests(g, task), outs[key], same, f"{task} {key}")


@pytest.mark.parametrize("task", TASKS)
def test_old_runs_resume_exactly(tmp_path, task):
    meta, _, same = expected(task)
    finals = {}
    for name, stops in (("straight", []), ("split", [6])):
        run = tmp_path / name
        shutil.copytree(FIXTURES / task / "run", run)
        cfg = Config.from_dict(load_yaml(run / "config.yaml")).with_overrides({"out": str(run)})
        for stop in stops + [None]:
            tr = Trainer(cfg, dataset=DATA[task](), quiet=True, resume=True)
            assert tr.step_count in (4, 6)
            tr.fit(stop_at=stop)
        st = load_checkpoint(run)
        assert st["step"] == meta["steps"] == 8 and st["version"] == ganforge.__version__
        finals[name] = state_checksum({k: v for k, v in st.items() if k not in NOT_TRAINING})
    assert finals["straight"] == finals["split"], f"{task}: resuming an old run is not exact"
    if same:
        assert finals["straight"] == meta["resumed_checksum"], \
            f"{task}: the resumed old run differs from the one 0.1.0 resumed"


@pytest.mark.parametrize("task", TASKS)
def test_old_runs_work_from_the_cli(tmp_path, task):
    run = FIXTURES / task / "run"
    if task == "cyclegan":
        folder = tmp_path / "in"
        folder.mkdir()
        from PIL import Image
        Image.fromarray(domain_pair().test("a").images[0, 0].numpy()).save(folder / "a.png")
        assert main(["translate", str(run), str(folder), "--out", str(tmp_path / "t")]) == 0
        assert (tmp_path / "t" / "a.png").is_file()
    else:
        assert main(["sample", str(run), "--n", "4", "--out", str(tmp_path / "s.png")]) == 0
    assert main(["export", str(run), "--out", str(tmp_path / "e")]) == 0
    assert main(["report", str(run), "--out", str(tmp_path / "r.html")]) == 0


def test_a_checkpoint_of_a_newer_format_names_its_version(tmp_path):
    st = load_checkpoint(FIXTURES / "gan" / "run")
    st.update(format="ganforge-checkpoint-9", version="9.0.0")
    torch.save(st, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match=r"9\.0\.0.*ganforge-checkpoint-9.*(upgrade|pip install)"):
        ganforge.load(tmp_path / "future.pt")


def test_an_export_of_a_newer_format_names_its_version(tmp_path):
    out = tmp_path / "export"
    shutil.copytree(FIXTURES / "gan" / "export", out)
    cfg = json.loads((out / "config.json").read_text())
    cfg.update(format="ganforge-export-9", ganforge_version="9.0.0")
    (out / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ExportFormatError, match=r"ganforge-export-9.*9\.0\.0"):
        ganforge.load(out)


def test_old_module_paths_still_import(monkeypatch):
    """0.1's documented imports keep working for a release, as the modules that took their
    place, each with a DeprecationWarning naming the new path."""
    import sys
    for old in ("ganforge.runs", "ganforge.api"):      # as in a fresh process
        monkeypatch.delitem(sys.modules, old, raising=False)
    with pytest.warns(DeprecationWarning, match="ganforge.use.load"):
        from ganforge.runs import load_run
    from ganforge.use.load import load
    assert load_run is load
    with pytest.warns(DeprecationWarning, match="ganforge.use.api"):
        from ganforge.api import Generator, write_animation  # noqa: F401
    assert Generator is ganforge.Generator
    assert ganforge.runs.load_run is load
