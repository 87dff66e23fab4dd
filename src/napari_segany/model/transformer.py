"""Two-way transformer of the mask decoder: prompt tokens and image tokens
attend to each other. Attribute names are checkpoint keys under
``mask_decoder.transformer.``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .common import MLPBlock


class Attention(nn.Module):
    """Multi-head attention whose projections may shrink the width by
    ``downsample_rate`` (the cross-attentions use 2: 256 -> 128)."""

    def __init__(self, embedding_dim: int, num_heads: int, downsample_rate: int = 1) -> None:
        super().__init__()
        self.num_heads = num_heads
        internal_dim = embedding_dim // downsample_rate
        if internal_dim % num_heads:
            raise ValueError("num_heads must divide embedding_dim // downsample_rate")
        self.q_proj = nn.Linear(embedding_dim, internal_dim)
        self.k_proj = nn.Linear(embedding_dim, internal_dim)
        self.v_proj = nn.Linear(embedding_dim, internal_dim)
        self.out_proj = nn.Linear(internal_dim, embedding_dim)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """B x Nq x C, B x Nk x C, B x Nk x C -> B x Nq x C."""
        out = F.scaled_dot_product_attention(
            self._heads(self.q_proj(q)), self._heads(self.k_proj(k)), self._heads(self.v_proj(v))
        )
        b, h, n, d = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, n, h * d))


    # The decoder attends between a handful of prompt tokens and thousands of
    # image tokens. Projecting all image tokens (the standard forward) costs
    # most of the decoder's work; the two methods below fold the projections
    # into the few-token side instead: the same function, about half the
    # multiply-adds. The checkpoint parameters are used as they are.

    def forward_few_queries(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Same as ``forward`` when Nq << Nk (tokens attending to the image).

        logits_h = (Q_h Wk_h) k^T (the Q_h . bk_h term is constant along the
        softmax axis and cancels); out_h = (A_h v) Wv_h^T + bv_h (rows of A
        sum to one)."""
        b, nq, c = q.shape
        h = self.num_heads
        d = self.q_proj.out_features // h
        qh = self.q_proj(q).view(b, nq, h, d).transpose(1, 2)  # B x h x Nq x d
        folded_q = torch.matmul(qh, self.k_proj.weight.view(h, d, c))  # B x h x Nq x C
        logits = torch.matmul(folded_q.reshape(b, h * nq, c), k.transpose(1, 2)) * d**-0.5
        attn = torch.softmax(logits, dim=-1)  # B x (h Nq) x Nk
        mixed = torch.matmul(attn, v).view(b, h, nq, c)
        out = torch.matmul(mixed, self.v_proj.weight.view(h, d, c).transpose(1, 2))
        out = out + self.v_proj.bias.view(h, 1, d)
        return self.out_proj(out.transpose(1, 2).reshape(b, nq, h * d))

    def forward_few_keys(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Same as ``forward`` when Nk << Nq (the image attending to tokens).

        logits_h = q (Wq_h^T K_h^T) + bq_h K_h^T; out = sum_h A_h (V_h Wo_h^T) + bo."""
        b, nq, c = q.shape
        nk = k.shape[1]
        h = self.num_heads
        d = self.q_proj.out_features // h
        kh = self.k_proj(k).view(b, nk, h, d)
        wq = self.q_proj.weight.view(h, d, c)
        folded_k = torch.einsum("bthd,hdc->bcht", kh, wq).reshape(b, c, h * nk)
        offset = torch.einsum("bthd,hd->bht", kh, self.q_proj.bias.view(h, d)).reshape(b, 1, h * nk)
        logits = torch.baddbmm(offset, q, folded_k) * d**-0.5  # B x Nq x (h Nk)
        attn = torch.softmax(logits.view(b, nq, h, nk), dim=-1).view(b, nq, h * nk)
        vh = self.v_proj(v).view(b, nk, h, d)
        folded_v = torch.einsum("bthd,chd->bhtc", vh, self.out_proj.weight.view(c, h, d)).reshape(b, h * nk, c)
        return torch.baddbmm(self.out_proj.bias.expand(b, 1, c), attn, folded_v)


class TwoWayAttentionBlock(nn.Module):
    """Token self-attention, token->image cross-attention, MLP on tokens,
    image->token cross-attention; each followed by a LayerNorm."""

    def __init__(
        self,
        embedding_dim: int,
        num_heads: int,
        mlp_dim: int = 2048,
        attention_downsample_rate: int = 2,
        skip_first_layer_pe: bool = False,
    ) -> None:
        super().__init__()
        self.self_attn = Attention(embedding_dim, num_heads)
        self.norm1 = nn.LayerNorm(embedding_dim)
        self.cross_attn_token_to_image = Attention(embedding_dim, num_heads, attention_downsample_rate)
        self.norm2 = nn.LayerNorm(embedding_dim)
        self.mlp = MLPBlock(embedding_dim, mlp_dim, act=nn.ReLU)
        self.norm3 = nn.LayerNorm(embedding_dim)
        self.norm4 = nn.LayerNorm(embedding_dim)
        self.cross_attn_image_to_token = Attention(embedding_dim, num_heads, attention_downsample_rate)
        self.skip_first_layer_pe = skip_first_layer_pe

    def forward(
        self, queries: torch.Tensor, keys: torch.Tensor, query_pe: torch.Tensor, key_pe: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.skip_first_layer_pe:
            queries = self.self_attn(queries, queries, queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q, q, queries)
        queries = self.norm1(queries)

        keys_pe = keys + key_pe
        to_image = self.cross_attn_token_to_image.forward_few_queries
        queries = self.norm2(queries + to_image(queries + query_pe, keys_pe, keys))
        queries = self.norm3(queries + self.mlp(queries))
        to_tokens = self.cross_attn_image_to_token.forward_few_keys
        keys = self.norm4(keys + to_tokens(keys_pe, queries + query_pe, queries))
        return queries, keys


class TwoWayTransformer(nn.Module):
    def __init__(
        self, depth: int = 2, embedding_dim: int = 256, num_heads: int = 8, mlp_dim: int = 2048
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            TwoWayAttentionBlock(embedding_dim, num_heads, mlp_dim, 2, skip_first_layer_pe=(i == 0))
            for i in range(depth)
        )
        self.final_attn_token_to_image = Attention(embedding_dim, num_heads, downsample_rate=2)
        self.norm_final_attn = nn.LayerNorm(embedding_dim)

    def forward(
        self, image_embedding: torch.Tensor, image_pe: torch.Tensor, point_embedding: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """image_embedding, image_pe: B x C x h x w; point_embedding: B x N x C.
        Returns the processed tokens (B x N x C) and image tokens (B x hw x C)."""
        # contiguous token-major layout once, instead of a strided copy in every linear
        keys = image_embedding.flatten(2).transpose(1, 2).contiguous()
        key_pe = image_pe.flatten(2).transpose(1, 2).contiguous()
        queries = point_embedding
        for layer in self.layers:
            queries, keys = layer(queries, keys, point_embedding, key_pe)
        attn = self.final_attn_token_to_image.forward_few_queries(queries + point_embedding, keys + key_pe, keys)
        return self.norm_final_attn(queries + attn), keys
