"""One query through an attention module, step by step, with the module's real numbers.

For the query position i of a module's input X (1, C, H, W):
  q_i = W_Q x_i + b_Q                      the query (C' numbers; C'/h in each of h heads)
  s_ij = q_i . k_j                         a score for every key position j
  s_ij / sqrt(d)                           scaled (d = C'/h), so the softmax is not saturated
  A_ij = softmax_j(s_ij / (sqrt(d) T))     weights summing to 1; the network uses T = 1
  z_i = sum_j A_ij v_j                     what attention gathers (C numbers, C/h per head)
  r_i = gamma z_i + x_i                    mixed into the features
  y_i = LayerNorm(r_i)                     the module's output at position i

The module is read only through ``convattn.nn.interface``: the first steps need its
queries and keys (``QueryKeyAttention``) and values (``ValueAttention``), the last two its
gate (``GatedAttention``) and normalisation (``NormedResidual``). A module lacking any of
them raises ``NotSupported``, one sentence naming it and what it lacks.

``step_through`` returns every one of these; ``check`` compares y_i with the module's own
forward pass. ``predict_with_gamma`` reruns the network with other gamma values on a
private copy, for "what if" questions.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from convattn.device import model_device
from convattn.nn.interface import (
    GatedAttention,
    NormedResidual,
    QueryKeyAttention,
    ValueAttention,
    require,
)
from convattn.readout.attention import attention_modules

WHAT = "the step-through"


@dataclass
class StepThrough:
    """The computation for one query of one image in one head, as float64 numpy arrays.

    With h heads, head t sees C'/h query/key channels and C/h value channels; what it
    gathers fills its C/h slice of z, the other heads fill the rest.
    """

    grid: tuple[int, int]  # (H', W') of the queries
    key_grid: tuple[int, int]  # (Hk, Wk) of the keys: the grid unless the module pools them
    query: int  # row-major index of the query position
    head: int  # which head the query, keys, values, scores and weights belong to
    heads: int  # how many heads the module has
    x: np.ndarray  # (C,) the features at the query position
    q: np.ndarray  # (d,) its query vector in this head, d = C'/h
    keys: np.ndarray  # (Nk, d) every key position's key in this head
    values: np.ndarray  # (Nk, C/h) every key position's value in this head
    scores: np.ndarray  # (Nk,) q_i . k_j
    scale: float  # sqrt(d)
    scaled: np.ndarray  # (Nk,) scores / sqrt(d)
    attention: np.ndarray  # (Nk,) softmax of the scaled scores, T = 1 (what the network uses)
    z_head: np.ndarray  # (C/h,) sum_j A_ij v_j in this head
    z: np.ndarray  # (C,) every head's gathered values side by side (z_head for one head)
    gamma: float
    residual: np.ndarray  # (C,) gamma z + x
    mean: float  # LayerNorm's mean of the residual over the C channels
    std: float  # and its standard deviation sqrt(var + eps)
    normalised: np.ndarray  # (C,) (residual - mean) / std
    output: np.ndarray  # (C,) normalised * LayerNorm weight + bias
    module_output: np.ndarray  # (C,) the module's own forward pass at the query position

    @property
    def max_difference(self) -> float:
        """Largest |output - module's output|: float rounding only, if the steps are right."""
        return float(np.abs(self.output - self.module_output).max())


def softmax(scaled: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """softmax(scaled / T): T < 1 sharpens the weights, T > 1 flattens them."""
    if temperature <= 0:
        raise ValueError("the temperature must be positive")
    s = np.asarray(scaled, dtype=np.float64) / temperature
    e = np.exp(s - s.max())
    return e / e.sum()


def entropy(weights: np.ndarray) -> float:
    """Entropy in nats of a row of weights: 0 for one position, log N for all equally."""
    w = np.asarray(weights, dtype=np.float64)
    w = w[w > 0]
    return float(-(w * np.log(w)).sum())


def step_through(module: QueryKeyAttention, x: Tensor, query: int, head: int = 0,
                 name: str | None = None) -> StepThrough:
    """Every step of ``module`` for position ``query`` of its input ``x`` (1, C, H, W), in
    head ``head``.

    Computed in float64 from the module's own queries, keys and values; the module is only
    read. ``name`` (its name in the model, by default its class's) names it in the
    ``NotSupported`` raised when it lacks queries and keys, values, a gate or a normalised
    residual.
    """
    name = type(module).__name__ if name is None else name
    module = require(module, QueryKeyAttention, name, WHAT)
    require(module, ValueAttention, name, WHAT)
    require(module, GatedAttention, name, f"{WHAT}'s step r_i = gamma z_i + x_i")
    require(module, NormedResidual, name, f"{WHAT}'s last step y_i = norm(r_i)")
    if x.shape[0] != 1:
        raise ValueError("step_through takes one image, x of shape (1, C, H, W)")
    x = x.detach()
    _, c, h, w = x.shape
    n = h * w
    if not 0 <= query < n:
        raise ValueError(f"query {query} is outside the {h}x{w} grid (0 to {n - 1})")
    heads = module.heads()
    if not 0 <= head < heads:
        raise ValueError(f"head {head} is not one of the module's {heads} heads")
    with torch.no_grad():
        q_all, k_all = (t[0].double() for t in module.queries_keys(x))  # (h, Nq|Nk, d)
        v_all = module.values(x)[0].double()  # (h, Nk, C/h)
        real = module(x)[0].flatten(1).transpose(0, 1)[query].double()  # (C,)
    gamma = module.gate()
    x_i = x[0].flatten(1).transpose(0, 1)[query].double()  # (C,)
    q_i = q_all[head, query]  # (d,)
    scale = math.sqrt(q_all.shape[-1])
    scores = k_all[head] @ q_i  # (Nk,)
    scaled = scores / scale
    attention = scaled.softmax(dim=0)
    # Every head's z_i (the same steps in the other heads), side by side: (C,).
    rows = (k_all @ q_all[:, query, :, None])[..., 0].div(scale).softmax(dim=-1)  # (h, Nk)
    z = (rows[:, None, :] @ v_all)[:, 0].flatten()
    z_head = attention @ v_all[head]  # (C/h,)
    residual = gamma * z + x_i
    mean = residual.mean()
    std = torch.sqrt(residual.var(unbiased=False) + module.norm_eps())
    normalised = (residual - mean) / std
    with torch.no_grad():
        output = module.norm(residual)

    def np64(t: Tensor) -> np.ndarray:
        return t.detach().cpu().numpy()

    return StepThrough(
        grid=(h, w), key_grid=tuple(module.key_grid(x)), query=query, head=head, heads=heads,
        x=np64(x_i), q=np64(q_i),
        keys=np64(k_all[head]), values=np64(v_all[head]), scores=np64(scores), scale=scale,
        scaled=np64(scaled), attention=np64(attention), z_head=np64(z_head), z=np64(z),
        gamma=gamma, residual=np64(residual), mean=float(mean), std=float(std),
        normalised=np64(normalised), output=np64(output), module_output=np64(real))


def predict_with_gamma(model: nn.Module, images: Tensor, gammas: dict[str, float]) -> Tensor:
    """Class probabilities (B, K) of ``model`` with the named modules' gamma replaced.

    Runs on a deep copy, so a cached model shared by other sessions is never changed. A
    named module without a gate (``GatedAttention``) raises ``NotSupported``. gamma = 0
    switches a module's attention off: its output is then LayerNorm(X).
    """
    named = attention_modules(model)
    unknown = set(gammas) - set(named)
    if unknown:
        raise KeyError(f"no attention module named {', '.join(sorted(unknown))}")
    for name in gammas:
        require(named[name], GatedAttention, name, "changing gamma")
    private = copy.deepcopy(model).eval()
    named = attention_modules(private)
    for name, value in gammas.items():
        named[name].set_gate_(value)
    with torch.no_grad():
        device = model_device(private)
        return private(images.to(device)).float().softmax(dim=1).cpu()
