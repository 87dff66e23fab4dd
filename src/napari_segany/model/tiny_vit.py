"""MobileSAM's image encoder (``vit_t``): TinyViT-5M with a SAM neck.

A conv stem (stride 4), one stage of MBConv blocks, then three stages of
windowed attention blocks with a learned per-head bias over |offsets|, a
depthwise conv after each attention and a pre-norm MLP. Stages are joined by
conv "patch merging" (stride 2, except stride 1 into the last stage), so a
B x 3 x S x S image becomes a B x 320 x S/16 x S/16 map, which the neck turns
into the B x 256 x S/16 x S/16 embedding the SAM decoder expects.

Attribute names are the checkpoint keys under ``image_encoder.``, including
the BatchNorm statistics and the ImageNet classification head (``norm_head``,
``head``), which the segmentation path never uses. Inference only: no
drop-path, dropout or activation checkpointing.

Numerics that parity depends on: BatchNorm and the block LayerNorms use
PyTorch's default eps (1e-5), the neck's LayerNorm2d uses 1e-6; GELU is the
exact (erf) one; windows are zero-padded *before* the attention's LayerNorm
(so padded tokens enter attention as the LayerNorm bias, not as zeros).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .common import LayerNorm2d
from .image_encoder import window_partition, window_unpartition


class ConvBN(nn.Sequential):
    """Bias-free Conv2d (``c``) then BatchNorm2d (``bn``); 'same' padding.

    B x in_chans x H x W -> B x out_chans x H/stride x W/stride.
    """

    def __init__(
        self, in_chans: int, out_chans: int, kernel_size: int = 1, stride: int = 1, groups: int = 1
    ) -> None:
        super().__init__()
        self.c = nn.Conv2d(
            in_chans, out_chans, kernel_size, stride, kernel_size // 2, groups=groups, bias=False
        )
        self.bn = nn.BatchNorm2d(out_chans)


class PatchEmbed(nn.Module):
    """Two stride-2 3x3 ConvBN with GELU between: B x 3 x S x S -> B x C x S/4 x S/4."""

    def __init__(self, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.seq = nn.Sequential(
            ConvBN(in_chans, embed_dim // 2, 3, stride=2),
            nn.GELU(),
            ConvBN(embed_dim // 2, embed_dim, 3, stride=2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.seq(x)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand, 3x3 depthwise, 1x1 project, + input, GELU.

    B x C x H x W -> B x C x H x W. The final GELU comes after the residual sum.
    """

    def __init__(self, dim: int, expand_ratio: float) -> None:
        super().__init__()
        hidden = int(dim * expand_ratio)
        self.conv1 = ConvBN(dim, hidden)
        self.conv2 = ConvBN(hidden, hidden, 3, groups=hidden)
        self.conv3 = ConvBN(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.gelu(self.conv1(x))
        y = F.gelu(self.conv2(y))
        return F.gelu(x + self.conv3(y))


class PatchMerging(nn.Module):
    """1x1 ConvBN, GELU, depthwise 3x3 ConvBN (``stride``), GELU, 1x1 ConvBN.

    B x C x H x W -> B x C' x H/stride x W/stride (no activation at the end).
    """

    def __init__(self, dim: int, out_dim: int, stride: int) -> None:
        super().__init__()
        self.conv1 = ConvBN(dim, out_dim)
        self.conv2 = ConvBN(out_dim, out_dim, 3, stride=stride, groups=out_dim)
        self.conv3 = ConvBN(out_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.conv1(x))
        x = F.gelu(self.conv2(x))
        return self.conv3(x)


class ConvLayer(nn.Module):
    """First stage: MBConv blocks then a merge. B x C x H x W -> B x C' x H/2 x W/2."""

    def __init__(self, dim: int, depth: int, expand_ratio: float, out_dim: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(MBConv(dim, expand_ratio) for _ in range(depth))
        self.downsample = PatchMerging(dim, out_dim, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.downsample(x)


def offset_index(window_size: int) -> torch.Tensor:
    """N x N (N = window_size**2) index into the per-head bias table.

    Tokens are numbered row-major within a window; the pair (p, q) reads
    column ``|dy| * window_size + |dx|`` of the (heads x N) bias table, the
    order in which offsets first appear when scanning from token (0, 0).
    Always computed on the CPU, also inside a ``torch.device("meta")`` block:
    the loader builds models there and fills them from the checkpoint, which
    does not hold this buffer.
    """
    steps = torch.arange(window_size, device="cpu")
    rows, cols = torch.meshgrid(steps, steps, indexing="ij")
    rows, cols = rows.flatten(), cols.flatten()
    dy = (rows[:, None] - rows[None, :]).abs()
    dx = (cols[:, None] - cols[None, :]).abs()
    return dy * window_size + dx


class Attention(nn.Module):
    """LayerNorm, then multi-head self-attention with a learned offset bias.

    x: B' x N x C tokens of one window (N = window_size**2) -> B' x N x C.
    The qkv projection is head-major: its 3C outputs are ``heads`` groups of
    [q | k | v], each ``C / heads`` wide.
    """

    def __init__(self, dim: int, num_heads: int, window_size: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, window_size * window_size))
        self.register_buffer("attention_bias_idxs", offset_index(window_size), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(self.norm(x)).view(b, n, self.num_heads, 3 * self.head_dim)
        q, k, v = qkv.transpose(1, 2).split(self.head_dim, dim=-1)  # each B' x heads x N x d
        bias = self.attention_biases[:, self.attention_bias_idxs].to(q.dtype)  # heads x N x N
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    """Pre-norm MLP (``norm``, ``fc1``, GELU, ``fc2``) on B x ... x C."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(self.norm(x))))


class TinyViTBlock(nn.Module):
    """Windowed attention + residual, depthwise ConvBN (no residual), MLP + residual.

    x: B x H x W x C (channels last) -> B x H x W x C. The grid is zero-padded
    at the bottom/right to multiples of ``window_size``; padded tokens take
    part in attention (they are not masked) and are cropped afterwards.
    """

    def __init__(
        self, dim: int, num_heads: int, window_size: int, mlp_ratio: float, local_conv_size: int
    ) -> None:
        super().__init__()
        self.window_size = window_size
        self.attn = Attention(dim, num_heads, window_size)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.local_conv = ConvBN(dim, dim, local_conv_size, groups=dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        ws = self.window_size
        windows, padded = window_partition(x.contiguous(), ws)  # (B * n_windows) x ws x ws x C
        attended = self.attn(windows.reshape(-1, ws * ws, c)).view(-1, ws, ws, c)
        x = x + window_unpartition(attended, ws, padded, (h, w))
        x = self.local_conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return x + self.mlp(x)


class BasicLayer(nn.Module):
    """Attention stage: TinyViT blocks, then an optional merge.

    B x C x H x W -> B x C' x H/stride x W/stride (C' = C, stride 1 without a merge).
    """

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        window_size: int,
        mlp_ratio: float,
        local_conv_size: int,
        out_dim: int | None = None,
        stride: int = 2,
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            TinyViTBlock(dim, num_heads, window_size, mlp_ratio, local_conv_size) for _ in range(depth)
        )
        self.downsample = None if out_dim is None else PatchMerging(dim, out_dim, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        for block in self.blocks:
            x = block(x)
        x = x.permute(0, 3, 1, 2)
        return x if self.downsample is None else self.downsample(x)


class TinyViT(nn.Module):
    """B x 3 x S x S normalised image -> B x 256 x S/16 x S/16 embedding.

    Defaults are MobileSAM's TinyViT-5M. ``img_size`` S must be a multiple of
    16 (the model has no positional embedding, so any such S works with the
    same weights; published checkpoints were trained at 1024).
    """

    def __init__(
        self,
        img_size: int = 1024,
        in_chans: int = 3,
        embed_dims: Sequence[int] = (64, 128, 160, 320),
        depths: Sequence[int] = (2, 2, 6, 2),
        num_heads: Sequence[int] = (2, 4, 5, 10),
        window_sizes: Sequence[int] = (7, 7, 14, 7),
        mlp_ratio: float = 4.0,
        mbconv_expand_ratio: float = 4.0,
        local_conv_size: int = 3,
        num_classes: int = 1000,
        out_chans: int = 256,
    ) -> None:
        super().__init__()
        if img_size % 16:
            raise ValueError(f"img_size must be a multiple of 16, got {img_size}")
        self.img_size = img_size
        self.in_chans = in_chans
        n_stages = len(depths)
        self.patch_embed = PatchEmbed(in_chans, embed_dims[0])
        stages: list[nn.Module] = [ConvLayer(embed_dims[0], depths[0], mbconv_expand_ratio, embed_dims[1])]
        for i in range(1, n_stages):
            last = i == n_stages - 1
            stages.append(
                BasicLayer(
                    embed_dims[i],
                    depths[i],
                    num_heads[i],
                    window_sizes[i],
                    mlp_ratio,
                    local_conv_size,
                    out_dim=None if last else embed_dims[i + 1],
                    # the merge into the last stage keeps the resolution: S/16 overall
                    stride=1 if i == n_stages - 2 else 2,
                )
            )
        self.layers = nn.ModuleList(stages)
        # ImageNet classification head of the TinyViT backbone: unused, kept for the keys.
        self.norm_head = nn.LayerNorm(embed_dims[-1])
        self.head = nn.Linear(embed_dims[-1], num_classes)
        self.neck = nn.Sequential(
            nn.Conv2d(embed_dims[-1], out_chans, kernel_size=1, bias=False),
            LayerNorm2d(out_chans),
            nn.Conv2d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(out_chans),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.img_size
        if x.ndim != 4 or x.shape[1] != self.in_chans or x.shape[2:] != (s, s):
            raise ValueError(
                f"expected a B x {self.in_chans} x {s} x {s} image tensor, got shape {tuple(x.shape)}; "
                f"resize and pad the image to the model's input size first"
            )
        x = self.patch_embed(x)  # B x C0 x S/4 x S/4
        for stage in self.layers:
            x = stage(x)  # ends as B x C3 x S/16 x S/16
        return self.neck(x)
