"""Decoding speed after the model: greedy, beam 10, and beam 20 with the names language model, in ms per image.

    python -m bench.decoding [--checkpoint ocr/sharing/starter] [--images 3000]

The model reads the first ``--images`` crops of the real unlabelled pool once (its logits are kept); each decoder then
decodes them on one thread, the way a predict job, self-training's pool read or a label-error search does. Beam +
LM is timed twice: ``cold``, the language model just loaded (every context the beam asks for is computed once, as
in a job's first pass over a pool), and ``warm``, the same images again (its cache of contexts filled). A teacher
early in training, whose outputs are flat, is the slow case: pass its checkpoint to time it.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from bench.common import REAL, emit
from ocr.decoding.decoder import Decoder, DecoderConfig
from ocr.recognize import Recognizer
from ocr.sharing import STARTER


def ms_per_image(decoder: Decoder, logits, lengths) -> float:
    t = time.perf_counter()
    decoder(logits, lengths)
    return round(1000 * (time.perf_counter() - t) / len(lengths), 3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=str(STARTER))
    ap.add_argument("--images", type=int, default=3000)
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
    emit("decoding", checkpoint=Path(args.checkpoint).name, images=len(files), ms_per_image=figures)


if __name__ == "__main__":
    main()
