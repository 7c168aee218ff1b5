"""Batches and augmentation on the training device (run here on the CPU, the same code as on a GPU)."""

import numpy as np
import torch

from ocr.alphabet import Alphabet
from ocr.augment import AugmentConfig
from ocr.datasets import LineDataset, import_kaggle
from ocr.device_data import DeviceBatches, augment_batch
from ocr.preprocess import PreprocessConfig
from ocr.train import Callback, TrainConfig, fit

OFF = AugmentConfig(p_affine=0, p_warp=0, p_blur=0, p_morph=0, p_contrast=0, p_noise=0)


def _gen(seed=0):
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def test_augmentation_is_seeded_bounded_and_off_means_identity():
    x = torch.zeros(8, 1, 32, 128)
    x[:, :, 8:24, 10:60] = 1.0
    a, b = augment_batch(x, _gen(1)), augment_batch(x, _gen(1))
    assert torch.equal(a, b) and a.shape == x.shape and a.min() >= 0 and a.max() <= 1
    assert not torch.equal(a, augment_batch(x, _gen(2)))
    assert torch.allclose(augment_batch(x, _gen(), OFF), x, atol=1e-5)


def test_each_image_is_transformed_about_its_own_centre():
    """A narrow image at the left of a wide padded batch must stay within its own width."""
    x = torch.zeros(64, 1, 32, 256)
    x[:, :, 6:26, 4:60] = 1.0
    widths = torch.full((64,), 64)
    cfg = AugmentConfig(p_affine=1.0, p_warp=1.0, p_blur=0, p_morph=0, p_contrast=0, p_noise=0)
    out = augment_batch(x, _gen(3), cfg, widths)
    inside = out[..., :72].sum()
    assert out[..., 72:].sum() < 0.01 * inside


def test_batches_cover_every_sample_once_per_epoch(synth_dir):
    samples = import_kaggle(synth_dir).samples[:50]
    ds = LineDataset(samples, Alphabet(), PreprocessConfig())
    batches = DeviceBatches(ds.images, ds.targets, torch.device("cpu"), 16, augment=None, drop_last=False)
    batches.seed(7)
    seen = []
    for images, widths, targets, lengths in batches:
        assert images.shape[0] == len(widths) == len(lengths) and images.shape[-1] % 8 == 0
        assert images.shape[-1] >= int(widths.max()) and int(lengths.sum()) == len(targets)
        seen += [tuple(targets[o - n:o].tolist()) for o, n in zip(lengths.cumsum(0).tolist(), lengths.tolist())]
    assert sorted(seen) == sorted(tuple(t) for t in ds.targets)
    batches.seed(7)
    first = [im.sum().item() for im, *_ in batches]
    batches.seed(7)
    assert first == [im.sum().item() for im, *_ in batches]  # reseeding replays the epoch exactly
    assert np.isclose(batches.nbytes, 50 * 32 * batches.images.shape[-1])


def test_small_model_learns_from_device_batches(synth_dir, tmp_path):
    """The learning check through the device path: 64 samples memorised to >= 0.95 exact match."""
    samples = import_kaggle(synth_dir).samples[:64]
    exact = []

    class Stop(Callback):
        def on_epoch(self, m):
            exact.append(m["val_exact_match"])

        def should_stop(self):
            return bool(exact) and exact[-1] >= 0.97

    summary = fit(samples, samples, tmp_path, TrainConfig(epochs=300, batch_size=16, lr=5e-3, augment=False, log_every=50,
                                                          data_on_device=True), callback=Stop(), progress=False)
    assert summary["data_on_device"] is True
    assert max(exact) >= 0.95, f"best exact match {max(exact):.3f} after {len(exact)} epochs"
