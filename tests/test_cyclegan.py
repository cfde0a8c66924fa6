"""CycleGAN: networks, losses, image pool, two-domain data, the task on the shared trainer,
exact resume, `ganforge translate`, checkpoint-only rebuild and the translation metrics.

Everything runs at 16 px with width-4 networks and one residual block, on synthetic data.
"""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

from ganforge import models
from ganforge.cli import main
from ganforge.core.checkpoint import CheckpointError, load_checkpoint
from ganforge.core.config import Config, ConfigError, load_config
from ganforge.data import DataError
from ganforge.data.domains import (
    TwoDomainLoader,
    domain_specs,
    find_class,
    load_domain,
    load_domain_pair,
    normalize_class,
    parse_domain,
)
from ganforge.data.idx import write_idx
from ganforge.losses.adversarial import get_loss
from ganforge.models.cyclegan import (
    PatchGANDiscriminator,
    ResnetGenerator,
    receptive_field,
)
from ganforge.regularize.image_pool import ImagePool
from ganforge.training.tasks.cyclegan import CycleGANTask
from ganforge.training.trainer import Trainer
from tests.helpers import (
    assert_resume_exact,
    cyclegan_cfg,
    domain_pair,
    require_fashion_mnist,
    save_pngs,
    squares,
    unlabeled,
)

FMNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                  "Sneaker", "Bag", "Ankle boot"]


# --------------------------------------------------------------------------- helpers
@pytest.fixture
def ab_root(tmp_path):
    """The common CycleGAN layout: root/{trainA,trainB,testA,testB} with unequal sizes."""
    root = tmp_path / "ab"
    save_pngs(root / "trainA", squares(20, 255, 16, 0))
    save_pngs(root / "trainB", squares(12, 110, 16, 1, 7))
    save_pngs(root / "testA", squares(5, 255, 16, 2))
    save_pngs(root / "testB", squares(4, 110, 16, 3, 7))
    return root


@pytest.fixture
def fake_fmnist(tmp_path):
    """A synthetic Fashion-MNIST (IDX files, the real class list) in a data_dir."""
    d = tmp_path / "fmnist"
    d.mkdir()
    g = np.random.default_rng(0)
    for prefix, n in (("train", 60), ("t10k", 30)):
        labels = np.array([7, 9, 0] * (n // 3), dtype=np.uint8)
        imgs = np.zeros((n, 28, 28), np.uint8)
        for i, y in enumerate(labels):
            h = 6 if y == 7 else 14           # "sneakers" low, "boots" tall
            x0 = g.integers(2, 10)
            imgs[i, 26 - h:26, x0:x0 + 14] = 200
        write_idx(d / f"{prefix}-images-idx3-ubyte", imgs, compress=False)
        write_idx(d / f"{prefix}-labels-idx1-ubyte", labels, compress=False)
    return d


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("cg") / "run"
    Trainer(cyclegan_cfg(run), dataset=domain_pair(), quiet=True).fit()
    return run


# --------------------------------------------------------------------------- networks
@pytest.mark.parametrize("size,ch", [(16, 1), (28, 1), (32, 3)])
def test_generator_preserves_shape_and_range(size, ch):
    torch.manual_seed(0)
    G = models.build("G", "cyclegan-resnet", img_size=size, channels=ch, width=4, n_blocks=2)
    x = torch.rand(3, ch, size, size) * 2 - 1
    y = G(x * 20)
    assert y.shape == x.shape and y.min() >= -1 and y.max() <= 1


@pytest.mark.parametrize("size,layers,side", [(16, 1, 6), (28, 2, 5), (32, 2, 6), (32, 3, 2), (64, 3, 6)])
def test_patchgan_outputs_a_map_of_logits(size, layers, side):
    D = models.build("D", "patchgan", img_size=size, channels=1, width=4, n_layers=layers)
    out = D(torch.randn(2, 1, size, size) * 50)
    assert out.shape == (2, 1, side, side) == (2, 1, *(2 * [D.map_size(size, layers)]))
    assert (out < 0).any() and not any(isinstance(m, nn.Sigmoid) for m in D.modules())  # raw scores


def test_patchgan_receptive_field_and_small_input_error():
    assert [receptive_field(n) for n in (1, 2, 3)] == [16, 34, 70]   # 70x70 PatchGAN at 3
    with pytest.raises(ValueError, match="too small.*d_layers=2"):
        PatchGANDiscriminator(img_size=16, channels=1, width=4, n_layers=3)
    with pytest.raises(ValueError, match="divisible by"):
        ResnetGenerator(img_size=30, channels=1, width=4)


def test_paper_architecture_reflection_padding_and_instance_norm():
    G = ResnetGenerator(img_size=32, channels=3, width=8, n_blocks=6)
    layers = list(G.net)
    # c7s1-k: reflection pad 3 + 7x7 conv + IN + ReLU; ... ; c7s1-C + tanh, no norm at the end
    assert isinstance(layers[0], nn.ReflectionPad2d) and layers[0].padding == (3, 3, 3, 3)
    assert isinstance(layers[1], nn.Conv2d) and layers[1].kernel_size == (7, 7)
    assert isinstance(layers[2], nn.InstanceNorm2d) and not layers[2].affine
    assert isinstance(layers[-1], nn.Tanh) and isinstance(layers[-2], nn.Conv2d)
    assert isinstance(layers[-3], nn.ReflectionPad2d)
    convs = [m for m in G.modules() if isinstance(m, nn.Conv2d) and m.stride == (2, 2)]
    assert [c.out_channels for c in convs] == [16, 32]                     # d2k, d4k
    ups = [m for m in G.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert [u.out_channels for u in ups] == [16, 8]                        # u2k, uk
    blocks = [m for m in G.modules() if type(m).__name__ == "ResidualBlock"]
    assert len(blocks) == 6
    assert sum(isinstance(m, nn.ReflectionPad2d) for m in blocks[0].modules()) == 2
    assert not any(isinstance(m, nn.BatchNorm2d) for m in G.modules())
    D = PatchGANDiscriminator(img_size=64, channels=3, width=8, n_layers=3)
    dl = list(D.net)
    assert isinstance(dl[0], nn.Conv2d) and isinstance(dl[1], nn.LeakyReLU)   # C64: no norm
    widths = [m.out_channels for m in D.modules() if isinstance(m, nn.Conv2d)]
    assert widths == [8, 16, 32, 64, 1]                                       # C64-C128-C256-C512
    assert sum(isinstance(m, nn.InstanceNorm2d) for m in D.modules()) == 3


def test_stacked_calls_equal_separate_calls():
    """The task runs G on [x; y] and D on [real; fake] in one call: per-image norms only."""
    from ganforge.training.tasks.cyclegan import run_stacked
    torch.manual_seed(0)
    x, y = torch.rand(3, 1, 28, 28) * 2 - 1, torch.rand(2, 1, 28, 28) * 2 - 1
    for net in (ResnetGenerator(img_size=28, channels=1, width=4, n_blocks=1),
                PatchGANDiscriminator(img_size=28, channels=1, width=4, n_layers=2)):
        a, b = run_stacked(net, x, y)
        torch.testing.assert_close(a, net(x))
        torch.testing.assert_close(b, net(y))


def test_image_to_image_models_are_not_noise_families():
    fams = models.family_names()
    assert "cyclegan-resnet" not in fams and "patchgan" not in fams
    assert {"mlp", "dcgan"} <= set(fams)
    assert models.is_image_to_image("cyclegan-resnet") and models.is_image_to_image("patchgan")
    assert not models.is_image_to_image("dcgan")


@pytest.mark.parametrize("kind,name,kw", [
    ("G", "cyclegan-resnet", {"n_blocks": 1}), ("D", "patchgan", {"n_layers": 2})])
def test_image_to_image_contract(kind, name, kw):
    """Determinism under a seed, spec round trip, channels_last, one train step."""
    def make(seed):
        torch.manual_seed(seed)
        return models.build(kind, name, img_size=28, channels=1, width=4, **kw)
    x = torch.rand(2, 1, 28, 28) * 2 - 1
    a, b, c = make(5), make(5), make(6)
    assert torch.equal(a(x), b(x)) and not torch.equal(a(x), c(x))
    spec = json.loads(json.dumps(a.spec))              # plain data, no pickled code
    r = models.from_spec(spec)
    r.load_state_dict(a.state_dict())
    assert torch.equal(r(x), a(x))
    torch.testing.assert_close(a(x.contiguous(memory_format=torch.channels_last)), a(x))
    opt = torch.optim.Adam(a.parameters(), lr=1e-2)
    before = copy.deepcopy(a.state_dict())
    a(x).square().mean().backward()
    opt.step()
    assert any(not torch.equal(before[k], v) for k, v in a.state_dict().items())


# --------------------------------------------------------------------------- losses
def test_lsgan_loss_values():
    ls = get_loss("lsgan")
    assert type(get_loss("least-squares")) is type(ls)
    ones, zeros = torch.ones(2, 1, 3, 3), torch.zeros(2, 1, 3, 3)
    assert ls.d_loss(ones, zeros) == 0 and ls.g_loss(ones) == 0          # D and G at their targets
    assert ls.d_loss(zeros, ones) == 2 and ls.g_loss(zeros) == 1
    real, fake = torch.tensor([0.5, 1.5]), torch.tensor([0.25, -0.5])
    # E[(D(y) - 1)^2] + E[D(G(x))^2] = (0.25 + 0.25)/2 + (0.0625 + 0.25)/2
    torch.testing.assert_close(ls.d_loss(real, fake), torch.tensor(0.25 + 0.15625))
    torch.testing.assert_close(ls.g_loss(fake), torch.tensor((0.5625 + 2.25) / 2))


class Shift(nn.Module):
    """A stand-in generator: x + c (identity for c = 0)."""

    def __init__(self, c):
        super().__init__()
        self.c = c
        self.w = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return x + self.c + self.w


class ConstD(nn.Module):
    def __init__(self, v=0.0):
        super().__init__()
        self.v = nn.Parameter(torch.tensor(float(v)))

    def forward(self, x):
        return self.v.expand(x.shape[0], 1, 2, 2)


def _task(tmp_path, **over):
    return CycleGANTask(cyclegan_cfg(tmp_path, **over), img_size=16, channels=1,
                        device=torch.device("cpu"), seed=0)


def test_cycle_and_identity_losses_on_hand_made_inputs(tmp_path):
    task = _task(tmp_path)
    task.modules.update(G_AB=Shift(0.5), G_BA=Shift(-0.25), D_A=ConstD(), D_B=ConstD())
    a, b = torch.zeros(2, 1, 4, 4), torch.full((2, 1, 4, 4), 0.5)
    loss, logs = task.loss("G", (a, b))
    # F(G(a)) = a + 0.25 and G(F(b)) = b + 0.25: cycle = 0.25 + 0.25
    assert logs["loss_cycle"].item() == pytest.approx(0.5)
    # |G(b) - b| = 0.5, |F(a) - a| = 0.25
    assert logs["loss_identity"].item() == pytest.approx(0.75)
    # lsgan G loss with D == 0 everywhere: (0 - 1)^2 per direction
    assert logs["loss_G_adv"].item() == pytest.approx(2.0)
    assert loss.item() == pytest.approx(2.0 + 10 * 0.5 + 10 * 0.5 * 0.75)
    # D phase: ½ [(0 - 1)^2 + 0^2] for each discriminator
    d_loss, d_logs = task.loss("D", (a, b))
    assert d_logs["loss_D_X"].item() == pytest.approx(0.5) and d_logs["loss_D_Y"].item() == pytest.approx(0.5)
    assert d_loss.item() == pytest.approx(1.0)


def test_identity_generators_have_zero_cycle_loss(tmp_path):
    task = _task(tmp_path, **{"cyclegan.lambda_id": 0.0})
    task.modules.update(G_AB=Shift(0.0), G_BA=Shift(0.0))
    a, b = torch.rand(3, 1, 16, 16) * 2 - 1, torch.rand(3, 1, 16, 16) * 2 - 1
    _, logs = task.loss("G", (a, b))
    assert logs["loss_cycle"].item() == 0.0 and "loss_identity" not in logs


def test_g_phase_gives_discriminators_no_gradient(tmp_path):
    tr = Trainer(cyclegan_cfg(tmp_path), dataset=domain_pair(), quiet=True)
    tr.step()
    for n in ("D_A", "D_B", "G_AB", "G_BA"):
        for p in tr.task.modules[n].parameters():
            p.grad = None
    loss, _ = tr.task.loss("G", tr.loader.next())
    loss.backward(inputs=tr.params["G"])
    assert all(p.grad is None for n in ("D_A", "D_B") for p in tr.task.modules[n].parameters())
    assert all(p.grad is not None for p in tr.params["G"])


# --------------------------------------------------------------------------- image pool
def test_image_pool_semantics():
    pool = ImagePool(4, seed=0)
    first = torch.arange(4.0).view(4, 1, 1, 1)
    assert torch.equal(pool.query(first), first) and len(pool) == 4      # filling: pass through
    stored = set(range(4))
    returned_old = 0
    for step in range(50):
        x = torch.tensor([100.0 + step, 200.0 + step]).view(2, 1, 1, 1)
        out = pool.query(x)
        for i in range(2):
            v, new = out[i].item(), x[i].item()
            if v != new:              # an older image came back and the new one took its slot
                returned_old += 1
                assert v in stored
                stored.discard(v)
                stored.add(new)
        assert set(pool.images[:len(pool)].flatten().tolist()) == stored and len(pool) == 4
    assert 30 <= returned_old <= 70           # about half of the 100 images, once full
    off = ImagePool(0)
    assert torch.equal(off.query(first), first) and len(off) == 0


def test_image_pool_state_round_trip():
    a = ImagePool(5, seed=1)
    g = torch.Generator().manual_seed(0)
    for _ in range(4):
        a.query(torch.randn(3, 1, 2, 2, generator=g))
    b = ImagePool(5, seed=99)
    b.load_state_dict(copy.deepcopy(a.state_dict()))
    for _ in range(5):
        x = torch.randn(3, 1, 2, 2, generator=g)
        assert torch.equal(a.query(x), b.query(x))
    with pytest.raises(ValueError, match="pool_size"):
        ImagePool(3).load_state_dict(a.state_dict())


# --------------------------------------------------------------------------- data
def test_class_names_match_loosely():
    assert normalize_class("T-shirt/top") == "t-shirt-top"
    assert find_class("t-shirt-top", FMNIST_CLASSES, "x") == 0
    assert find_class("T_SHIRT top", FMNIST_CLASSES, "x") == 0
    assert find_class("ankle-boot", FMNIST_CLASSES, "x") == 9
    assert find_class("Ankle_Boot", FMNIST_CLASSES, "x") == 9
    with pytest.raises(DataError, match="no class 'boot'.*sneaker, bag, ankle-boot"):
        find_class("boot", FMNIST_CLASSES, "domain 'fashion-mnist:boot'")


def test_parse_domain_specs(tmp_path):
    assert parse_domain("fashion-mnist:sneaker") == parse_domain("fashion-mnist:sneaker")
    s = parse_domain("fashion-mnist:sneaker")
    assert (s.source, s.split, s.cls) == ("fashion-mnist", None, "sneaker")
    s = parse_domain("fashion-mnist:test:ankle-boot")
    assert (s.source, s.split, s.cls) == ("fashion-mnist", "test", "ankle-boot")
    s = parse_domain("fashion-mnist:test")
    assert (s.split, s.cls) == ("test", None)
    (tmp_path / "imgs" / "cats").mkdir(parents=True)
    s = parse_domain(f"{tmp_path / 'imgs'}:cats")
    assert s.source == str(tmp_path / "imgs") and s.cls == "cats"
    with pytest.raises(DataError, match="neither an existing folder"):
        parse_domain("no-such-thing:sneaker")


def test_domains_from_trainA_trainB_root(ab_root):
    a, b = domain_specs(str(ab_root), "", "")
    assert a.endswith("trainA") and b.endswith("trainB")
    p = load_domain_pair(a, b)
    assert (len(p.a), len(p.b), len(p.test_a), len(p.test_b)) == (20, 12, 5, 4)
    assert p.channels == 1 and p.img_size == 16
    with pytest.raises(DataError, match="trainA/ and trainB/"):
        domain_specs(str(ab_root / "trainA"), "", "")
    with pytest.raises(DataError, match="--domain-b"):
        domain_specs("x", "fashion-mnist:sneaker", "")


def test_domains_from_dataset_classes(fake_fmnist):
    kw = dict(data_dir=str(fake_fmnist), download=False)
    p = load_domain_pair("fashion-mnist:sneaker", "fashion-mnist:ankle-boot", img_size=16, **kw)
    assert len(p.a) == len(p.b) == 20 and len(p.test_a) == len(p.test_b) == 10
    assert p.a.name == "fashion-mnist:train:sneaker" and p.test_b.name == "fashion-mnist:test:ankle-boot"
    assert p.img_size == 16 and p.a.labels is None
    # the "sneakers" (label 7) are the low shapes: only rows near the bottom are lit
    assert p.a.images[:, :, :7].max() == 0 and p.b.images[:, :, :7].max() > 0
    with pytest.raises(DataError, match="valid classes: t-shirt-top, trouser"):
        load_domain("fashion-mnist:boots", **kw)
    lim = load_domain("fashion-mnist:test:sneaker", limit=3, **kw)
    assert len(lim) == 3


def test_domain_from_folder_class(tmp_path):
    save_pngs(tmp_path / "lab" / "red", squares(6, 200))
    save_pngs(tmp_path / "lab" / "blue", squares(4, 90))
    d = load_domain(f"{tmp_path / 'lab'}:Blue")
    assert len(d) == 4 and d.images.max() == 90


def test_unequal_domains_loader_epochs_and_determinism():
    a, b = squares(40, 255), squares(24, 100)
    ld = TwoDomainLoader(a, b, batch_size=8, seed=0, crop=2, flip=True)
    seen_b = []
    for _ in range(5):
        xa, xb = ld.next()
        assert xa.shape == xb.shape == (8, 1, 16, 16)
        seen_b.append(xb)
    assert ld.epoch_float == pytest.approx(1.0)        # an epoch = the larger domain (40 / 8)
    assert ld.b.epoch == 1                             # the smaller one wrapped already
    # resume: the same next batches, augmentation included
    st = copy.deepcopy(ld.state_dict())
    want = [ld.next() for _ in range(3)]
    ld2 = TwoDomainLoader(a, b, batch_size=8, seed=0, crop=2, flip=True)
    ld2.load_state_dict(st)
    for (wa, wb), (ga, gb) in zip(want, [ld2.next() for _ in range(3)]):
        assert torch.equal(wa, ga) and torch.equal(wb, gb)
    with pytest.raises(DataError, match="larger than domain"):
        TwoDomainLoader(a, b[:4], batch_size=8)


def test_jitter_is_a_translation_and_flip_mirrors():
    from ganforge.data.domains import random_flip, random_jitter
    x = torch.zeros(64, 1, 8, 8)
    x[:, :, 3, 3] = 1
    y = random_jitter(x, 2, torch.Generator().manual_seed(0))
    pos = y.flatten(1).argmax(1)
    rows = pos // 8
    assert (y.flatten(1).sum(1) == 1).all()                     # the dot is moved, not blurred
    assert rows.min() >= 1 and rows.max() <= 5 and len(set(rows.tolist())) > 1
    f = random_flip(x, torch.Generator().manual_seed(0))
    flipped = f[:, :, 3, 4] == 1
    assert 10 < int(flipped.sum()) < 54 and torch.equal(f[~flipped.flatten()], x[~flipped.flatten()])


# --------------------------------------------------------------------------- on the trainer
def test_task_trains_through_the_trainer(trained_run):
    run = trained_run
    rows = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    for k in ("loss_D_X", "loss_D_Y", "loss_G", "loss_cycle", "loss_identity", "loss_G_adv", "lr_G", "lr_D"):
        assert k in rows[-1] and np.isfinite(rows[-1][k])
    assert [r["step"] for r in rows] == [2, 4, 6]
    st = load_checkpoint(run)
    assert set(st["modules"]) == {"G_AB", "G_BA", "D_A", "D_B"}
    assert st["specs"]["G_AB"]["name"] == "cyclegan-resnet" and st["specs"]["D_B"]["name"] == "patchgan"
    assert st["task_state"]["pool_a"]["count"] == 3                 # pool of 3, full
    assert set(st["fixed"]) == {"a", "b"} and st["fixed"]["a"].shape == (3, 1, 16, 16)
    assert sorted(p.name for p in (run / "samples").glob("*.png")) == [
        "step-0000000.png", "step-0000003.png", "step-0000006.png"]
    grid = Image.open(run / "samples" / "step-0000006.png")
    assert grid.height > grid.width                                 # 2 bands x 3 rows of 3
    assert (run / "training.gif").exists() and (run / "curves.png").exists()
    assert CycleGANTask.progress_keys == ("loss_D_X", "loss_D_Y", "loss_G", "loss_cycle", "loss_identity")


def test_resume_is_exact(tmp_path):
    """8 steps in one go == 4 steps, a new Trainer, 4 more (linear lr decay, pool, jitter)."""
    over = {"train.lr_decay": "linear", "cyclegan.crop": 1, "cyclegan.flip": True,
            "log.ckpt_every": 100}
    data = domain_pair()

    def make(out, steps, resume=False):
        return Trainer(cyclegan_cfg(out, **over, **{"train.steps": steps}), dataset=data,
                       quiet=True, resume=resume)
    a, _, _ = assert_resume_exact(make, tmp_path, steps=8, stop=4)
    assert set(a["task_state"]) >= {"pool_a", "pool_b"} and "aug" in a["loader"]


def test_bad_settings_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="d_steps"):
        Trainer(cyclegan_cfg(tmp_path, **{"train.d_steps": 2}), dataset=domain_pair(), quiet=True)
    with pytest.raises(ConfigError, match="two domains"):
        CycleGANTask.describe_data(unlabeled(squares(4, 9), "one"))
    with pytest.raises(ConfigError, match="noise-to-image"):
        Trainer(cyclegan_cfg(tmp_path, **{"cyclegan.generator": "dcgan"}), dataset=domain_pair(), quiet=True)


# --------------------------------------------------------------------------- translate
def test_translate_folder_keeps_names_and_writes_grid(trained_run, tmp_path):
    src = tmp_path / "in"
    save_pngs(src, squares(3, 255, size=20), prefix="shoe")
    save_pngs(src / "sub", squares(2, 255, size=16), prefix="deep")
    Image.fromarray(np.full((30, 40, 3), 128, np.uint8)).save(src / "rgb.jpg")   # RGB, not square
    out = tmp_path / "out"
    rc = main(["translate", str(trained_run), "--direction", "a2b", str(src), "--out", str(out), "--grid"])
    assert rc == 0
    names = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.*"))
    assert names == ["grid.png", "rgb.jpg", "shoe00.png", "shoe01.png", "shoe02.png",
                     "sub/deep00.png", "sub/deep01.png"]
    assert Image.open(out / "shoe00.png").size == (16, 16)     # the run's image size
    g = Image.open(out / "grid.png")
    assert g.size[1] > g.size[0] / 3                            # 3 rows (input/translated/reconstructed)
    # refusing to overwrite the inputs
    assert main(["translate", str(trained_run), str(src), "--out", str(src)]) == 2


def test_translate_dataset_domain_and_run_test(trained_run, tmp_path, fake_fmnist, capsys):
    out = tmp_path / "o1"
    assert main(["translate", str(trained_run), "--direction", "b2a", "fashion-mnist:test:sneaker",
                 "--out", str(out), "--data-dir", str(fake_fmnist), "--limit", "4"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["00000.png", "00001.png", "00002.png", "00003.png"]


def test_translate_run_test(tmp_path):
    # (translating with a noise run is refused: tests/test_task_contract.py)
    # a run trained from a trainA/trainB folder knows its own test domain
    root = tmp_path / "ab"
    save_pngs(root / "trainA", squares(8, 255))
    save_pngs(root / "trainB", squares(8, 110, seed=1, side=7))
    save_pngs(root / "testA", squares(5, 255, seed=2))
    save_pngs(root / "testB", squares(4, 110, seed=3, side=7))
    run = tmp_path / "run"
    rc = main(["train", "--task", "cyclegan", "--data", str(root), "--steps", "2", "--batch-size", "4",
               "--out", str(run), "model.g_width=4", "model.d_width=4", "cyclegan.n_blocks=1",
               "cyclegan.d_layers=1", "log.progress=false", "log.tensorboard=false", "log.n_samples=4"])
    assert rc == 0
    for direction, n in (("a2b", 5), ("b2a", 4)):
        out = tmp_path / direction
        assert main(["translate", str(run), "--direction", direction, "run:test", "--out", str(out), "--grid"]) == 0
        assert len(list(out.glob("0*.png"))) == n and (out / "grid.png").exists()


def test_rebuild_from_checkpoint_alone(trained_run, tmp_path):
    from ganforge.use.load import load
    ck = tmp_path / "only.pt"
    ck.write_bytes((trained_run / "checkpoints" / "latest.pt").read_bytes())
    model = load(ck)
    assert model.inputs == "image"
    G_AB, G_BA, st = model.modules["G_AB"], model.modules["G_BA"], load_checkpoint(ck)
    task = CycleGANTask(Config.from_dict(st["config"]), img_size=16, channels=1,
                        device=torch.device("cpu"))
    for n in ("G_AB", "G_BA"):
        task.modules[n].load_state_dict(st["modules"][n])
    x = st["fixed"]["a"]
    torch.testing.assert_close(G_AB(x), task.G_AB(x), rtol=0, atol=0)
    torch.testing.assert_close(G_BA(x), task.G_BA(x), rtol=0, atol=0)
    with pytest.raises(CheckpointError, match="not a cyclegan run"):
        bad = dict(st, specs={"G": st["specs"]["G_AB"]})
        p = tmp_path / "bad.pt"
        torch.save(bad, p)
        load(p)


# --------------------------------------------------------------------------- metrics
class StubEvaluator:
    """Classifies by brightness: bright squares are 'bright', dim ones 'dim'."""
    class_names = ["bright", "dim"]

    def predict(self, x):
        return (x.amax(dim=(1, 2, 3)) < 0.5).long()

    def features(self, x):
        return torch.stack([x.mean(dim=(1, 2, 3)), x.amax(dim=(1, 2, 3)), x.std(dim=(1, 2, 3))], 1)


def test_evaluate_translation_with_an_evaluator(tmp_path):
    from ganforge.use.load import load_run

    def evaluate_translation(run, **kw):
        return load_run(run).translation_scores(**kw)
    save_pngs(tmp_path / "bright", squares(8, 255))
    save_pngs(tmp_path / "dim", squares(8, 110, seed=1, side=7))
    run = tmp_path / "run"
    cfg = cyclegan_cfg(run, **{"cyclegan.domain_a": str(tmp_path / "bright"),
                           "cyclegan.domain_b": str(tmp_path / "dim"), "train.steps": 2})
    Trainer(cfg, quiet=True).fit()
    s = evaluate_translation(run, evaluator=StubEvaluator(), n=6)
    assert s["n_a"] == s["n_b"] == 6 and 0 <= s["cycle_l1"] <= 2
    assert s["cycle_l1"] == pytest.approx((s["cycle_l1_a"] + s["cycle_l1_b"]) / 2)
    assert s["real_a_rate"] == 1.0 and s["real_b_rate"] == 1.0      # the stub is right on real data
    assert 0 <= s["target_rate"] <= 1 and s["fid_real_a_vs_b"] > 0 and s["fid_a2b"] >= 0

    class Other(StubEvaluator):
        class_names = ["x", "y"]
    with pytest.warns(UserWarning, match="target-class rates skipped"):
        s = evaluate_translation(run, evaluator=Other(), n=6)
    assert "target_rate" not in s and "fid_a2b" in s
    with pytest.warns(UserWarning, match="only cycle scores"):
        s = evaluate_translation(run, n=6)
    assert set(s) == {"n_a", "n_b", "cycle_l1", "cycle_l1_a", "cycle_l1_b"}
    # `ganforge eval` on it: --metrics does not apply (it was ignored), and the scores name
    # the evaluator they were taken with
    from ganforge.core.errors import EvalError
    with pytest.raises(EvalError, match="--metrics kid: a cyclegan run is scored"):
        load_run(run).evaluate(metrics="kid", n=6, weights=StubEvaluator())


# --------------------------------------------------------------------------- preset, real data
def test_preset_is_valid():
    cfg = load_config("cyclegan-sneaker-boot")
    assert cfg.train.task == "cyclegan" and cfg.cyclegan.adv_loss == "lsgan"
    assert cfg.train.lr_decay == "linear" and cfg.train.lr_decay_start == 0.5
    assert (cfg.train.beta1, cfg.train.beta2, cfg.train.lr_g, cfg.train.lr_d) == (0.5, 0.999, 2e-4, 2e-4)
    assert cfg.cyclegan.domain_a == "fashion-mnist:sneaker" and cfg.cyclegan.domain_b == "fashion-mnist:ankle-boot"
    assert cfg.cyclegan.pool_size == 50 and cfg.cyclegan.lambda_cyc == 10 and not cfg.cyclegan.flip


@pytest.mark.realdata
def test_real_fashion_mnist_domains(tmp_path):
    require_fashion_mnist()
    cfg = load_config("cyclegan-sneaker-boot").with_overrides({
        "train.steps": 1, "model.g_width": 4, "model.d_width": 4, "out": str(tmp_path / "r"),
        "log.progress": False, "log.tensorboard": False})
    tr = Trainer(cfg, quiet=True)
    assert tr.data_info.n_images == 6000 and tr.dataset.test_a.name == "fashion-mnist:test:sneaker"
    tr.fit()
