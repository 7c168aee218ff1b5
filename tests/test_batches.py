"""Training batches and their augmentation (the same code on the CPU as on a GPU), and the one preprocessing function
they share with evaluation, prediction and drawing."""

import numpy as np
import pytest
import torch

from ocr.alphabet import Alphabet
from ocr.data.augment import AugmentConfig, augment_batch
from ocr.data.batches import Batches, LoaderBatches
from ocr.data.datasets import LineDataset, import_kaggle
from ocr.data.synth import render
from ocr.preprocess import PreprocessConfig, preprocess
from ocr.training.loop import TrainConfig, fit

OFF = AugmentConfig(p_affine=0, p_warp=0, p_blur=0, p_morph=0, p_contrast=0, p_noise=0)


def _gen(seed=0):
    g = torch.Generator()
    g.manual_seed(seed)
    return g


@pytest.fixture(scope="module")
def dataset(synth_dir):
    return LineDataset(import_kaggle(synth_dir).samples[:50], Alphabet(), PreprocessConfig())


def test_augmentation_is_seeded_bounded_and_off_means_identity():
    x = torch.zeros(8, 1, 32, 128)
    x[:, :, 8:24, 10:60] = 1.0
    a, b = augment_batch(x, _gen(1)), augment_batch(x, _gen(1))
    assert torch.equal(a, b) and a.shape == x.shape and a.min() >= 0 and a.max() <= 1
    assert not torch.equal(a, augment_batch(x, _gen(2)))
    assert torch.allclose(augment_batch(x, _gen(), OFF), x, atol=1e-5)


def test_augmentation_changes_a_real_word_and_its_contrast_survives():
    """On the preprocessed ink map: every draw differs, and a contrast change is still there in the model's input
    (the old loader path normalised after augmenting, which undid most of it)."""
    ink = torch.from_numpy(preprocess(render("JÉRÉMY", np.random.default_rng(0))))[None, None].repeat(16, 1, 1, 1)
    out = augment_batch(ink, _gen(4))
    assert len({o.numpy().tobytes() for o in out}) == 16
    contrast = AugmentConfig(p_affine=0, p_warp=0, p_blur=0, p_morph=0, p_contrast=1.0, p_noise=0)
    strength = augment_batch(ink, _gen(5), contrast).amax(dim=(1, 2, 3))
    assert float(strength.max() - strength.min()) > 0.2


def test_each_image_is_transformed_about_its_own_centre():
    """A narrow image at the left of a wide padded batch must stay within its own width."""
    x = torch.zeros(64, 1, 32, 256)
    x[:, :, 6:26, 4:60] = 1.0
    widths = torch.full((64,), 64)
    cfg = AugmentConfig(p_affine=1.0, p_warp=1.0, p_blur=0, p_morph=0, p_contrast=0, p_noise=0)
    out = augment_batch(x, _gen(3), cfg, widths)
    inside = out[..., :72].sum()
    assert out[..., 72:].sum() < 0.01 * inside


def test_training_sees_what_evaluation_and_drawing_see(dataset):
    """One preprocessing function: the stored training image is ``preprocess`` of the file (as uint8), and an
    unaugmented batch hands the model exactly those pixels."""
    from ocr.preprocess import load_image

    for sample, stored in zip(dataset.samples[:10], dataset.images):
        seen = preprocess(load_image(sample.path))
        assert stored.shape == seen.shape and stored.dtype == np.uint8
        np.testing.assert_array_equal(stored.astype(np.float32) / 255, seen)
    batches = Batches(dataset.images, dataset.targets, 8, augment=None, drop_last=False)
    images, widths, *_ = batches.batch(0)
    first = int(batches.order(0)[0])
    np.testing.assert_array_equal(images[0, 0, :, : widths[0]].numpy(), dataset.images[first] / np.float32(255))


def test_batches_cover_every_sample_once_per_epoch(dataset):
    batches = Batches(dataset.images, dataset.targets, 16, augment=None, drop_last=False)
    batches.seed(7)
    seen = []
    for images, widths, targets, lengths in batches:
        assert images.shape[0] == len(widths) == len(lengths) and images.shape[-1] % 8 == 0
        assert images.shape[-1] >= int(widths.max()) and int(lengths.sum()) == len(targets)
        seen += [tuple(targets[o - n:o].tolist()) for o, n in zip(lengths.cumsum(0).tolist(), lengths.tolist())]
    assert sorted(seen) == sorted(tuple(t) for t in dataset.targets)
    assert np.isclose(batches.nbytes, 50 * 32 * batches.images.shape[-1])


def test_every_way_of_serving_gives_the_same_augmented_batches(dataset):
    """In the training process or in 0 or 2 DataLoader workers: batch b of an epoch depends only on its seed, so a
    resume replays an epoch exactly whatever the path; another epoch seed gives another epoch."""

    def epoch(served, seed):
        served.seed(seed)
        return [tuple(t.clone() for t in batch) for batch in served]

    direct = Batches(dataset.images, dataset.targets, 16)
    reference = epoch(direct, 11)
    assert len(reference) == len(direct) == 3
    for served in (direct, LoaderBatches(Batches(dataset.images, dataset.targets, 16), 0),
                   LoaderBatches(Batches(dataset.images, dataset.targets, 16), 2)):
        assert served.num_samples == 50 and len(served) == 3
        for _ in range(2):  # twice: persistent workers keep serving the epoch they are asked for
            for got, want in zip(epoch(served, 11), reference, strict=True):
                for a, b in zip(got, want):
                    assert torch.equal(a, b)
    other = epoch(direct, 12)
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(other, reference) if a[0].shape == b[0].shape)


def test_the_device_path_trains_as_the_loader_path_does(synth_dir, tmp_path):
    """Same seed, same batches, same dropout draws: the two data paths train to the same weights, so the one learning
    check (conftest ``learned``) holds for both."""
    from ocr.checkpoint import load_checkpoint

    samples = import_kaggle(synth_dir).samples[:32]
    weights = []
    for on_device in (False, True):
        summary = fit(samples, samples[:8], tmp_path / str(on_device), TrainConfig(
            epochs=2, batch_size=8, lr=5e-3, log_every=50, data_on_device=on_device), progress=False)
        assert summary["data_on_device"] is on_device
        weights.append(load_checkpoint(tmp_path / str(on_device) / "last.pt")["model"])
    assert weights[0].keys() == weights[1].keys()
    for k in weights[0]:
        torch.testing.assert_close(weights[1][k], weights[0][k], rtol=0, atol=1e-6, msg=k)
