"""CRNN: a small CNN reads columns of the line image, a BiLSTM reads the columns in context,
a linear layer scores every alphabet class plus the CTC blank at every time step."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import torch
from torch import nn

from ocr.preprocess import PreprocessConfig


@dataclass(frozen=True)
class CRNNConfig:
    num_classes: int = 30
    height: int = 32
    max_width: int = 256  # wider images are squashed to it (``ocr.preprocess.PreprocessConfig``)
    stem: int = 32  # channels of the first convolution
    stem_stride: int = 2
    blocks: tuple[tuple[int, int, int], ...] = ((64, 2, 2), (96, 2, 1), (128, 2, 1))  # (channels, pool_h, pool_w)
    rnn_hidden: int = 128
    rnn_layers: int = 2
    dropout: float = 0.2

    @property
    def width_stride(self) -> int:
        """Input columns per output time step."""
        s = self.stem_stride
        for _, _, pw in self.blocks:
            s *= pw
        return s

    def output_length(self, width: int) -> int:
        return max(1, width // self.width_stride)

    def preprocess(self) -> PreprocessConfig:
        """The input this model reads: every reader and trainer takes it from here."""
        return PreprocessConfig(height=self.height, max_width=self.max_width)

    def describe(self) -> str:
        """A short readable name, e.g. ``h32-s32-c64.96.128-lstm128x2``."""
        chans = ".".join(str(c) for c, _, _ in self.blocks)
        return f"h{self.height}-s{self.stem}/{self.stem_stride}-c{chans}-lstm{self.rnn_hidden}x{self.rnn_layers}"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> CRNNConfig:
        d = dict(d)
        d["blocks"] = tuple(tuple(b) for b in d["blocks"])
        return cls(**d)


PRESETS: dict[str, CRNNConfig] = {
    # fast enough to train on a laptop CPU and to answer a drawing in milliseconds
    "small": CRNNConfig(stem=32, blocks=((64, 2, 2), (96, 2, 1), (128, 2, 1)), rnn_hidden=128, rnn_layers=1),
    # for a GPU: wider, deeper, same input convention
    "large": CRNNConfig(stem=64, blocks=((128, 2, 2), (256, 1, 1), (256, 2, 1), (384, 2, 1)), rnn_hidden=256, rnn_layers=2),
    # the textbook CRNN of the public Kaggle notebooks (64x256 input, ~4 M parameters): the speed reference
    "textbook": CRNNConfig(height=64, stem=32, stem_stride=1, blocks=((64, 2, 2), (128, 2, 2), (256, 2, 1)),
                           rnn_hidden=256, rnn_layers=2, dropout=0.25),
}


def preset(name: str, num_classes: int) -> CRNNConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    return replace(PRESETS[name], num_classes=num_classes)


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class CRNN(nn.Module):
    def __init__(self, cfg: CRNNConfig):
        super().__init__()
        self.cfg = cfg
        layers: list[nn.Module] = [_conv(1, cfg.stem, stride=cfg.stem_stride)]
        cin = cfg.stem
        for cout, ph, pw in cfg.blocks:
            if ph > 1 or pw > 1:
                layers.append(nn.MaxPool2d((ph, pw), (ph, pw)))
            layers.append(_conv(cin, cout))
            cin = cout
        layers.append(nn.Dropout2d(cfg.dropout))
        self.cnn = nn.Sequential(*layers)
        with torch.no_grad():  # feature height found by running zeros, as docTR does
            feat_h = self.cnn(torch.zeros(1, 1, cfg.height, 64)).shape[2]
        self.proj = nn.Linear(cin * feat_h, cfg.rnn_hidden)
        self.rnn = nn.LSTM(cfg.rnn_hidden, cfg.rnn_hidden, num_layers=cfg.rnn_layers, bidirectional=True,
                           dropout=cfg.dropout if cfg.rnn_layers > 1 else 0.0)
        self.drop = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(2 * cfg.rnn_hidden, cfg.num_classes)
        self.to(memory_format=torch.channels_last)  # oneDNN's fast layout: ~2x inference, ~1.25x training on CPU

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images (N, 1, H, W) in [0, 1], ink = 1 -> logits (T, N, C) with T = W // width_stride."""
        return self.logits_and_features(images)[0]

    def logits_and_features(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``forward`` and the ``features`` its head read: what reading needs (``ocr.engines``, the ONNX export)."""
        features = self.features(images)
        return self.head(self.drop(features)), features

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """images (N, 1, H, W) -> what the recurrent layer sees in each column (T, N, 2*hidden): the head's input,
        and, averaged over a word's columns, an embedding of the image (``ocr.curation.acquire`` uses it for diversity)."""
        f = self.cnn(images.contiguous(memory_format=torch.channels_last))  # N, C, h, T
        n, c, h, t = f.shape
        f = f.permute(3, 0, 1, 2).reshape(t, n, c * h)  # T, N, C*h
        f = torch.relu(self.proj(f))
        f, _ = self.rnn(f)
        return f

    def output_lengths(self, widths: torch.Tensor) -> torch.Tensor:
        return torch.clamp(widths // self.cfg.width_stride, min=1)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = ["CRNNConfig", "CRNN", "PRESETS", "preset", "count_parameters"]
