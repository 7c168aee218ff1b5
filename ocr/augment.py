"""On-the-fly augmentation of gray line images (uint8, dark ink on light paper, model height).

Runs per sample on the CPU; randomness comes from torch's generator so DataLoader seeding and
per-epoch seeding make every run reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageFilter


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
    p_contrast: float = 0.5


class Augment:
    def __init__(self, cfg: AugmentConfig = AugmentConfig()):
        self.cfg = cfg

    def __call__(self, gray: np.ndarray) -> np.ndarray:
        cfg = self.cfg
        rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,))))
        h, w = gray.shape
        img = Image.fromarray(gray)
        paper = int(np.median(gray))
        if rng.random() < cfg.p_affine:
            img = _affine(img, rng, cfg, paper)
        if rng.random() < cfg.p_morph:
            img = img.filter(ImageFilter.MinFilter(3) if rng.random() < 0.5 else ImageFilter.MaxFilter(3))
        if rng.random() < cfg.p_blur:
            img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0)))
        arr = np.asarray(img, dtype=np.float32)
        if rng.random() < cfg.p_warp:
            arr = _warp(arr, rng, paper)
        if rng.random() < cfg.p_contrast:
            arr = (arr - 128.0) * rng.uniform(0.6, 1.3) + 128.0 + rng.uniform(-30, 30)
        if rng.random() < cfg.p_noise:
            arr = arr + rng.normal(0, rng.uniform(3, 15), arr.shape)
        return np.clip(arr, 0, 255).astype(np.uint8)


def _affine(img: Image.Image, rng: np.random.Generator, cfg: AugmentConfig, fill: int) -> Image.Image:
    w, h = img.size
    a = np.deg2rad(rng.uniform(-cfg.max_rotate_deg, cfg.max_rotate_deg))
    sh = rng.uniform(-cfg.max_shear, cfg.max_shear)
    s = rng.uniform(*cfg.scale)
    # inverse map output -> input around the centre
    cos, sin = np.cos(a) / s, np.sin(a) / s
    m = np.array([[cos, -sin + sh, 0.0], [sin, cos, 0.0]])
    cx, cy = w / 2, h / 2
    tx, ty = rng.uniform(-0.04, 0.04) * w, rng.uniform(-0.08, 0.08) * h
    m[0, 2] = cx - m[0, 0] * cx - m[0, 1] * cy + tx
    m[1, 2] = cy - m[1, 0] * cx - m[1, 1] * cy + ty
    return img.transform((w, h), Image.AFFINE, m.flatten().tolist(), Image.BILINEAR, fillcolor=fill)


def _warp(arr: np.ndarray, rng: np.random.Generator, fill: int) -> np.ndarray:
    h, w = arr.shape
    amp = rng.uniform(0.5, 2.5)
    period = rng.uniform(30, 120)
    shift = np.round(amp * np.sin(2 * np.pi * (np.arange(w) / period + rng.random()))).astype(int)
    rows = np.clip(np.arange(h)[:, None] - shift[None, :], -1, h)
    out = np.full_like(arr, fill)
    ok = (rows >= 0) & (rows < h)
    cols = np.broadcast_to(np.arange(w)[None, :], (h, w))
    out[ok] = arr[rows[ok], cols[ok]]
    return out
