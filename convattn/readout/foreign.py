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

For Inspect, one image at a time, ``foreign_found`` keeps what makes each attention rather
than its matrix wherever that is exact (``convattn.readout.source``): a fused kernel's own
q, k and scale (no mask), or the q and k of an explicit matmul (``bmm``/``mm``, through
views and a multiplication or division by a number) that feeds the softmax, trusted only
once a few rows recomputed from them equal the softmax's own output; else the softmax's
output, the matrix the model formed anyway. The key grid is the (H, W) of the latest
feature map with Nk positions (max-pooled keys: a coarser one).

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
import weakref
from dataclasses import dataclass

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


@dataclass
class Found:
    """One module's attention as its last softmax or attention call left it, batched:
    queries (B, h, Nq, d), keys (B, h, Nk, d) and scale, or the (B, h, Nq, Nk) matrix;
    ``grid`` and ``key_grid`` are the (H, W) of the feature maps whose H * W are Nq and
    Nk (the latest seen before the call), None when no map had that many positions."""

    q: Tensor | None
    k: Tensor | None
    scale: float
    matrix: Tensor | None
    grid: tuple[int, int] | None = None
    key_grid: tuple[int, int] | None = None

    def weights(self) -> Tensor:
        """The (..., Nq, Nk) matrix, formed from q and k when those were kept."""
        if self.matrix is not None:
            return self.matrix
        assert self.q is not None and self.k is not None
        return (self.q @ self.k.transpose(-1, -2) * self.scale).softmax(dim=-1)


_VIEWS = {_aten.view.default, _aten._unsafe_view.default, _aten.reshape.default,
          _aten.clone.default, _aten.alias.default, _aten.detach.default,
          _aten._to_copy.default}
_MATMUL = {_aten.bmm.default, _aten.mm.default}
_SCALE = {_aten.mul.Tensor: 1, _aten.mul.Scalar: 1, _aten.div.Tensor: -1,
          _aten.div.Scalar: -1}
_CHECKED = 3  # rows per softmax recomputed from q and k before they are trusted


def _number(value: object) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, Tensor) and value.dim() == 0 and not value.is_complex():
        return float(value.item())
    return None


class _Recorder(TorchDispatchMode):
    """Records, per module name, the attention of the last softmax or attention call in it.

    ``keep_matrix``: every attention as its matrix (what ``foreign_attention`` returns);
    otherwise, for one image at a time, as q, k and scale wherever they can be had
    exactly: a fused attention kernel's own q, k and scale (no mask), or an explicit matmul
    of q and k^T feeding the softmax through views and a multiplication or division by a
    number, trusted once ``_CHECKED`` rows recomputed from them equal the softmax's own.
    """

    def __init__(self, model: nn.Module, shape: tuple[int, int], keep_matrix: bool = True
                 ) -> None:
        super().__init__()
        # an nn.Softmax submodule (SAGAN's self.softmax) is the block's, not an attention
        self.names = {id(m): n for n, m in model.named_modules()
                      if not isinstance(m, nn.Softmax)}
        self.shapes = {shape[0] * shape[1]: shape}  # H * W -> (H, W) of feature maps seen
        self.keep_matrix = keep_matrix
        self.origins: dict[int, tuple[weakref.ref, tuple[Tensor, Tensor, float]]] = {}
        self.found: dict[str, Found] = {}

    def _owner(self) -> str | None:
        frame = sys._getframe(2)
        while frame is not None:
            name = self.names.get(id(frame.f_locals.get("self")))
            if name is not None:
                return name
            frame = frame.f_back
        return None

    def _record(self, found: Found) -> None:
        name = self._owner()
        if name is not None:
            nq, nk = (found.matrix if found.matrix is not None else found.q).size(-2), (
                found.matrix.size(-1) if found.matrix is not None else found.k.size(-2))
            found.grid, found.key_grid = self.shapes.get(nq), self.shapes.get(nk)
            self.found[name] = found

    def _origin(self, t: object) -> tuple[Tensor, Tensor, float] | None:
        entry = self.origins.get(id(t)) if isinstance(t, Tensor) else None
        return entry[1] if entry is not None and entry[0]() is t else None

    def _note(self, out: object, origin: tuple[Tensor, Tensor, float]) -> None:
        if not isinstance(out, Tensor):
            return
        if len(self.origins) > 64:  # forget the tensors that are gone
            self.origins = {i: e for i, e in self.origins.items() if e[0]() is not None}
        self.origins[id(out)] = (weakref.ref(out), origin)

    def _track(self, func, args: tuple, out: object) -> None:
        """Follow matmul outputs (..., Nq, Nk) through views and scalings."""
        if func in _MATMUL:
            if isinstance(out, Tensor) and out.size(-1) in self.shapes:
                self._note(out, (args[0], args[1], 1.0))
        elif func in _VIEWS:
            if (origin := self._origin(args[0])) is not None:
                self._note(out, origin)
        elif func in _SCALE and len(args) == 2:
            for this, other in ((args[0], args[1]), (args[1], args[0])):
                origin, s = self._origin(this), _number(other)
                if origin is not None and s is not None and (s != 0 or _SCALE[func] > 0):
                    self._note(out, (*origin[:2], origin[2] * s ** _SCALE[func]))
                    return

    def _from_matmul(self, x: Tensor, out: Tensor) -> Found | None:
        """q, k and scale of the softmax of ``x`` (its output ``out``), when ``x`` is a
        matmul of them and ``_CHECKED`` rows recomputed from them equal ``out``'s."""
        origin = self._origin(x)
        if origin is None:
            return None
        a, b, scale = origin
        nq, nk, d = x.size(-2), x.size(-1), a.size(-1)
        if b.size(-2) != d or a.numel() != x[..., 0].numel() * d:
            return None
        q = a.detach().float().reshape(*x.shape[:-1], d)
        k = b.detach().float().transpose(-1, -2).reshape(*x.shape[:-2], nk, d)
        rows = sorted({0, nq // 2, nq - 1})[:_CHECKED]
        mine = (q[..., rows, :] @ k.transpose(-1, -2) * scale).softmax(dim=-1)
        if not torch.allclose(mine, out[..., rows, :].float(), rtol=1e-4, atol=1e-7):
            return None
        return Found(q=q.clone(), k=k.clone(), scale=scale, matrix=None)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        packet = func._overloadpacket.__name__
        first = out[0] if isinstance(out, tuple) and out else out  # max pool: (values, indices)
        if isinstance(first, Tensor) and first.dim() == 4 and (
                "conv" in packet or "pool" in packet or "upsample" in packet):
            self.shapes[first.size(-2) * first.size(-1)] = tuple(first.shape[-2:])
        elif func in _SOFTMAX:
            x, dim = args[0], args[1]
            if (x.dim() >= 3 and dim % x.dim() == x.dim() - 1 and x.size(-2) > 1
                    and x.size(-2) in self.shapes and x.size(-1) in self.shapes):
                found = None if self.keep_matrix else self._from_matmul(x, out)
                self._record(found or Found(None, None, 1.0, out.detach().float().clone()))
        elif func is _MHA:
            bound = _bound(func, args, kwargs)
            bound.update(need_weights=True, average_attn_weights=False)
            self._record(Found(None, None, 1.0, func(**bound)[1].detach().float()))
        elif packet.startswith("_scaled_dot_product") and "backward" not in packet:
            b = _bound(func, args, kwargs)
            mask, causal = b.get("attn_mask", b.get("attn_bias")), bool(b.get("is_causal"))
            q, k = b["query"], b["key"]
            if self.keep_matrix or mask is not None or causal:
                self._record(Found(None, None, 1.0,
                                   sdpa_weights(q, k, b.get("scale"), mask, causal)))
            else:
                if q.dim() >= 3 and q.size(-3) != k.size(-3):  # grouped queries
                    k = k.repeat_interleave(q.size(-3) // k.size(-3), dim=-3)
                scale = b.get("scale")
                self._record(Found(q.detach().float().clone(), k.detach().float().clone(),
                                   1.0 / math.sqrt(q.size(-1)) if scale is None else scale,
                                   None))
        else:
            self._track(func, args, out)
        return out


def _run(model: nn.Module, images: Tensor, keep_matrix: bool
         ) -> tuple[Tensor, dict[str, Found]]:
    if model.training:
        raise ValueError("attention is read from a model in eval mode; call model.eval() "
                         "first (on a copy if the model is shared).")
    recorder = _Recorder(model, tuple(images.shape[-2:]), keep_matrix)
    # Inference mode keeps composite ops whole (aten.softmax.int, not aten._softmax), so
    # the recorder would see none of the calls it knows: it is switched off for the pass.
    with torch.inference_mode(False), torch.no_grad(), recorder:
        logits = model(images)
    return logits, recorder.found


def foreign_attention(model: nn.Module, images: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """Logits and, keyed by module name (as ``named_modules()`` gives it), each foreign
    attention's (B, h, Nq, Nk) matrix, rows summing to 1 (h = 1 for one-head modules).

    The model must be in eval mode; it is run once under ``torch.no_grad`` (also when the
    caller is in ``torch.inference_mode``) and not changed. A module that ran several
    times keeps its last attention.
    """
    batch = images.size(0)
    logits, found = _run(model, images, keep_matrix=True)
    maps = {}
    for name, f in found.items():
        a = f.weights()
        nq, nk = a.shape[-2:]
        if a.numel() % (batch * nq * nk) == 0:
            maps[name] = a.reshape(batch, -1, nq, nk)
    return logits, maps


def foreign_found(model: nn.Module, image: Tensor) -> tuple[Tensor, dict[str, Found]]:
    """Logits and each foreign attention of one image (1, C, H, W), as (1, h, Nq, d)
    queries, keys and scale wherever they can be had exactly (see ``_Recorder``), else as
    the (1, h, Nq, Nk) matrix the module formed. Only attentions over spatial positions
    (``grid`` and ``key_grid`` known) are returned."""
    if image.size(0) != 1:
        raise ValueError("one image: a batch of 1")
    logits, found = _run(model, image, keep_matrix=False)
    out = {}
    for name, f in found.items():
        if f.grid is None or f.key_grid is None:
            continue
        if f.matrix is not None:
            nq, nk = f.matrix.shape[-2:]
            f.matrix = f.matrix.reshape(1, -1, nq, nk)
        else:
            assert f.q is not None and f.k is not None
            f.q = f.q.reshape(1, -1, *f.q.shape[-2:])
            f.k = f.k.reshape(1, -1, *f.k.shape[-2:])
        out[name] = f
    return logits, out
