"""The attention interface: what an attention module provides to the rest of convattn, and
how it reports what it computed during a forward pass.

Every reader of attention (maps, rows, the lens, statistics, ablations, step-through, the
pages) talks to a module through these protocols, never through its fields. A module is an
``AttentionLayer`` when it can give any query's row; the other protocols are capabilities
that some readers need and some modules lack:

- ``QueryKeyAttention``: its queries and keys are known (the lens computes rows from them
  in the browser, step-through shows the scores, the query/key space plots them). A foreign
  network's block may compute attention some other way.
- ``ValueAttention``: its values are known, so what it gathers, z_i = sum_j A_ij v_j, can
  be recomputed step by step (step-through).
- ``GatedAttention``: a residual gate gamma (ablation by gamma = 0, gamma's history).
- ``UniformableAttention``: it can be made to attend uniformly (the uniform ablation).
- ``NormedResidual``: its output is norm(gamma Z + X) (residual ratios, step-through's last
  steps).

A reader that needs a capability asks with ``require``, which says in one sentence which
module lacks what. Query and key grids may differ: ``key_grid`` gives the (Hk, Wk) the keys
lie on (a non-local block that pools its keys has a coarser key grid than its queries).

A module reports what it computed with ``report`` from its forward pass; ``capture``
(in ``convattn.readout.attention``) collects the reports. A ``ContextVar`` rather than
forward hooks: each thread (and each Streamlit session) sees its own capture, so two
callers inspecting one shared model never see each other's tensors, and nothing is ever
attached to the model.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import Protocol, TypeVar, runtime_checkable

import torch
from torch import Tensor, nn


@dataclass
class AttentionRecord:
    """What one attention module saw and did during a captured forward pass."""

    x: Tensor  # (B, C, H, W) the module's input
    attention: Tensor | None  # (B, h, Nq, Nk) rows sum to 1; None when only inputs were asked for
    z: Tensor | None  # (B, Nq, C) the attended values A V, heads side by side; None if unknown


@dataclass
class Capture:
    """One capture's state: the records so far, and whether the matrices are wanted."""

    records: dict[int, AttentionRecord]  # keyed by id(module)
    with_attention: bool


_capture: ContextVar[Capture | None] = ContextVar("convattn_capture", default=None)


def start_capture(with_attention: bool) -> tuple[Capture, object]:
    """Begin a capture in this thread; returns it and the token ``stop_capture`` takes."""
    state = Capture(records={}, with_attention=with_attention)
    return state, _capture.set(state)


def stop_capture(token: object) -> None:
    _capture.reset(token)  # type: ignore[arg-type]


def attention_wanted() -> bool:
    """Whether a capture running in this thread asks for the attention matrices, so the
    module should form them explicitly instead of calling a fused kernel."""
    if torch.compiler.is_compiling():
        return False
    state = _capture.get()
    return state is not None and state.with_attention


def report(module: nn.Module, x: Tensor, attention: Tensor | None = None,
           z: Tensor | None = None) -> None:
    """Hand what ``module`` computed in this forward pass to the capture running in this
    thread; nothing happens when none is running (or while torch.compile traces)."""
    if torch.compiler.is_compiling():
        return
    state = _capture.get()
    if state is not None:
        state.records[id(module)] = AttentionRecord(x=x.detach(), attention=attention, z=z)


@runtime_checkable
class AttentionLayer(Protocol):
    """A module that attends over spatial positions: any query's row can be read."""

    def heads(self) -> int: ...

    def weights(self, x: Tensor) -> Tensor:
        """(B, h, Nq, Nk) attention on input x (B, C, H, W), rows summing to 1."""
        ...

    def row(self, x: Tensor, query: int) -> Tensor:
        """(B, h, Nk): one query position's row in every head."""
        ...

    def key_grid(self, x: Tensor) -> tuple[int, int]:
        """(Hk, Wk) of the key positions for input x; the queries lie on x's (H, W)."""
        ...


@runtime_checkable
class QueryKeyAttention(AttentionLayer, Protocol):
    """Attention that is softmax(q . k / sqrt(d)) of known queries and keys."""

    def queries_keys(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Queries (B, h, Nq, d) and keys (B, h, Nk, d) in fp32, without gradients."""
        ...


@runtime_checkable
class ValueAttention(AttentionLayer, Protocol):
    """Attention whose values are known: what it gathers is z_i = sum_j A_ij v_j."""

    def values(self, x: Tensor) -> Tensor:
        """Values (B, h, Nk, C/h) in fp32, without gradients; the heads' z side by side
        make the module's (B, Nq, C) z."""
        ...


@runtime_checkable
class GatedAttention(Protocol):
    """Attention mixed in through a residual gate gamma."""

    def gate(self) -> float: ...

    def set_gate_(self, value: float) -> None:
        """Set gamma in place (on a private copy only)."""
        ...


@runtime_checkable
class UniformableAttention(Protocol):
    def make_uniform_(self) -> None:
        """Make every query attend to all keys equally, in place (on a private copy only)."""
        ...


@runtime_checkable
class NormedResidual(Protocol):
    """A module whose output is norm(gamma Z + X) at each position."""

    def norm(self, residual: Tensor) -> Tensor:
        """The module's normalisation of residuals (..., C), in any dtype."""
        ...

    def norm_eps(self) -> float: ...


class NotSupported(ValueError):
    """A module lacks what was asked of it; the message is one sentence."""


_NEEDS = {
    QueryKeyAttention: "does not expose its queries and keys",
    ValueAttention: "does not expose its values",
    GatedAttention: "has no residual gate (gamma)",
    UniformableAttention: "cannot be made to attend uniformly",
    NormedResidual: "does not add its output to its input through a normalisation",
}

P = TypeVar("P")


def require(module: nn.Module, capability: type[P], name: str, what: str) -> P:
    """``module`` as ``capability``, or NotSupported naming the module and what needed it,
    e.g. require(m, GatedAttention, "attention", "the gamma = 0 ablation")."""
    if not isinstance(module, capability):
        lacks = _NEEDS.get(capability, f"is not a {capability.__name__}")
        raise NotSupported(f"Module {name} ({type(module).__name__}) {lacks}, which {what} "
                           "needs.")
    return module  # type: ignore[return-value]


def is_attention(module: nn.Module) -> bool:
    """Whether the rest of convattn reads ``module`` as an attention layer."""
    return isinstance(module, AttentionLayer)
