"""Reading images with a trained checkpoint: the same preprocessing as training, batched."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ocr.decode import Prediction
from ocr.decoder import Decoder, DecoderConfig
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

    def decoder(self, config: DecoderConfig = DecoderConfig()) -> Decoder:
        return Decoder(config, self.alphabet)

    def read(self, images: list, decoder: Decoder | None = None, batch_size: int = 64) -> list[Prediction]:
        """Paths, PIL images or raw uint8 arrays -> predictions (greedy without a ``decoder``)."""
        out: list[Prediction] = []
        for i in range(0, len(images), batch_size):
            out += self.read_prepared([self.prepare(im) for im in images[i:i + batch_size]], decoder)
        return out

    def read_prepared(self, arrays: list[np.ndarray], decoder: Decoder | None = None) -> list[Prediction]:
        """Arrays already through ``prepare`` (one batch) -> predictions."""
        logits, lengths = self.logits(arrays)
        return (decoder or self.decoder())(logits, lengths)
