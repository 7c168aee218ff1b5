"""Reading images with a trained checkpoint: the same preprocessing as training, batched."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ocr.checkpoint import load_checkpoint, model_from_checkpoint, select_device
from ocr.decoding.ctc import label_log_prob
from ocr.decoding.decoder import Decoder, DecoderConfig
from ocr.decoding.types import Prediction
from ocr.model import CRNN
from ocr.preprocess import PAD_MULTIPLE, load_image, pad_batch, preprocess


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

    def logits(self, arrays: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """Preprocessed arrays -> (logits (T, N, C), output lengths (N,))."""
        logits, lengths, _ = self.outputs(arrays)
        return logits, lengths

    def outputs(self, arrays: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
        """Preprocessed arrays -> logits (T, N, C), output lengths (N,) and image embeddings (N, 2*hidden) (``read_arrays``)."""
        return read_arrays(self.model, arrays, self.device)

    def decoder(self, config: DecoderConfig = DecoderConfig()) -> Decoder:
        return Decoder(config, self.alphabet, self.checkpoint.get("training_labels"))

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

    def score(self, arrays: list[np.ndarray], labels: list[str | None], decoder: Decoder | None = None) -> list[Reading]:
        """Arrays already through ``prepare`` (one batch) and their labels (None: unlabelled) -> for each, the
        decoder's reading with log P(reading | image) and log P(label | image) under the model alone (no language
        model), floored at ``LOG_FLOOR`` where a text cannot fit (or has a character outside the model's set). Their
        difference is the label-error score.
        With a beam, also the runner-up (the best other candidate) and its log P under the model alone, and for
        every image its embedding: what ``ocr.curation.acquire`` ranks the unlabelled pool by."""
        logits, lengths, embeddings = self.outputs(arrays)
        preds = (decoder or self.decoder())(logits, lengths)
        reading_lp = label_log_prob(logits, lengths, [p.text for p in preds], self.alphabet).tolist()
        runner_up = {i: other for i, p in enumerate(preds)
                     if (other := next((t for t, _ in p.candidates if t != p.text), None)) is not None}
        runner_lp: dict[int, float] = {}
        if runner_up:
            idx = list(runner_up)
            lp = label_log_prob(logits[:, idx], lengths[idx], [runner_up[i] for i in idx], self.alphabet).tolist()
            runner_lp = dict(zip(idx, lp))
        known = [i for i, label in enumerate(labels) if label is not None and not self.alphabet.invalid_chars(label)]
        label_lp = {i: LOG_FLOOR for i, label in enumerate(labels) if label is not None}  # a label it cannot write
        if known:
            lp = label_log_prob(logits[:, known], lengths[known], [labels[i] for i in known], self.alphabet).tolist()
            label_lp |= dict(zip(known, lp))
        return [Reading(p.text, p.confidence, _floor(reading_lp[i]), _floor(label_lp[i]) if i in label_lp else None,
                        runner_up.get(i), _floor(runner_lp[i]) if i in runner_lp else None, embeddings[i])
                for i, p in enumerate(preds)]

    def score_files(self, paths: list[str | Path], labels: list[str | None] | None = None,
                    decoder: Decoder | None = None, batch_size: int = 128,
                    should_stop: Callable[[], bool] | None = None) -> list[Reading | None]:
        """``score`` over image files in batches; an image that cannot be read is None (and the rest are read).
        ``should_stop`` is asked after each batch; what was not read then is left out of the list."""
        labels = labels if labels is not None else [None] * len(paths)
        out: list[Reading | None] = []
        for start in range(0, len(paths), batch_size):
            arrays, readable = [], []
            for path in paths[start:start + batch_size]:
                try:
                    arrays.append(self.prepare(load_image(path)))
                    readable.append(True)
                except ValueError:
                    readable.append(False)
            chunk = [label for label, ok in zip(labels[start:start + batch_size], readable) if ok]
            readings = iter(self.score(arrays, chunk, decoder) if arrays else [])
            out += [next(readings) if ok else None for ok in readable]
            if should_stop is not None and should_stop():
                break
        return out


@torch.inference_mode()
def read_arrays(model: CRNN, arrays: list[np.ndarray], device: torch.device) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """The one way an image is read, by the Recognizer and by validation during training alike: preprocessed arrays
    -> logits (T, N, C) on the CPU, output lengths (N,) and image embeddings (N, 2*hidden), the recurrent features
    averaged over each image's own columns, unit length.

    The images are run in groups of one padded width, so each is read exactly as it is alone (and in the web demo):
    zero padding in a batch would reach the convolutions at its edge and start the backward LSTM, and an image would
    read differently with other images. On real crops this is no slower than one padded batch."""
    if not arrays:
        raise ValueError("empty batch")
    model.eval()
    lengths = model.output_lengths(torch.tensor([a.shape[1] for a in arrays]))
    groups: dict[int, list[int]] = defaultdict(list)
    for i, a in enumerate(arrays):
        groups[-(-a.shape[1] // PAD_MULTIPLE)].append(i)
    parts = []
    for members in groups.values():
        images, _ = pad_batch([arrays[i] for i in members])
        features = model.features(images.to(device))  # T, n, 2*hidden
        own = lengths[members]
        mask = (torch.arange(features.shape[0])[:, None] < own[None, :]).to(features.device, features.dtype)
        pooled = (features * mask[..., None]).sum(0) / mask.sum(0)[:, None]
        parts.append((members, model.head(model.drop(features)).float().cpu(),
                      torch.nn.functional.normalize(pooled.float(), dim=1).cpu()))
    steps = max(part.shape[0] for _, part, _ in parts)
    logits = torch.zeros(steps, len(arrays), parts[0][1].shape[2])
    embeddings = torch.zeros(len(arrays), parts[0][2].shape[1])
    for members, part, pooled in parts:
        logits[: part.shape[0], members] = part
        embeddings[members] = pooled
    return logits, lengths, embeddings.numpy()


LOG_FLOOR = -1e4


def _floor(value: float) -> float:
    return max(value, LOG_FLOOR) if math.isfinite(value) else LOG_FLOOR


@dataclass(frozen=True)
class Reading:
    text: str
    confidence: float  # the decoder's P(text | image) (with its language model, if any)
    log_prob: float  # log P(text | image) under the model alone
    label_log_prob: float | None  # log P(label | image) under the model alone; None without a label
    runner_up: str | None = None  # the beam's best other candidate; None for greedy decoding
    runner_up_log_prob: float | None = None  # its log P(text | image) under the model alone
    embedding: np.ndarray | None = field(default=None, compare=False, repr=False)  # unit length, see ``outputs``

    @property
    def margin(self) -> float | None:
        """P(reading) - P(runner-up) under the model alone: small or negative (the language model overruled the
        model) when the image could be read two ways. None without a runner-up."""
        if self.runner_up_log_prob is None:
            return None
        return math.exp(self.log_prob) - math.exp(self.runner_up_log_prob)

    @property
    def label_error_score(self) -> float | None:
        """How much more the model believes its reading than the label (0 when they agree; None without a label)."""
        if self.label_log_prob is None:
            return None
        return 0.0 if self.log_prob <= self.label_log_prob else self.log_prob - self.label_log_prob
