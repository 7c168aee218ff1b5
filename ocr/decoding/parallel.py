"""Beam decoding on several processes.

The prefix beam search is Python (``ocr.decoding.ctc``): one core decodes a few hundred images a second with the names
language model, while the model reads thousands. A large read (the unlabelled pool of self-training, a label-error
search, a predict or evaluate job with ``--lm``) spreads its sequences over worker processes, one per core, each with
its own copy of the decoder; the caller's threads keep preparing and running the model meanwhile. Workers are spawned
(not forked: a fork of a process running onnxruntime or torch threads can hang) and start in a few seconds (3-7 s
here: the imports, the language model).

A spawned worker imports the program's main module again. That is harmless for the project's entry points
(``python -m ocr``, ``python -m jobs.runner``, the benchmarks, pytest: a package's ``__main__`` is skipped, a module's
``if __name__ == "__main__"`` holds), but a script run by its path may have no such guard and would run again in
each worker; such a program decodes on its own process unless it asks for workers (``Decoder(..., processes=N)``).
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor

import numpy as np

MIN_PER_PROCESS = 2000  # images a worker must have to decode to be worth its start (~3-7 s: imports, the LM)


def processes_for(images: int, beam: bool) -> int:
    """How many processes a read of ``images`` images decodes on: one per core, ``MIN_PER_PROCESS`` images each at
    least; 1 (the caller's own) for greedy decoding, which is numpy already."""
    if not beam or not _main_is_safe_to_import():
        return 1
    return max(1, min(len(os.sched_getaffinity(0)), images // MIN_PER_PROCESS))


def _main_is_safe_to_import() -> bool:
    """Whether a spawned worker can import the main module without running the program: it was run with ``-m``
    (imported by name; a package's ``__main__`` is not imported at all), or there is no main file (an interactive
    session)."""
    main = sys.modules.get("__main__")
    return getattr(main, "__spec__", None) is not None or not hasattr(main, "__file__")


_decoder = None  # a worker's decoder, built once by ``_start``


def _start(make: Callable[[], object]) -> None:
    global _decoder
    _decoder = make()


def _decode(log_probs: np.ndarray, lengths: list[int]) -> list:
    return _decoder.decode_log_probs(log_probs, lengths)


class DecoderPool:
    """Worker processes that each hold the decoder ``make()`` builds (a picklable callable: the ``Decoder`` class with
    its arguments); calling the pool decodes log probabilities (T, N, C) in up to ``processes`` slices at once."""

    def __init__(self, make: Callable[[], object], processes: int):
        self.processes = processes
        self._executor = ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_start, initargs=(make,))

    def __call__(self, log_probs: np.ndarray, lengths: list[int]) -> list:
        bounds = np.linspace(0, len(lengths), min(self.processes, len(lengths)) + 1).astype(int).tolist()
        futures = [self._executor.submit(_decode, log_probs[:, a:b], lengths[a:b]) for a, b in zip(bounds, bounds[1:])]
        return [p for future in futures for p in future.result()]

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
