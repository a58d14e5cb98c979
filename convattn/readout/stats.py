"""Attention statistics over a set of images: how spread out, how far, how query-specific.

For every attention module and every image, per query position i:
- entropy H_i = -sum_j A_ij log A_ij (nats): 0 when the query looks at one position,
  log Nk when it looks at all Nk key positions equally;
- mean attention distance D_i = sum_j A_ij ||p_i - p_j||, in input pixels: how far from
  itself a position looks on average (the "attention distance" of Dosovitskiy et al.
  2021, "An Image is Worth 16x16 Words", Fig. 7). p_i is the centre of query i's cell of
  the module's input grid, p_j the centre of key j's cell of the module's ``key_grid``:
  the input grid itself, or a coarser one for a module that pools its keys (a key of a
  4x4 grid over an 8x8 input sits at the centre of the 2x2 cells it pools);
and per image the row similarity: the mean cosine similarity between the attention rows
of different queries. Near 1, every query attends to the same places, so the attention
map is query-independent (what Cao et al. 2019, "GCNet", found in non-local blocks).

``attention_statistics`` runs the model over a set in batches, calling ``progress`` after
each, and keeps per-image maps so the app can split them by class or by correct vs
misclassified (``AttentionStats.select``) without running the model again.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import Tensor, nn

from convattn.device import model_device
from convattn.readout.attention import attention_modules, run_with_records
from convattn.readout.grid import INPUT_SIZE, Grid


@dataclass
class ModuleStats:
    """One attention module over a set of B images."""

    name: str
    grid: tuple[int, int]  # (H', W') of the module's feature map: where the queries lie
    entropy: np.ndarray  # (B, H', W') per-query entropy, nats
    distance: np.ndarray  # (B, H', W') per-query mean attention distance, input pixels
    similarity: np.ndarray  # (B,) mean cosine similarity between different queries' rows
    key_grid: tuple[int, int] | None = None  # (Hk, Wk) of the keys; None: the same as grid
    image: tuple[int, int] = (INPUT_SIZE, INPUT_SIZE)  # (H, W) of the input, in pixels
    # A module with several heads: each statistic of each head's rows, averaged over heads.

    def select(self, mask: np.ndarray) -> ModuleStats:
        """The same module over the images where ``mask`` (B,) is True (grids kept)."""
        return replace(self, entropy=self.entropy[mask], distance=self.distance[mask],
                       similarity=self.similarity[mask])

    @property
    def keys(self) -> tuple[int, int]:
        """(Hk, Wk): the grid the keys lie on."""
        return self.grid if self.key_grid is None else self.key_grid

    @property
    def max_entropy(self) -> float:
        """Entropy of uniform attention, log Nk: the most spread out a row can be."""
        return math.log(self.keys[0] * self.keys[1])

    @property
    def uniform_distance(self) -> np.ndarray:
        """(H', W') mean distance each query would have if it attended uniformly."""
        return position_distances(self.grid, keys=self.keys, image=self.image).mean(
            dim=1).view(self.grid).numpy()


@dataclass
class AttentionStats:
    """Per-image statistics of every attention module, with labels and predictions."""

    indices: np.ndarray  # (B,) positions of the images in the set they came from
    labels: np.ndarray  # (B,) true class
    predicted: np.ndarray  # (B,) predicted class
    modules: dict[str, ModuleStats] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def correct(self) -> np.ndarray:
        return self.labels == self.predicted

    def select(self, mask: np.ndarray) -> AttentionStats:
        """The statistics of the images where ``mask`` (B,) is True."""
        return AttentionStats(
            self.indices[mask], self.labels[mask], self.predicted[mask],
            {n: m.select(mask) for n, m in self.modules.items()})


def row_entropy(attention: Tensor) -> Tensor:
    """Entropy in nats of each row of (B, Nq, Nk) attention: (B, Nq). ``entr`` is
    -a log a in one pass (0 at a = 0), not three over the (B, Nq, Nk) matrices."""
    return torch.special.entr(attention.float()).sum(dim=-1)


def position_distances(grid: tuple[int, int], *, keys: tuple[int, int] | None = None,
                       image: tuple[int, int] = (INPUT_SIZE, INPUT_SIZE)) -> Tensor:
    """(Nq, Nk) distances from the centres of a grid's cells (the queries) to the centres
    of the ``keys`` grid's cells (by default the same grid: (N, N)), in pixels of an input
    of ``image`` (H, W)."""
    queries = torch.from_numpy(Grid.of(grid, image).centres())
    keys_at = queries if keys is None else torch.from_numpy(Grid.of(keys, image).centres())
    return torch.cdist(queries, keys_at).float()


def mean_distance(attention: Tensor, distances: Tensor) -> Tensor:
    """Attention-weighted distance from each query to the keys: (B, Nq, Nk) with (Nq, Nk)
    distances -> (B, Nq)."""
    return torch.einsum("bij,ij->bi", attention.float(), distances)


def row_similarity(attention: Tensor) -> Tensor:
    """Mean cosine similarity over all pairs of different rows, (B, N, Nk) -> (B,).

    With unit rows u_i, sum_{i != j} u_i . u_j = ||sum_i u_i||^2 - N, so this costs
    O(N^2) instead of forming the (N, N) matrix of similarities; sum_i u_i is one
    matrix product of the rows with their inverse norms, without forming the u_i.
    """
    n = attention.shape[1]
    a = attention.float()
    inverse = 1 / a.norm(dim=-1).clamp_min(1e-30)  # (B, N)
    total = (inverse[:, None, :] @ a)[:, 0].pow(2).sum(dim=-1)  # (B,)
    return (total - n) / (n * (n - 1))


def _head_mean(t: Tensor, heads: int) -> np.ndarray:
    """(B * h, ...) per head -> (B, ...), the mean over each image's heads."""
    return t.view(-1, heads, *t.shape[1:]).mean(dim=1).cpu().numpy()


def _attention(model: nn.Module, images: Tensor
               ) -> tuple[Tensor, dict[str, tuple[tuple[int, int], tuple[int, int], Tensor]]]:
    """Logits and, per attention module, its query grid, key grid and (B, h, Nq, Nk)
    attention: convattn's modules through their records, a foreign network's softmax
    attentions through ``convattn.readout.foreign`` (grids read on the first image)."""
    named = attention_modules(model)
    if named:
        logits, records = run_with_records(model, images, with_attention=True)
        return logits, {n: (tuple(r.x.shape[2:]), tuple(named[n].key_grid(r.x)), r.attention)
                        for n, r in records.items()}
    from convattn.readout.foreign import foreign_attention, foreign_found

    logits, maps = foreign_attention(model, images)
    if not maps:
        return logits, {}
    _, found = foreign_found(model, images[:1])
    return logits, {n: (tuple(found[n].grid), tuple(found[n].key_grid), a)
                    for n, a in maps.items() if n in found}


def batch_statistics(model: nn.Module, images: Tensor) -> tuple[Tensor, dict[str, ModuleStats]]:
    """Predictions (B,) and every attention module's statistics for one batch of
    normalised images (B, C, H, W), any size; distances are in pixels of that size."""
    logits, found = _attention(model, images)
    image = tuple(images.shape[-2:])
    out = {}
    for name, (grid, keys, attention) in found.items():
        b, heads, n, nk = attention.shape
        if n != grid[0] * grid[1] or nk != keys[0] * keys[1]:
            raise ValueError(f"module {name}'s attention is {n}x{nk}, not (queries on its "
                             f"{grid[0]}x{grid[1]} input) x (keys on its {keys[0]}x{keys[1]} "
                             "key grid)")
        a = attention.reshape(b * heads, n, nk)  # every head's rows on their own
        dist = position_distances(grid, keys=keys, image=image).to(a.device)

        out[name] = ModuleStats(
            name=name, grid=grid, key_grid=keys, image=image,
            entropy=_head_mean(row_entropy(a).view(-1, *grid), heads),
            distance=_head_mean(mean_distance(a, dist).view(-1, *grid), heads),
            similarity=_head_mean(row_similarity(a), heads),
        )
    return logits.argmax(dim=1).cpu(), out


def merge(parts: list[AttentionStats]) -> AttentionStats:
    """One AttentionStats from several, images in order."""
    if not parts:
        raise ValueError("nothing to merge")
    first = parts[0]
    return AttentionStats(
        np.concatenate([p.indices for p in parts]),
        np.concatenate([p.labels for p in parts]),
        np.concatenate([p.predicted for p in parts]),
        {n: replace(m, entropy=np.concatenate([p.modules[n].entropy for p in parts]),
                    distance=np.concatenate([p.modules[n].distance for p in parts]),
                    similarity=np.concatenate([p.modules[n].similarity for p in parts]))
         for n, m in first.modules.items()})


def attention_statistics(model: nn.Module, images: Tensor, labels: Tensor,
                         indices: np.ndarray | None = None, batch_size: int = 25,
                         progress: Callable[[int, int], None] | None = None
                         ) -> AttentionStats:
    """Statistics of every attention module over normalised ``images`` (B, C, H, W), of any size.

    The (batch, Nq, Nk) attention matrices are formed one batch at a time (25 images at
    N = 1024 is 100 MB), and ``progress(done, total)`` is called after each batch.
    """
    device = model_device(model)
    total = len(images)
    indices = np.arange(total) if indices is None else np.asarray(indices)
    parts = []
    for start in range(0, total, batch_size):
        stop = min(start + batch_size, total)
        predicted, modules = batch_statistics(model, images[start:stop].to(device))
        parts.append(AttentionStats(indices[start:stop], labels[start:stop].cpu().numpy(),
                                    predicted.numpy(), modules))
        if progress is not None:
            progress(stop, total)
    if not parts:
        return AttentionStats(indices, labels.cpu().numpy(), np.zeros(0, dtype=np.int64))
    return merge(parts)


def balanced_order(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """A fixed order of a set's images in which every prefix has the classes in balance:
    one random image of each class in turn. The first n images are the sample of size n,
    so a larger sample contains every smaller one (and reuses its cached work)."""
    rng = np.random.default_rng(seed)
    per_class = [rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)]
    order = []
    for i in range(max((len(p) for p in per_class), default=0)):
        order += [int(p[i]) for p in per_class if i < len(p)]
    return np.array(order, dtype=np.int64)


def summary(stats: ModuleStats) -> dict[str, float]:
    """Means over images and positions, for tables."""
    return {
        "images": len(stats.similarity),
        "entropy": float(stats.entropy.mean()) if stats.entropy.size else float("nan"),
        "entropy_fraction": (float(stats.entropy.mean()) / stats.max_entropy
                             if stats.entropy.size else float("nan")),
        "distance": float(stats.distance.mean()) if stats.distance.size else float("nan"),
        "similarity": (float(stats.similarity.mean()) if stats.similarity.size
                       else float("nan")),
    }
