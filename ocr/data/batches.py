"""Training batches: one contract, two ways to serve it.

``Batches`` holds the training images once, as the uint8 ink maps of ``ocr.preprocess.preprocess`` (the function
evaluation, prediction and drawing use) padded into one tensor. Batch ``b`` of an epoch is an index gather from the
epoch's shuffle plus ``ocr.data.augment.augment_batch`` with a generator seeded by (epoch seed, b), so a batch depends on
nothing but its seed: a resume replays an epoch exactly, whatever served it.

- ``Batches`` on the training device (``data_on_device``, the default on CUDA): images and augmentation stay on the
  GPU and no Python code touches a sample.
- ``LoaderBatches``: the same ``Batches`` on the CPU, built by DataLoader worker processes while the device trains.

Both give ``len()`` batches per epoch, ``num_samples``, ``seed(epoch_seed)`` and (images, widths, targets, lengths).
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ocr.data.augment import AugmentConfig, augment_batch

_MIX = 1_000_003  # epoch seed x _MIX + batch index: one generator seed per batch


class Batches:
    """Shuffled, augmented batches of ``images`` (uint8 ink maps, see ``ocr.data.datasets.LineDataset``) on ``device``."""

    def __init__(self, images: list[np.ndarray], targets: list[list[int]], batch_size: int,
                 augment: AugmentConfig | None = AugmentConfig(), device: torch.device = torch.device("cpu"),
                 drop_last: bool = True, multiple: int = 8):
        if not images:
            raise ValueError("no training images")
        self.device, self.batch_size, self.augment, self.multiple = device, batch_size, augment, multiple
        self.drop_last = drop_last and len(images) > batch_size
        self.n = len(images)
        width = -(-max(im.shape[1] for im in images) // multiple) * multiple
        canvas = np.zeros((self.n, images[0].shape[0], width), dtype=np.uint8)
        for i, im in enumerate(images):
            canvas[i, :, : im.shape[1]] = im
        self.images = torch.from_numpy(canvas).to(device)
        self.widths = torch.tensor([im.shape[1] for im in images], dtype=torch.long)
        self.targets = [torch.tensor(t, dtype=torch.long) for t in targets]
        self.epoch_seed = 0
        self.rank, self.world = 0, 1
        self._orders: dict[int, torch.Tensor] = {}
        self._gen = torch.Generator(device=device)

    def __len__(self) -> int:
        """The batches this process trains on in an epoch (its share when the run has several ranks)."""
        total = self.n // self.batch_size if self.drop_last else -(-self.n // self.batch_size)
        return total // self.world

    def share(self, rank: int, world: int) -> None:
        """Rank ``rank`` of ``world`` takes every ``world``-th batch of each epoch's one seeded order, so the ranks
        see what one process would and a resume does not depend on their number; each rank takes as many (a last
        remainder of fewer than ``world`` batches waits for the next epoch's shuffle)."""
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} of {world}")
        self.rank, self.world = rank, world

    def keys(self) -> range:
        """This rank's batch indices of the epoch."""
        return range(self.rank, len(self) * self.world, self.world)

    @property
    def num_samples(self) -> int:
        return self.n

    @property
    def nbytes(self) -> int:
        return self.images.numel()

    def seed(self, seed: int) -> None:
        """Per-epoch seeding: the epoch's shuffle and every batch's augmentation follow from it."""
        self.epoch_seed = seed

    def order(self, seed: int) -> torch.Tensor:
        if seed not in self._orders:
            self._orders = {seed: torch.randperm(self.n, generator=torch.Generator().manual_seed(seed))}
        return self._orders[seed]

    def batch(self, b: int, seed: int | None = None):
        """Batch ``b`` of the epoch seeded ``seed`` (the current one by default): images (N, 1, H, W) on the device,
        widths (N,), targets (sum of lengths,), lengths (N,)."""
        seed = self.epoch_seed if seed is None else seed
        idx = self.order(seed)[b * self.batch_size:(b + 1) * self.batch_size]
        widths = self.widths[idx]
        width = int(-(-int(widths.max()) // self.multiple) * self.multiple)
        x = self.images[idx.to(self.device)][:, None, :, :width].float().div_(255)
        if self.augment is not None:
            self._gen.manual_seed((seed * _MIX + b) % 2**63)
            x = augment_batch(x, self._gen, self.augment, widths)
        targets = [self.targets[i] for i in idx.tolist()]
        return x, widths, torch.cat(targets), torch.tensor([len(t) for t in targets], dtype=torch.long)

    def __iter__(self):
        for b in self.keys():
            yield self.batch(b)


class _EpochKeys(Sampler):
    """(epoch seed, batch index) for every batch of the current epoch; read in the training process."""

    def __init__(self, batches: Batches):
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        seed = self.batches.epoch_seed
        return iter([(seed, b) for b in self.batches.keys()])


class _ByKey(Dataset):
    def __init__(self, batches: Batches):
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, key: tuple[int, int]):
        seed, b = key
        return self.batches.batch(b, seed)


class LoaderBatches:
    """``Batches`` on the CPU, built ahead by ``workers`` DataLoader processes (none: in the training process)."""

    def __init__(self, batches: Batches, workers: int, pin_memory: bool = False):
        if batches.device.type != "cpu":
            raise ValueError("LoaderBatches builds batches on the CPU")
        self.batches = batches
        self.workers = workers
        self.loader = DataLoader(_ByKey(batches), batch_size=None, sampler=_EpochKeys(batches), num_workers=workers,
                                 pin_memory=pin_memory, persistent_workers=workers > 0,
                                 generator=torch.Generator())  # not the global RNG: dropout stays as on the device path

    def __len__(self) -> int:
        return len(self.batches)

    @property
    def num_samples(self) -> int:
        return self.batches.num_samples

    def seed(self, seed: int) -> None:
        self.batches.seed(seed)

    def share(self, rank: int, world: int) -> None:
        self.batches.share(rank, world)

    def __iter__(self):
        return iter(self.loader)


__all__ = ["Batches", "LoaderBatches"]
