"""The musicnn audio taggers (Pons & Serra, 2019) in PyTorch, loading the original TF1 weights.

A port of ``musicnn/models.py`` (musicnn 0.1.0): ``build_musicnn`` (musically motivated
front-end, dense mid-end, temporal-pooling back-end) and ``vgg``. Layer order and TF variable
names follow that file: ``tf.compat.v1.layers`` names layers in creation order
(``conv2d``, ``conv2d_1``, ..., ``batch_normalization_N``, ``dense``, ``dense_1``), so the
``_take`` calls below must stay in the order of the original graph.

Layout: the TF graph is NHWC with H = time, W = mel band; here tensors are NCHW with
(batch, channels, time, mel). Batch norms run in inference mode (moving statistics,
TF's epsilon 1e-3); dropout is the identity at inference and is omitted.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

N_MELS = 96
N_FRAMES = 187  # 3 s at 16 kHz, hop 256: librosa.time_to_frames(3, ...) + 1
_BN_EPS = 1e-3  # tf.compat.v1.layers.batch_normalization default


@dataclass(frozen=True)
class MusicnnSpec:
    """Hyper-parameters of one packaged musicnn checkpoint (from models.define_model)."""

    arch: str  # "musicnn" or "vgg"
    num_classes: int = 50
    num_filt_midend: int = 64
    num_units_backend: int = 200
    num_filters_vgg: int = 128


SPECS: dict[str, MusicnnSpec] = {
    "MSD_musicnn": MusicnnSpec("musicnn"),
    "MTT_musicnn": MusicnnSpec("musicnn"),
    "MSD_vgg": MusicnnSpec("vgg"),
    "MTT_vgg": MusicnnSpec("vgg"),
}


class _Weights:
    """Hands out TF variables layer by layer, in the order models.py creates them."""

    def __init__(self, tensors: dict[str, np.ndarray]):
        self.tensors = tensors
        self.counts: dict[str, int] = {}
        self.used: set[str] = set()

    def _scope(self, kind: str) -> str:
        n = self.counts.get(kind, 0)
        self.counts[kind] = n + 1
        return kind if n == 0 else f"{kind}_{n}"

    def get(self, name: str) -> torch.Tensor:
        if name not in self.tensors:
            raise KeyError(f"checkpoint has no variable {name!r}")
        self.used.add(name)
        return torch.from_numpy(np.ascontiguousarray(self.tensors[name], dtype=np.float32))

    def conv2d(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Next conv2d: TF kernel [kh, kw, in, out] -> torch [out, in, kh, kw]."""
        s = self._scope("conv2d")
        return self.get(f"{s}/kernel").permute(3, 2, 0, 1).contiguous(), self.get(f"{s}/bias")

    def dense(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Next dense: TF kernel [in, out] -> torch [out, in]."""
        s = self._scope("dense")
        return self.get(f"{s}/kernel").t().contiguous(), self.get(f"{s}/bias")

    def batch_norm(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Next batch norm folded into an affine map: y = x * scale + shift."""
        s = self._scope("batch_normalization")
        gamma, beta = self.get(f"{s}/gamma"), self.get(f"{s}/beta")
        mean, var = self.get(f"{s}/moving_mean"), self.get(f"{s}/moving_variance")
        scale = gamma / torch.sqrt(var + _BN_EPS)
        return scale, beta - mean * scale


class _Affine(nn.Module):
    """An inference-mode batch norm over dimension ``dim`` (1 = channels of NCHW / features)."""

    def __init__(self, scale_shift: tuple[torch.Tensor, torch.Tensor], dim: int = 1):
        super().__init__()
        self.register_buffer("scale", scale_shift[0])
        self.register_buffer("shift", scale_shift[1])
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = [1] * x.dim()
        shape[self.dim] = -1
        return x * self.scale.view(shape) + self.shift.view(shape)


def _conv(kernel_bias: tuple[torch.Tensor, torch.Tensor]) -> nn.Conv2d:
    w, b = kernel_bias
    conv = nn.Conv2d(w.shape[1], w.shape[0], tuple(w.shape[2:]))
    conv.weight.data.copy_(w)
    conv.bias.data.copy_(b)
    return conv


def _linear(kernel_bias: tuple[torch.Tensor, torch.Tensor]) -> nn.Linear:
    w, b = kernel_bias
    lin = nn.Linear(w.shape[1], w.shape[0])
    lin.weight.data.copy_(w)
    lin.bias.data.copy_(b)
    return lin


def _relu_bn_max_over_mel(z: torch.Tensor, bn: _Affine) -> torch.Tensor:
    """max over mel of bn(relu(z)) for z [B, C, T, M] -> [B, C, T], without touching B*C*T*M twice.

    relu and the per-channel affine map are monotone (increasing, or decreasing where the BN
    scale is negative, and float rounding keeps them monotone), so the max of bn(relu(z)) is
    bn(relu(max z)) or bn(relu(min z)): bit-identical to pooling after the activations.
    """
    hi, lo = z.amax(dim=3), z.amin(dim=3)
    pick = torch.where((bn.scale >= 0).view(1, -1, 1), hi, lo)
    return bn(F.relu(pick))


class Musicnn(nn.Module):
    """musicnn: log-mel patch [B, 187, 96] -> (logits [B, C], penultimate [B, units])."""

    def __init__(self, tensors: dict[str, np.ndarray], spec: MusicnnSpec):
        super().__init__()
        w = _Weights(tensors)
        self.bn_input = _Affine(w.batch_norm())
        # Front-end, timbral: 7 x (38 | 67) mel bands, 204 filters; temporal: (128|64|32) x 1, 51 filters.
        self.timbral = nn.ModuleList()
        self.temporal = nn.ModuleList()
        for _ in range(2):
            self.timbral.append(nn.ModuleList([_conv(w.conv2d()), _Affine(w.batch_norm())]))
        for _ in range(3):
            self.temporal.append(nn.ModuleList([_conv(w.conv2d()), _Affine(w.batch_norm())]))
        # Mid-end: three 7-frame convs spanning all features, the 2nd and 3rd residual.
        self.midend = nn.ModuleList()
        for _ in range(3):
            self.midend.append(nn.ModuleList([_conv(w.conv2d()), _Affine(w.batch_norm())]))
        # Back-end: BN -> dense(relu) -> BN (= 'penultimate') -> dense (logits).
        self.bn_pool = _Affine(w.batch_norm())
        self.dense = _linear(w.dense())
        self.bn_dense = _Affine(w.batch_norm())
        self.out = _linear(w.dense())
        self.unused = sorted(k for k in tensors if k not in w.used)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.bn_input(x.unsqueeze(1))  # [B, 1, T, 96]
        feats = []
        padded = F.pad(x, (0, 0, 3, 3))  # 'same' in time only, as models.py pads by hand
        for conv, bn in self.timbral:
            feats.append(_relu_bn_max_over_mel(conv(padded), bn))  # [B, 204, T]
        for conv, bn in self.temporal:
            k = conv.kernel_size[0]
            # TF 'same' padding for an even kernel puts the extra row at the end.
            feats.append(_relu_bn_max_over_mel(conv(F.pad(x, (0, 0, (k - 1) // 2, k // 2))), bn))
        front = torch.cat(feats, dim=1)  # [B, 561, T]

        # Mid-end convs span the whole feature axis: TF sees [B, T, F, 1] and a kernel
        # [7, F, 1, 64]; here the map is [B, 1, T + 6, F] and the kernel [64, 1, 7, F].
        mids = [front]
        h = front
        for i, (conv, bn) in enumerate(self.midend):
            y = F.conv2d(F.pad(h, (3, 3)).transpose(1, 2).unsqueeze(1), conv.weight, conv.bias)
            y = bn(F.relu(y.squeeze(3)))  # [B, 64, T]
            h = y if i == 0 else y + h
            mids.append(h)
        mid = torch.cat(mids, dim=1)  # [B, 753, T]

        # Temporal pooling; TF flattens [753, 2] = (max, mean) interleaved per feature.
        pooled = torch.stack([mid.amax(dim=2), mid.mean(dim=2)], dim=2).flatten(1)  # [B, 1506]
        penultimate = self.bn_dense(F.relu(self.dense(self.bn_pool(pooled))))  # [B, 200]
        return self.out(penultimate), penultimate


class Vgg(nn.Module):
    """musicnn's VGG baseline: [B, 187, 96] -> (logits [B, C], pool5 flattened [B, 256])."""

    _POOLS = [((4, 1), (2, 2)), ((2, 2), (2, 2)), ((2, 2), (2, 2)), ((2, 2), (2, 2)), ((4, 4), (4, 4))]

    def __init__(self, tensors: dict[str, np.ndarray], spec: MusicnnSpec):
        super().__init__()
        w = _Weights(tensors)
        self.bn_input = _Affine(w.batch_norm())
        self.blocks = nn.ModuleList()
        for i in range(5):
            # The VGG convs are named explicitly ('1CNN' ... '5CNN') in models.py.
            kernel = w.get(f"{i + 1}CNN/kernel").permute(3, 2, 0, 1).contiguous()
            self.blocks.append(nn.ModuleList([_conv((kernel, w.get(f"{i + 1}CNN/bias"))),
                                              _Affine(w.batch_norm())]))
        self.out = _linear(w.dense())
        self.unused = sorted(k for k in tensors if k not in w.used)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.bn_input(x.unsqueeze(1))  # [B, 1, 187, 96]
        for (conv, bn), (size, stride) in zip(self.blocks, self._POOLS, strict=True):
            h = bn(F.relu(conv(F.pad(h, (1, 1, 1, 1)))))  # 3x3 'same'
            h = F.max_pool2d(h, size, stride)  # 'valid' pooling -> pool5 [B, 128, 2, 1]
        # TF flattens NHWC: (time, mel, channel) order.
        pool5 = h.permute(0, 2, 3, 1).flatten(1)  # [B, 256]
        return self.out(pool5), pool5


def build_model(name: str, tensors: dict[str, np.ndarray]) -> nn.Module:
    """Build a packaged musicnn model from its checkpoint tensors.

    Args:
        name: one of ``SPECS`` ("MSD_musicnn", "MTT_musicnn", "MSD_vgg", "MTT_vgg").
        tensors: the checkpoint (``tf_bundle.read_bundle``); Adam slots are ignored.

    Returns:
        an eval-mode module mapping log-mel patches [B, 187, 96] to (logits, features).
    """
    if name not in SPECS:
        raise ValueError(f"unknown musicnn model {name!r}; choose one of {sorted(SPECS)}")
    spec = SPECS[name]
    model = (Musicnn if spec.arch == "musicnn" else Vgg)(tensors, spec)
    leftover = [k for k in model.unused if "Adam" not in k and not k.endswith("_power")
                and k != "global_step"]
    if leftover:
        raise ValueError(f"{name}: checkpoint variables not used by the port: {leftover}")
    return model.eval()


def patches(logmel: np.ndarray, n_frames: int = N_FRAMES) -> Iterator[np.ndarray]:
    """Split a log-mel [T, 96] into non-overlapping [n_frames, 96] patches (the last partial one dropped,
    as musicnn's extractor does)."""
    for start in range(0, logmel.shape[0] - n_frames + 1, n_frames):
        yield logmel[start : start + n_frames]
