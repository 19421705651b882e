"""BigGAN-deep (Brock et al. 2019) generators at 128, 256 and 512 px, in the pytorch-pretrained-biggan format.

Why a module of our own instead of the ``pytorch-pretrained-biggan`` package
---------------------------------------------------------------------------
The released BigGAN-deep weights (DeepMind's TF-Hub modules) are most easily had as Hugging Face's PyTorch
conversion: a folder holding ``config.json`` and ``pytorch_model.bin`` (a ``torch.save``'d state_dict).  This module
re-implements that package's ``BigGAN`` class with the *same* module tree, so that file loads with
``load_state_dict(strict=True)`` and gives the same images, but

- sCBN (eq. 2) needs every conditional batch norm to return per-class (gamma, beta) for a per-pixel class mixture,
  and feature blending (eq. 3) needs hooks after the 4x4 map and after every block: the package's ``forward``
  offers neither, so it would have to be monkey-patched anyway;
- the package is unmaintained since 2019, pins nothing, pulls in boto3/requests, and loads its checkpoint with a
  full unpickler (``torch.load`` without ``weights_only``) and ``strict=False``, which would hide a mismatch;
- spectral normalisation is written here as plain parameters/buffers (``weight_orig``, ``weight_u``,
  ``weight_v``) rather than with the deprecated ``torch.nn.utils.spectral_norm`` hook, so it keeps working when
  PyTorch removes that function.

Facts taken from the package (``pytorch_pretrained_biggan/model.py``, ``config.py``,
``convert_tf_to_pytorch.py``):

- ``embeddings`` = ``Linear(num_classes, z_dim, bias=False)`` applied to a one-hot class vector, and the condition
  vector is ``concat(z, embeddings(one_hot))`` of size ``2 * z_dim``;
- ``generator.gen_z``: SN linear ``2 z_dim -> 4*4*16*ch`` with bias, reshaped as [B, 4, 4, 16ch] (TF layout) and
  permuted to [B, 16ch, 4, 4].  It sees the class, so for sCBN it is a class-conditional site too (see below);
- ``generator.layers``: a ModuleList of GenBlocks (bottleneck blocks: bn_0, conv_0 1x1 -> in/4, bn_1, [2x nearest
  up-sampling], conv_1 3x3, bn_2, conv_2 3x3, bn_3, conv_3 1x1 -> out; the skip keeps the first ``out`` channels
  when the block halves them and is up-sampled too), with a ``SelfAttn`` module inserted *before* the GenBlock
  of index ``attention_layer_position`` (so from there on GenBlock i is ``layers[i + 1]``);
- ``BigGANBatchNorm``: normalises with pre-computed statistics ``running_means``/``running_vars``
  [n_stats, C] (51 truncation values in [0, 1], ``step_size = 1/(n_stats-1)`` is a plain attribute, not saved);
  the conditional ones apply ``(1 + scale(cond), offset(cond))`` with ``scale``/``offset`` SN linears without
  bias; eps = ``config.eps`` (1e-4).  The statistics for a truncation t are picked as the package does:
  ``coef, i = modf(t / step_size)``; ``mean = means[i]`` if coef == 0 else
  ``means[i] * coef + means[i + 1] * (1 - coef)`` (the package weights the two neighbours this way round; we
  keep it for identical output);
- the final ``generator.bn`` is *unconditional* (``weight``, ``bias`` parameters + statistics, F.batch_norm), then
  ReLU, ``conv_to_rgb`` (SN conv 3x3 ch -> ch with bias, of which the first 3 channels are kept) and tanh;
- spectral norm is ``torch.nn.utils.spectral_norm``: state_dict keys ``weight_orig``, ``weight_u``, ``weight_v``
  (the converter fills ``weight_v`` with one power iteration), eps = config.eps; in eval mode
  ``W = weight_orig / (u . (W_mat v))`` with the stored u, v; in training mode one power iteration updates u, v.

The collage adapter (``BigGANDeep``):

- norm sites: site 0 is ``generator.gen_z`` (its class input is mixed per pixel of the 4x4 map, which, the map
  being linear in the embedding, is eq. 2 applied to the class embedding), then bn_0..bn_3 of every GenBlock in
  forward order.  Layers: 0 = gen_z, 1 + i = GenBlock i.  The final BN is unconditional and not a site;
- blend sites (App. A): 0 = the 4x4 map out of gen_z, 1 + i = the output of GenBlock i;
- ``truncation`` (default 1.0) selects the batch-norm statistics, as the package's ``truncation`` argument does;
  ``sample_latent`` draws ``truncation * truncnorm(-2, 2)`` like the package's ``truncated_noise_sample``.
"""
from __future__ import annotations

import copy
import json
import math
import os
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from engine.generator import CollageContext, CollageGenerator, Site
from engine.sites.scbn import ConditionalNorm

WEIGHTS_NAME = "pytorch_model.bin"
CONFIG_NAME = "config.json"


# -- configuration ---------------------------------------------------------------------------------------------
def _default_layers_128() -> list:
    return [(False, 16, 16), (True, 16, 16), (False, 16, 16), (True, 16, 8), (False, 8, 8), (True, 8, 4),
            (False, 4, 4), (True, 4, 2), (False, 2, 2), (True, 2, 1)]


@dataclass
class BigGANDeepConfig:
    """The package's BigGANConfig (same field names and defaults: the 128 px model).

    ``layers``: (up-sample?, input channel multiple, output channel multiple) of each GenBlock."""

    output_dim: int = 128
    z_dim: int = 128
    class_embed_dim: int = 128
    channel_width: int = 128
    num_classes: int = 1000
    layers: list = field(default_factory=_default_layers_128)
    attention_layer_position: int = 8
    eps: float = 1e-4
    n_stats: int = 51

    def __post_init__(self):
        self.layers = [(bool(u), int(a), int(b)) for u, a, b in self.layers]

    @classmethod
    def from_dict(cls, d: dict) -> BigGANDeepConfig:
        """Like the package: start from the defaults and override with the keys present (unknown keys ignored)."""
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    @classmethod
    def from_json_file(cls, path) -> BigGANDeepConfig:
        with open(path, encoding="utf-8") as f:
            return cls.from_dict(json.load(f))

    def to_dict(self) -> dict:
        d = copy.deepcopy(self.__dict__)
        d["layers"] = [list(t) for t in self.layers]
        return d

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"


BIGGAN_DEEP_128 = BigGANDeepConfig()
BIGGAN_DEEP_256 = BigGANDeepConfig(
    output_dim=256,
    layers=[(False, 16, 16), (True, 16, 16), (False, 16, 16), (True, 16, 8), (False, 8, 8), (True, 8, 8),
            (False, 8, 8), (True, 8, 4), (False, 4, 4), (True, 4, 2), (False, 2, 2), (True, 2, 1)])
BIGGAN_DEEP_512 = BigGANDeepConfig(
    output_dim=512,
    layers=[(False, 16, 16), (True, 16, 16), (False, 16, 16), (True, 16, 8), (False, 8, 8), (True, 8, 8),
            (False, 8, 8), (True, 8, 4), (False, 4, 4), (True, 4, 2), (False, 2, 2), (True, 2, 1),
            (False, 1, 1), (True, 1, 1)])
CONFIGS = {"biggan-deep-128": BIGGAN_DEEP_128, "biggan-deep-256": BIGGAN_DEEP_256,
           "biggan-deep-512": BIGGAN_DEEP_512}


# -- spectral normalisation with torch.nn.utils.spectral_norm's state_dict layout -------------------------------
class _SNWeight(nn.Module):
    """Holds ``weight_orig`` (parameter) and ``weight_u`` [out], ``weight_v`` [in*k*k] (buffers)."""

    def _init_sn(self, shape: tuple[int, ...], eps: float) -> None:
        self.eps = eps
        self.weight_orig = nn.Parameter(torch.empty(shape))
        n_in = int(math.prod(shape[1:]))
        self.register_buffer("weight_u", torch.empty(shape[0]))
        self.register_buffer("weight_v", torch.empty(n_in))

    def _reset_sn(self) -> None:
        if self.weight_orig.is_meta:
            return
        nn.init.normal_(self.weight_orig, std=0.02)
        with torch.no_grad():  # random init: converge u, v so that sigma is the top singular value
            w_mat = self.weight_orig.reshape(self.weight_orig.shape[0], -1)
            u = F.normalize(torch.randn_like(self.weight_u), dim=0, eps=self.eps)
            for _ in range(10):
                v = F.normalize(torch.mv(w_mat.t(), u), dim=0, eps=self.eps)
                u = F.normalize(torch.mv(w_mat, v), dim=0, eps=self.eps)
            self.weight_u.copy_(u)
            self.weight_v.copy_(v)

    def sn_weight(self) -> torch.Tensor:
        w = self.weight_orig
        w_mat = w.reshape(w.shape[0], -1)
        u, v = self.weight_u, self.weight_v
        if self.training:
            with torch.no_grad():
                v = F.normalize(torch.mv(w_mat.t(), u), dim=0, eps=self.eps)
                u = F.normalize(torch.mv(w_mat, v), dim=0, eps=self.eps)
                self.weight_u.copy_(u)
                self.weight_v.copy_(v)
            u, v = u.clone(), v.clone()
        sigma = torch.dot(u, torch.mv(w_mat, v))
        return w / sigma


class SNLinear(_SNWeight):
    def __init__(self, in_features: int, out_features: int, bias: bool = True, eps: float = 1e-12):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self._init_sn((out_features, in_features), eps)
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        self._reset_sn()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.sn_weight(), self.bias)


class SNConv2d(_SNWeight):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, padding: int = 0,
                 bias: bool = True, eps: float = 1e-12):
        super().__init__()
        self.padding = padding
        self._init_sn((out_channels, in_channels, kernel_size, kernel_size), eps)
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self._reset_sn()

    def forward(self, x: torch.Tensor, out_channels: int | None = None) -> torch.Tensor:
        """``out_channels``: compute only the first n output channels (same values as slicing afterwards)."""
        w, b = self.sn_weight(), self.bias
        if out_channels is not None:
            w = w[:out_channels]
            b = None if b is None else b[:out_channels]
        return F.conv2d(x, w, b, padding=self.padding)


# -- layers ----------------------------------------------------------------------------------------------------
class SelfAttn(nn.Module):
    """The package's SelfAttn (SAGAN attention with 2x2 max-pooled keys/values and a learned ``gamma``)."""

    def __init__(self, in_channels: int, eps: float = 1e-12):
        super().__init__()
        self.in_channels = in_channels
        self.snconv1x1_theta = SNConv2d(in_channels, in_channels // 8, 1, bias=False, eps=eps)
        self.snconv1x1_phi = SNConv2d(in_channels, in_channels // 8, 1, bias=False, eps=eps)
        self.snconv1x1_g = SNConv2d(in_channels, in_channels // 2, 1, bias=False, eps=eps)
        self.snconv1x1_o_conv = SNConv2d(in_channels // 2, in_channels, 1, bias=False, eps=eps)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, ch, h, w = x.shape
        theta = self.snconv1x1_theta(x).view(b, ch // 8, h * w)
        phi = F.max_pool2d(self.snconv1x1_phi(x), 2).view(b, ch // 8, h * w // 4)
        attn = torch.softmax(torch.bmm(theta.permute(0, 2, 1), phi), dim=-1)
        g = F.max_pool2d(self.snconv1x1_g(x), 2).view(b, ch // 2, h * w // 4)
        attn_g = torch.bmm(g, attn.permute(0, 2, 1)).view(b, ch // 2, h, w)
        return x + self.gamma * self.snconv1x1_o_conv(attn_g)


def _stats_at(means: torch.Tensor, variances: torch.Tensor, step_size: float, truncation: float):
    """The package's choice of pre-computed statistics for a truncation value (see the module docstring)."""
    coef, start = math.modf(truncation / step_size)
    start = int(start)
    if coef != 0.0:
        return (means[start] * coef + means[start + 1] * (1 - coef),
                variances[start] * coef + variances[start + 1] * (1 - coef))
    return means[start], variances[start]


class BigGANBatchNorm(ConditionalNorm):
    """Conditional BigGANBatchNorm: statistics per truncation, gamma = 1 + scale(cond), beta = offset(cond).

    ``class_affine(classes, cond)`` takes ``cond = (z [B, z_dim], E [num_classes, z_dim])`` (E: the class
    embedding table, i.e. ``embeddings.weight.t()``) and evaluates the condition vector concat(z, E[c]) of every
    class c in the class map."""

    def __init__(self, num_features: int, condition_vector_dim: int, n_stats: int = 51, eps: float = 1e-4):
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.register_buffer("running_means", torch.zeros(n_stats, num_features))
        self.register_buffer("running_vars", torch.ones(n_stats, num_features))
        self.step_size = 1.0 / (n_stats - 1)
        self.truncation = 1.0
        self.scale = SNLinear(condition_vector_dim, num_features, bias=False, eps=eps)
        self.offset = SNLinear(condition_vector_dim, num_features, bias=False, eps=eps)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        mean, var = _stats_at(self.running_means, self.running_vars, self.step_size, self.truncation)
        return (x - mean[None, :, None, None]) / torch.sqrt(var[None, :, None, None] + self.eps)

    def class_affine(self, classes: torch.Tensor, cond=None) -> tuple[torch.Tensor, torch.Tensor]:
        cvec = condition_vectors(cond, classes)
        return 1 + self.scale(cvec), self.offset(cvec)


class BigGANPlainBatchNorm(nn.Module):
    """The unconditional BigGANBatchNorm (final layer): ``weight``, ``bias`` and per-truncation statistics."""

    def __init__(self, num_features: int, n_stats: int = 51, eps: float = 1e-4):
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.register_buffer("running_means", torch.zeros(n_stats, num_features))
        self.register_buffer("running_vars", torch.ones(n_stats, num_features))
        self.step_size = 1.0 / (n_stats - 1)
        self.truncation = 1.0
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean, var = _stats_at(self.running_means, self.running_vars, self.step_size, self.truncation)
        return F.batch_norm(x, mean, var, self.weight, self.bias, training=False, momentum=0.0, eps=self.eps)


def condition_vectors(cond, classes: torch.Tensor) -> torch.Tensor:
    """concat(z, embedding(c)) for every class column: [B, J, 2 z_dim] from z [B, z_dim], classes [B, J]."""
    z, table = cond
    emb = table[classes]  # [B, J, z_dim]
    return torch.cat([z[:, None, :].expand(-1, classes.shape[1], -1), emb], dim=-1)


class GenZ(SNLinear):
    """``generator.gen_z``: the SN linear map from the condition vector to the first 4x4 map.

    A class-conditional site for sCBN: with a class map W it computes, at each of the 4x4 positions,
    sum_c W(c) gen_z(concat(z, e_c)) (= gen_z of the per-pixel mixed embedding, the map being affine)."""

    site: int = -1

    def __init__(self, in_features: int, out_features: int, channels: int, eps: float):
        super().__init__(in_features, out_features, bias=True, eps=eps)
        self.channels = channels

    def forward(self, z: torch.Tensor, ctx: CollageContext, table: torch.Tensor) -> torch.Tensor:
        cmap = ctx.class_map(self.site)
        out = super().forward(condition_vectors((z, table), cmap.classes))  # [B, J, 16 * C]
        b, j = out.shape[:2]
        # TF layout [B, 4, 4, C] -> [B, C, 4, 4], per class
        out = out.view(b, j, 4, 4, self.channels).permute(0, 1, 4, 2, 3)
        weights = cmap.weights_at(4, 4)
        if weights is None:
            return out[:, 0].contiguous()
        return torch.einsum("bjchw,bjhw->bchw", out, weights)


class GenBlock(nn.Module):
    def __init__(self, in_size: int, out_size: int, condition_vector_dim: int, reduction_factor: int = 4,
                 up_sample: bool = False, n_stats: int = 51, eps: float = 1e-12):
        super().__init__()
        self.up_sample = up_sample
        self.drop_channels = in_size != out_size
        self.out_size = out_size
        middle = in_size // reduction_factor
        self.bn_0 = BigGANBatchNorm(in_size, condition_vector_dim, n_stats=n_stats, eps=eps)
        self.conv_0 = SNConv2d(in_size, middle, 1, eps=eps)
        self.bn_1 = BigGANBatchNorm(middle, condition_vector_dim, n_stats=n_stats, eps=eps)
        self.conv_1 = SNConv2d(middle, middle, 3, padding=1, eps=eps)
        self.bn_2 = BigGANBatchNorm(middle, condition_vector_dim, n_stats=n_stats, eps=eps)
        self.conv_2 = SNConv2d(middle, middle, 3, padding=1, eps=eps)
        self.bn_3 = BigGANBatchNorm(middle, condition_vector_dim, n_stats=n_stats, eps=eps)
        self.conv_3 = SNConv2d(middle, out_size, 1, eps=eps)

    def forward(self, x: torch.Tensor, ctx: CollageContext, cond) -> torch.Tensor:
        h = self.conv_0(F.relu(self.bn_0(x, ctx, cond)))
        h = F.relu(self.bn_1(h, ctx, cond))
        if self.up_sample:
            h = F.interpolate(h, scale_factor=2, mode="nearest")
        h = self.conv_1(h)
        h = self.conv_2(F.relu(self.bn_2(h, ctx, cond)))
        h = self.conv_3(F.relu(self.bn_3(h, ctx, cond)))
        x0 = x[:, :self.out_size] if self.drop_channels else x
        if self.up_sample:
            x0 = F.interpolate(x0, scale_factor=2, mode="nearest")
        return h + x0


class Generator(nn.Module):
    def __init__(self, config: BigGANDeepConfig):
        super().__init__()
        self.config = config
        ch = config.channel_width
        cond_dim = config.z_dim * 2
        self.gen_z = GenZ(cond_dim, 4 * 4 * 16 * ch, 16 * ch, eps=config.eps)
        layers = []
        for i, (up, cin, cout) in enumerate(config.layers):
            if i == config.attention_layer_position:
                layers.append(SelfAttn(ch * cin, eps=config.eps))
            layers.append(GenBlock(ch * cin, ch * cout, cond_dim, up_sample=up, n_stats=config.n_stats,
                                   eps=config.eps))
        self.layers = nn.ModuleList(layers)
        self.bn = BigGANPlainBatchNorm(ch, n_stats=config.n_stats, eps=config.eps)
        self.conv_to_rgb = SNConv2d(ch, ch, 3, padding=1, eps=config.eps)


class BigGANDeep(CollageGenerator):
    """The package's ``BigGAN`` (same state_dict) as a collage generator."""

    family = "biggan-deep"

    def __init__(self, config: BigGANDeepConfig):
        super().__init__()
        self.config = config
        self.num_classes = config.num_classes
        self.resolution = config.output_dim
        self.embeddings = nn.Linear(config.num_classes, config.z_dim, bias=False)
        self.generator = Generator(config)
        self._names: list[str] = []
        self._truncation = 1.0
        self.number_norm_sites()

    # -- loading -----------------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained_dir(cls, path, device="cpu", truncation: float | None = None) -> BigGANDeep:
        """Load a pytorch-pretrained-biggan folder (``config.json`` + ``pytorch_model.bin``), strictly and without
        unpickling arbitrary objects (``torch.load(weights_only=True)``)."""
        path = os.fspath(path)
        config = BigGANDeepConfig.from_json_file(os.path.join(path, CONFIG_NAME))
        state = torch.load(os.path.join(path, WEIGHTS_NAME), map_location="cpu", weights_only=True)
        with torch.device("meta"):
            model = cls(config)
        model.load_state_dict(state, strict=True, assign=True)
        if truncation is not None:
            model.truncation = truncation
        return model.to(device).eval()

    # -- truncation --------------------------------------------------------------------------------------------
    @property
    def truncation(self) -> float:
        return self._truncation

    @truncation.setter
    def truncation(self, value: float) -> None:
        value = float(value)
        if not 0.0 < value <= 1.0:
            raise ValueError(f"truncation must be in (0, 1], got {value}")
        self._truncation = value
        for m in self.modules():
            if isinstance(m, (BigGANBatchNorm, BigGANPlainBatchNorm)):
                m.truncation = value

    def sample_latent(self, n: int, generator: torch.Generator | None = None, truncation: float | None = None,
                      resolution: int | None = None) -> torch.Tensor:
        """truncation * (standard normal truncated to [-2, 2]), as the package's truncated_noise_sample; the
        truncation defaults to ``self.truncation`` (which also picks the batch-norm statistics)."""
        shape = (n, *self.latent_shape(resolution))
        t = self.truncation if truncation is None or truncation <= 0 else float(truncation)
        z = torch.randn(shape, generator=generator)
        bad = z.abs() > 2.0
        while bad.any():
            z[bad] = torch.randn(int(bad.sum()), generator=generator)
            bad = z.abs() > 2.0
        return (t * z).to(self.device)

    def latent_bound(self, truncation: float | None) -> float | None:
        """sample_latent draws truncation x a normal truncated to [-2, 2], so |z| <= 2 x truncation."""
        t = self.truncation if truncation is None or truncation <= 0 else float(truncation)
        return 2.0 * t

    # -- the collage interface ---------------------------------------------------------------------------------
    def number_norm_sites(self) -> None:
        """Site 0 is gen_z (class-conditional input map), then every conditional BN in forward order."""
        self.generator.gen_z.site = 0
        k = 1
        for m in self.modules():
            if isinstance(m, ConditionalNorm):
                m.site = k
                k += 1

    def genblocks(self) -> list[tuple[int, GenBlock]]:
        """(index in ``generator.layers``, block) of every GenBlock in forward order."""
        return [(k, m) for k, m in enumerate(self.generator.layers) if isinstance(m, GenBlock)]

    def latent_shape(self, resolution: int | None = None) -> tuple[int, ...]:
        if resolution not in (None, self.resolution):
            raise ValueError(f"this model renders {self.resolution} px only")
        return (self.config.z_dim,)

    def _block_sizes(self) -> list[tuple[int, int]]:
        """(input size, output size) in feature pixels of every GenBlock."""
        out, s = [], 4
        for up, _, _ in self.config.layers:
            out.append((s, s * 2 if up else s))
            s = s * 2 if up else s
        return out

    def norm_sites(self) -> list[Site]:
        r = self.resolution
        sites = [Site(self.generator.gen_z.site, 0, "generator.gen_z", r // 4)]
        for i, ((k, blk), (s_in, s_out)) in enumerate(zip(self.genblocks(), self._block_sizes())):
            for j, s in enumerate((s_in, s_in, s_out, s_out)):
                bn = getattr(blk, f"bn_{j}")
                sites.append(Site(bn.site, i + 1, f"generator.layers.{k}.bn_{j}", r // s))
        return sites

    def blend_sites(self) -> list[Site]:
        r = self.resolution
        sites = [Site(0, 0, "generator.gen_z", r // 4)]
        for i, ((k, _), (_, s_out)) in enumerate(zip(self.genblocks(), self._block_sizes())):
            sites.append(Site(i + 1, i + 1, f"generator.layers.{k}", r // s_out))
        return sites

    def class_names(self) -> list[str]:
        if len(self._names) == self.num_classes:
            return list(self._names)
        if self.num_classes == 1000:
            try:
                from engine.models.store import imagenet_class_names

                self._names = imagenet_class_names()
                return list(self._names)
            except (ImportError, OSError):  # pragma: no cover - data file missing
                pass
        return super().class_names()

    def set_class_names(self, names: list[str]) -> None:
        if len(names) != self.num_classes:
            raise ValueError(f"expected {self.num_classes} class names, got {len(names)}")
        self._names = list(names)

    def synthesize(self, z: torch.Tensor, ctx: CollageContext) -> torch.Tensor:
        g = self.generator
        table = self.embeddings.weight.t()  # [num_classes, z_dim]: embeddings(one_hot(c)) == table[c]
        cond = (z, table)
        h = ctx.blend(0, g.gen_z(z, ctx, table))
        i = 0
        for layer in g.layers:
            if isinstance(layer, GenBlock):
                i += 1
                h = ctx.blend(i, layer(h, ctx, cond))
            else:
                h = layer(h)
        h = F.relu(g.bn(h))
        return torch.tanh(g.conv_to_rgb(h, out_channels=3))
