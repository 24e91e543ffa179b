"""The decoder-only Transformer of `model.name: transformer` (GPT-2's layout, as in nanoGPT): token and
learned position embeddings, pre-norm blocks of causal self-attention and a GELU MLP, a final norm,
and an output layer that shares the token embedding's weights."""

import torch
import torch.nn.functional as F
from torch import nn

from rayspeed.config.model import TransformerArgs


class CausalSelfAttention(nn.Module):
    def __init__(self, args: TransformerArgs):
        super().__init__()
        self.heads, self.dropout = args.heads, args.dropout
        self.qkv = nn.Linear(args.dim, 3 * args.dim)
        self.out = nn.Linear(args.dim, args.dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, dim = x.shape
        q, k, v = (part.view(batch, length, self.heads, dim // self.heads).transpose(1, 2)
                   for part in self.qkv(x).split(dim, dim=2))
        # Flash or memory-efficient attention where the device has them.
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(batch, length, dim))


class Block(nn.Module):
    def __init__(self, args: TransformerArgs):
        super().__init__()
        self.attention_norm, self.mlp_norm = nn.LayerNorm(args.dim), nn.LayerNorm(args.dim)
        self.attention = CausalSelfAttention(args)
        self.mlp = nn.Sequential(nn.Linear(args.dim, args.mlp_ratio * args.dim), nn.GELU(),
                                 nn.Linear(args.mlp_ratio * args.dim, args.dim))
        self.drop = nn.Dropout(args.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attention(self.attention_norm(x)))
        return x + self.drop(self.mlp(self.mlp_norm(x)))


class DecoderLM(nn.Module):
    """Token ids (batch, length <= context) -> next-token logits (batch, length, vocab_size)."""

    def __init__(self, args: TransformerArgs, *, vocab_size: int, context: int):
        super().__init__()
        self.context = context
        self.tokens = nn.Embedding(vocab_size, args.dim)
        self.positions = nn.Embedding(context, args.dim)
        self.drop = nn.Dropout(args.dropout)
        self.blocks = nn.ModuleList(Block(args) for _ in range(args.layers))
        self.norm = nn.LayerNorm(args.dim)
        self.head = nn.Linear(args.dim, vocab_size, bias=False)
        self.head.weight = self.tokens.weight
        self.apply(_init_weights)
        for name, parameter in self.named_parameters():  # GPT-2: residual outputs scaled by depth
            if name.endswith("out.weight") or name.endswith("mlp.2.weight"):
                nn.init.normal_(parameter, mean=0.0, std=0.02 / (2 * args.layers) ** 0.5)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(ids.shape[1], device=ids.device)
        x = self.drop(self.tokens(ids) + self.positions(positions))
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear | nn.Embedding):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
