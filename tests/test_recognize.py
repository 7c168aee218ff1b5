"""An image reads the same whatever it is read with: a batch of mixed widths gives each image the logits, the
reading and the embedding it gets alone (as the Draw page and the web demo read it)."""

import numpy as np
import torch

from ocr.data.datasets import import_kaggle
from ocr.decoding.ctc import greedy_decode
from ocr.recognize import Recognizer
from ocr.sharing import STARTER


def test_a_batch_reads_each_image_as_it_reads_alone(synth_dir):
    rec = Recognizer(STARTER)
    arrays = [rec.prepare(s.path) for s in import_kaggle(synth_dir).samples[:48]]
    arrays += [a[:, : a.shape[1] // 2 + 5] for a in arrays[:16]]  # narrower ones, at odd widths
    assert len({-(-a.shape[1] // 8) for a in arrays}) >= 4  # several padded widths in the one batch
    logits, lengths, embeddings = rec.outputs(arrays)
    texts = [p.text for p in greedy_decode(logits, lengths, rec.alphabet)]
    for k, array in enumerate(arrays):
        alone, alone_lengths, alone_embedding = rec.outputs([array])
        assert alone_lengths[0] == lengths[k]
        torch.testing.assert_close(logits[: alone.shape[0], k], alone[:, 0], rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(embeddings[k], alone_embedding[0], rtol=1e-4, atol=1e-5)
        assert greedy_decode(alone, alone_lengths, rec.alphabet)[0].text == texts[k]
