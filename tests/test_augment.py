import numpy as np
import torch

from ocr.augment import Augment
from ocr.preprocess import PreprocessConfig, resize_gray, to_gray
from ocr.synth import render


def sample_gray():
    img = render("JÉRÉMY", np.random.default_rng(0))
    return resize_gray(to_gray(img), PreprocessConfig())


def test_keeps_shape_and_type_changes_pixels_and_is_seeded():
    gray = sample_gray()
    aug = Augment()
    torch.manual_seed(1)
    a = [aug(gray) for _ in range(5)]
    torch.manual_seed(1)
    b = [aug(gray) for _ in range(5)]
    for x, y in zip(a, b):
        assert x.shape == gray.shape and x.dtype == np.uint8
        np.testing.assert_array_equal(x, y)
    assert sum(not np.array_equal(x, gray) for x in a) >= 4
    assert len({x.tobytes() for x in a}) == 5
