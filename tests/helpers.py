"""Shared test helpers: tiny datasets, tiny configs per task, state comparison, the exact-resume
procedure, and a kit per registered task for the task contract suite.

Test modules import from here (``from tests.helpers import ...``), never from one another or
from conftest.py. Plain functions only; fixtures live in conftest.py.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

import pytest
import torch
from PIL import Image

from ganforge.core.checkpoint import load_checkpoint
from ganforge.core.config import Config
from ganforge.data import ImageDataset
from ganforge.data.domains import DomainPair

# --------------------------------------------------------------------------- real data
FMNIST_DIR = "/usr/share/datasets/fashion-mnist"


def require_fashion_mnist():
    """Skip when Fashion-MNIST is not installed, unless CI demands real data."""
    if not os.path.isdir(FMNIST_DIR):
        if os.environ.get("GANFORGE_REQUIRE_DATA") == "1":
            pytest.fail(f"Fashion-MNIST missing at {FMNIST_DIR} but GANFORGE_REQUIRE_DATA=1 "
                        f"(install the Debian package dataset-fashion-mnist)")
        pytest.skip(f"Fashion-MNIST not installed at {FMNIST_DIR}")


# --------------------------------------------------------------------------- datasets
#: the conditional suite's class count, noise size, network width and image size
K, Z, W, SIZE = 3, 8, 4, 16


def blobs(n=192, size=16, channels=1, seed=0):
    """A tiny learnable dataset: one bright square at a random place per image."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, channels, size, size, dtype=torch.uint8)
    pos = torch.randint(0, size - 5, (n, 2), generator=g)
    for i, (a, b) in enumerate(pos.tolist()):
        x[i, :, a:a + 5, b:b + 5] = 255
    labels = torch.arange(n) % 2
    return ImageDataset(images=x, labels=labels, class_names=["a", "b"], name="blobs", source="memory")


def bars(n=96, size=SIZE, k=K, seed=0, counts=None):
    """Class c = a bright horizontal bar in band c of the image (easy to tell apart)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % k if counts is None else torch.cat(
        [torch.full((m,), c) for c, m in enumerate(counts)])
    x = torch.zeros(len(y), 1, size, size, dtype=torch.uint8)
    band = size // k
    for i, c in enumerate(y.tolist()):
        r = band * c + int(torch.randint(0, max(1, band - 2), (1,), generator=g))
        x[i, 0, r:r + 2, :] = 255
    return ImageDataset(images=x, labels=y, class_names=[f"class {c}" for c in range(k)],
                        name="bars", source="memory")


def squares(n, value, size=16, seed=0, side=5):
    """uint8 (n, 1, size, size): one square of brightness ``value`` at a random place."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, 1, size, size, dtype=torch.uint8)
    pos = torch.randint(0, size - side, (n, 2), generator=g)
    for i, (a, b) in enumerate(pos.tolist()):
        x[i, :, a:a + side, b:b + side] = value
    return x


def unlabeled(images, name):
    """An in-memory :class:`ImageDataset` without labels (one CycleGAN domain)."""
    return ImageDataset(images=images, labels=None, class_names=None, name=name, source="memory")


def domain_pair(n_a=24, n_b=16, size=16):
    """Domain A: bright squares; B: dim, larger squares; unequal sizes; with test splits."""
    return DomainPair(unlabeled(squares(n_a, 255, size, 0), "bright"),
                      unlabeled(squares(n_b, 110, size, 1, 7), "dim"),
                      unlabeled(squares(8, 255, size, 2), "bright-test"),
                      unlabeled(squares(8, 110, size, 3, 7), "dim-test"))


def save_pngs(folder, images, prefix="img"):
    """Write uint8 (N, 1, H, W) ``images`` as ``folder/<prefix>NN.png``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for i, im in enumerate(images):
        Image.fromarray(im[0].numpy()).save(folder / f"{prefix}{i:02d}.png")


def save_class_folders(ds: ImageDataset, root) -> Path:
    """A labelled dataset on disk: ``root/<class name>/imgNN.png`` (what a folder loader, a
    conditional run and the domain evaluator read)."""
    root = Path(root)
    for c, name in enumerate(ds.class_names):
        save_pngs(root / name, ds.images[ds.labels == c])
    return root


# --------------------------------------------------------------------------- tiny configs
def tiny_cfg(out, **over):
    """An unconditional dcgan run at width 4, z 8, batch 16, 8 steps."""
    cfg = Config().with_overrides({
        "model.name": "dcgan", "model.g_width": 4, "model.d_width": 4, "model.z_dim": 8,
        "train.batch_size": 16, "train.steps": 8, "log.log_every": 2, "log.sample_every": 4,
        "log.ckpt_every": 4, "log.n_samples": 4, "log.progress": False, "log.tensorboard": False,
        "out": str(out)})
    return cfg.with_overrides(over) if over else cfg


def cond_cfg(out, **over):
    """A conditional dcgan (projection D) run at width 4, z 8, batch 12, 6 steps."""
    base = {"train.task": "conditional", "model.name": "dcgan", "model.g_width": W,
            "model.d_width": W, "model.z_dim": Z, "train.batch_size": 12, "train.steps": 6,
            "log.log_every": 2, "log.sample_every": 1000, "log.ckpt_every": 3,
            "log.n_samples": 4, "log.progress": False, "log.tensorboard": False,
            "log.gif": False, "out": str(out)}
    base.update(over)
    return Config().with_overrides(base)


def cyclegan_cfg(out, **over):
    """A CycleGAN run at width 4, one residual block, 1-layer PatchGAN, batch 4, 6 steps."""
    cfg = Config().with_overrides({
        "train.task": "cyclegan", "model.g_width": 4, "model.d_width": 4,
        "cyclegan.n_blocks": 1, "cyclegan.d_layers": 1, "cyclegan.pool_size": 3,
        "train.batch_size": 4, "train.steps": 6, "log.log_every": 2, "log.sample_every": 3,
        "log.ckpt_every": 3, "log.n_samples": 6, "log.progress": False,
        "log.tensorboard": False, "out": str(out)})
    return cfg.with_overrides(over) if over else cfg


def pix2pix_cfg(out, **over):
    """A pix2pix run at width 4 (U-Net to 1x1 at 16 px), 1-layer PatchGAN, batch 4, 6 steps."""
    cfg = Config().with_overrides({
        "train.task": "pix2pix", "model.g_width": 4, "model.d_width": 4, "pix2pix.d_layers": 1,
        "train.batch_size": 4, "train.steps": 6, "log.log_every": 2, "log.sample_every": 3,
        "log.ckpt_every": 3, "log.n_samples": 6, "log.progress": False,
        "log.tensorboard": False, "out": str(out)})
    return cfg.with_overrides(over) if over else cfg


def paired_squares(n=24, size=16, seed=0, test=8):
    """Pairs (edge map -> square): targets are bright (255) and dim (110) squares, half each;
    conditions their :func:`ganforge.data.pairs.edges`; a test split of ``test`` pairs."""
    from ganforge.data.pairs import PairedData, edges

    def make(k, s):
        y = torch.cat([squares(k - k // 2, 255, size, s), squares(k // 2, 110, size, s + 1, 7)])
        return ImageDataset(torch.cat([edges(y), y], dim=1), None, None, "squares-edges", "memory")
    return PairedData(make(n, seed), make(test, seed + 10), 1, "squares-edges")


# --------------------------------------------------------------------------- state comparison
def assert_same_state(a: Any, b: Any, where: str = "state") -> None:
    """``a`` and ``b`` are bit-identical nested state (dicts, lists, tensors, numbers): the
    same keys at every level, tensors of the same dtype and shape with equal values, equal
    scalars. The message names the first path that differs (e.g. ``state.G.blocks.0.weight``)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor), f"{where}: a tensor vs {type(b).__name__}"
        assert a.dtype == b.dtype and a.shape == b.shape, \
            f"{where}: {a.dtype} {tuple(a.shape)} vs {b.dtype} {tuple(b.shape)}"
        assert torch.equal(a, b), f"{where} differs"
    elif isinstance(a, Mapping):
        assert isinstance(b, Mapping), f"{where}: a mapping vs {type(b).__name__}"
        assert set(a) == set(b), f"{where}: keys differ: {sorted(map(str, set(a) ^ set(b)))}"
        for k in a:
            assert_same_state(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), f"{where}: {a!r} vs {b!r}"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_state(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and math.isnan(a):
        assert isinstance(b, float) and math.isnan(b), f"{where}: nan vs {b!r}"
    else:
        assert a == b, f"{where}: {a!r} vs {b!r}"


#: checkpoint entries that legitimately differ between two runs of the same training
#: (wall-clock seconds, the run's identity); :func:`comparable` also drops the run folder,
#: ``config.out``
RUN_SPECIFIC = ("elapsed", "run_id")


def comparable(st: Dict[str, Any]) -> Dict[str, Any]:
    """A trainer state/checkpoint without what names the run rather than the training
    (:data:`RUN_SPECIFIC` and ``config.out``)."""
    out = {k: v for k, v in st.items() if k not in RUN_SPECIFIC}
    if "config" in out:
        out["config"] = {k: v for k, v in out["config"].items() if k != "out"}
    return out


def assert_same_checkpoint(a: Dict[str, Any], b: Dict[str, Any]) -> None:
    """Two training states are the same training, bit for bit: weights, optimisers,
    schedulers, loader position, task state (RNG streams, pools, toolbox), RNG, fixed inputs,
    counters and config (all but :func:`comparable` drops)."""
    assert_same_state(comparable(a), comparable(b), "checkpoint")


def assert_resume_exact(make: Callable[..., Any], root, *, steps: int, stop: int,
                        extend: bool = False,
                        on_resume: Optional[Callable[[Any, Dict[str, Any]], None]] = None,
                        ) -> Tuple[Dict[str, Any], Dict[str, Any], Dict[str, Any]]:
    """Train ``steps`` steps straight (``root/one``) and, in ``root/two``, ``stop`` steps, then a
    fresh Trainer resumed from that checkpoint trains the rest; the two final checkpoints must
    be the same training, bit for bit (:func:`assert_same_checkpoint`).

    ``make(out, steps, resume=False)`` builds a Trainer of the run folder ``out`` configured
    for ``steps`` steps. ``extend=False``: the interrupted run is configured for ``steps`` and
    stopped at ``stop`` (``fit(stop_at=stop)``, as an interruption would); ``extend=True``: it
    is configured for ``stop`` steps and the resumed session raises the target to ``steps``
    (only for schedules that do not depend on the total). ``on_resume(trainer, mid)`` runs
    with the resumed Trainer before it trains and the checkpoint it resumed from.
    Returns the checkpoints (straight, resumed, mid)."""
    root = Path(root)
    one, two = root / "one", root / "two"
    make(one, steps).fit()
    if extend:
        make(two, stop).fit()
    else:
        make(two, steps).fit(stop_at=stop)
    mid = load_checkpoint(two)
    assert mid["step"] == stop
    tr = make(two, steps, resume=True)
    assert tr.step_count == stop
    if on_resume is not None:
        on_resume(tr, mid)
    tr.fit()
    a, b = load_checkpoint(one), load_checkpoint(two)
    assert a["step"] == b["step"] == steps
    assert_same_checkpoint(a, b)
    return a, b, mid


# --------------------------------------------------------------------------- one kit per task
@dataclass(frozen=True)
class TaskKit:
    """What the contract suite (tests/test_task_contract.py) needs to run a task at tiny size.

    ``cfg(out, **overrides)``: a tiny Config of the task; ``data()``: its in-memory training
    data (what ``Trainer(cfg, dataset=...)`` takes); ``on_disk(root)``: the same kind of data
    written under ``root`` as labelled class folders (no test split: a folder's ``test``
    subfolder would also be a training class), returning (config overrides that train on it,
    the labelled folder a domain evaluator can be trained on)."""
    cfg: Callable[..., Config]
    data: Callable[[], Any]
    on_disk: Callable[[Path], Tuple[Dict[str, str], Path]]


def _noise_on_disk(make_data):
    def write(root: Path):
        folder = save_class_folders(make_data(), Path(root) / "data")
        return {"data.name": str(folder)}, folder
    return write


def _domains_on_disk(root: Path):
    folder = Path(root) / "domains"
    p = domain_pair()
    save_pngs(folder / "bright", p.a.images)
    save_pngs(folder / "dim", p.b.images)
    return {"cyclegan.domain_a": str(folder / "bright"),
            "cyclegan.domain_b": str(folder / "dim")}, folder


def _pairs_on_disk(root: Path):
    """The pairs as two folders paired by file name (A: edge maps, B: squares), and the
    targets as labelled class folders (bright, dim) for a domain evaluator."""
    p = paired_squares()
    c, y = p.split(p.train.images)
    save_pngs(Path(root) / "A", c)
    save_pngs(Path(root) / "B", y)
    half = len(y) - len(y) // 2
    save_pngs(Path(root) / "classes" / "bright", y[:half])
    save_pngs(Path(root) / "classes" / "dim", y[half:])
    return {"pix2pix.data_a": str(Path(root) / "A"),
            "pix2pix.data_b": str(Path(root) / "B")}, Path(root) / "classes"


#: a kit for every registered task (ganforge.training.tasks.TASKS); a new task needs one here
TASK_KITS: Dict[str, TaskKit] = {
    "gan": TaskKit(tiny_cfg, lambda: blobs(n=64), _noise_on_disk(lambda: blobs(n=64))),
    "conditional": TaskKit(cond_cfg, bars, _noise_on_disk(lambda: bars(n=48))),
    "cyclegan": TaskKit(cyclegan_cfg, domain_pair, _domains_on_disk),
    "pix2pix": TaskKit(pix2pix_cfg, paired_squares, _pairs_on_disk),
}


# ----------------------------------------------------------------------------- headless browser
#: Debian's chromium (scripts/setup.sh installs it as root); Playwright drives it, never its own.
CHROMIUM = "/usr/bin/chromium"
#: CI sets GANFORGE_REQUIRE_BROWSER=1: a missing browser fails the browser tests there.
REQUIRE_BROWSER = os.environ.get("GANFORGE_REQUIRE_BROWSER") == "1"


def need_browser():
    """Playwright's ``sync_playwright`` when chromium and playwright are here; else skip the
    test, or fail it under GANFORGE_REQUIRE_BROWSER=1."""
    if not Path(CHROMIUM).exists():
        msg = f"{CHROMIUM} not installed (scripts/setup.sh installs Debian's chromium as root)"
        if REQUIRE_BROWSER:
            pytest.fail(msg + "; GANFORGE_REQUIRE_BROWSER=1")
        pytest.skip(msg)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if REQUIRE_BROWSER:
            pytest.fail("playwright is not installed (pip install -e '.[dev]'); GANFORGE_REQUIRE_BROWSER=1")
        pytest.skip("playwright is not installed")
    return sync_playwright
