"""The SAM ViT image encoder (ViT-B/L/H): windowed and global attention blocks
with decomposed relative-position biases, then a neck down to 256 channels.

Attribute names are the checkpoint keys under ``image_encoder.``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .common import LayerNorm2d, MLPBlock

# Query rows of a global-attention block processed at once: bounds the bias
# tensor to (B x heads x QUERY_CHUNK x L) instead of (B x heads x L x L).
QUERY_CHUNK = 1024


def relative_position_table(size: int, rel_pos: torch.Tensor) -> torch.Tensor:
    """Gather the (size x size x head_dim) table of biases for offsets q - k.

    ``rel_pos`` holds one row per offset in [-(size-1), size-1].
    """
    if rel_pos.shape[0] != 2 * size - 1:
        raise ValueError(
            f"relative-position table has {rel_pos.shape[0]} rows, expected {2 * size - 1} "
            f"for a {size}-token axis; build the model with the checkpoint's image size"
        )
    coords = torch.arange(size, device=rel_pos.device)
    offsets = coords[:, None] - coords[None, :] + (size - 1)
    return rel_pos[offsets]


def attention_with_rel_pos(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    rel_pos_h: torch.Tensor,
    rel_pos_w: torch.Tensor,
    hw: tuple[int, int],
) -> torch.Tensor:
    """Scaled dot-product attention plus the decomposed relative-position bias.

    q, k, v: B x heads x (H*W) x head_dim. The bias of query (i, j) to key
    (m, n) is ``q_ij . Rh[i - m] + q_ij . Rw[j - n]`` with the unscaled q.
    Queries are processed in chunks of rows so that the full
    (H*W) x (H*W) bias is never materialised at once.
    """
    b, n_heads, length, dim = q.shape
    h, w = hw
    table_h = relative_position_table(h, rel_pos_h).to(q.dtype)  # H x H x d
    table_w = relative_position_table(w, rel_pos_w).to(q.dtype)  # W x W x d
    rows_per_chunk = min(h, max(1, QUERY_CHUNK // w))
    # one bias buffer reused by every chunk: fresh multi-100-MB allocations
    # cost more in page faults than the additions themselves
    buffer = q.new_empty(b, n_heads, rows_per_chunk, w, h, w)
    outputs = []
    for r0 in range(0, h, rows_per_chunk):
        r1 = min(h, r0 + rows_per_chunk)
        q_rows = q[:, :, r0 * w : r1 * w]
        rq = q_rows.reshape(b, n_heads, r1 - r0, w, dim)
        bias_h = torch.einsum("bnhwc,hkc->bnhwk", rq, table_h[r0:r1])
        bias_w = torch.einsum("bnhwc,wkc->bnhwk", rq, table_w)
        bias = buffer[:, :, : r1 - r0]
        torch.add(bias_h[..., :, None], bias_w[..., None, :], out=bias)
        bias = bias.view(b, n_heads, (r1 - r0) * w, length)
        outputs.append(F.scaled_dot_product_attention(q_rows, k, v, attn_mask=bias))
    return outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=2)


class Attention(nn.Module):
    """Multi-head self-attention over a B x H x W x C token grid."""

    def __init__(self, dim: int, num_heads: int, input_size: tuple[int, int]) -> None:
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)
        self.rel_pos_h = nn.Parameter(torch.zeros(2 * input_size[0] - 1, head_dim))
        self.rel_pos_w = nn.Parameter(torch.zeros(2 * input_size[1] - 1, head_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        qkv = self.qkv(x).reshape(b, h * w, 3, self.num_heads, c // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each B x heads x L x d
        out = attention_with_rel_pos(q, k, v, self.rel_pos_h, self.rel_pos_w, (h, w))
        return self.proj(out.transpose(1, 2).reshape(b, h, w, c))


def window_partition(x: torch.Tensor, window: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """B x H x W x C -> (B * n_windows) x window x window x C, zero-padding H and W
    at the bottom/right up to multiples of ``window``. Returns the padded size too."""
    b, h, w, c = x.shape
    pad_h = (window - h % window) % window
    pad_w = (window - w % window) % window
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    hp, wp = h + pad_h, w + pad_w
    x = x.view(b, hp // window, window, wp // window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window, window, c), (hp, wp)


def window_unpartition(
    windows: torch.Tensor, window: int, padded_hw: tuple[int, int], hw: tuple[int, int]
) -> torch.Tensor:
    """Inverse of :func:`window_partition`, dropping the padding."""
    hp, wp = padded_hw
    h, w = hw
    b = windows.shape[0] // ((hp // window) * (wp // window))
    x = windows.view(b, hp // window, wp // window, window, window, -1)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, -1)
    return x[:, :h, :w, :].contiguous() if (hp, wp) != (h, w) else x


class Block(nn.Module):
    """Pre-norm transformer block; ``window_size`` 0 means global attention."""

    def __init__(self, dim: int, num_heads: int, window_size: int, grid_size: tuple[int, int]) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        attn_size = grid_size if window_size == 0 else (window_size, window_size)
        self.attn = Attention(dim, num_heads, attn_size)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MLPBlock(dim, dim * 4, act=nn.GELU)
        self.window_size = window_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.norm1(x)
        if self.window_size > 0:
            hw = (x.shape[1], x.shape[2])
            x, padded = window_partition(x, self.window_size)
            x = self.attn(x)
            x = window_unpartition(x, self.window_size, padded, hw)
        else:
            x = self.attn(x)
        x = shortcut + x
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    """Non-overlapping patch projection; returns channels-last B x H x W x C."""

    def __init__(self, patch_size: int, embed_dim: int, in_chans: int = 3) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).permute(0, 2, 3, 1)


class ImageEncoderViT(nn.Module):
    """B x 3 x S x S normalised image -> B x 256 x S/16 x S/16 embedding."""

    def __init__(
        self,
        embed_dim: int,
        depth: int,
        num_heads: int,
        global_attn_indexes: tuple[int, ...],
        img_size: int = 1024,
        patch_size: int = 16,
        window_size: int = 14,
        out_chans: int = 256,
    ) -> None:
        super().__init__()
        self.img_size = img_size
        grid = img_size // patch_size
        self.patch_embed = PatchEmbed(patch_size, embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, grid, grid, embed_dim))
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, 0 if i in global_attn_indexes else window_size, (grid, grid))
            for i in range(depth)
        )
        self.neck = nn.Sequential(
            nn.Conv2d(embed_dim, out_chans, kernel_size=1, bias=False),
            LayerNorm2d(out_chans),
            nn.Conv2d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(out_chans),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.neck(x.permute(0, 3, 1, 2))
