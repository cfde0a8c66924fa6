"""The conditioning mixins (ganforge/models/conditioning.py): every conditional family (mlp,
dcgan, resnet) is its unconditional network behind ConditionalGenerator /
ConditionalDiscriminator and writes only the family hooks; the state-dict layout (old
checkpoints must load), the label layers' construction order (seeded initialisation), forward
shapes and the argument errors. Tiny networks: the file runs in a few seconds on one CPU."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from ganforge.models import (
    COND_DISCRIMINATORS,
    COND_GENERATORS,
    DISCRIMINATORS,
    GENERATORS,
    build,
    from_spec,
)
from ganforge.models.conditioning import (
    D_METHODS,
    G_METHODS,
    ConditionalBatchNorm,
    ConditionalDiscriminator,
    ConditionalGenerator,
    cond_family_names,
    default_labels,
    recipe,
)

K, Z, W, S = 3, 4, 2, 8
FAMILIES = ("mlp", "dcgan", "resnet")
G_CASES = [(f, m) for f in FAMILIES for m in G_METHODS]
D_CASES = [(f, m) for f in FAMILIES for m in D_METHODS]

#: Hooks a family may define on its conditional classes; everything else comes from the mixin.
G_HOOKS = {"__init__", "_generate", "_add_label_norms"}
D_HOOKS = {"__init__", "_widen_input", "_phi_dim", "_init_projection_", "_class_head"}

# state_dict keys and shapes at img_size=8, channels=1, width=2, z_dim=4, K=3, embed_dim=0,
# recorded with the per-family code these mixins replaced: checkpoints of it must load.
STATE_KEYS = {
    'G-mlp-concat': {
        'body.0.weight': (2, 7), 'body.0.bias': (2,), 'body.2.weight': (4, 2), 'body.2.bias': (4,),
        'body.4.weight': (8, 4), 'body.4.bias': (8,), 'head.weight': (64, 8), 'head.bias': (64,),
        'embed.weight': (3, 3),
    },
    'G-mlp-cbn': {
        'body.0.weight': (2, 4), 'body.0.bias': (2,), 'body.1.bn.running_mean': (2,),
        'body.1.bn.running_var': (2,), 'body.1.bn.num_batches_tracked': (),
        'body.1.gain.weight': (3, 2), 'body.1.bias.weight': (3, 2), 'body.3.weight': (4, 2),
        'body.3.bias': (4,), 'body.4.bn.running_mean': (4,), 'body.4.bn.running_var': (4,),
        'body.4.bn.num_batches_tracked': (), 'body.4.gain.weight': (3, 4),
        'body.4.bias.weight': (3, 4), 'body.6.weight': (8, 4), 'body.6.bias': (8,),
        'body.7.bn.running_mean': (8,), 'body.7.bn.running_var': (8,),
        'body.7.bn.num_batches_tracked': (), 'body.7.gain.weight': (3, 8),
        'body.7.bias.weight': (3, 8), 'head.weight': (64, 8), 'head.bias': (64,),
    },
    'D-mlp-concat': {
        'body.0.weight': (8, 67), 'body.0.bias': (8,), 'body.2.weight': (4, 8),
        'body.2.bias': (4,), 'body.4.weight': (2, 4), 'body.4.bias': (2,), 'head.weight': (1, 2),
        'head.bias': (1,), 'embed.weight': (3, 3),
    },
    'D-mlp-projection': {
        'body.0.weight': (8, 64), 'body.0.bias': (8,), 'body.2.weight': (4, 8),
        'body.2.bias': (4,), 'body.4.weight': (2, 4), 'body.4.bias': (2,), 'head.weight': (1, 2),
        'head.bias': (1,), 'embed.weight': (3, 2),
    },
    'D-mlp-acgan': {
        'body.0.weight': (8, 64), 'body.0.bias': (8,), 'body.2.weight': (4, 8),
        'body.2.bias': (4,), 'body.4.weight': (2, 4), 'body.4.bias': (2,), 'head.weight': (1, 2),
        'head.bias': (1,), 'classifier.weight': (3, 2), 'classifier.bias': (3,),
    },
    'G-dcgan-concat': {
        'blocks.0.0.weight': (7, 2, 4, 4), 'blocks.0.1.weight': (2,), 'blocks.0.1.bias': (2,),
        'blocks.0.1.running_mean': (2,), 'blocks.0.1.running_var': (2,),
        'blocks.0.1.num_batches_tracked': (), 'blocks.1.0.weight': (2, 1, 4, 4),
        'blocks.1.0.bias': (1,), 'embed.weight': (3, 3),
    },
    'G-dcgan-cbn': {
        'blocks.0.0.weight': (4, 2, 4, 4), 'blocks.0.1.bn.running_mean': (2,),
        'blocks.0.1.bn.running_var': (2,), 'blocks.0.1.bn.num_batches_tracked': (),
        'blocks.0.1.gain.weight': (3, 2), 'blocks.0.1.bias.weight': (3, 2),
        'blocks.1.0.weight': (2, 1, 4, 4), 'blocks.1.0.bias': (1,),
    },
    'D-dcgan-concat': {
        'blocks.0.0.weight': (2, 4, 4, 4), 'blocks.0.0.bias': (2,), 'head.weight': (1, 2, 4, 4),
        'head.bias': (1,), 'embed.weight': (3, 3),
    },
    'D-dcgan-projection': {
        'blocks.0.0.weight': (2, 1, 4, 4), 'blocks.0.0.bias': (2,), 'head.weight': (1, 2, 4, 4),
        'head.bias': (1,), 'embed.weight': (3, 32),
    },
    'D-dcgan-acgan': {
        'blocks.0.0.weight': (2, 1, 4, 4), 'blocks.0.0.bias': (2,), 'head.weight': (1, 2, 4, 4),
        'head.bias': (1,), 'classifier.weight': (3, 2, 4, 4), 'classifier.bias': (3,),
    },
    'G-resnet-concat': {
        'linear.weight': (32, 7), 'linear.bias': (32,), 'blocks.0.bn1.weight': (2,),
        'blocks.0.bn1.bias': (2,), 'blocks.0.bn1.running_mean': (2,),
        'blocks.0.bn1.running_var': (2,), 'blocks.0.bn1.num_batches_tracked': (),
        'blocks.0.conv1.weight': (2, 2, 3, 3), 'blocks.0.bn2.weight': (2,),
        'blocks.0.bn2.bias': (2,), 'blocks.0.bn2.running_mean': (2,),
        'blocks.0.bn2.running_var': (2,), 'blocks.0.bn2.num_batches_tracked': (),
        'blocks.0.conv2.weight': (2, 2, 3, 3), 'blocks.0.shortcut.weight': (2, 2, 1, 1),
        'out_norm.weight': (2,), 'out_norm.bias': (2,), 'out_norm.running_mean': (2,),
        'out_norm.running_var': (2,), 'out_norm.num_batches_tracked': (),
        'out_conv.weight': (1, 2, 3, 3), 'out_conv.bias': (1,), 'embed.weight': (3, 3),
    },
    'G-resnet-cbn': {
        'linear.weight': (32, 4), 'linear.bias': (32,), 'blocks.0.bn1.bn.running_mean': (2,),
        'blocks.0.bn1.bn.running_var': (2,), 'blocks.0.bn1.bn.num_batches_tracked': (),
        'blocks.0.bn1.gain.weight': (3, 2), 'blocks.0.bn1.bias.weight': (3, 2),
        'blocks.0.conv1.weight': (2, 2, 3, 3), 'blocks.0.bn2.bn.running_mean': (2,),
        'blocks.0.bn2.bn.running_var': (2,), 'blocks.0.bn2.bn.num_batches_tracked': (),
        'blocks.0.bn2.gain.weight': (3, 2), 'blocks.0.bn2.bias.weight': (3, 2),
        'blocks.0.conv2.weight': (2, 2, 3, 3), 'blocks.0.shortcut.weight': (2, 2, 1, 1),
        'out_norm.bn.running_mean': (2,), 'out_norm.bn.running_var': (2,),
        'out_norm.bn.num_batches_tracked': (), 'out_norm.gain.weight': (3, 2),
        'out_norm.bias.weight': (3, 2), 'out_conv.weight': (1, 2, 3, 3), 'out_conv.bias': (1,),
    },
    'D-resnet-concat': {
        'blocks.0.conv1.weight': (2, 4, 3, 3), 'blocks.0.conv1.bias': (2,),
        'blocks.0.conv2.weight': (2, 2, 3, 3), 'blocks.0.conv2.bias': (2,),
        'blocks.0.shortcut.weight': (2, 4, 1, 1), 'blocks.0.shortcut.bias': (2,),
        'blocks.1.conv1.weight': (2, 2, 3, 3), 'blocks.1.conv1.bias': (2,),
        'blocks.1.conv2.weight': (2, 2, 3, 3), 'blocks.1.conv2.bias': (2,), 'head.weight': (1, 2),
        'head.bias': (1,), 'embed.weight': (3, 3),
    },
    'D-resnet-projection': {
        'blocks.0.conv1.weight': (2, 1, 3, 3), 'blocks.0.conv1.bias': (2,),
        'blocks.0.conv2.weight': (2, 2, 3, 3), 'blocks.0.conv2.bias': (2,),
        'blocks.0.shortcut.weight': (2, 1, 1, 1), 'blocks.0.shortcut.bias': (2,),
        'blocks.1.conv1.weight': (2, 2, 3, 3), 'blocks.1.conv1.bias': (2,),
        'blocks.1.conv2.weight': (2, 2, 3, 3), 'blocks.1.conv2.bias': (2,), 'head.weight': (1, 2),
        'head.bias': (1,), 'embed.weight': (3, 2),
    },
    'D-resnet-acgan': {
        'blocks.0.conv1.weight': (2, 1, 3, 3), 'blocks.0.conv1.bias': (2,),
        'blocks.0.conv2.weight': (2, 2, 3, 3), 'blocks.0.conv2.bias': (2,),
        'blocks.0.shortcut.weight': (2, 1, 1, 1), 'blocks.0.shortcut.bias': (2,),
        'blocks.1.conv1.weight': (2, 2, 3, 3), 'blocks.1.conv1.bias': (2,),
        'blocks.1.conv2.weight': (2, 2, 3, 3), 'blocks.1.conv2.bias': (2,), 'head.weight': (1, 2),
        'head.bias': (1,), 'classifier.weight': (3, 2), 'classifier.bias': (3,),
    },
}


def _g(family, cond, **kw):
    return build("G", family, img_size=S, channels=1, z_dim=Z, width=W, n_classes=K, cond=cond, **kw)


def _d(family, cond, **kw):
    return build("D", family, img_size=S, channels=1, width=W, n_classes=K, cond=cond, **kw)


# ----------------------------------------------------------------------------- one mixin
def test_every_family_uses_the_mixins_and_writes_only_hooks():
    assert set(FAMILIES) <= set(cond_family_names())
    for name in cond_family_names():
        G, D = COND_GENERATORS.get(name), COND_DISCRIMINATORS.get(name)
        assert issubclass(G, ConditionalGenerator) and issubclass(G, GENERATORS.get(name))
        assert issubclass(D, ConditionalDiscriminator) and issubclass(D, DISCRIMINATORS.get(name))
        # the mixin comes first, so its forward/_norm/features/... win over the base family's
        assert G.__mro__[1] is ConditionalGenerator and D.__mro__[1] is ConditionalDiscriminator
        for cls, hooks in ((G, G_HOOKS), (D, D_HOOKS)):
            own = {k for k, v in vars(cls).items() if callable(v) and not k.startswith("__")
                   or k == "__init__"}
            assert own <= hooks, (cls.__name__, own - hooks)
            assert cls.family == name
        assert G.forward is ConditionalGenerator.forward
        for attr in ("forward", "features", "logits_and_classes", "freeze_blocks", "with_label"):
            assert getattr(D, attr) is getattr(ConditionalDiscriminator, attr), (name, attr)


@pytest.mark.parametrize("kind,family,cond", [("G", f, m) for f, m in G_CASES]
                         + [("D", f, m) for f, m in D_CASES])
def test_state_dict_layout_is_the_checkpoint_format(kind, family, cond):
    net = (_g if kind == "G" else _d)(family, cond)
    got = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    want = STATE_KEYS[f"{kind}-{family}-{cond}"]
    assert list(got.items()) == list(want.items())
    net.load_state_dict({k: torch.zeros(s) for k, s in want.items()}, strict=True)
    spec = net.spec
    assert spec == {"name": family, "kind": kind, "kwargs": {
        "img_size": S, "channels": 1, **({"z_dim": Z} if kind == "G" else {}), "width": W,
        "n_classes": K, "cond": cond}}
    assert type(from_spec(spec)) is type(net)


# ----------------------------------------------------------------------------- init order
def _same(a: nn.Module, b: nn.Module, skip=()):
    sa, sb = a.state_dict(), b.state_dict()
    keys = [k for k in sb if k not in skip]
    assert keys and all(torch.equal(sa[k], sb[k]) for k in keys)


@pytest.mark.parametrize("family", FAMILIES)
def test_label_layers_come_after_the_base_network(family):
    """The label layers draw from the RNG after the base network (conditional BN: where the
    base builds its norms), so the base's initialisation under a seed is the unconditional
    network's. Keeps seeded runs reproducible across the refactor."""
    e = 5

    def seeded(fn):
        torch.manual_seed(0)
        return fn()

    # G concat: the base is the unconditional G for z_dim + e inputs, then the embedding
    g = seeded(lambda: _g(family, "concat", embed_dim=e))
    base = seeded(lambda: build("G", family, img_size=S, channels=1, z_dim=Z + e, width=W))
    _same(g, base)
    torch.manual_seed(0)
    build("G", family, img_size=S, channels=1, z_dim=Z + e, width=W)
    assert torch.equal(g.embed.weight, nn.Embedding(K, e).weight)
    # D projection / acgan: the base is the unconditional D, then the label layer
    for cond in ("projection", "acgan"):
        _same(seeded(lambda cond=cond: _d(family, cond)),
              seeded(lambda: build("D", family, img_size=S, channels=1, width=W)))
    # D concat: label maps widen the base's input channels; the mlp D widens its first Linear
    d = seeded(lambda: _d(family, "concat", embed_dim=e))
    if family == "mlp":
        _same(d, seeded(lambda: build("D", family, img_size=S, channels=1, width=W)),
              skip=("body.0.weight", "body.0.bias"))
        assert d.body[0].in_features == S * S + e == d.in_features
    else:
        _same(d, seeded(lambda: build("D", family, img_size=S, channels=1 + e, width=W)))
        assert d.channels == 1


def test_cbn_is_built_in_place_of_bn():
    for family in FAMILIES:
        g = _g(family, "cbn")
        inner = {id(c.bn) for c in g.modules() if isinstance(c, ConditionalBatchNorm)}
        # every BN is the (affine-free) core of a conditional BN
        assert inner and all(id(m) in inner for m in g.modules() if isinstance(m, nn.BatchNorm2d))
        assert not any(isinstance(m, ConditionalBatchNorm) for m in _g(family, "concat").modules())


# ----------------------------------------------------------------------------- forward
@pytest.mark.parametrize("family,cond", G_CASES, ids=[f"{f}-{m}" for f, m in G_CASES])
def test_generator_shapes_and_default_labels(family, cond):
    torch.manual_seed(0)
    G = _g(family, cond, embed_dim=2).eval()
    z, y = torch.randn(5, Z), torch.tensor([0, 1, 2, 2, 0])
    with torch.no_grad():
        x = G(z, y)
        assert x.shape == (5, 1, S, S) and x.abs().max() <= 1
        torch.testing.assert_close(G(z), G(z, default_labels(5, K, z.device)))
        torch.testing.assert_close(G(z.view(5, Z, 1, 1), y), x)       # (N, z_dim, 1, 1) too
    assert G.z_dim == Z and G.n_classes == K and G.cond == cond
    assert G.embed_dim == (2 if cond == "concat" else 0)
    assert default_labels(7, 3, "cpu").tolist() == [0, 1, 2, 0, 1, 2, 0]


@pytest.mark.parametrize("family,cond", D_CASES, ids=[f"{f}-{m}" for f, m in D_CASES])
def test_discriminator_shapes_and_freeze_groups(family, cond):
    torch.manual_seed(0)
    D = _d(family, cond).eval()
    x, y = torch.rand(5, 1, S, S) * 2 - 1, torch.tensor([0, 1, 2, 2, 0])
    with torch.no_grad():
        logits, cls = D.logits_and_classes(x, y)
        assert logits.shape == (5,) and torch.equal(D(x, y), logits)
        assert (cls is None) == (cond != "acgan") and (cls is None or cls.shape == (5, K))
        assert D.features(x, y).flatten(1).shape == (5, D._phi_dim())
    blocks = D.freeze_blocks()
    label = D.classifier if cond == "acgan" else D.embed
    where = blocks[0] if cond == "concat" else blocks[-1]
    assert any(m is label for m in where.modules())
    ids = [id(p) for b in blocks for p in b.parameters()]
    assert sorted(ids) == sorted(id(p) for p in D.parameters())
    if cond == "concat":
        with pytest.raises(ValueError, match=f"{family} D \\(cond='concat'\\) needs the labels y"):
            D.features(x)


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize("family", FAMILIES)
def test_method_errors(family):
    for kind, bad, good in (("G", "projection", G_METHODS), ("G", "acgan", G_METHODS),
                            ("D", "cbn", D_METHODS), ("D", "bogus", D_METHODS)):
        make = _g if kind == "G" else _d
        with pytest.raises(ValueError, match=f"{family} {kind}: cond='{bad}' is not a {kind} "
                                             f"conditioning method; choose one of {', '.join(good)}"):
            make(family, bad)
    for n in (1, True, 2.0):
        with pytest.raises(ValueError, match="needs at least 2 classes"):
            build("D", family, img_size=S, channels=1, width=W, n_classes=n)
    with pytest.raises(ValueError, match=r"embed_dim=-1 must be >= 0 \(0: one dimension per class\)"):
        _g(family, "concat", embed_dim=-1)
    with pytest.raises(ValueError, match="cond.g_method='projection'"):
        recipe("projection", "projection")
    assert recipe("projection", "concat") == ("concat", "projection")


def test_a_new_family_needs_only_hooks():
    """A toy family: the hooks alone make a working conditional G and D for every method."""

    class TinyG(nn.Module):
        def __init__(self, *, z_dim, width):
            super().__init__()
            self.z_dim = z_dim
            self.lin = nn.Linear(z_dim, width)
            self.norm = self._norm(width)
            self.out = nn.Linear(width, 4)

        def _norm(self, c):
            return nn.BatchNorm2d(c)

        def _generate(self, z, y):
            h = self.lin(z)[:, :, None, None]
            h = self.norm(h) if y is None else self.norm(h, y)
            return torch.tanh(self.out(h.flatten(1))).view(-1, 1, 2, 2)

    class TinyD(nn.Module):
        def __init__(self, *, channels, width):
            super().__init__()
            self.body = nn.Conv2d(channels, width, 2)
            self.head = nn.Linear(width, 1)

        def features(self, x):
            return self.body(x).flatten(1)

        def freeze_blocks(self):
            return [self.body, self.head]

    class CondTinyG(ConditionalGenerator, TinyG):
        family = "tiny"

    class CondTinyD(ConditionalDiscriminator, TinyD):
        family = "tiny"

    z, y, x = torch.randn(4, 3), torch.arange(4) % K, torch.randn(4, 1, 2, 2)
    for cond in G_METHODS:
        G = CondTinyG(z_dim=3, width=5, n_classes=K, cond=cond, embed_dim=0)
        assert G(z, y).shape == (4, 1, 2, 2)
    for cond in D_METHODS:
        D = CondTinyD(channels=1, width=5, n_classes=K, cond=cond, embed_dim=0)
        assert D(x, y).shape == (4,)
    # forgetting a hook is caught when the class is written or built, not at the first step
    with pytest.raises(TypeError, match="needs _generate"):
        type("NoGen", (ConditionalGenerator, nn.Module), {})
    with pytest.raises(TypeError, match="concat_input='vector'"):
        type("BadInput", (ConditionalDiscriminator, TinyD), {"concat_input": "vector"})

    class NoNorm(ConditionalGenerator, TinyG):
        family = "nonorm"

        def _norm(self, c):        # a family that bypasses the mixin's norm factory
            return nn.Identity()

    with pytest.raises(TypeError, match="nonorm G: cond='cbn' built no ConditionalBatchNorm"):
        NoNorm(z_dim=3, width=5, n_classes=K, cond="cbn", embed_dim=0)
