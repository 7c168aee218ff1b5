"""The issue's speed reference: the Keras CRNN of the public Kaggle notebooks for these forms, reading files -> text.

    PEER_PYTHON bench/peer_keras.py --files LIST [--threads 2] [--rounds 3] [--singles 300]

Run by ``python -m bench.inference --peer-python PY`` in the same run as the project's engines, with an interpreter
that has tensorflow-cpu, keras and opencv (not the project's requirements; nothing of the project is imported here).
The model is the notebooks' (input 256 x 64 rotated, conv 32-64-128 with pooling, dense 64, two BiLSTM 256, softmax
over 30 symbols + blank), their preprocessing (OpenCV grayscale decode, crop or pad to 64 x 256 on white, rotate,
/ 255) and greedy CTC decoding (``keras.ops.ctc_decode``), given its best chance: a compiled forward pass on batches
of 64. Its weights are random: the work a network does does not depend on them, and its accuracy is not in question.
Prints one JSON line: end-to-end images/s (best of ``--rounds``) and single-image p50 / p95 in ms.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ-' "


def build(keras):
    """The notebooks' CRNN, layer for layer."""
    from keras import layers

    x = inputs = keras.Input(shape=(256, 64, 1))
    for filters, pool, drop in ((32, (2, 2), 0), (64, (2, 2), 0.3), (128, (1, 2), 0.3)):
        x = layers.Conv2D(filters, (3, 3), padding="same", kernel_initializer="he_normal")(x)
        x = layers.Activation("relu")(layers.BatchNormalization()(x))
        x = layers.MaxPooling2D(pool_size=pool)(x)
        if drop:
            x = layers.Dropout(drop)(x)
    x = layers.Reshape((64, 1024))(x)
    x = layers.Dense(64, activation="relu", kernel_initializer="he_normal")(x)
    for _ in range(2):
        x = layers.Bidirectional(layers.LSTM(256, return_sequences=True))(x)
    x = layers.Dense(len(ALPHABET) + 1, kernel_initializer="he_normal")(x)
    return keras.Model(inputs, layers.Activation("softmax")(x))


def prepare(cv2, np, path: str):
    """The notebooks' preprocessing: grayscale, cropped or padded onto a white 64 x 256, rotated, scaled to [0, 1]."""
    img = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
    h, w = img.shape
    canvas = np.ones((64, 256), dtype=np.float32) * 255
    canvas[: min(h, 64), : min(w, 256)] = img[:64, :256]
    return cv2.rotate(canvas, cv2.ROTATE_90_CLOCKWISE) / 255.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", required=True, help="a text file of image paths, one a line")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--singles", type=int, default=300)
    args = ap.parse_args()
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    try:
        import cv2
        import keras
        import numpy as np
        import tensorflow as tf
    except ImportError as exc:
        sys.exit(f"the Keras peer needs tensorflow-cpu, keras and opencv-python-headless: {exc}")
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    cv2.setNumThreads(1)
    files = open(args.files, encoding="utf-8").read().split("\n")
    files = [f for f in files if f]
    model = build(keras)
    forward = tf.function(lambda x: model(x, training=False), reduce_retracing=True)

    def read(paths: list[str]) -> list[str]:
        x = np.stack([prepare(cv2, np, p) for p in paths])[..., None]
        probs = forward(tf.constant(x))
        decoded, _ = keras.ops.ctc_decode(probs, np.full(len(paths), probs.shape[1], dtype=np.int32), strategy="greedy",
                                          mask_index=len(ALPHABET))  # the notebooks' blank: the last class
        return ["".join(ALPHABET[int(c)] for c in row if 0 <= c < len(ALPHABET))
                for row in keras.ops.convert_to_numpy(decoded[0])]

    read(files[:64])
    read(files[:1])  # both shapes traced before timing
    best = min(_seconds(lambda: [read(files[i:i + 64]) for i in range(0, len(files), 64)])
               for _ in range(args.rounds))
    singles = sorted(_seconds(lambda i=i: read([files[i % len(files)]])) * 1000 for i in range(args.singles))
    print(json.dumps({"images": len(files), "images_per_s": round(len(files) / best),
                      "single_p50_ms": round(singles[len(singles) // 2], 2),
                      "single_p95_ms": round(singles[int(0.95 * len(singles)) - 1], 2),
                      "tensorflow": tf.__version__, "keras": keras.__version__, "threads": args.threads}))


def _seconds(run) -> float:
    t = time.perf_counter()
    run()
    return time.perf_counter() - t


if __name__ == "__main__":
    main()
