"""The acquisition order of the unlabelled pool (ocr.curation.acquire), and the beam's runner-up, margin and image embedding it
is fed (Recognizer.score)."""

import math

import numpy as np

from ocr.curation.acquire import PoolImage, acquisition_order


def _unit(v):
    v = np.asarray(v, dtype=np.float32)
    return v / np.linalg.norm(v)


def test_uncertainty_is_one_minus_the_margin_else_one_minus_the_probability():
    assert math.isclose(PoolImage(1, "ANNA", 0.9, margin=0.2).uncertainty, 0.8)
    assert math.isclose(PoolImage(1, "ANNA", 0.9).uncertainty, 0.1)
    assert math.isclose(PoolImage(1, "ANNA", 0.3, margin=-0.1).uncertainty, 1.1)  # the language model overruled the model


def test_most_uncertain_first_and_a_close_call_beats_a_low_but_clear_reading():
    pool = [PoolImage("sure", "PAUL", 0.95, 0.9), PoolImage("close call", "LEON", 0.5, 0.02),
            PoolImage("faint", "MARC", 0.2, 0.15), PoolImage("greedy", "ZOE", 0.4)]
    assert [p.key for p in acquisition_order(pool, 4)] == ["close call", "faint", "greedy", "sure"]
    assert [p.key for p in acquisition_order(pool, 2)] == ["close call", "faint"]


def test_near_identical_readings_wait_at_the_end_of_the_batch():
    pool = [PoolImage(1, "MARTIN", 0.1), PoolImage(2, "MARTIN", 0.11), PoolImage(3, "MARTINE", 0.12),
            PoolImage(4, "DUBOIS", 0.3), PoolImage(5, "LEA", 0.4), PoolImage(6, "LE", 0.41), PoolImage(7, "LO", 0.42)]
    got = [p.key for p in acquisition_order(pool, 7)]
    assert got == [1, 4, 5, 6, 7, 2, 3]  # two-letter readings are too short to call alike


def test_near_identical_images_wait_even_when_their_readings_differ():
    rng = np.random.default_rng(0)
    vectors = [_unit(rng.normal(size=16)) for _ in range(6)]
    twin = _unit(vectors[0] + 0.01 * rng.normal(size=16))  # the same crop, read differently
    pool = [PoolImage(i, name, 0.1 + 0.05 * i, embedding=v)
            for i, (name, v) in enumerate(zip(["ANNA", "BRUNO", "CELINE", "DAVID", "EMMA", "FABIEN"], vectors))]
    pool.append(PoolImage("twin", "XAVIER", 0.12, embedding=twin))
    got = [p.key for p in acquisition_order(pool, 7)]
    assert got[:6] == [0, 1, 2, 3, 4, 5] and got[6] == "twin"
    assert [p.key for p in acquisition_order(pool, 7, image_similarity=None)][1] == "twin"


def test_score_gives_the_runner_up_its_margin_and_a_unit_embedding_with_a_beam(learned, synth_dir):
    from ocr.data.datasets import import_kaggle
    from ocr.decoding.decoder import DecoderConfig
    from ocr.recognize import Recognizer

    rec = Recognizer(learned[0])
    samples = import_kaggle(synth_dir).samples[64:96]  # images the model never saw: some close calls
    arrays = [rec.prepare(s.path) for s in samples]
    beam = rec.score(arrays, [None] * len(arrays), rec.decoder(DecoderConfig(beam=10)))
    for r in beam:
        assert r.runner_up is not None and r.runner_up != r.text
        assert math.isclose(r.margin, math.exp(r.log_prob) - math.exp(r.runner_up_log_prob), abs_tol=1e-9)
        assert r.embedding.shape == (2 * rec.model.cfg.rnn_hidden,)
        assert math.isclose(float(np.linalg.norm(r.embedding)), 1.0, rel_tol=1e-4)
    assert len({round(float(r.margin), 6) for r in beam}) > 1
    greedy = rec.score(arrays, [None] * len(arrays))
    assert all(r.runner_up is None and r.margin is None for r in greedy)
    assert [r.text for r in greedy] == [p.text for p in rec.read_prepared(arrays)]
    np.testing.assert_allclose(np.stack([r.embedding for r in greedy]), np.stack([r.embedding for r in beam]))
