"""Canvas drawings as images (kept apart from the canvas component, which only imports inside a running app)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def is_blank(image_data: np.ndarray | None) -> bool:
    """No stroke yet: every pixel transparent or one flat colour."""
    if image_data is None or image_data.size == 0:
        return True
    rgba = np.asarray(image_data)
    if rgba.shape[-1] == 4 and not rgba[..., 3].any():
        return True
    return int(rgba[..., :3].max()) - int(rgba[..., :3].min()) < 8


def to_image(image_data: np.ndarray) -> Image.Image:
    """RGBA from the canvas -> an RGB image on white paper, as a scanned form field would be."""
    rgba = Image.fromarray(np.asarray(image_data, dtype=np.uint8), "RGBA")
    paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(paper, rgba).convert("RGB")


def to_png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()
