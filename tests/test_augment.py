"""Differentiable augmentation (DiffAugment ops, ADA) and classic real-only augmentation."""
import itertools

import pytest
import torch

from ganforge.data.batching import BatchLoader
from ganforge.data.classic_augment import CLASSIC_OPS, AugmentedLoader, ClassicAugment
from ganforge.regularize.diffaugment import (
    ADA,
    OPS,
    DiffAugment,
    color,
    cutout,
    erase_squares,
    shift_images,
    translation,
)

ALL_OPS = OPS.names()


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def batch(n=8, c=3, h=16, w=16, seed=1):
    return torch.rand(n, c, h, w, generator=gen(seed)) * 2 - 1


def changed(a, b):
    """Per-image: did anything change?"""
    return (a != b).flatten(1).any(1)


# --------------------------------------------------------------------------- op contract
@pytest.mark.parametrize("name", ALL_OPS)
@pytest.mark.parametrize("c,size", [(1, 28), (3, 16)])
def test_op_keeps_shape_dtype_device_and_is_differentiable(name, c, size):
    x = batch(6, c, size, size).requires_grad_(True)
    y = OPS.get(name)(x, 1.0, gen())
    assert y.shape == x.shape and y.dtype == x.dtype and y.device == x.device
    y.square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ALL_OPS)
def test_op_keeps_channels_last(name):
    x = batch(4, 3, 16, 16).contiguous(memory_format=torch.channels_last)
    y = OPS.get(name)(x, 1.0, gen())
    assert y.is_contiguous(memory_format=torch.channels_last)
    z = OPS.get(name)(x.contiguous(), 1.0, gen())
    assert z.is_contiguous()
    torch.testing.assert_close(y, z, rtol=0, atol=1e-6)   # layout does not change the result


@pytest.mark.parametrize("name", ALL_OPS)
def test_p0_is_identity(name):
    x = batch()
    assert torch.equal(OPS.get(name)(x, 0.0, gen()), x)


@pytest.mark.parametrize("name", ["cutout", "color"])
def test_p1_changes_every_image(name):
    x = batch(32)
    assert changed(OPS.get(name)(x, 1.0, gen()), x).all()


def test_p1_translation_and_flip_change_most_images():
    # translation may draw a zero shift (prob 1/81 at 16 px, as in DiffAugment); ADA's
    # xflip mirrors an applied image with prob 1/2.
    x = batch(64)
    assert changed(translation(x, 1.0, gen()), x).float().mean() > 0.9
    frac = changed(OPS.get("flip")(x, 1.0, gen()), x).float().mean()
    assert 0.25 < frac < 0.75


@pytest.mark.parametrize("name", ["translation", "cutout", "color"])
def test_per_image_mask_and_determinism(name):
    x = batch(32)
    op = OPS.get(name)
    y1, y2 = op(x, 0.5, gen(3)), op(x, 0.5, gen(3))
    assert torch.equal(y1, y2)                        # same seed, same result
    ch = changed(y1, x)
    assert 0 < int(ch.sum()) < 32                     # some images changed, some not
    assert not torch.equal(op(x, 0.5, gen(4)), y1)    # another seed differs


# --------------------------------------------------------------------------- references
def ref_shift(img, dy, dx):
    """Slow per-pixel reference: out[r, c] = img[r - dy, c - dx], zero outside."""
    c, h, w = img.shape
    out = torch.zeros_like(img)
    for r in range(h):
        for col in range(w):
            if 0 <= r - dy < h and 0 <= col - dx < w:
                out[:, r, col] = img[:, r - dy, col - dx]
    return out


def ref_erase(img, top, left, s):
    out = img.clone()
    for r in range(max(0, top), min(img.shape[1], top + s)):
        for col in range(max(0, left), min(img.shape[2], left + s)):
            out[:, r, col] = 0
    return out


def test_shift_images_matches_per_image_reference():
    x = batch(3, 3, 8, 8)
    dy, dx = torch.tensor([1, -2, 0]), torch.tensor([-1, 0, 2])
    y = shift_images(x, dy, dx)
    for i in range(3):
        assert torch.equal(y[i], ref_shift(x[i], int(dy[i]), int(dx[i])))


def test_translation_output_is_some_allowed_shift_of_each_image():
    x = batch(3, 1, 16, 16)
    y = translation(x, 1.0, gen(5))
    s = 2                                  # round(16 / 8)
    for i in range(3):
        hits = [(a, b) for a, b in itertools.product(range(-s, s + 1), repeat=2)
                if torch.equal(y[i], ref_shift(x[i], a, b))]
        assert hits, f"image {i} is no shift in [-{s}, {s}]^2"


def test_erase_squares_matches_per_image_reference():
    x = batch(3, 3, 8, 8)
    top, left = torch.tensor([-2, 3, 6]), torch.tensor([1, -1, 5])
    y = erase_squares(x, top, left, 4, 4)
    for i in range(3):
        assert torch.equal(y[i], ref_erase(x[i], int(top[i]), int(left[i]), 4))


def test_cutout_output_is_an_allowed_square_in_each_image():
    x = batch(3, 3, 8, 8)
    y = cutout(x, 1.0, gen(6))
    s = 4
    for i in range(3):
        # Centres 0..8 (one extra for an even side), square rows centre - 2 .. centre + 1.
        hits = [(t, l) for t, l in itertools.product(range(-s // 2, 8 - s // 2 + 1), repeat=2)
                if torch.equal(y[i], ref_erase(x[i], t, l, s))]
        assert hits


# --------------------------------------------------------------------------- colour
def test_color_on_constant_image_shifts_brightness_only():
    x = torch.full((8, 3, 6, 6), 0.25)
    y = color(x, 1.0, gen())
    per_image = y.flatten(1)
    # Saturation and contrast leave a flat image flat: only the brightness offset remains.
    assert torch.allclose(per_image, per_image[:, :1].expand_as(per_image), atol=1e-6)
    offset = per_image[:, 0] - 0.25
    assert (offset.abs() <= 0.5 + 1e-6).all() and offset.unique().numel() == 8


def test_saturation_is_a_noop_on_one_channel():
    # One channel: saturation is skipped, so the result is brightness + contrast only; i.e.
    # the same as on a 3-channel image whose channels are equal (saturation a no-op there).
    x1 = batch(4, 1, 8, 8)
    y1 = color(x1, 1.0, gen(2))
    y3 = color(x1.expand(4, 3, 8, 8).contiguous(), 1.0, gen(2))
    torch.testing.assert_close(y3, y1.expand(4, 3, 8, 8), rtol=0, atol=1e-6)


# --------------------------------------------------------------------------- DiffAugment
def test_diffaugment_policy_errors_name_the_op():
    with pytest.raises(ValueError, match="'rotate'.*translation"):
        DiffAugment("translation,rotate")
    with pytest.raises(ValueError):
        DiffAugment(p=1.5)
    assert DiffAugment("none")(batch()) is not None


def test_diffaugment_p0_fast_path_and_state_round_trip():
    x = batch()
    aug = DiffAugment("translation,cutout,color,flip", p=0.0)
    assert aug(x) is x
    aug.p = 0.7
    aug(x)                                        # advance the stream
    state = aug.state_dict()
    a = aug(x)
    other = DiffAugment("translation,cutout,color,flip", p=0.1, seed=99)
    other.load_state_dict(state)
    assert other.p == 0.7
    assert torch.equal(other(x), a)
    assert not torch.equal(aug(x), a)             # each call draws fresh randomness


def test_diffaugment_channels_last_and_grad():
    x = batch(4).contiguous(memory_format=torch.channels_last).requires_grad_(True)
    y = DiffAugment()(x)
    assert y.is_contiguous(memory_format=torch.channels_last)
    y.sum().backward()
    assert x.grad is not None


# --------------------------------------------------------------------------- ADA
def test_ada_rises_by_exact_step_and_clamps():
    ada = ADA(target=0.6, interval=4, speed_images=1000)
    step = 16 * 4 / 1000
    for _ in range(3):
        ada.observe(torch.ones(16))
        assert ada.maybe_update(16) == 0.0       # not yet: every 4th call
    ada.observe(torch.ones(16))
    assert ada.maybe_update(16) == pytest.approx(step, abs=1e-12)
    assert ada.r_t == 1.0
    ada2 = ADA(target=0.6, interval=1, speed_images=64, p_max=0.5)
    for _ in range(5):
        ada2.observe(torch.ones(16))
        ada2.maybe_update(16)                     # +0.25 each
    assert ada2.p == 0.5                          # clamped at p_max


def test_ada_falls_and_clamps_at_zero():
    ada = ADA(interval=2, speed_images=320, p_init=0.5)
    for _ in range(2):
        ada.observe(-torch.ones(8, 1))
        p = ada.maybe_update(8)
    assert p == pytest.approx(0.5 - 8 * 2 / 320) and ada.r_t == -1.0
    for _ in range(40):
        ada.observe(-torch.ones(8, 1))
        ada.maybe_update(8)
    assert ada.p == 0.0


def test_ada_state_round_trip():
    ada = ADA(interval=4, speed_images=1000)
    for _ in range(6):
        ada.observe(torch.tensor([1.0, -2.0, 3.0]))
        ada.maybe_update(3)
    s = ada.state_dict()
    assert all(isinstance(s[k], (int, float)) for k in ("p", "sum", "count", "calls"))
    b = ADA(interval=4, speed_images=1000)
    b.load_state_dict(s)
    for a_ in (ada, b):
        for _ in range(2):
            a_.observe(torch.tensor([1.0, 1.0, -1.0]))
            a_.maybe_update(3)
    assert b.p == ada.p and b.r_t == ada.r_t and b.state_dict() == ada.state_dict()


# --------------------------------------------------------------------------- classic
def test_classic_augment_range_shape_and_errors():
    x = batch(16, 3, 16, 16).contiguous(memory_format=torch.channels_last)
    aug = ClassicAugment(",".join(CLASSIC_OPS.names()), seed=1)
    y = aug(x)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert y.min() >= -1 and y.max() <= 1
    assert y.is_contiguous(memory_format=torch.channels_last)
    with pytest.raises(ValueError, match="'blur'.*flip"):
        ClassicAugment("flip,blur")


@pytest.mark.parametrize("name", CLASSIC_OPS.names())
def test_classic_ops_half_probability(name):
    x = batch(32, 1, 12, 12)
    y = ClassicAugment(name, seed=2)(x)
    n = int(changed(y, x.clamp(-1, 1)).sum())
    assert (n == 32) if name == "noise" else (0 < n < 32)


def test_augmented_loader_wraps_batchloader_and_round_trips():
    imgs = torch.randint(0, 256, (20, 3, 8, 8), generator=gen(), dtype=torch.uint8)
    labels = torch.arange(20)
    make = lambda: AugmentedLoader(BatchLoader(imgs, labels, batch_size=4, seed=0),  # noqa: E731
                                   ClassicAugment("flip,noise", seed=0))
    a = make()
    x, y = a.next()
    assert y.dtype == labels.dtype and x.min() >= -1          # labels untouched
    assert a.batch_size == 4 and a.epoch_float == pytest.approx(0.2)   # falls through
    state = a.state_dict()
    x1, y1 = a.next()
    b = make()
    b.load_state_dict(state)
    x2, y2 = b.next()
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    none_labels = AugmentedLoader(BatchLoader(imgs, None, batch_size=4), ClassicAugment("flip"))
    assert none_labels.next()[1] is None
