"""Decoding speed after the model: greedy, beam 10, and beam 20 with the names language model, in ms per image.

    python -m bench.decoding [--checkpoint ocr/sharing/starter] [--images 3000] [--read 10500]

The model reads the first ``--images`` crops of the real unlabelled pool once (its logits are kept); each decoder then
decodes them on one thread, the way a predict job, self-training's pool read or a label-error search does. Beam +
LM is timed twice: ``cold``, the language model just loaded (every context the beam asks for is computed once, as
in a job's first pass over a pool), and ``warm``, the same images again (its cache of contexts filled); then on one
process per core (``ocr.decoding.parallel``, as a large read decodes), the processes' start included. A teacher
early in training, whose outputs are flat, is the slow case: pass its checkpoint to time it.

``--read N`` also times what self-training does with the pool, ``ocr.training.selftrain.read_pool`` (files ->
pseudo-labels, beam 20 + the names LM) over the first N pool crops, as the product runs it (decoding on one process
per core when the read is large enough) and on one process, in the same run.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from bench.common import REAL, emit
from ocr.decoding.decoder import Decoder, DecoderConfig
from ocr.decoding.parallel import processes_for
from ocr.recognize import Recognizer
from ocr.sharing import STARTER
from ocr.training.config import TrainConfig
from ocr.training.selftrain import read_pool


def ms_per_image(decoder: Decoder, logits, lengths) -> float:
    t = time.perf_counter()
    decoder(logits, lengths)
    return round(1000 * (time.perf_counter() - t) / len(lengths), 3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=str(STARTER))
    ap.add_argument("--images", type=int, default=3000)
    ap.add_argument("--read", type=int, default=0, help="also time self-training's read of this many pool crops")
    args = ap.parse_args()
    files = sorted((REAL / "unlabelled" / "train_v2" / "train").glob("*.jpg"))[:args.images]
    if not files:
        raise SystemExit(f"no unlabelled pool under {REAL}")
    rec = Recognizer(args.checkpoint)
    logits, lengths = rec.logits([rec.prepare(f) for f in files])
    figures = {name: ms_per_image(rec.decoder(config), logits, lengths)
               for name, config in (("greedy", DecoderConfig()), ("beam10", DecoderConfig(beam=10)))}
    lm = rec.decoder(DecoderConfig(lm="names"))
    figures["beam20_names_lm_cold"] = ms_per_image(lm, logits, lengths)
    figures["beam20_names_lm_warm"] = ms_per_image(lm, logits, lengths)
    processes = len(os.sched_getaffinity(0))
    t = time.perf_counter()
    with Decoder(DecoderConfig(lm="names"), rec.alphabet, processes=processes) as pooled:
        pooled(logits, lengths)
    figures[f"beam20_names_lm_{processes}_processes"] = round(1000 * (time.perf_counter() - t) / len(files), 3)
    emit("decoding", checkpoint=Path(args.checkpoint).name, images=len(files), ms_per_image=figures)
    if args.read:
        pool = sorted((REAL / "unlabelled" / "train_v2" / "train").glob("*.jpg"))[:args.read]
        product, alone = pool_read_seconds(args.checkpoint, pool), pool_read_seconds(args.checkpoint, pool, 1)
        emit("decoding.pool_read", images=len(pool), processes=processes_for(len(pool), True), seconds=product,
             one_process_seconds=alone, speedup=round(alone / product, 2))


def pool_read_seconds(checkpoint: str, pool: list[Path], processes: int | None = None) -> float:
    """Seconds of ``read_pool`` over ``pool``, decoding on as many processes as the product picks, or ``processes``."""
    t = time.perf_counter()
    read_pool(checkpoint, pool, TrainConfig(), processes=processes)
    return round(time.perf_counter() - t, 1)

if __name__ == "__main__":
    main()
