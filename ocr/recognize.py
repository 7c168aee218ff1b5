"""Reading images with a trained checkpoint: the same preprocessing as training, batched."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ocr.decode import Fusion, Prediction, beam_decode, greedy_decode
from ocr.preprocess import load_image, pad_batch, preprocess
from ocr.train import load_checkpoint, model_from_checkpoint, select_device


class Recognizer:
    """A loaded model. ``read`` takes paths, PIL images or arrays and returns predictions."""

    def __init__(self, checkpoint: str | Path, device: str = "cpu"):
        self.device = select_device(device)
        self.checkpoint = load_checkpoint(checkpoint, map_location=self.device)
        self.model, self.alphabet, self.preprocess_config = model_from_checkpoint(self.checkpoint, self.device)
        self.path = Path(checkpoint)

    def prepare(self, image: str | Path | Image.Image | np.ndarray) -> np.ndarray:
        if isinstance(image, (str, Path)):
            image = load_image(image)
        return preprocess(image, self.preprocess_config)

    @torch.inference_mode()
    def logits(self, arrays: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """Preprocessed arrays -> (logits (T, N, C), output lengths (N,))."""
        images, widths = pad_batch(arrays)
        logits = self.model(images.to(self.device))
        return logits.float().cpu(), self.model.output_lengths(widths)

    def read(self, images: list, beam: int = 0, top_k: int = 5, batch_size: int = 64,
             fusion: Fusion | None = None) -> list[Prediction]:
        """Paths, PIL images or raw uint8 arrays -> predictions (greedy when ``beam`` is 0, else beam search, with a
        character language model when ``fusion`` is given)."""
        out: list[Prediction] = []
        for i in range(0, len(images), batch_size):
            out += self.read_prepared([self.prepare(im) for im in images[i:i + batch_size]], beam, top_k, fusion)
        return out

    def read_prepared(self, arrays: list[np.ndarray], beam: int = 0, top_k: int = 5,
                      fusion: Fusion | None = None) -> list[Prediction]:
        """Arrays already through ``prepare`` (one batch) -> predictions."""
        logits, lengths = self.logits(arrays)
        if beam or fusion is not None:
            return beam_decode(logits, lengths, self.alphabet, beam=beam or 10, top_k=top_k, fusion=fusion)
        return greedy_decode(logits, lengths, self.alphabet)
