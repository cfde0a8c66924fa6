"""The matmul-shaped layers equal the torch layers they replace (values and gradients)."""
import pytest
import torch
import torch.nn as nn

from ganforge.models.layers import DotHead2d, FoldTranspose2d, ProjectTranspose2d

CASES = [
    (ProjectTranspose2d, nn.ConvTranspose2d, dict(in_channels=10, out_channels=16, kernel_size=4, stride=1, padding=0, bias=False), (5, 10, 1, 1)),
    (ProjectTranspose2d, nn.ConvTranspose2d, dict(in_channels=10, out_channels=16, kernel_size=7, stride=1, padding=0, bias=True), (5, 10, 1, 1)),
    (FoldTranspose2d, nn.ConvTranspose2d, dict(in_channels=8, out_channels=1, kernel_size=4, stride=2, padding=1, bias=True), (3, 8, 7, 7)),
    (FoldTranspose2d, nn.ConvTranspose2d, dict(in_channels=8, out_channels=3, kernel_size=4, stride=2, padding=1, bias=True), (3, 8, 16, 16)),
    (DotHead2d, nn.Conv2d, dict(in_channels=12, out_channels=1, kernel_size=4, stride=1, padding=0, bias=True), (6, 12, 4, 4)),
    # inputs the fast path was not written for fall back to the parent
    (ProjectTranspose2d, nn.ConvTranspose2d, dict(in_channels=4, out_channels=4, kernel_size=4, stride=2, padding=1), (2, 4, 3, 3)),
    (DotHead2d, nn.Conv2d, dict(in_channels=4, out_channels=1, kernel_size=4, stride=1, padding=0), (2, 4, 6, 6)),
    (FoldTranspose2d, nn.ConvTranspose2d, dict(in_channels=4, out_channels=8, kernel_size=4, stride=2, padding=1), (2, 4, 5, 5)),
]


@pytest.mark.parametrize("fast_cls,ref_cls,kw,shape", CASES)
@pytest.mark.parametrize("channels_last", [False, True])
def test_same_values_and_gradients(fast_cls, ref_cls, kw, shape, channels_last):
    torch.manual_seed(0)
    fast, ref = fast_cls(**kw), ref_cls(**kw)
    ref.load_state_dict(fast.state_dict())
    x = torch.randn(*shape)
    if channels_last:
        fast, ref = fast.to(memory_format=torch.channels_last), ref.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya, yb = fast(xa), ref(xb)
    assert ya.shape == yb.shape
    torch.testing.assert_close(ya, yb, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(yb)
    ya.backward(g)
    yb.backward(g)
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fast.weight.grad, ref.weight.grad, rtol=1e-4, atol=1e-5)


def test_state_dict_keys_unchanged():
    from ganforge import models
    G = models.build("G", "dcgan", img_size=32, channels=1, width=4)
    assert "blocks.0.0.weight" in G.state_dict() and "blocks.3.0.bias" in G.state_dict()
    D = models.build("D", "dcgan", img_size=32, channels=1, width=4)
    assert {"head.weight", "head.bias"} <= set(D.state_dict())
