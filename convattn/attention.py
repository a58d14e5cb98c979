"""Reading attention out of a model without touching it.

Every function here runs the model inside a per-thread capture (see ``layers._capture``):
no hooks are registered and no attribute of the model changes, so a model shared by
several threads or Streamlit sessions can be inspected by all of them at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from .layers import ATTENTION_TYPES, AttentionRecord, ConvAttentionModule, _Capture, _capture
from .layers import attention_row as attention_row  # public here too (its first home)


def attention_modules(model: nn.Module) -> dict[str, ConvAttentionModule]:
    """The model's ConvAttentionModules keyed by their names in ``named_modules()``."""
    return {n: m for n, m in model.named_modules() if isinstance(m, ATTENTION_TYPES)}


@contextmanager
def capture(with_attention: bool = True) -> Iterator[dict[int, AttentionRecord]]:
    """Record what every ConvAttentionModule does in forward passes run inside the block.

    Yields a dict keyed by ``id(module)``; with ``with_attention`` the modules take their
    explicit path and the records hold the (B, N, N) matrices.
    """
    state = _Capture(records={}, with_attention=with_attention)
    token = _capture.set(state)
    try:
        yield state.records
    finally:
        _capture.reset(token)


def run_with_records(
    model: nn.Module, images: Tensor, with_attention: bool = True
) -> tuple[Tensor, dict[str, AttentionRecord]]:
    """Logits and each attention module's record, keyed by module name.

    The model must be in eval mode: in training mode BatchNorm would update its running
    statistics (mutating a possibly shared model) and attention would depend on the batch.
    """
    if model.training:
        raise ValueError("attention is read from a model in eval mode; call model.eval() "
                         "first (on a copy if the model is shared).")
    named = attention_modules(model)
    with torch.no_grad(), capture(with_attention) as records:
        logits = model(images)
    return logits, {n: records[id(m)] for n, m in named.items() if id(m) in records}


def attention_maps(model: nn.Module, images: Tensor, per_head: bool = False
                   ) -> dict[str, Tensor]:
    """The attention matrix each ConvAttentionModule used on ``images``.

    Row i of a matrix is where query position i (row-major over H x W) looks. By default
    each module gives (B, N, N): its one head's matrix, or for a multi-head module the
    mean of its heads' matrices (still rows summing to 1). ``per_head=True`` gives
    (B, h, N, N) for every module, one-head modules included.
    """
    _, records = run_with_records(model, images, with_attention=True)
    if per_head:
        return {name: rec.attention for name, rec in records.items()}
    return {name: rec.attention.mean(dim=1) for name, rec in records.items()}


def query_keys(module: ConvAttentionModule, x: Tensor) -> tuple[Tensor, Tensor]:
    """Queries and keys (B, h, N, C'/h) for the module's input x, in fp32."""
    return module.queries_keys(x)


def module_inputs(model: nn.Module, images: Tensor) -> dict[str, Tensor]:
    """Each attention module's input feature map (B, C, H, W), via the cheap fused path."""
    _, records = run_with_records(model, images, with_attention=False)
    return {name: rec.x for name, rec in records.items()}


def query_row(model: nn.Module, images: Tensor, module_name: str, query: int,
              head: int | None = None) -> Tensor:
    """One query's attention row (B, N) for the named module, without forming all rows:
    head ``head``'s, or by default the mean of the heads' rows (a one-head module's row)."""
    module = attention_modules(model)[module_name]
    rows = module.row(module_inputs(model, images)[module_name], query)  # (B, h, N)
    return rows.mean(dim=1) if head is None else rows[:, head]


def gamma_values(model: nn.Module) -> dict[str, float]:
    """Each ConvAttentionModule's learned gamma."""
    return {n: m.gate() for n, m in attention_modules(model).items()}


def residual_ratios(model: nn.Module, images: Tensor) -> dict[str, Tensor]:
    """Per image, ||gamma * Z|| / ||X|| for each module: how much attention changes the
    features it is added to. Shape (B,) per module."""
    named = attention_modules(model)
    _, records = run_with_records(model, images, with_attention=False)
    out = {}
    for name, rec in records.items():
        x_seq = rec.x.flatten(2).transpose(1, 2).float()  # (B, N, C)
        gz = named[name].gate() * rec.z.float()
        out[name] = gz.flatten(1).norm(dim=1) / x_seq.flatten(1).norm(dim=1).clamp_min(1e-12)
    return out
