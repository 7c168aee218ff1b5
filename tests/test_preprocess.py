import numpy as np
import pytest
from PIL import Image

from ocr.preprocess import PreprocessConfig, load_image, pad_batch, preprocess


def test_fixed_height_keeps_aspect_and_caps_width():
    cfg = PreprocessConfig(height=32, max_width=256)
    assert preprocess(Image.new("RGB", (160, 40), "white"), cfg).shape == (32, 128)
    assert preprocess(Image.new("L", (388, 14), 255), cfg).shape == (32, 256)  # squashed past max width
    assert preprocess(np.full((64, 64, 3), 200, np.uint8), cfg).shape == (32, 32)


def test_ink_is_one_and_paper_zero_on_gray_or_transparent_input():
    img = Image.new("L", (200, 40), 200)  # gray paper
    img.paste(30, (50, 10, 150, 30))  # dark ink
    x = preprocess(img)
    assert x.dtype == np.float32 and x.min() == 0.0 and x.max() == 1.0
    assert x[:, :20].max() == 0.0 and x[16, 64] == 1.0
    rgba = Image.new("RGBA", (200, 40), (0, 0, 0, 0))  # a canvas: transparent background, black strokes
    rgba.paste((0, 0, 0, 255), (50, 10, 150, 30))
    np.testing.assert_allclose(preprocess(rgba), x, atol=1 / 255 + 1e-6)  # within one step
    np.testing.assert_array_equal(np.round(x * 255) / np.float32(255), x)  # on the uint8 grid: ink_map is lossless


def test_pad_batch_pads_to_widest_multiple_of_8():
    batch, widths = pad_batch([np.ones((32, 50), np.float32), np.ones((32, 100), np.float32)])
    assert batch.shape == (2, 1, 32, 104)
    assert widths.tolist() == [50, 100]
    assert batch[0, 0, :, 50:].abs().sum() == 0


def test_load_image_explains_bad_files(tmp_path):
    (tmp_path / "t.jpg").write_text("not an image")
    with pytest.raises(ValueError, match="not a readable image"):
        load_image(tmp_path / "t.jpg")
    with pytest.raises(ValueError, match="not found"):
        load_image(tmp_path / "missing.jpg")
