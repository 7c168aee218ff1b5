"""An image reads the same whatever it is read with: a batch of mixed widths gives each image the logits, the
reading and the embedding it gets alone (as the Draw page and the web demo read it)."""

import numpy as np
import pytest
import torch

from ocr.data.datasets import import_kaggle
from ocr.decoding.ctc import greedy_decode, log_softmax
from ocr.decoding.decoder import DecoderConfig
from ocr.recognize import Recognizer, shifted
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


def test_views_average_the_image_read_moved_up_and_down_and_decode_it_once(synth_dir):
    """Test-time augmentation (``DecoderConfig.views``): per column, the mean of the log-probabilities of the image
    read as it is, one row lower and one row higher (paper filling in), whatever else is in the batch; the embedding
    is the image's own."""
    rec = Recognizer(STARTER)
    arrays = [rec.prepare(s.path) for s in import_kaggle(synth_dir).samples[:12]]
    assert len({a.shape[1] for a in arrays}) >= 3
    logits, lengths, embeddings = rec.outputs(arrays, views=3)
    plain_logits, plain_lengths, plain_embeddings = rec.outputs(arrays)
    assert torch.equal(lengths, plain_lengths) and logits.shape == plain_logits.shape
    np.testing.assert_allclose(embeddings, plain_embeddings, rtol=1e-4, atol=1e-5)
    down = shifted(arrays[0], 1)
    assert (down[1:] == arrays[0][:-1]).all() and not down[0].any()
    for k, array in enumerate(arrays):
        moved = [log_softmax(rec.outputs([shifted(array, rows)])[0]) for rows in (0, 1, -1)]
        expected = torch.from_numpy(np.mean(moved, axis=0)).log_softmax(-1)
        torch.testing.assert_close(logits[: expected.shape[0], k].log_softmax(-1), expected[:, 0], rtol=1e-4, atol=1e-4)
    read = rec.read([s.path for s in import_kaggle(synth_dir).samples[:12]], rec.decoder(DecoderConfig(views=3)))
    assert [p.text for p in read] == [p.text for p in greedy_decode(logits, lengths, rec.alphabet)]


def test_views_are_part_of_the_decoder_config_and_checked():
    assert DecoderConfig(lm="names", views=5).describe() == "beam20+names LM+5 views"
    assert DecoderConfig(views=5).to_dict()["views"] == 5 and DecoderConfig().describe() == "greedy"
    for bad in (0, 8):
        with pytest.raises(ValueError, match=f"views={bad} must be between 1"):
            DecoderConfig(views=bad)
