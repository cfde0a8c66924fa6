"""Regularisers of the discriminator, as pure functions of tensors (no config, no state).

- :func:`r1_penalty`, :func:`r2_penalty` — Mescheder et al. 2018, "Which Training Methods
  for GANs do actually Converge?", eq. 9 and 10: penalise D's input gradient on real (R1) or
  generated (R2) data; both are :func:`zero_centered_penalty` on their batch. R1 + R2 together
  with the RpGAN loss is R3GAN's objective (Huang et al. 2024, eq. 5).
- :func:`gradient_penalty` — Gulrajani et al. 2017, "Improved Training of Wasserstein GANs",
  eq. 3: push the critic's input-gradient norm to 1 between real and fake samples.
- :func:`instance_noise_std`, :func:`add_instance_noise` — instance noise (Sønderby et al.
  2016; Arjovsky & Bottou 2017, §3): Gaussian noise on D's inputs, annealed to zero.

The penalties return the bare expectation; the weight (gamma / 2 for R1 and R2, lambda for the
gradient penalty) and lazy application (every k steps, scaled by k, as in StyleGAN2) are the
caller's. All build the graph of the input gradient (``create_graph=True``), so ``backward()``
on the result reaches D's parameters through a double backward.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch


def _per_sample_sq_norm(grad: torch.Tensor) -> torch.Tensor:
    """||g_i||^2 over every non-batch dimension, in float32, shape (N,)."""
    return grad.float().square().reshape(grad.shape[0], -1).sum(1)


def zero_centered_penalty(logits: torch.Tensor, images: torch.Tensor, name: str = "penalty"
                          ) -> torch.Tensor:
    """E_x[ ||grad_x D(x)||^2 ] over the batch ``images`` (real for R1, generated for R2), with
    ``logits = D(images)``: the zero-centred gradient penalty of Mescheder et al. 2018 (eq. 9-10)
    without its factor; the caller adds ``gamma / 2 * ...`` to D's loss.

    ``images`` must have ``requires_grad=True`` *before* ``logits = D(images)`` is computed
    (D may see them through differentiable ops: augmentation, noise, a concatenation with
    another batch). The gradient taken is that of ``logits.sum()`` (in float32): each image's
    logits depend only on that image (no BatchNorm across the batch), so this gives every
    image's own gradient in one backward. For a PatchGAN map (N, 1, h, w) the per-image output
    is the *sum* of its patch logits, so the penalty grows with the number of patches; choose
    gamma accordingly. The squared norm runs over all of an image's dimensions (C, H, W).
    Returns a 0-dim float32 tensor that is differentiable w.r.t. D's parameters. ``name``
    (r1_penalty, r2_penalty) prefixes the ValueErrors raised for an ``images`` that does not
    require grad, a batch-size mismatch, or logits that do not depend on ``images``.
    """
    if not images.requires_grad:
        raise ValueError(f"{name}: the images do not require grad, so D's gradient with respect "
                         f"to them cannot be taken; call images.requires_grad_(True) before "
                         f"computing logits = D(images)")
    if logits.shape[0] != images.shape[0]:
        raise ValueError(f"{name}: the logits have batch size {logits.shape[0]} but the images "
                         f"have {images.shape[0]}; pass D's logits on those images")
    (grad,) = torch.autograd.grad(logits.float().sum(), images,
                                  create_graph=True, allow_unused=True)
    if grad is None:
        raise ValueError(f"{name}: the logits do not depend on the images; compute them as "
                         f"D(images) from the very tensor passed here")
    return _per_sample_sq_norm(grad).mean()


def r1_penalty(real_logits: torch.Tensor, real_images: torch.Tensor) -> torch.Tensor:
    """E_x[ ||grad_x D(x)||^2 ] over the real batch (Mescheder et al. 2018, eq. 9, without its
    factor): the caller adds ``gamma / 2 * r1_penalty(...)`` to D's loss.

    R1 penalises D for being non-flat on the data manifold, which makes the simultaneous
    gradient dynamics locally convergent near the equilibrium (the paper's convergence result
    for R1 and R2), where unregularised GANs may circle it.

    ``real_images`` must have ``requires_grad=True`` before ``real_logits = D(real_images)``;
    the rules, shapes and errors are :func:`zero_centered_penalty`'s.
    """
    return zero_centered_penalty(real_logits, real_images, "r1_penalty")


def r2_penalty(fake_logits: torch.Tensor, fake_images: torch.Tensor) -> torch.Tensor:
    """E_z[ ||grad_x D(x)|_{x = G(z)}||^2 ] over the generated batch (Mescheder et al. 2018,
    eq. 10, without its factor): the caller adds ``gamma / 2 * r2_penalty(...)`` to D's loss.

    R2 flattens D on the generated distribution, as R1 does on the data. R3GAN (Huang et al.
    2024, §2.2) shows that with the RpGAN loss R1 alone still lets training diverge, and that R1
    and R2 together (the same gamma on both) make it stable; its objective, eq. 5, is
    ``RpGAN + gamma/2 (R1 + R2)``. ``fake_images`` are G's samples *detached* from G and then
    marked ``requires_grad=True`` before ``fake_logits = D(fake_images)`` (the penalty trains D
    only); the rules, shapes and errors are :func:`zero_centered_penalty`'s.
    """
    return zero_centered_penalty(fake_logits, fake_images, "r2_penalty")


def gradient_penalty(critic: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor,
                     fake: torch.Tensor, generator: Optional[torch.Generator] = None
                     ) -> torch.Tensor:
    """E_{x^}[ (||grad_{x^} D(x^)||_2 - 1)^2 ] (Gulrajani et al. 2017, eq. 3, without lambda):
    the caller adds ``lambda * gradient_penalty(...)`` (lambda = 10 in the paper) to the
    critic's loss.

    ``x^ = eps * real + (1 - eps) * fake`` with ``eps ~ U[0, 1]`` drawn once per sample (from
    ``generator`` when given; it must live on ``real``'s device). An optimal 1-Lipschitz critic
    has gradient norm 1 on the straight lines between coupled real and fake points (the paper's
    Proposition 1); the penalty enforces that softly there instead of WGAN's weight clipping.
    ``fake`` is detached: the penalty trains the critic only.

    ``critic`` is any callable from images to logits, so a conditional D can be passed as
    ``lambda x: D(x, y)``. Each image's output must depend on that image alone: with BatchNorm in
    the critic, the gradient of one output mixes the whole batch and the per-sample norm is ill-
    defined (the paper drops BatchNorm from the critic; use layer norm or none). Returns a
    0-dim float32 tensor that is differentiable w.r.t. the critic's parameters.
    """
    if real.shape != fake.shape:
        raise ValueError(f"gradient_penalty: real {tuple(real.shape)} and fake "
                         f"{tuple(fake.shape)} must have the same shape to be interpolated")
    n = real.shape[0]
    dtype = real.dtype if real.is_floating_point() else torch.float32
    eps = torch.rand((n,) + (1,) * (real.dim() - 1), generator=generator, device=real.device,
                     dtype=dtype)
    # x^ must be a leaf of its own graph: detach both ends (real may itself require grad, e.g.
    # when the caller also takes an R1 penalty on it).
    x_hat = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)
    out = critic(x_hat)
    (grad,) = torch.autograd.grad(out.float().sum(), x_hat, create_graph=True)
    norm = _per_sample_sq_norm(grad).sqrt()
    return (norm - 1).square().mean()


def instance_noise_std(step: int, sigma0: float, anneal_steps: int) -> float:
    """Standard deviation of instance noise at ``step``: linear from ``sigma0`` at step 0 to 0 at
    ``anneal_steps``, and 0 from then on (never negative).

    Why: when the data and model distributions have disjoint supports, a perfect D exists and
    its gradients carry no information (Arjovsky & Bottou 2017, §2-3); convolving both with the
    same Gaussian makes their supports overlap (Sønderby et al. 2016). The noise biases the
    objective, so it is annealed away as G improves.
    """
    if sigma0 < 0:
        raise ValueError(f"instance noise sigma0={sigma0}: a standard deviation must be >= 0")
    if anneal_steps < 0:
        raise ValueError(f"instance noise anneal_steps={anneal_steps}: must be >= 0 "
                         f"(the step at which the noise reaches 0)")
    if anneal_steps == 0 or step >= anneal_steps:
        return 0.0
    return float(sigma0) * max(0.0, 1.0 - step / anneal_steps)


def add_instance_noise(x: torch.Tensor, std: float,
                       generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """``x + std * N(0, 1)`` (``x`` itself when ``std == 0``). Add it to *both* D's real and
    fake inputs: the point is that the two noisy distributions overlap. ``generator``, when
    given, must live on ``x``'s device."""
    if std == 0:
        return x
    if std < 0:
        raise ValueError(f"instance noise std={std}: a standard deviation must be >= 0")
    noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return x + std * noise
