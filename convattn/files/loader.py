"""Feeding an in-memory image set to a model: batches of normalised images on any device.

The whole of CIFAR-10 is 180 MB as uint8, so training keeps it in memory (on the GPU
when there is one) and crops and flips batches there instead of going through PIL.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from convattn.files.data import ImageSet
from convattn.files.info import normalise


class TensorLoader:
    """Batches of normalised images from an in-memory uint8 set, on any device.

    Training batches are randomly cropped (zero padding of 4, as torchvision's
    RandomCrop(32, padding=4)) and flipped with a generator seeded from (seed, epoch):
    an epoch's batches depend on nothing else, which is what makes ``--resume`` exact.
    With ``world > 1`` each rank takes its own interleaved share of every epoch.
    """

    def __init__(
        self,
        data: ImageSet,
        batch_size: int,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        device: torch.device | str = "cpu",
        train: bool = False,
        seed: int = 0,
        rank: int = 0,
        world: int = 1,
    ) -> None:
        self.device = torch.device(device)
        self.train = train
        self.batch_size = batch_size
        self.seed, self.rank, self.world = seed, rank, world
        images = torch.as_tensor(data.images).to(self.device)  # (N, 32, 32, 3)
        if train:
            images = torch.nn.functional.pad(images, (0, 0, 4, 4, 4, 4))  # (N, 40, 40, 3)
        self.images = images
        self.labels = torch.as_tensor(data.labels).to(self.device)
        self.mean, self.std = tuple(mean), tuple(std)

    def _indices(self, epoch: int) -> Tensor:
        n = len(self.labels)
        if not self.train:
            idx = torch.arange(n)
        else:
            gen = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            idx = torch.randperm(n, generator=gen)
            idx = idx[: n // (self.batch_size * self.world) * self.batch_size * self.world]
        return idx[self.rank :: self.world] if self.world > 1 else idx

    def __len__(self) -> int:
        n = len(self._indices(0))
        return n // self.batch_size if self.train else -(-n // self.batch_size)

    def normalise(self, batch: Tensor) -> Tensor:
        """(B, H, W, 3) uint8 -> (B, 3, H, W) float, channels_last in memory."""
        return normalise(batch, self.mean, self.std)

    def epoch(self, epoch: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
        idx = self._indices(epoch)
        if self.train:
            gen = torch.Generator().manual_seed(self.seed * 100_003 + epoch + 7_919)
            offsets = torch.randint(0, 9, (len(idx), 2), generator=gen)
            flips = torch.rand(len(idx), generator=gen) < 0.5
            ar = torch.arange(32)
            rows = offsets[:, :1] + ar  # (n, 32)
            cols = torch.where(flips[:, None], offsets[:, 1:] + 31 - ar, offsets[:, 1:] + ar)
        for start in range(0, len(idx), self.batch_size):
            b = idx[start : start + self.batch_size]
            if self.train:
                r = rows[start : start + self.batch_size].to(self.device)
                c = cols[start : start + self.batch_size].to(self.device)
                batch = self.images[b.to(self.device)[:, None, None], r[:, :, None], c[:, None, :]]
            else:
                batch = self.images[b.to(self.device)]
            yield self.normalise(batch), self.labels[b.to(self.device)]

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        return self.epoch(0)
