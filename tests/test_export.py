"""torch.export and the dynamo ONNX exporter keep every preset's batch size and image width free (nn.LSTM pins the
sequence length unless ocr.sharing.export steps around it), with PyTorch's outputs."""

import numpy as np
import pytest
import torch

from ocr.model import CRNN, preset
from ocr.sharing.export import export_onnx, export_program


@pytest.mark.parametrize("name", ["small", "textbook"])
def test_every_preset_exports_with_a_free_batch_and_width(name, tmp_path):
    import onnxruntime as ort

    torch.manual_seed(0)
    model = CRNN(preset(name, 31)).eval().requires_grad_(False).to(memory_format=torch.contiguous_format)
    example = torch.rand(2, 1, model.cfg.height, 256)
    exported = export_program(model, example)
    torch.export.save(exported, tmp_path / "model.pt2")
    program = torch.export.load(tmp_path / "model.pt2").module()
    session = ort.InferenceSession(str(export_onnx(model, example, tmp_path / "model.onnx", exported)))
    assert [i.shape for i in session.get_inputs()] == [["batch", 1, model.cfg.height, "width"]]
    assert [o.shape for o in session.get_outputs()] == [["time", "batch", 31]]
    for n, width in ((1, 256), (1, 37), (3, 520), (5, 8)):
        images = torch.rand(n, 1, model.cfg.height, width)
        with torch.no_grad():
            expected = model(images)
        torch.testing.assert_close(program(images), expected, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(session.run(None, {"images": images.numpy()})[0], expected.numpy(),
                                   rtol=1e-4, atol=1e-5)


def test_an_unknown_or_retired_format_is_one_clear_error(tmp_path):
    from ocr.sharing import STARTER
    from ocr.sharing.export import export

    with pytest.raises(ValueError, match="unknown export format 'torchscript'; choose from safetensors, pt, pt2, onnx"):
        export(STARTER, tmp_path, formats=["torchscript"])
    assert not any(tmp_path.iterdir())
