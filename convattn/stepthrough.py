"""One query through a ConvAttentionModule, step by step, with the module's real numbers.

For the query position i of a module's input X (1, C, H, W):
  q_i = W_Q x_i + b_Q                      the query (C' numbers)
  s_ij = q_i . k_j                         a score for every key position j
  s_ij / sqrt(C')                          scaled, so the softmax is not saturated
  A_ij = softmax_j(s_ij / (sqrt(C') T))    weights summing to 1; the network uses T = 1
  z_i = sum_j A_ij v_j                     what attention gathers (C numbers)
  r_i = gamma z_i + x_i                    mixed into the features
  y_i = LayerNorm(r_i)                     the module's output at position i

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

from .attention import attention_modules
from .layers import ConvAttentionModule


@dataclass
class StepThrough:
    """The computation for one query of one image, as float64 numpy arrays."""

    grid: tuple[int, int]  # (H', W')
    query: int  # row-major index of the query position
    x: np.ndarray  # (C,) the features at the query position
    q: np.ndarray  # (C',) its query vector
    keys: np.ndarray  # (N, C') every position's key
    values: np.ndarray  # (N, C) every position's value
    scores: np.ndarray  # (N,) q_i . k_j
    scale: float  # sqrt(C')
    scaled: np.ndarray  # (N,) scores / sqrt(C')
    attention: np.ndarray  # (N,) softmax of the scaled scores, T = 1 (what the network uses)
    z: np.ndarray  # (C,) sum_j A_ij v_j
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


def step_through(module: ConvAttentionModule, x: Tensor, query: int) -> StepThrough:
    """Every step of ``module`` for position ``query`` of its input ``x`` (1, C, H, W).

    Computed in float64 from the module's own weights; the module is only read.
    """
    if x.shape[0] != 1:
        raise ValueError("step_through takes one image, x of shape (1, C, H, W)")
    _, c, h, w = x.shape
    n = h * w
    if not 0 <= query < n:
        raise ValueError(f"query {query} is outside the {h}x{w} grid (0 to {n - 1})")
    with torch.no_grad():
        q_all, k_all, v_all = (t[0].double() for t in module.project(x))  # (N, C'), (N, C)
        real = module(x)[0].flatten(1).transpose(0, 1)[query].double()  # (C,)
        gamma = float(module.gamma)
        ln = module.layer_norm
        weight, bias = ln.weight.double(), ln.bias.double()
    x_i = x[0].flatten(1).transpose(0, 1)[query].double()  # (C,)
    q_i = q_all[query]
    scale = math.sqrt(q_all.shape[1])
    scores = k_all @ q_i  # (N,)
    scaled = scores / scale
    attention = scaled.softmax(dim=0)
    z = attention @ v_all  # (C,)
    residual = gamma * z + x_i
    mean = residual.mean()
    std = torch.sqrt(residual.var(unbiased=False) + ln.eps)
    normalised = (residual - mean) / std
    output = normalised * weight + bias

    def np64(t: Tensor) -> np.ndarray:
        return t.detach().cpu().numpy()

    return StepThrough(
        grid=(h, w), query=query, x=np64(x_i), q=np64(q_i), keys=np64(k_all),
        values=np64(v_all), scores=np64(scores), scale=scale, scaled=np64(scaled),
        attention=np64(attention), z=np64(z), gamma=gamma, residual=np64(residual),
        mean=float(mean), std=float(std), normalised=np64(normalised), output=np64(output),
        module_output=np64(real))


def predict_with_gamma(model: nn.Module, images: Tensor, gammas: dict[str, float]) -> Tensor:
    """Class probabilities (B, K) of ``model`` with the named modules' gamma replaced.

    Runs on a deep copy, so a cached model shared by other sessions is never changed.
    gamma = 0 switches a module's attention off: its output is then LayerNorm(X).
    """
    private = copy.deepcopy(model).eval()
    named = attention_modules(private)
    unknown = set(gammas) - set(named)
    if unknown:
        raise KeyError(f"no attention module named {', '.join(sorted(unknown))}")
    with torch.no_grad():
        for name, value in gammas.items():
            named[name].gamma.fill_(float(value))
        device = next(private.parameters()).device
        return private(images.to(device)).float().softmax(dim=1).cpu()
