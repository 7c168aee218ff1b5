"""torch.export and the dynamo ONNX exporter keep every preset's batch size and image width free (nn.LSTM pins the
sequence length unless ocr.sharing.export steps around it), with PyTorch's outputs."""

import numpy as np
import pytest
import torch

from ocr.model import CRNN, preset
from ocr.sharing.export import DIGEST_KEY, export_onnx, export_program


@pytest.mark.parametrize("name", ["small", "textbook"])
def test_every_preset_exports_with_a_free_batch_and_width(name, tmp_path):
    import onnxruntime as ort

    torch.manual_seed(0)
    model = CRNN(preset(name, 31)).eval().requires_grad_(False).to(memory_format=torch.contiguous_format)
    example = torch.rand(2, 1, model.cfg.height, 256)
    exported = export_program(model, example)
    torch.export.save(exported, tmp_path / "model.pt2")
    program = torch.export.load(tmp_path / "model.pt2").module()
    session = ort.InferenceSession(str(export_onnx(model, example, tmp_path / "model.onnx", "d" * 64)))
    assert [i.shape for i in session.get_inputs()] == [["batch", 1, model.cfg.height, "width"]]
    hidden = 2 * model.cfg.rnn_hidden
    assert [(o.name, o.shape) for o in session.get_outputs()] == [("logits", ["time", "batch", 31]),
                                                                  ("features", ["time", "batch", hidden])]
    assert session.get_modelmeta().custom_metadata_map[DIGEST_KEY] == "d" * 64
    narrowest = 2 * model.cfg.width_stride  # the program's: two time steps (8 columns at stride 4)
    for n, width in ((1, 256), (1, 37), (3, 520), (5, narrowest), (2, narrowest - 4)):
        images = torch.rand(n, 1, model.cfg.height, width)
        with torch.no_grad():
            expected, features = model(images), model.features(images)
        if width < narrowest:  # ONNX reads it; the program names the width it needs
            with pytest.raises(Exception, match=f"images.size\\(\\)\\[3\\] >= {narrowest}"):
                program(images)
        else:
            torch.testing.assert_close(program(images), expected, rtol=1e-4, atol=1e-5)
        logits, onnx_features = session.run(None, {"images": images.numpy()})
        np.testing.assert_allclose(logits, expected.numpy(), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(onnx_features, features.numpy(), rtol=1e-4, atol=1e-5)


def test_an_unknown_or_retired_format_is_one_clear_error(tmp_path):
    from ocr.sharing import STARTER
    from ocr.sharing.export import export

    with pytest.raises(ValueError, match="unknown export format 'torchscript'; choose from safetensors, pt, pt2, onnx"):
        export(STARTER, tmp_path, formats=["torchscript"])
    assert not any(tmp_path.iterdir())
