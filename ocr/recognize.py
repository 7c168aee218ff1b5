"""Reading images with a trained checkpoint: the same preprocessing as training, batched, the model run by
onnxruntime on a CPU or torch (``ocr.engines``)."""

from __future__ import annotations

import math
import threading
from collections import defaultdict, deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ocr.checkpoint import load_checkpoint, model_from_checkpoint, select_device
from ocr.decoding.ctc import label_log_prob, log_softmax
from ocr.decoding.decoder import Decoder, DecoderConfig
from ocr.decoding.types import VIEW_OFFSETS, Prediction
from ocr.engines import Engine, open_engine
from ocr.model import CRNNConfig
from ocr.preprocess import PAD_MULTIPLE, load_image, pad_batch, preprocess


class Recognizer:
    """A loaded model. ``read`` takes paths, PIL images or arrays and returns predictions.

    ``engine``: what runs the model (``ocr.engines.open_engine``: ``auto`` is onnxruntime on a CPU where the model's
    ONNX file is there, torch otherwise). With onnxruntime
    the batches are read by as many threads as there are cores, plus one: each prepares its images, runs them and
    decodes them, so preprocessing and decoding overlap the model (both release the GIL for most of their time)."""

    def __init__(self, checkpoint: str | Path, device: str = "cpu", engine: str = "auto"):
        self.device = select_device(device)
        self.checkpoint = load_checkpoint(checkpoint, map_location=self.device)
        self.model, self.alphabet, self.preprocess_config = model_from_checkpoint(self.checkpoint, self.device)
        self.path = Path(checkpoint)
        self.engine = open_engine(engine, checkpoint, self.checkpoint, self.model, self.device, torch.get_num_threads())
        # onnx: one single-thread batch per core, plus one; torch spreads one batch over the cores itself, and on a GPU
        # a second thread prepares the next batch meanwhile
        self.workers = torch.get_num_threads() + 1 if self.engine.name == "onnx" else 1 + (self.device.type != "cpu")
        self._local = threading.local()  # ``pooled`` in the threads of ``_stream``
        self.batch_size = 512 if self.device.type == "cuda" else 64  # a GPU wants large batches

    def prepare(self, image: str | Path | Image.Image | np.ndarray) -> np.ndarray:
        if isinstance(image, (str, Path)):
            image = load_image(image)
        return preprocess(image, self.preprocess_config)

    def logits(self, arrays: list[np.ndarray], views: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """Preprocessed arrays -> (logits (T, N, C), output lengths (N,))."""
        logits, lengths, _ = self.outputs(arrays, views)
        return logits, lengths

    def outputs(self, arrays: list[np.ndarray], views: int = 1) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
        """Preprocessed arrays -> logits (T, N, C), output lengths (N,) and image embeddings (N, 2*hidden)
        (``read_views``: ``read_arrays`` of ``views`` views of each image)."""
        return read_views(self.engine, arrays, self.model.cfg, views, alone=not getattr(self._local, "pooled", False))

    def decoder(self, config: DecoderConfig = DecoderConfig(), images: int = 0, processes: int | None = None) -> Decoder:
        """The model's decoder of ``config``; a read of ``images`` images (a pool, a dataset) decodes a beam on
        several processes when it is large enough to be worth their start (``ocr.decoding.parallel``), or on
        ``processes`` when given."""
        from ocr.decoding.parallel import processes_for

        return Decoder(config, self.alphabet, self.checkpoint.get("training_labels"),
                       processes or processes_for(images, bool(config.beam_width)))

    def read(self, images: list, decoder: Decoder | None = None, batch_size: int | None = None) -> list[Prediction]:
        """Paths, PIL images or raw uint8 arrays -> predictions (greedy without a ``decoder``); an image that cannot
        be read raises its ``ValueError``."""
        out = [p for batch in self.read_stream(images, decoder, batch_size) for p in batch]
        if bad := next((p for p in out if isinstance(p, ValueError)), None):
            raise bad
        return out

    def read_stream(self, images: list, decoder: Decoder | None = None,
                    batch_size: int | None = None) -> Iterator[list[Prediction | ValueError]]:
        """``read`` batch by batch, in order; an image that cannot be read is its ``ValueError``."""
        decoder = decoder or self.decoder()
        return self._stream(images, [None] * len(images), batch_size, lambda arrays, _: self.read_prepared(arrays, decoder))

    def read_prepared(self, arrays: list[np.ndarray], decoder: Decoder | None = None) -> list[Prediction]:
        """Arrays already through ``prepare`` (one batch) -> predictions."""
        decoder = decoder or self.decoder()
        logits, lengths = self.logits(arrays, decoder.config.views)
        return decoder(logits, lengths)

    def score(self, arrays: list[np.ndarray], labels: list[str | None], decoder: Decoder | None = None) -> list[Reading]:
        """Arrays already through ``prepare`` (one batch) and their labels (None: unlabelled) -> for each, the
        decoder's reading with log P(reading | image) and log P(label | image) under the model alone (no language
        model), floored at ``LOG_FLOOR`` where a text cannot fit (or has a character outside the model's set). Their
        difference is the label-error score.
        With a beam, also the runner-up (the best other candidate) and its log P under the model alone, and for
        every image its embedding: what ``ocr.curation.acquire`` ranks the unlabelled pool by."""
        decoder = decoder or self.decoder()
        logits, lengths, embeddings = self.outputs(arrays, decoder.config.views)
        preds = decoder(logits, lengths)
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
        prior = _priors(decoder, [p.text for p in preds], labels, set(known))
        return [Reading(p.text, p.confidence, _floor(reading_lp[i]), _floor(label_lp[i]) if i in label_lp else None,
                        runner_up.get(i), _floor(runner_lp[i]) if i in runner_lp else None, embeddings[i], *prior[i])
                for i, p in enumerate(preds)]

    def score_stream(self, images: list, labels: list[str | None] | None = None, decoder: Decoder | None = None,
                     batch_size: int | None = None) -> Iterator[list[Reading | ValueError]]:
        """``score`` over image files (or images) batch by batch, in order; an image that cannot be read is its
        ``ValueError`` (and the rest are read). Leaving the loop early stops the reading."""
        decoder = decoder or self.decoder()
        labels = labels if labels is not None else [None] * len(images)
        return self._stream(images, labels, batch_size, lambda arrays, chunk: self.score(arrays, chunk, decoder))

    def score_files(self, paths: list[str | Path], labels: list[str | None] | None = None,
                    decoder: Decoder | None = None, batch_size: int | None = None,
                    should_stop: Callable[[], bool] | None = None) -> list[Reading | None]:
        """``score_stream`` as one list; an image that cannot be read is None. ``should_stop`` is asked after each
        batch; what was not read then is left out of the list."""
        out: list[Reading | None] = []
        for batch in self.score_stream(paths, labels, decoder, batch_size):
            out += [None if isinstance(r, ValueError) else r for r in batch]
            if should_stop is not None and should_stop():
                break
        return out

    def _stream(self, images: list, labels: list, batch_size: int | None, work: Callable[[list, list], list]) -> Iterator[list]:
        """``work(arrays, labels)`` over batches of ``images``, prepared, run and decoded on ``self.workers`` threads
        (one batch each, at most that many batches ahead), yielded in order."""
        size = batch_size or self.batch_size
        batches = [(images[i:i + size], labels[i:i + size]) for i in range(0, len(images), size)]
        if len(batches) <= 1 or self.workers == 1:  # nothing to overlap: on the caller's thread
            yield from (self._one_batch(*batch, work) for batch in batches)
            return
        with ThreadPoolExecutor(self.workers, thread_name_prefix="read", initializer=self._pooled) as pool:
            pending: deque[Future] = deque()
            try:
                for batch in batches:
                    pending.append(pool.submit(self._one_batch, *batch, work))
                    if len(pending) > self.workers:
                        yield pending.popleft().result()
                while pending:
                    yield pending.popleft().result()
            finally:
                for future in pending:
                    future.cancel()

    def _pooled(self) -> None:
        self._local.pooled = True

    def _one_batch(self, images: list, labels: list, work: Callable[[list, list], list]) -> list:
        arrays, chunk, errors = [], [], {}
        for i, (image, label) in enumerate(zip(images, labels)):
            try:
                arrays.append(self.prepare(image))
                chunk.append(label)
            except ValueError as exc:
                errors[i] = exc
        results = iter(work(arrays, chunk) if arrays else [])
        return [errors[i] if i in errors else next(results) for i in range(len(images))]


def read_arrays(engine: Engine, arrays: list[np.ndarray], cfg: CRNNConfig,
                alone: bool = True) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """The one way an image is read, by the Recognizer and by validation during training alike, whichever engine
    runs the model: preprocessed arrays -> logits (T, N, C) on the CPU, output lengths (N,) and image embeddings
    (N, 2*hidden), the recurrent features averaged over each image's own columns, unit length.

    The images are run in groups of one padded width, so each is read exactly as it is alone (and in the web demo):
    zero padding in a batch would reach the convolutions at its edge and start the backward LSTM, and an image would
    read differently with other images. On real crops this is no slower than one padded batch. ``alone``: no other
    batch runs beside this one (``ocr.engines``). numpy does the rest (see ``ocr.decoding.ctc.log_softmax``)."""
    if not arrays:
        raise ValueError("empty batch")
    lengths = np.array([cfg.output_length(a.shape[1]) for a in arrays])
    groups: dict[int, list[int]] = defaultdict(list)
    for i, a in enumerate(arrays):
        groups[-(-a.shape[1] // PAD_MULTIPLE)].append(i)
    parts = []
    for members in groups.values():
        images, _ = pad_batch([arrays[i] for i in members])
        with engine.lock:
            logits, features = engine(images.numpy(), alone)  # T, n, C and T, n, 2*hidden
        mask = np.arange(features.shape[0])[:, None] < lengths[members][None, :]  # each image's own columns
        pooled = (features * mask[..., None]).sum(0) / mask.sum(0)[:, None]
        parts.append((members, logits, pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)))
    steps = max(part.shape[0] for _, part, _ in parts)
    logits = np.zeros((steps, len(arrays), parts[0][1].shape[2]), np.float32)
    embeddings = np.zeros((len(arrays), parts[0][2].shape[1]), np.float32)
    for members, part, pooled in parts:
        logits[: part.shape[0], members] = part
        embeddings[members] = pooled
    return torch.from_numpy(logits), torch.from_numpy(lengths), embeddings


def shifted(array: np.ndarray, rows: int) -> np.ndarray:
    """A preprocessed image moved ``rows`` down (up when negative), paper (0) filling in: one view of it."""
    if rows == 0:
        return array
    out = np.zeros_like(array)
    if rows > 0:
        out[rows:] = array[:-rows]
    else:
        out[:rows] = array[-rows:]
    return out


def read_views(engine: Engine, arrays: list[np.ndarray], cfg: CRNNConfig, views: int = 1,
               alone: bool = True) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """``read_arrays`` with test-time augmentation: each image read as ``views`` views, moved up and down by
    ``VIEW_OFFSETS`` rows, and the model's log-probabilities averaged column by column (a view keeps its image's width,
    so their columns line up); the embeddings are the image's own. The views of a batch run as one batch. Averaging
    views that the model reads slightly differently evens out its column-by-column doubts: on real crops 5 views read
    0.5-3.5 points more names with the names LM and 2-6 greedy (docs/benchmarks.md), for 5 runs of the model."""
    if views == 1:
        return read_arrays(engine, arrays, cfg, alone)
    n = len(arrays)
    logits, lengths, embeddings = read_arrays(engine, [shifted(a, rows) for rows in VIEW_OFFSETS[:views] for a in arrays],
                                              cfg, alone)
    log_probs = log_softmax(logits).reshape(logits.shape[0], views, n, -1).mean(1)
    return torch.from_numpy(np.ascontiguousarray(log_probs, dtype=np.float32)), lengths[:n], embeddings[:n]


LOG_FLOOR = -1e4


def _priors(decoder: Decoder, texts: list[str], labels: list[str | None], known: set[int]) -> list[tuple]:
    """(the reading's, the label's) ``Fusion.score`` under the decoder's language model: zeros without one, and for
    a label the model cannot write (its log P is already the floor)."""
    if decoder.fusion is None:
        return [(0.0, 0.0)] * len(texts)
    score = decoder.fusion.score
    return [(score(text), score(labels[i]) if i in known else 0.0) for i, text in enumerate(texts)]


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
    prior: float = 0.0  # the decoder's language-model term for the reading (``Fusion.score``); 0 without one
    label_prior: float = 0.0  # the same for the label

    @property
    def margin(self) -> float | None:
        """P(reading) - P(runner-up) under the model alone: small or negative (the language model overruled the
        model) when the image could be read two ways. None without a runner-up."""
        if self.runner_up_log_prob is None:
            return None
        return math.exp(self.log_prob) - math.exp(self.runner_up_log_prob)

    @property
    def label_error_score(self) -> float | None:
        """How much more the model believes its reading than the label, the language model's term on both sides
        when the decoder has one (0 when they agree; None without a label). With it, a label the model reads as a
        likelier name (FAUIER read FAVIER) rises and a reading that is no name (VICTOR read VILTOR) falls."""
        if self.label_log_prob is None:
            return None
        return max(0.0, (self.log_prob + self.prior) - (self.label_log_prob + self.label_prior))
