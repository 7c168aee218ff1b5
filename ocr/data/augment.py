"""Training augmentation of ink maps, as batched tensor ops on whatever device holds the batch.

It runs after ``ocr.preprocess.preprocess`` (ink = 1, paper = 0), the function evaluation, prediction and drawing use,
so contrast and noise act on what the model sees instead of being undone by a later normalisation. One ``grid_sample``
applies the affine transform and the elastic column warp about each image's own centre; pooling thins or thickens the
pen; a depthwise convolution blurs. Randomness comes from the generator passed in, so a seeded batch is the same
batch on every run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentConfig:
    p_affine: float = 0.8
    max_rotate_deg: float = 3.0
    max_shear: float = 0.35
    scale: tuple[float, float] = (0.8, 1.08)
    p_warp: float = 0.4  # smooth vertical displacement of columns: an elastic distortion along the line
    p_blur: float = 0.25
    p_noise: float = 0.4
    p_morph: float = 0.3  # erosion / dilation: thinner or thicker pen
    p_contrast: float = 0.5  # ink strength (gain) and paper level (offset)


def _bernoulli(p: float, n: int, gen: torch.Generator, device) -> torch.Tensor:
    return torch.rand(n, generator=gen, device=device) < p


def _uniform(lo: float, hi: float, n: int, gen: torch.Generator, device) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=gen, device=device)


def augment_batch(x: torch.Tensor, gen: torch.Generator, cfg: AugmentConfig = AugmentConfig(),
                  widths: torch.Tensor | None = None) -> torch.Tensor:
    """x: (N, 1, H, W) ink maps in [0, 1] (paper 0) on any device -> augmented, same shape. ``widths``: each image's
    own width in the padded batch, so that it turns and scales about its own centre and stays within it."""
    n, _, h, w = x.shape
    dev = x.device
    frac = (widths.to(dev).float() / w) if widths is not None else torch.ones(n, device=dev)
    # affine in pixel space, expressed in the normalised coordinates affine_grid uses (x/(W/2), y/(H/2))
    on = _bernoulli(cfg.p_affine, n, gen, dev)
    angle = torch.where(on, _uniform(-1, 1, n, gen, dev) * math.radians(cfg.max_rotate_deg), 0.0)
    shear = torch.where(on, _uniform(-cfg.max_shear, cfg.max_shear, n, gen, dev), 0.0)
    scale = torch.where(on, _uniform(*cfg.scale, n, gen, dev), 1.0)
    tx = torch.where(on, _uniform(-0.08, 0.08, n, gen, dev), 0.0) * frac
    ty = torch.where(on, _uniform(-0.16, 0.16, n, gen, dev), 0.0)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    r = h / w
    a00, a01, a10, a11 = cos, (-sin + shear) * r, sin / r, cos
    cx = frac - 1.0  # the image's own centre (x) in normalised coordinates; its y centre is 0
    theta = torch.stack([torch.stack([a00, a01, cx - a00 * cx + tx], 1),
                         torch.stack([a10, a11, -a10 * cx + ty], 1)], 1)
    grid = F.affine_grid(theta, (n, 1, h, w), align_corners=False)
    # elastic: a smooth vertical shift of each column
    warp = _bernoulli(cfg.p_warp, n, gen, dev)
    px = h / 32  # the warp's sizes are in pixels of a 32-px line: the same distortion at any input height
    amp = _uniform(0.5, 2.5, n, gen, dev) * px * 2 / h * warp
    period = _uniform(30, 120, n, gen, dev) * px
    phase = torch.rand(n, generator=gen, device=dev)
    cols = torch.arange(w, device=dev, dtype=torch.float32)
    shift = amp[:, None] * torch.sin(2 * math.pi * (cols[None, :] / period[:, None] + phase[:, None]))
    grid = grid.clone()
    grid[..., 1] -= shift[:, None, :]
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    # thicker or thinner pen
    morph = _bernoulli(cfg.p_morph, n, gen, dev)
    thicker = _bernoulli(0.5, n, gen, dev)
    dilated = F.max_pool2d(x, 3, 1, 1)
    eroded = -F.max_pool2d(-x, 3, 1, 1)
    x = torch.where((morph & thicker)[:, None, None, None], dilated, x)
    x = torch.where((morph & ~thicker)[:, None, None, None], eroded, x)
    # blur with a 3x3 Gaussian of a random width
    blur = _bernoulli(cfg.p_blur, n, gen, dev)
    sigma = _uniform(0.3, 1.0, n, gen, dev)
    taps = torch.exp(-torch.tensor([1.0, 0.0, 1.0], device=dev)[None, :] / (2 * sigma[:, None] ** 2))
    taps = taps / taps.sum(1, keepdim=True)
    kernel = (taps[:, :, None] * taps[:, None, :])[:, None]  # (N, 1, 3, 3)
    blurred = F.conv2d(x.transpose(0, 1), kernel, padding=1, groups=n).transpose(0, 1)
    x = torch.where(blur[:, None, None, None], blurred, x)
    # ink strength and paper level, then sensor noise
    contrast = _bernoulli(cfg.p_contrast, n, gen, dev)
    gain = torch.where(contrast, _uniform(0.6, 1.3, n, gen, dev), 1.0)
    offset = torch.where(contrast, _uniform(-0.08, 0.08, n, gen, dev), 0.0)
    x = x * gain[:, None, None, None] + offset[:, None, None, None]
    noise = _bernoulli(cfg.p_noise, n, gen, dev)
    std = torch.where(noise, _uniform(0.01, 0.06, n, gen, dev), 0.0)
    x = x + std[:, None, None, None] * torch.randn(x.shape, generator=gen, device=dev)
    return x.clamp_(0.0, 1.0)
