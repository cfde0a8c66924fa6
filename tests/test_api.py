"""The Python API (``ganforge.load`` -> :class:`ganforge.use.api.Generator`), the truncation trick
and noise paths (:mod:`ganforge.models.latent`), and ``ganforge interpolate`` / ``progress`` /
``sample --truncation``, on tiny runs trained here (width 4, 16 px, a few steps)."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import ganforge
from ganforge.cli import main
from ganforge.core.checkpoint import numbered_checkpoints
from ganforge.core.errors import UserError
from ganforge.models.latent import interpolate_noise, slerp, truncated_randn
from ganforge.training.trainer import Trainer
from ganforge.use.api import Generator, load
from tests.helpers import (
    bars,
    blobs,
    cond_cfg,
    cyclegan_cfg,
    domain_pair,
    save_pngs,
    squares,
    tiny_cfg,
)

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture(scope="module")
def gan_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("api") / "runs" / "dcgan-fashion-mnist"
    Trainer(tiny_cfg(run, **{"log.gif": False}), dataset=blobs(64), quiet=True).fit()
    return run


@pytest.fixture(scope="module")
def cond_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("api-cond") / "run"
    Trainer(cond_cfg(run, **{"train.steps": 3}), dataset=bars(), quiet=True).fit()
    return run


@pytest.fixture(scope="module")
def cycle_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("api-cycle") / "run"
    Trainer(cyclegan_cfg(run, **{"train.steps": 2, "log.gif": False}), dataset=domain_pair(),
            quiet=True).fit()
    return run


# --------------------------------------------------------------------------- latent
def test_truncation_bounds_and_is_deterministic():
    z = truncated_randn(64, 32, 0.5, seed=3)
    assert z.shape == (64, 32) and z.abs().max() <= 0.5
    assert torch.equal(z, truncated_randn(64, 32, 0.5, seed=3))
    assert not torch.equal(z, truncated_randn(64, 32, 0.5, seed=4))
    assert z.std() > 0.2                     # resampled, not clamped to the bound
    with pytest.raises(UserError):
        truncated_randn(2, 2, 0.0)


def test_slerp_keeps_norms_between_endpoints_and_loop_shape():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(64, generator=g), 2 * torch.randn(64, generator=g)
    lo, hi = sorted([float(a.norm()), float(b.norm())])
    for t in torch.linspace(0, 1, 11).tolist():
        assert lo - 1e-4 <= float(slerp(a, b, t).norm()) <= hi + 1e-4
    assert torch.allclose(slerp(a, b, 0.0), a, atol=1e-5) and torch.allclose(slerp(a, b, 1.0), b, atol=1e-4)
    path = interpolate_noise(torch.stack([a, b, a + b]), 10)
    assert path.shape == (12, 64) and torch.equal(path[0], a)


# --------------------------------------------------------------------------- load, sample, info
def test_load_from_run_dir_and_checkpoint_file(gan_run):
    g = ganforge.load(gan_run)
    assert isinstance(g, Generator)
    assert (g.info.task, g.info.model, g.info.img_size, g.info.channels) == ("gan", "dcgan", 16, 1)
    assert g.info.classes is None and g.info.step == 8 and g.info.inputs == "noise"
    x = g.sample(5, seed=1)
    assert x.shape == (5, 1, 16, 16) and x.dtype == torch.float32 and x.min() >= -1 and x.max() <= 1
    assert torch.equal(x, g.sample(5, seed=1)) and not torch.equal(x, g.sample(5, seed=2))
    ckpt = gan_run / "checkpoints" / "latest.pt"
    assert torch.equal(load(ckpt).sample(5, seed=1), x)
    assert "Generator(gan/dcgan" in repr(g.to("cpu"))


def test_truncated_samples_differ_and_repeat(gan_run):
    g = load(gan_run)
    t = g.sample(4, seed=1, truncation=0.5)
    assert t.shape == (4, 1, 16, 16) and torch.equal(t, g.sample(4, seed=1, truncation=0.5))
    assert not torch.equal(t, g.sample(4, seed=1))
    assert g.model.noise(4, 1, 0.5).abs().max() <= 0.5


def test_info_metrics_from_last_eval_row(gan_run, tmp_path):
    import shutil
    run = tmp_path / "run"
    shutil.copytree(gan_run, run)
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 4, "fid": 50.0}\n{"step": 8, "fid": 40.5, "kid_mean": 0.1}\n{"step": 8, "loss_D": 1}\n')
    assert load(run).info.metrics == {"step": 8, "fid": 40.5, "kid_mean": 0.1}


def test_classes_by_name_equal_by_index(cond_run):
    g = load(cond_run)
    assert g.info.classes == ["class 0", "class 1", "class 2"]
    a = g.sample(4, seed=3, classes=1)
    assert torch.equal(a, g.sample(4, seed=3, classes="Class-1"))
    assert torch.equal(a, g.sample(4, seed=3, classes=[1, 1, 1, 1]))
    assert torch.equal(g.sample(3, seed=3, classes=["class 0", 1, "class_2"]),
                       g.sample(3, seed=3, classes=[0, 1, 2]))
    assert g.sample(2, seed=0, classes=2, truncation=0.7).shape == (2, 1, 16, 16)
    with pytest.raises(UserError, match="unknown class"):
        g.sample(2, classes="shoe")


# --------------------------------------------------------------------------- interpolate
def test_interpolate_frames_and_first_frame(gan_run):
    g = load(gan_run)
    x = g.interpolate([1, 7, 42], frames=10)
    assert x.shape == (12, 1, 16, 16)                       # ceil(10 / 3) per segment
    assert torch.allclose(x[0], g.sample(1, seed=1)[0], atol=1e-5)
    assert g.interpolate([1, 7], frames=6, mode="lerp").shape[0] == 6
    assert torch.allclose(g.interpolate([5], frames=3, truncation=0.6)[0],
                          g.sample(1, seed=5, truncation=0.6)[0], atol=1e-5)


def test_interpolate_class_walk(cond_run):
    g = load(cond_run)
    x = g.interpolate([4], frames=6, classes=[0, 2, 1])
    assert x.shape == (6, 1, 16, 16)
    assert torch.allclose(x[0], g.sample(1, seed=4, classes=0)[0], atol=1e-5)
    assert torch.allclose(x[2], g.sample(1, seed=4, classes=2)[0], atol=1e-5)
    y = g.interpolate([1, 2], frames=4, classes="class 1")
    assert torch.allclose(y[0], g.sample(1, seed=1, classes=1)[0], atol=1e-5)
    with pytest.raises(UserError, match="not both"):
        g.interpolate([1, 2], frames=4, classes=[0, 1])


# --------------------------------------------------------------------------- translate
def test_translate_tensor_pil_and_paths(cycle_run, tmp_path):
    g = load(cycle_run)
    assert g.info.inputs == "image" and g.info.task == "cyclegan"
    imgs = squares(3, 255, 16, seed=9)
    save_pngs(tmp_path / "in", imgs)
    paths = sorted((tmp_path / "in").glob("*.png"))
    x = imgs.float() / 127.5 - 1
    out = g.translate(x)
    assert out.shape == (3, 1, 16, 16) and out.min() >= -1 and out.max() <= 1
    assert torch.allclose(g.translate([Image.open(p) for p in paths]), out, atol=1e-6)
    assert torch.allclose(g.translate(paths), out, atol=1e-6)
    assert torch.allclose(g.translate(str(paths[0])), out[:1], atol=1e-6)
    assert g.translate(x, direction="b2a").shape == (3, 1, 16, 16)
    with pytest.raises(UserError, match=r"\(N, 1, 16, 16\)"):
        g.translate(torch.zeros(1, 3, 8, 8))
    with pytest.raises(UserError, match="translates images"):
        g.sample(2)


def test_requests_that_do_not_apply_are_user_errors(gan_run):
    g = load(gan_run)
    for call in (lambda: g.translate(torch.zeros(1, 1, 16, 16)), lambda: g.sample(0),
                 lambda: g.sample(2, classes=1), lambda: g.sample(2, truncation=-1),
                 lambda: g.interpolate([], 4), lambda: g.interpolate([1], 4, mode="cubic"),
                 lambda: load(gan_run, checkpoint="oldest")):
        with pytest.raises(UserError) as e:
            call()
        assert "\n" not in str(e.value)


# --------------------------------------------------------------------------- CLI
def _gif_frames(path: Path) -> int:
    with Image.open(path) as im:
        assert im.format == "GIF"
        return im.n_frames


def test_cli_interpolate_and_progress_gifs(gan_run, tmp_path, capsys):
    out = tmp_path / "walk.gif"
    assert main(["interpolate", str(gan_run), "--seeds", "1,7,42", "--frames", "9", "--out", str(out),
                 "--truncation", "0.8"]) == 0
    assert _gif_frames(out) == 9
    out = tmp_path / "progress.gif"
    assert main(["progress", str(gan_run), "--out", str(out), "--n", "4"]) == 0
    assert _gif_frames(out) == len(numbered_checkpoints(gan_run)) >= 2
    assert main(["sample", str(gan_run), "--n", "4", "--truncation", "0.5",
                 "--out", str(tmp_path / "s.npy")]) == 0
    import numpy as np
    assert np.array_equal(np.load(tmp_path / "s.npy"), load(gan_run).sample(4, truncation=0.5).numpy())


def test_cli_class_walk(cond_run, tmp_path):
    out = tmp_path / "classes.gif"
    assert main(["interpolate", str(cond_run), "--seeds", "3", "--classes", "class 0,class 2",
                 "--frames", "4", "--out", str(out)]) == 0
    assert out.is_file()


@pytest.mark.parametrize("argv, word", [
    (["interpolate", "RUN", "--seeds", "1,x"], "comma list"),
    (["interpolate", "RUN", "--frames", "0"], "too small"),
    (["interpolate", "RUN", "--truncation", "0"], "> 0"),
    (["interpolate", "RUN", "--out", "walk.png"], ".gif"),
    (["interpolate", "RUN", "--out", "walk.mp4"], None),
    (["interpolate", "RUN", "--classes", "a,b"], "no classes"),
    (["progress", "CKPT"], "not a run folder"),
    (["progress", "CYCLE"], "translates images"),
    (["sample", "RUN", "--truncation", "-2"], "> 0"),
])
def test_cli_errors_are_one_line_exit_2(gan_run, cycle_run, tmp_path, capsys, argv, word):
    subst = {"RUN": str(gan_run), "CKPT": str(gan_run / "checkpoints" / "latest.pt"),
             "CYCLE": str(cycle_run)}
    argv = [subst.get(a, a) for a in argv]
    argv += [] if "--out" in argv else ["--out", str(tmp_path / "x.gif" if argv[0] != "sample" else tmp_path / "x.png")]
    from ganforge.use.animate import ffmpeg_exe
    if "walk.mp4" in argv:
        if ffmpeg_exe() is not None:
            pytest.skip("an ffmpeg encoder is installed here")
        argv[argv.index("walk.mp4")] = str(tmp_path / "walk.mp4")
        word = "imageio-ffmpeg"
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and word in err, err


# --------------------------------------------------------------------------- README
def test_readme_python_example_runs(gan_run, monkeypatch):
    """The "Python API" example of README.md, run as written, in a folder whose
    runs/dcgan-fashion-mnist is a tiny run."""
    text = README.read_text()
    section = text.split("## Python API", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(gan_run.parent.parent)
    exec(compile(code, "README.md", "exec"), {"__name__": "__readme__"})
    assert Path("walk.gif").is_file()


def test_import_ganforge_does_not_import_torch():
    code = "import sys, ganforge; assert 'torch' not in sys.modules and callable(ganforge.load)"
    subprocess.run([sys.executable, "-c", code], check=True)


# --------------------------------------------------------------------------- the use wing alone
FIXTURES = Path(__file__).parent / "fixtures" / "v0.1.0"
#: what trained a run, which using it must not load (the use-wing import contract in
#: pyproject.toml says the same of the imports; this checks what a real call loads)
TRAINING = ("ganforge.training", "ganforge.losses", "ganforge.regularize")


@pytest.mark.parametrize("task, call", [
    ("gan", "g.sample(4)"), ("conditional", "g.sample(4, classes='class 1')"),
    ("cyclegan", "g.translate(torch.zeros(2, 1, 16, 16), 'a2b')"),
    ("gan", "ganforge.load(r'{export}').sample(4)"),
])
def test_using_a_run_loads_nothing_of_its_training(task, call):
    run, export = FIXTURES / task / "run", FIXTURES / task / "export"
    code = (f"import sys, torch, ganforge\n"
            f"g = ganforge.load(r'{run}')\n"
            f"x = {call.format(export=export)}\n"
            f"assert x.shape[0] in (2, 4)\n"
            f"print(sorted(m for m in sys.modules if m.startswith({TRAINING!r})))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]", f"{task}: using a run loaded {r.stdout.strip()}"


def test_import_ganforge_is_light():
    """``import ganforge`` (every CLI start) loads neither torch nor a wing."""
    code = ("import sys, ganforge\n"
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith(('ganforge.use', "
            "'ganforge.training', 'ganforge.metrics'))))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stdout + r.stderr


# --------------------------------------------------------------------------- the face's checks
def test_the_face_checks_what_it_is_asked(tmp_path, capsys):
    """What a new user tried (issue 24's trial): each wrong request is one UserError naming
    what to do; classes="all" is every class in turn, as --class all."""
    cond = ganforge.load(FIXTURES / "conditional" / "run")
    y = cond.labels_for(7, 0, "all")
    assert y.tolist() == [0, 0, 0, 1, 1, 1, 2]
    assert torch.equal(cond.sample(6, seed=4, classes="all"),
                       cond.sample(6, seed=4, classes=[0, 0, 1, 1, 2, 2]))
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="CUDA is not available"):
            cond.to("cuda")
    cyc = ganforge.load(FIXTURES / "cyclegan" / "run")
    with pytest.raises(UserError, match=r"values from 5 to 5; give float images in \[-1, 1\]"):
        cyc.translate(torch.full((1, 1, 16, 16), 5.0))
    assert {"Generator", "load", "__version__"} <= set(dir(ganforge))
    export = FIXTURES / "gan" / "export"
    for argv, words in ((["report", str(export)], "is an export folder"),
                        (["progress", str(export)], "is an export folder"),
                        (["progress", str(FIXTURES / "cyclegan" / "run")], "progress: ")):
        assert main(argv + ["--out", str(tmp_path / "x.html" if argv[0] == "report" else
                                         tmp_path / "x.gif")]) == 2
        err = capsys.readouterr().err.strip()
        assert words in err and len(err.splitlines()) == 1, err
    assert main(["sample", str(FIXTURES / "conditional" / "run"), "--class", "all", "--n", "4",
                 "--out", str(tmp_path / "all.npy")]) == 0
    assert "rounded up to whole rows" in capsys.readouterr().out
    assert np.load(tmp_path / "all.npy").shape[0] == 6 and \
        np.load(tmp_path / "all.labels.npy").tolist() == [0, 0, 1, 1, 2, 2]
