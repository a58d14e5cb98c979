"""Attention found in a foreign network: a module that does not implement convattn's
``AttentionLayer`` but computes a softmax attention over spatial positions.

What it finds, during one forward pass, for every module of the model:

- a softmax over the last dimension whose input is (..., Nq, Nk) with Nq > 1 and both Nq
  and Nk the H * W of a feature map seen earlier in the pass (the images, or the output of
  a convolution, pooling or upsampling): SAGAN-style blocks (``torch.bmm`` then
  ``softmax(dim=-1)``), BigGAN's attention with max-pooled keys (Nk < Nq), non-local
  blocks in their embedded-Gaussian form, and ``nn.MultiheadAttention`` when it forms its
  weights explicitly. The map is the softmax's own output.
- ``F.scaled_dot_product_attention`` (whichever fused kernel runs): the weights are
  recomputed in fp32 as softmax(q k^T * scale + mask) from the kernel's own q, k, scale,
  mask and ``is_causal`` (dropout is not applied: the weights before it).
- ``nn.MultiheadAttention``'s fused fast path (``torch._native_multi_head_attention``):
  called once more with ``need_weights=True, average_attn_weights=False`` for its
  per-head weights; the caller's ``need_weights`` is irrelevant.

Not found: the dot-product non-local block (it divides by N instead of a softmax; its rows
do not sum to 1), linear or kernelised attention, and softmaxes over channels. A channel
softmax whose C x C happens to equal spatial sizes (C = H * W of some map) would be taken
for spatial attention.

How: a ``TorchDispatchMode`` is active around the forward pass. It sees every ATen call
below autograd, calls it unchanged (so the logits are bitwise those of a plain forward),
and records the calls above. A dispatch mode rather than a ``TorchFunctionMode``: a
function mode makes ``has_torch_function`` true, which turns ``nn.MultiheadAttention``
off its fast path and so changes its output. Dispatch modes live on a per-thread stack,
so two threads capturing on one shared model each see only their own tensors. Each call
is attributed to the innermost module whose method is running, found by walking the
Python call stack for the nearest frame whose ``self`` is a module of this model (an
``nn.Softmax`` submodule counts as its parent's), rather
than with forward hooks (global or per module): hooks are state on the shared model or on
``torch.nn`` itself, visible to every thread, and would have to be added and removed
around each pass while other threads run the same model. Nothing is attached to the model
or to torch; the cost is a frame walk per softmax or attention call.
"""

from __future__ import annotations

import math
import sys

import torch
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode

_aten = torch.ops.aten
_SOFTMAX = {_aten._softmax.default, _aten._safe_softmax.default}
_MHA = _aten._native_multi_head_attention.default


def _bound(func, args: tuple, kwargs: dict) -> dict:
    """The call's arguments by their schema names."""
    names = [a.name for a in func._schema.arguments]
    return {**dict(zip(names, args)), **kwargs}


def sdpa_weights(q: Tensor, k: Tensor, scale: float | None = None,
                 mask: Tensor | None = None, is_causal: bool = False) -> Tensor:
    """softmax(q k^T * scale + mask) in fp32, as ``F.scaled_dot_product_attention`` forms it:
    q (..., Nq, d), k (..., Nk, d) -> (..., Nq, Nk)."""
    q, k = q.float(), k.float()
    if q.dim() == k.dim() and q.dim() >= 3 and q.size(-3) != k.size(-3):  # grouped queries
        k = k.repeat_interleave(q.size(-3) // k.size(-3), dim=-3)
    scale = 1.0 / math.sqrt(q.size(-1)) if scale is None else scale
    scores = q @ k.transpose(-2, -1) * scale
    nq, nk = scores.shape[-2:]
    if is_causal:
        keep = torch.ones(nq, nk, dtype=torch.bool, device=q.device).tril()
        scores = scores.masked_fill(~keep, float("-inf"))
    if mask is not None:
        mask = mask[..., :nq, :nk]
        scores = (scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool
                  else scores + mask.float())
    return scores.softmax(dim=-1)


class _Recorder(TorchDispatchMode):
    """Records, per module name, the (..., Nq, Nk) attention of the last call in it."""

    def __init__(self, model: nn.Module, spatial: int) -> None:
        super().__init__()
        # an nn.Softmax submodule (SAGAN's self.softmax) is the block's, not an attention
        self.names = {id(m): n for n, m in model.named_modules()
                      if not isinstance(m, nn.Softmax)}
        self.sizes = {spatial}  # H * W of every feature map seen so far
        self.found: dict[str, Tensor] = {}

    def _owner(self) -> str | None:
        frame = sys._getframe(2)
        while frame is not None:
            name = self.names.get(id(frame.f_locals.get("self")))
            if name is not None:
                return name
            frame = frame.f_back
        return None

    def _record(self, attention: Tensor) -> None:
        name = self._owner()
        if name is not None:
            self.found[name] = attention.detach().float().clone()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        packet = func._overloadpacket.__name__
        first = out[0] if isinstance(out, tuple) and out else out  # max pool: (values, indices)
        if isinstance(first, Tensor) and first.dim() == 4 and (
                "conv" in packet or "pool" in packet or "upsample" in packet):
            self.sizes.add(first.size(-2) * first.size(-1))
        elif func in _SOFTMAX:
            x, dim = args[0], args[1]
            if (x.dim() >= 3 and dim % x.dim() == x.dim() - 1 and x.size(-2) > 1
                    and x.size(-2) in self.sizes and x.size(-1) in self.sizes):
                self._record(out)
        elif func is _MHA:
            bound = _bound(func, args, kwargs)
            bound.update(need_weights=True, average_attn_weights=False)
            self._record(func(**bound)[1])
        elif packet.startswith("_scaled_dot_product") and "backward" not in packet:
            b = _bound(func, args, kwargs)
            mask = b.get("attn_mask", b.get("attn_bias"))
            self._record(sdpa_weights(b["query"], b["key"], b.get("scale"), mask,
                                      bool(b.get("is_causal", False))))
        return out


def foreign_attention(model: nn.Module, images: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """Logits and, keyed by module name (as ``named_modules()`` gives it), each foreign
    attention's (B, h, Nq, Nk) matrix, rows summing to 1 (h = 1 for one-head modules).

    The model must be in eval mode; it is run once under ``torch.no_grad`` and not changed.
    A module that ran several times keeps its last attention.
    """
    if model.training:
        raise ValueError("attention is read from a model in eval mode; call model.eval() "
                         "first (on a copy if the model is shared).")
    batch = images.size(0)
    recorder = _Recorder(model, images.size(-2) * images.size(-1))
    with torch.no_grad(), recorder:
        logits = model(images)
    maps = {}
    for name, a in recorder.found.items():
        nq, nk = a.shape[-2:]
        if a.numel() % (batch * nq * nk) == 0:
            maps[name] = a.reshape(batch, -1, nq, nk)
    return logits, maps
