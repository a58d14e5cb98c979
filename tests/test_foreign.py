"""Attention found in foreign networks (``convattn.readout.foreign``): a zoo of blocks written
the way public implementations write them, none of them a convattn ``AttentionLayer``, each
inside a tiny CNN. Each map is held to a hand computation from the block's own weights."""

from __future__ import annotations

import math
import threading

import pytest
import torch
import torch.nn.functional as F
from concurrency import run_together
from torch import Tensor, nn
from torch.nn.modules import module as module_mod

from convattn import attention_maps
from convattn.readout.foreign import foreign_attention, sdpa_weights

C = 16


class SelfAttn(nn.Module):
    """SAGAN's Self_Attn as in the SAGAN PyTorch repository (heykeetae/Self-Attention-GAN)."""

    def __init__(self, in_dim, activation=None):
        super().__init__()
        self.chanel_in = in_dim
        self.activation = activation
        self.query_conv = nn.Conv2d(in_channels=in_dim, out_channels=in_dim // 8, kernel_size=1)
        self.key_conv = nn.Conv2d(in_channels=in_dim, out_channels=in_dim // 8, kernel_size=1)
        self.value_conv = nn.Conv2d(in_channels=in_dim, out_channels=in_dim, kernel_size=1)
        self.gamma = nn.Parameter(torch.zeros(1))
        self.softmax = nn.Softmax(dim=-1)

    def forward(self, x):
        m_batchsize, C, width, height = x.size()
        proj_query = self.query_conv(x).view(m_batchsize, -1, width * height).permute(0, 2, 1)
        proj_key = self.key_conv(x).view(m_batchsize, -1, width * height)
        energy = torch.bmm(proj_query, proj_key)
        attention = self.softmax(energy)
        proj_value = self.value_conv(x).view(m_batchsize, -1, width * height)
        out = torch.bmm(proj_value, attention.permute(0, 2, 1))
        out = out.view(m_batchsize, C, width, height)
        out = self.gamma * out + x
        return out, attention

    def reference(self, x):
        b = x.size(0)
        q = self.query_conv(x).flatten(2).transpose(1, 2)
        k = self.key_conv(x).flatten(2)
        return torch.softmax(q @ k, dim=-1).reshape(b, 1, *([x[0, 0].numel()] * 2))


class BigGANAttention(nn.Module):
    """BigGAN-PyTorch's layers.Attention: keys and values max-pooled 2x2, gamma, no scale."""

    def __init__(self, ch, which_conv=nn.Conv2d, name="attention"):
        super().__init__()
        self.ch = ch
        self.which_conv = which_conv
        self.theta = self.which_conv(self.ch, self.ch // 8, kernel_size=1, padding=0, bias=False)
        self.phi = self.which_conv(self.ch, self.ch // 8, kernel_size=1, padding=0, bias=False)
        self.g = self.which_conv(self.ch, self.ch // 2, kernel_size=1, padding=0, bias=False)
        self.o = self.which_conv(self.ch // 2, self.ch, kernel_size=1, padding=0, bias=False)
        self.gamma = nn.Parameter(torch.tensor(0.), requires_grad=True)

    def forward(self, x, y=None):
        theta = self.theta(x)
        phi = F.max_pool2d(self.phi(x), [2, 2])
        g = F.max_pool2d(self.g(x), [2, 2])
        theta = theta.view(-1, self.ch // 8, x.shape[2] * x.shape[3])
        phi = phi.view(-1, self.ch // 8, x.shape[2] * x.shape[3] // 4)
        g = g.view(-1, self.ch // 2, x.shape[2] * x.shape[3] // 4)
        beta = F.softmax(torch.bmm(theta.transpose(1, 2), phi), -1)
        o = self.o(torch.bmm(g, beta.transpose(1, 2)).view(-1, self.ch // 2, x.shape[2],
                                                           x.shape[3]))
        return self.gamma * o + x

    def reference(self, x):
        q = self.theta(x).flatten(2).transpose(1, 2)
        k = F.max_pool2d(self.phi(x), 2).flatten(2)
        return torch.softmax(q @ k, dim=-1).unsqueeze(1)


class NonLocalBlock2D(nn.Module):
    """Non-local block (Wang et al.) as in AlexHex7/Non-local_pytorch, 2-D; ``mode``
    'embedded' (softmax) or 'dot' (divided by N)."""

    def __init__(self, in_channels, inter_channels=None, sub_sample=True, bn_layer=True,
                 mode="embedded"):
        super().__init__()
        self.mode = mode
        self.in_channels = in_channels
        self.inter_channels = inter_channels or max(in_channels // 2, 1)
        self.g = nn.Conv2d(self.in_channels, self.inter_channels, 1)
        if bn_layer:
            self.W = nn.Sequential(nn.Conv2d(self.inter_channels, self.in_channels, 1),
                                   nn.BatchNorm2d(self.in_channels))
        else:
            self.W = nn.Conv2d(self.inter_channels, self.in_channels, 1)
        self.theta = nn.Conv2d(self.in_channels, self.inter_channels, 1)
        self.phi = nn.Conv2d(self.in_channels, self.inter_channels, 1)
        if sub_sample:
            self.g = nn.Sequential(self.g, nn.MaxPool2d(kernel_size=(2, 2)))
            self.phi = nn.Sequential(self.phi, nn.MaxPool2d(kernel_size=(2, 2)))

    def forward(self, x):
        batch_size = x.size(0)
        g_x = self.g(x).view(batch_size, self.inter_channels, -1).permute(0, 2, 1)
        theta_x = self.theta(x).view(batch_size, self.inter_channels, -1).permute(0, 2, 1)
        phi_x = self.phi(x).view(batch_size, self.inter_channels, -1)
        f = torch.matmul(theta_x, phi_x)
        if self.mode == "embedded":
            f_div_C = F.softmax(f, dim=-1)
        else:
            f_div_C = f / f.size(-1)
        y = torch.matmul(f_div_C, g_x).permute(0, 2, 1).contiguous()
        y = y.view(batch_size, self.inter_channels, *x.size()[2:])
        return self.W(y) + x

    def reference(self, x):
        q = self.theta(x).flatten(2).transpose(1, 2)
        k = self.phi(x).flatten(2)
        return torch.softmax(q @ k, dim=-1).unsqueeze(1)


class MHABlock(nn.Module):
    """nn.MultiheadAttention over a flattened feature map, pre-norm, residual."""

    def __init__(self, c, heads, batch_first, need_weights):
        super().__init__()
        self.batch_first, self.need_weights = batch_first, need_weights
        self.mha = nn.MultiheadAttention(c, heads, batch_first=batch_first)

    def forward(self, x):
        b, c, h, w = x.shape
        s = x.flatten(2).transpose(1, 2)  # (B, N, C)
        if not self.batch_first:
            s = s.transpose(0, 1)
        out, _ = self.mha(s, s, s, need_weights=self.need_weights)
        if not self.batch_first:
            out = out.transpose(0, 1)
        return x + out.transpose(1, 2).reshape(b, c, h, w)

    def reference(self, x):
        s = x.flatten(2).transpose(1, 2)
        q, k, _ = F.linear(s, self.mha.in_proj_weight, self.mha.in_proj_bias).chunk(3, dim=-1)
        h = self.mha.num_heads
        q, k = (t.unflatten(-1, (h, -1)).transpose(1, 2) for t in (q, k))
        return torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.size(-1)), dim=-1)


class SDPABlock(nn.Module):
    """Multi-head attention on a feature map with F.scaled_dot_product_attention."""

    def __init__(self, c, heads, scale=None):
        super().__init__()
        self.heads, self.scale = heads, scale
        self.qkv = nn.Conv2d(c, 3 * c, 1)
        self.proj = nn.Conv2d(c, c, 1)

    def _qkv(self, x):
        b, c, h, w = x.shape
        qkv = self.qkv(x).reshape(b, 3, self.heads, c // self.heads, h * w).transpose(-1, -2)
        return qkv.unbind(1)

    def forward(self, x):
        b, c, h, w = x.shape
        q, k, v = self._qkv(x)
        o = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        return x + self.proj(o.transpose(-1, -2).reshape(b, c, h, w))

    def reference(self, x):
        q, k, _ = self._qkv(x)
        scale = self.scale or 1 / math.sqrt(q.size(-1))
        return torch.softmax(q @ k.transpose(-1, -2) * scale, dim=-1)


class TimmAttention(nn.Module):
    """timm's vision-transformer Attention on a flattened feature map (fused SDPA)."""

    def __init__(self, dim, num_heads=8, qkv_bias=False, scale=None):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = scale
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def _qkv(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return qkv.unbind(0)

    def forward(self, x):
        b, c, h, w = x.shape
        t = x.flatten(2).transpose(1, 2)
        q, k, v = self._qkv(t)
        o = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        o = self.proj(o.transpose(1, 2).reshape(b, h * w, c))
        return x + o.transpose(1, 2).reshape(b, c, h, w)

    def reference(self, x):
        q, k, _ = self._qkv(x.flatten(2).transpose(1, 2))
        scale = self.scale or 1 / math.sqrt(q.size(-1))
        return torch.softmax(q @ k.transpose(-1, -2) * scale, dim=-1)


class TinyNet(nn.Module):
    def __init__(self, block):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, C, 3, padding=1), nn.BatchNorm2d(C), nn.ReLU())
        self.block = block
        self.head = nn.Linear(C, 10)

    def forward(self, x):
        y = self.block(self.stem(x))
        if isinstance(y, tuple):
            y = y[0]
        return torch.softmax(self.head(y.mean(dim=(2, 3))), dim=-1)  # a class softmax too


def _gamma(block, value=0.7):
    with torch.no_grad():
        block.gamma.fill_(value)
    return block


ZOO = {
    "sagan": lambda: _gamma(SelfAttn(C)),
    "biggan-pooled": lambda: _gamma(BigGANAttention(C)),
    "nonlocal-embedded": lambda: NonLocalBlock2D(C, sub_sample=False),
    "nonlocal-embedded-subsampled": lambda: NonLocalBlock2D(C, sub_sample=True),
    "mha-1-head": lambda: MHABlock(C, 1, batch_first=False, need_weights=True),
    "mha-4-heads": lambda: MHABlock(C, 4, batch_first=True, need_weights=False),
    "sdpa": lambda: TimmAttention(C, 2, qkv_bias=True),  # the fused kernel
    "sdpa-scaled": lambda: TimmAttention(C, 1, scale=0.5),  # the fused kernel
    "sdpa-strided": lambda: SDPABlock(C, 2),  # strided q, k: SDPA's math path
}
KEYS = {"mha-1-head": "block.mha", "mha-4-heads": "block.mha"}
HEADS = {"mha-4-heads": 4, "sdpa": 2, "sdpa-strided": 2}
POOLED = {"biggan-pooled", "nonlocal-embedded-subsampled"}


def make(kind: str) -> TinyNet:
    torch.manual_seed(0)
    net = TinyNet(ZOO[kind]())
    with torch.no_grad():  # BatchNorm statistics that are not the identity
        net.stem[1].running_mean.uniform_(-0.2, 0.2)
        net.stem[1].running_var.uniform_(0.5, 2.0)
    return net.eval()


def images(seed: int = 1) -> Tensor:
    return torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(seed))


def hooks_state(model: nn.Module):
    per_module = [(n, dict(m._forward_hooks), dict(m._forward_pre_hooks),
                   dict(m._backward_hooks), sorted(vars(m))) for n, m in model.named_modules()]
    glob = [dict(getattr(module_mod, a)) for a in (
        "_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks",
        "_global_backward_pre_hooks")]
    return per_module, glob


@pytest.mark.parametrize("kind", list(ZOO))
def test_each_foreign_block_gives_exactly_its_own_attention(kind):
    model, x = make(kind), images()
    before = hooks_state(model)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        plain = model(x)
    logits, maps = foreign_attention(model, x)
    assert torch.equal(logits, plain)  # bitwise: capture does not change the forward pass
    key = KEYS.get(kind, "block")
    assert list(maps) == [key]  # the class softmax (B, 10) is not an attention
    a = maps[key]
    heads, nq = HEADS.get(kind, 1), 64
    nk = 16 if kind in POOLED else 64
    assert a.shape == (2, heads, nq, nk)
    torch.testing.assert_close(a.sum(dim=-1), torch.ones(2, heads, nq))
    with torch.no_grad():
        expected = model.block.reference(model.stem(x))
    torch.testing.assert_close(a, expected, atol=1e-5, rtol=1e-4)
    averaged = attention_maps(model, x)
    assert list(averaged) == [key] and averaged[key].shape == (2, nq, nk)
    torch.testing.assert_close(averaged[key], expected.mean(dim=1), atol=1e-5, rtol=1e-4)
    assert attention_maps(model, x, per_head=True)[key].shape == (2, heads, nq, nk)
    assert hooks_state(model) == before  # nothing left on the model or on torch.nn
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize("kind", list(ZOO))
def test_a_caller_in_inference_mode_gets_the_same_attention(kind):
    # inference mode keeps composite ops (softmax, conv2d, SDPA) whole below the recorder
    model, x = make(kind), images()
    logits, maps = foreign_attention(model, x)
    with torch.inference_mode():
        inferred_logits, inferred = foreign_attention(model, x)
    assert torch.equal(inferred_logits, logits)
    assert list(inferred) == list(maps)
    for key in maps:
        torch.testing.assert_close(inferred[key], maps[key], atol=1e-6, rtol=1e-5)


def test_mha_capture_does_not_depend_on_the_callers_need_weights():
    maps = []
    for need in (True, False):
        model = make("mha-4-heads")
        model.block.need_weights = need
        maps.append(foreign_attention(model, images())[1]["block.mha"])
    torch.testing.assert_close(maps[0], maps[1], atol=1e-6, rtol=1e-5)


def test_the_dot_product_non_local_block_is_not_taken_for_a_softmax_attention():
    torch.manual_seed(0)
    model = TinyNet(NonLocalBlock2D(C, sub_sample=True, mode="dot")).eval()
    with torch.no_grad():
        plain = model(images())
    logits, maps = foreign_attention(model, images())
    assert maps == {} and torch.equal(logits, plain)


def test_a_model_in_training_mode_is_refused():
    with pytest.raises(ValueError, match="eval mode"):
        foreign_attention(make("sagan").train(), images())


@pytest.mark.parametrize("kind", ["sagan", "mha-4-heads", "sdpa"])
def test_two_threads_on_one_shared_model_see_their_own_images(kind):
    model = make(kind)
    key = KEYS.get(kind, "block")
    inputs = [images(1), images(2)]
    alone = [attention_maps(model, x, per_head=True)[key] for x in inputs]
    assert not torch.allclose(alone[0], alone[1])
    barrier, results, errors = threading.Barrier(2), [[], []], []

    def work(i):
        try:
            barrier.wait()
            for _ in range(15):
                results[i].append(attention_maps(model, inputs[i], per_head=True)[key])
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    run_together(lambda: work(0), lambda: work(1))
    assert errors == []
    for i in range(2):
        assert len(results[i]) == 15
        assert all(torch.equal(r, alone[i]) for r in results[i])
    assert hooks_state(model)[1] == hooks_state(make(kind))[1]


@pytest.mark.parametrize("mask", ["none", "causal", "bool", "float"])
def test_sdpa_weights_are_what_the_kernel_used(mask):
    g = torch.Generator().manual_seed(3)
    q, k = torch.randn(2, 2, 6, 4, generator=g), torch.randn(2, 2, 5, 4, generator=g)
    eye = torch.eye(5).expand(2, 2, 5, 5)  # values = one-hot keys: the output is the weights
    attn_mask = {"none": None, "causal": None, "bool": torch.rand(6, 5, generator=g) > 0.3,
                 "float": torch.randn(6, 5, generator=g)}[mask]
    if mask == "bool":
        attn_mask[:, 0] = True  # no row entirely masked
    kernel = F.scaled_dot_product_attention(q, k, eye, attn_mask=attn_mask,
                                            is_causal=mask == "causal", scale=0.7)
    ours = sdpa_weights(q, k, 0.7, attn_mask, mask == "causal")
    torch.testing.assert_close(ours, kernel, atol=1e-5, rtol=1e-4)
