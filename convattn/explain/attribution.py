"""Which input pixels a prediction depends on: a thin wrapper over Captum.

``attribute(model, images, target, method)`` runs one of ``REGISTRY`` and returns Captum's
attributions; ``to_map`` sums them over channels into one (B, H, W) map per image.

A model passed here may be shared by several threads (Streamlit sessions), so it is
never changed. Saliency, Integrated Gradients, SmoothGrad and Occlusion only run forward
and backward passes, which is safe on a shared model. Guided Backprop, DeepLift and
Grad-CAM attach hooks to modules, so they run on a private copy made per call by
``hookable_copy``; that copy also gives every ReLU its own non-inplace module, which
Guided Backprop's and DeepLift's hooks need (ConvAttentionNet calls one ``relu`` three
times, ResNet9 uses ``ReLU(inplace=True)``).

Baselines (Integrated Gradients, DeepLift, Occlusion) are zeros in normalised space,
that is an image filled with the dataset's mean colour.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn

from convattn.device import model_device
from convattn.nn.interface import is_attention
from convattn.readout.attention import attention_modules
from convattn.registry import Registry


@dataclass(frozen=True)
class AttributionConfig:
    ig_steps: int = 50
    smoothgrad_samples: int = 16
    smoothgrad_noise: float = 0.15  # noise std as a fraction of the image's value range
    occlusion_window: int = 4  # pixels, square
    occlusion_stride: int = 2
    gradcam_layer: str = ""  # a name from gradcam_layers(); "" = the last one
    # Integrated Gradients' scaled images per forward/backward pass; 0: one image's steps.
    # Speed only: equal configs with other batches give the same maps.
    ig_batch: int = field(default=0, compare=False)


def gradcam_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Layers Grad-CAM can explain: the attention modules, or else the last convolution."""
    layers: dict[str, nn.Module] = dict(attention_modules(model))
    if not layers:
        convs = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
        layers = dict(convs[-1:])
    return layers


# fx patches nn.Module.__call__ and __getattr__ for the whole process while it traces:
# one trace at a time, and calls from other threads pass through as if nothing were patched
# (without this, another session's plain forward pass fails during a trace).
_TRACE_LOCK = threading.Lock()


class _Tracer(fx.Tracer):
    def __init__(self) -> None:
        super().__init__()
        self._thread = threading.get_ident()

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        # Its forward reads tensor shapes and a ContextVar; Captum sees it as one block.
        return is_attention(m) or super().is_leaf_module(m, qualname)

    def call_module(self, m, forward, args, kwargs):  # noqa: ANN001, ANN201 (fx's signature)
        if threading.get_ident() != self._thread:
            return forward(*args, **kwargs)
        return super().call_module(m, forward, args, kwargs)

    def getattr(self, attr, attr_val, parameter_proxy_cache):  # noqa: ANN001, ANN201
        if threading.get_ident() != self._thread:
            return attr_val
        return super().getattr(attr, attr_val, parameter_proxy_cache)


def hookable_copy(model: nn.Module) -> nn.Module:
    """A private copy of ``model`` in which every ReLU call has its own nn.ReLU module.

    Module ReLUs (shared or inplace) and functional ``F.relu`` calls are all replaced by
    fresh ``nn.ReLU()`` modules, one per call site, so hooks can see each one.
    """
    private = copy.deepcopy(model).eval()
    with _TRACE_LOCK:
        graph = _Tracer().trace(private)
    gm = fx.GraphModule(private, graph)
    for i, node in enumerate(list(gm.graph.nodes)):
        is_relu = (
            (node.op == "call_module" and isinstance(gm.get_submodule(node.target), nn.ReLU))
            or (node.op == "call_function" and node.target in (F.relu, torch.relu))
            or (node.op == "call_method" and node.target == "relu")
        )
        if not is_relu:
            continue
        name = f"captum_relu_{i}"
        gm.add_submodule(name, nn.ReLU())
        with gm.graph.inserting_after(node):
            fresh = gm.graph.call_module(name, (node.args[0],))
        node.replace_all_uses_with(fresh)
        gm.graph.erase_node(node)
    gm.delete_all_unused_submodules()
    gm.graph.lint()
    gm.recompile()
    return gm.eval()


# Each method imports Captum when it runs: Captum brings matplotlib.pyplot, about a second
# that the pages which only show attention should not wait for at start-up.


def _saliency(model: nn.Module, x: Tensor, target: int | Tensor, cfg: AttributionConfig
              ) -> Tensor:
    from captum.attr import Saliency

    return Saliency(model).attribute(x, target=target, abs=True)


def _integrated_gradients(model: nn.Module, x: Tensor, target: int | Tensor,
                          cfg: AttributionConfig) -> Tensor:
    from captum.attr import IntegratedGradients

    return IntegratedGradients(model).attribute(
        x, baselines=torch.zeros_like(x), target=target, n_steps=cfg.ig_steps,
        internal_batch_size=cfg.ig_batch or cfg.ig_steps)


def _smoothgrad(model: nn.Module, x: Tensor, target: int | Tensor, cfg: AttributionConfig
                ) -> Tensor:
    from captum.attr import NoiseTunnel, Saliency

    spread = (x.detach().amax(dim=(1, 2, 3)) - x.detach().amin(dim=(1, 2, 3))).max()
    return NoiseTunnel(Saliency(model)).attribute(
        x, nt_type="smoothgrad", nt_samples=cfg.smoothgrad_samples,
        nt_samples_batch_size=cfg.smoothgrad_samples,
        stdevs=float(cfg.smoothgrad_noise * spread), target=target, abs=True)


def _occlusion(model: nn.Module, x: Tensor, target: int | Tensor, cfg: AttributionConfig
               ) -> Tensor:
    from captum.attr import Occlusion

    w, s = cfg.occlusion_window, cfg.occlusion_stride
    return Occlusion(model).attribute(
        x, sliding_window_shapes=(x.shape[1], w, w), strides=(x.shape[1], s, s),
        baselines=0.0, target=target, perturbations_per_eval=64)


def _guided_backprop(model: nn.Module, x: Tensor, target: int | Tensor,
                     cfg: AttributionConfig) -> Tensor:
    from captum.attr import GuidedBackprop

    return GuidedBackprop(model).attribute(x, target=target)


def _deeplift(model: nn.Module, x: Tensor, target: int | Tensor, cfg: AttributionConfig
              ) -> Tensor:
    from captum.attr import DeepLift

    return DeepLift(model).attribute(x, baselines=torch.zeros_like(x), target=target)


def _gradcam(model: nn.Module, x: Tensor, target: int | Tensor, cfg: AttributionConfig
             ) -> Tensor:
    from captum.attr import LayerAttribution, LayerGradCam

    layers = gradcam_layers(model)
    name = cfg.gradcam_layer or list(layers)[-1]
    if name not in layers:
        raise ValueError(f"Grad-CAM layer {name!r} is not one of {', '.join(layers)}")
    cam = LayerGradCam(model, layers[name]).attribute(x, target=target,
                                                      relu_attributions=True)
    return LayerAttribution.interpolate(cam, tuple(x.shape[2:]), "bilinear")  # (B, 1, H, W)


@dataclass(frozen=True)
class Method:
    """One attribution method: its name, its label, one line for learners, and how it
    runs. ``hooks``: it attaches hooks to modules, so it runs on a ``hookable_copy``."""

    name: str
    label: str
    explanation: str
    run: Callable[[nn.Module, Tensor, int | Tensor, AttributionConfig], Tensor]
    hooks: bool = False


# A new method is one entry here.
REGISTRY: Registry[Method] = Registry("attribution method", [
    Method("saliency", "Saliency",
           "how much a tiny change of each pixel moves the class score (|gradient|)",
           _saliency),
    Method("integrated_gradients", "Integrated Gradients",
           "gradients summed along a path from a mean-colour image to this one; the map "
           "adds up to the score difference", _integrated_gradients),
    Method("smoothgrad", "SmoothGrad",
           "saliency averaged over noisy copies of the image, which removes speckle",
           _smoothgrad),
    Method("occlusion", "Occlusion",
           "how much the score drops when a small square is covered with the mean colour",
           _occlusion),
    Method("guided_backprop", "Guided Backprop",
           "gradients with negative signals blocked at every ReLU: sharp edges the class "
           "detectors respond to", _guided_backprop, hooks=True),
    Method("deeplift", "DeepLift",
           "each pixel's share of the score difference from a mean-colour image, passed "
           "back layer by layer", _deeplift, hooks=True),
    Method("gradcam", "Grad-CAM",
           "where the chosen layer's features matter for the class (coarse, at the layer's "
           "resolution)", _gradcam, hooks=True),
])
METHODS = {m.name: m.label for m in REGISTRY}  # name -> label, for menus
EXPLAIN = {m.name: m.explanation for m in REGISTRY}  # name -> one line for learners


def get_method(name: str) -> Method:
    return REGISTRY.get(name)


def attribute(model: nn.Module, images: Tensor, target: int | Tensor, method: str,
              cfg: AttributionConfig | None = None) -> Tensor:
    """Captum's attributions of ``target``'s logit to normalised ``images`` (B, 3, H, W).

    Returns (B, 3, H, W), except Grad-CAM: (B, 1, H, W), the layer's map upsampled
    bilinearly to the input size.
    """
    found = get_method(method)
    device = model_device(model)
    x = images.detach().to(device, torch.float32).requires_grad_(True)
    if isinstance(target, Tensor):
        target = target.to(device)
    private = hookable_copy(model) if found.hooks else model
    return found.run(private, x, target, cfg or AttributionConfig())


def to_map(attributions: Tensor) -> Tensor:
    """One signed value per pixel: the sum over channels, (B, H, W)."""
    return attributions.detach().sum(dim=1)
