"""The one preprocessing path from any image (file crop, synthetic, drawn) to model input.

Training (through ``ink_map``, its uint8 form), evaluation, prediction and the dashboard's drawn input all go
through ``preprocess`` so the model never sees two different conventions; training augmentation (``ocr.data.augment``)
acts on its output.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from ocr.limits import limits

if TYPE_CHECKING:
    import torch

Image.MAX_IMAGE_PIXELS = 64_000_000  # PIL's own guard (it raises at twice this); ``check_size`` is the one that counts


@dataclass(frozen=True)
class PreprocessConfig:
    height: int = 32
    max_width: int = 256


def to_gray(image: Image.Image | np.ndarray) -> np.ndarray:
    """Any PIL image or HxW / HxWxC uint8 array to an HxW uint8 gray array (alpha composited on white)."""
    if isinstance(image, np.ndarray):
        arr = image
        if arr.ndim == 2:
            return arr.astype(np.uint8, copy=False)
        image = Image.fromarray(arr.astype(np.uint8, copy=False))
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return np.asarray(image.convert("L"))


def resize_gray(gray: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """Resize to ``cfg.height`` keeping the aspect ratio; squash horizontally past ``cfg.max_width``."""
    h, w = gray.shape
    if h == 0 or w == 0:
        raise ValueError("empty image")
    new_w = max(4, min(cfg.max_width, round(w * cfg.height / h)))
    return np.asarray(Image.fromarray(gray).resize((new_w, cfg.height), Image.BILINEAR))


def normalize(gray: np.ndarray) -> np.ndarray:
    """uint8 gray (dark ink on light paper) -> float32 ink map in [0, 1], paper at 0.

    The paper level is the median and the ink level a high percentile of the inverted image,
    so gray scans, faint pencil and white canvases give the same range.
    """
    cdf = np.cumsum(np.bincount(gray.ravel(), minlength=256))
    paper_gray = int(np.searchsorted(cdf, cdf[-1] * 0.5))  # median gray level
    ink_gray = int(np.searchsorted(cdf, cdf[-1] * 0.005))  # the darkest 0.5 %
    scale = max(paper_gray - ink_gray, 32)
    lut = np.clip((paper_gray - np.arange(256, dtype=np.float32)) / scale, 0.0, 1.0)
    return (np.round(lut * 255) / np.float32(255)).astype(np.float32)[gray]  # steps of 1/255: see ``ink_map``


def preprocess(image: Image.Image | np.ndarray, cfg: PreprocessConfig = PreprocessConfig()) -> np.ndarray:
    """Image -> float32 array of shape (cfg.height, W) with W <= cfg.max_width, ink = 1."""
    check_size(image)
    return normalize(resize_gray(to_gray(image), cfg))


def ink_map(image: Image.Image | np.ndarray, cfg: PreprocessConfig = PreprocessConfig()) -> np.ndarray:
    """``preprocess`` stored as uint8 (ink 255) without loss (``normalize`` works in steps of 1/255): a quarter of the
    memory for a data set held in memory, and the model sees the same values in training and at evaluation."""
    return np.round(preprocess(image, cfg) * 255).astype(np.uint8)


PAD_MULTIPLE = 8  # batch widths round up to it (ocr/sharing/web/hwr.js pads a drawing the same way)


def pad_batch(images: list[np.ndarray], multiple: int = PAD_MULTIPLE) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack (H, W_i) arrays into a zero-padded (N, 1, H, W_max) tensor, plus the widths (N,). (torch is imported
    here: the command lines and the database read images without it.)"""
    import torch

    if not images:
        raise ValueError("empty batch")
    height = images[0].shape[0]
    widths = torch.tensor([im.shape[1] for im in images], dtype=torch.long)
    width = -(-max(im.shape[1] for im in images) // multiple) * multiple  # no torch kernel: see ocr.decoding.ctc
    batch = np.zeros((len(images), 1, height, width), dtype=np.float32)
    for i, im in enumerate(images):
        batch[i, 0, :, : im.shape[1]] = im
    return torch.from_numpy(batch), widths


def check_size(image: Image.Image | np.ndarray) -> None:
    """Refuse an image larger than the pixel limit (for a file, from its header before decoding): the same limit at
    import, prediction and drawing."""
    h, w = image.shape[:2] if isinstance(image, np.ndarray) else (image.height, image.width)
    limit = limits().max_image_pixels
    if w * h > limit:
        raise ValueError(f"image too large ({w:,} x {h:,} = {w * h:,} pixels, over the limit of {limit:,}; "
                         "HWR_MAX_IMAGE_MPX raises it)")


def load_image(path) -> Image.Image:
    """Open and fully decode an image file, raising ``ValueError`` with a readable reason."""
    try:
        with Image.open(path) as im:
            check_size(im)
            if im.format == "JPEG" and im.mode != "L":
                im.draft("L", im.size)  # decode straight to gray: the only channel preprocessing keeps
            im.load()
            if im.width == 0 or im.height == 0:
                raise ValueError("image has zero size")
            return im.copy()
    except (FileNotFoundError, IsADirectoryError):
        raise ValueError("file not found") from None
    except Image.DecompressionBombError:
        raise ValueError(f"image too large (over {Image.MAX_IMAGE_PIXELS:,} pixels)") from None
    except (OSError, SyntaxError) as exc:  # PIL raises these for truncated / non-image files
        raise ValueError(f"not a readable image ({exc})") from None
