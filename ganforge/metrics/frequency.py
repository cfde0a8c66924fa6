"""High-frequency artefact ratio: how much of the images' spectral energy sits near the
Nyquist frequency, generated versus real (1.0 = like the real data).

What it catches. A stride-2 transposed convolution whose kernel size is not a multiple of
its stride (DCGAN's 4x4/2) paints its output unevenly: every other pixel receives a
different number of kernel taps, which leaves a period-2 "checkerboard" on the samples
(Odena, Dumoulin & Olah 2016, "Deconvolution and Checkerboard Artifacts", Distill,
doi:10.23915/distill.00003). Up-sampling layers in general leave such periodic traces as
peaks or excess energy at the top of the spectrum, where natural images have little (their
power falls roughly as 1/f^2); Durall, Keuper & Keuper 2020 ("Watch your Up-Convolution: CNN
Based Generative Deep Neural Networks are Failing to Reproduce Spectral Distributions", CVPR)
show that GAN samples are told apart from real images by exactly this part of the spectrum.
FID, computed on a classifier's features, barely sees it. A value well above 1 means
high-frequency texture the real data does not have (checkerboard, speckle); well below 1,
images blurrier than the real ones.

Definition (:func:`high_frequency_share`). For each image and channel, the channel's mean is
removed (the DC term carries no texture), the 2-D FFT power spectrum ``|F(u, v)|^2`` is taken,
and the share is the power in the outer band ``max(|u|, |v|) >= band * 0.5`` cycles/pixel
(``band`` = :data:`HF_BAND` = 0.75: the top quarter of frequencies along either axis, which
holds the period-2 checkerboard peaks at (0.5, 0), (0, 0.5) and (0.5, 0.5)) divided by the
channel's total (non-DC) power. A channel with no variation (a flat image) has no share and
is left out of the average. Shares are averaged per channel over the images
(:class:`SpectralStats`, streaming), then over channels; :func:`hf_ratio` is the generated
average divided by the real one (NaN when the real images have no high-frequency energy at
all). Images are float NCHW in [-1, 1] of any size (the band is relative to Nyquist).
"""
from __future__ import annotations

from typing import Iterable, Optional, Union

import torch

#: The outer band starts at this fraction of the Nyquist frequency (0.5 cycles/pixel).
HF_BAND = 0.75
#: Channels whose total non-DC power is below this (in [-1, 1] units^2 per pixel) are flat.
FLAT_POWER = 1e-10


def _band_mask(h: int, w: int, band: float, device: torch.device) -> torch.Tensor:
    fy = torch.fft.fftfreq(h, device=device).abs()
    fx = torch.fft.fftfreq(w, device=device).abs()
    return torch.maximum(fy[:, None], fx[None, :]) >= band * 0.5


def high_frequency_share(images: torch.Tensor, band: float = HF_BAND) -> torch.Tensor:
    """Per image and channel, the share of non-DC spectral power in the outer band (see the
    module docstring): a float64 ``(N, C)`` tensor in [0, 1], NaN for a flat channel.

    ``images``: float ``(N, C, H, W)``, any range (the share is scale-free). Raises
    ValueError for another shape or a ``band`` outside (0, 1]."""
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        raise ValueError(f"images must be an NCHW tensor, got "
                         f"{tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__}")
    if not 0.0 < band <= 1.0:
        raise ValueError(f"band={band!r} must be in (0, 1] (a fraction of the Nyquist frequency)")
    x = images.detach().to(torch.float64)
    x = x - x.mean(dim=(-2, -1), keepdim=True)
    power = torch.fft.fft2(x).abs().square()                      # (N, C, H, W)
    total = power.sum(dim=(-2, -1))
    outer = (power * _band_mask(x.shape[-2], x.shape[-1], band, x.device)).sum(dim=(-2, -1))
    h, w = x.shape[-2:]
    flat = total <= FLAT_POWER * h * w * h * w                    # Parseval: sum |F|^2 = HW sum x^2
    share = outer / total.clamp_min(1e-300)
    return torch.where(flat, torch.full_like(share, float("nan")), share)


class SpectralStats:
    """Streaming per-channel average of :func:`high_frequency_share` over image batches.

    ``update(batch)`` folds in float NCHW images; ``share`` is the ``(C,)`` float64 average
    over the images whose channel is not flat (NaN for a channel flat in every image)."""

    def __init__(self, band: float = HF_BAND):
        self.band = band
        self.sum: Optional[torch.Tensor] = None
        self.count: Optional[torch.Tensor] = None

    def update(self, images: torch.Tensor) -> "SpectralStats":
        s = high_frequency_share(images, self.band).cpu()
        ok = ~torch.isnan(s)
        add, cnt = torch.where(ok, s, torch.zeros_like(s)).sum(0), ok.sum(0).to(torch.float64)
        if self.sum is None:
            self.sum, self.count = add, cnt
        elif add.shape != self.sum.shape:
            raise ValueError(f"SpectralStats: a batch with {add.shape[0]} channels after "
                             f"batches with {self.sum.shape[0]}")
        else:
            self.sum, self.count = self.sum + add, self.count + cnt
        return self

    @property
    def share(self) -> torch.Tensor:
        if self.sum is None:
            raise ValueError("SpectralStats: no images were added")
        return self.sum / self.count            # 0/0 = NaN for an always-flat channel


def spectral_share(images: Union[torch.Tensor, Iterable[torch.Tensor]],
                   band: float = HF_BAND, batch_size: int = 500) -> torch.Tensor:
    """The ``(C,)`` average high-frequency share of a tensor or an iterable of batches."""
    st = SpectralStats(band)
    if isinstance(images, torch.Tensor):
        images = [images[i:i + batch_size] for i in range(0, len(images), batch_size)]
    for b in images:
        st.update(b)
    return st.share


def hf_ratio(real_share: torch.Tensor, fake_share: torch.Tensor) -> float:
    """The artefact ratio: the generated images' high-frequency share (averaged over
    channels) over the real images' (1.0 = like the real data; > 1: more energy near
    Nyquist, e.g. a checkerboard; < 1: blurrier). Channel counts must match; NaN when the
    real share is 0 or NaN."""
    real_share, fake_share = torch.as_tensor(real_share, dtype=torch.float64), \
        torch.as_tensor(fake_share, dtype=torch.float64)
    if real_share.shape != fake_share.shape:
        raise ValueError(f"hf_ratio: {tuple(real_share.shape)} real channels vs "
                         f"{tuple(fake_share.shape)} generated; compare images of one channel count")
    r, f = float(real_share.nanmean()), float(fake_share.nanmean())
    if not r > 0:
        return float("nan")
    return f / r
