"""The Transformers of `model.name: transformer`, in GPT-2's layout (as in nanoGPT): token and learned
position embeddings, pre-norm blocks of self-attention and a GELU MLP, a final norm. The decoder (language
modelling) attends causally and its output layer shares the token embedding's weights; the encoder
(classifying token sequences) attends to every token but padding and classifies their mean."""

import torch
import torch.nn.functional as F
from torch import nn

from rayspeed.config.model import TransformerArgs


class SelfAttention(nn.Module):
    def __init__(self, args: TransformerArgs):
        super().__init__()
        self.heads, self.dropout = args.heads, args.dropout
        self.qkv = nn.Linear(args.dim, 3 * args.dim)
        self.out = nn.Linear(args.dim, args.dim)

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
        """`keep`: (batch, 1, 1, length), True for the tokens attended to; None attends causally."""
        batch, length, dim = x.shape
        q, k, v = (part.view(batch, length, self.heads, dim // self.heads).transpose(1, 2)
                   for part in self.qkv(x).split(dim, dim=2))
        # Flash or memory-efficient attention where the device has them.
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=keep, is_causal=keep is None,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(batch, length, dim))


class Block(nn.Module):
    def __init__(self, args: TransformerArgs):
        super().__init__()
        self.attention_norm, self.mlp_norm = nn.LayerNorm(args.dim), nn.LayerNorm(args.dim)
        self.attention = SelfAttention(args)
        self.mlp = nn.Sequential(nn.Linear(args.dim, args.mlp_ratio * args.dim), nn.GELU(),
                                 nn.Linear(args.mlp_ratio * args.dim, args.dim))
        self.drop = nn.Dropout(args.dropout)

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.drop(self.attention(self.attention_norm(x), keep))
        return x + self.drop(self.mlp(self.mlp_norm(x)))


class Trunk(nn.Module):
    """Embeddings, blocks and the final norm: what the decoder and the encoder share."""

    def __init__(self, args: TransformerArgs, *, vocab_size: int, context: int):
        super().__init__()
        self.tokens = nn.Embedding(vocab_size, args.dim)
        self.positions = nn.Embedding(context, args.dim)
        self.drop = nn.Dropout(args.dropout)
        self.blocks = nn.ModuleList(Block(args) for _ in range(args.layers))
        self.norm = nn.LayerNorm(args.dim)

    def forward(self, ids: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        positions = torch.arange(ids.shape[1], device=ids.device)
        x = self.drop(self.tokens(ids) + self.positions(positions))
        for block in self.blocks:
            x = block(x, keep)
        return self.norm(x)


class DecoderLM(Trunk):
    """Token ids (batch, length <= context) -> next-token logits (batch, length, vocab_size). A Trunk
    itself, so its parameter names (and older checkpoints) stay those of the decoder alone."""

    def __init__(self, args: TransformerArgs, *, vocab_size: int, context: int):
        super().__init__(args, vocab_size=vocab_size, context=context)
        self.head = nn.Linear(args.dim, vocab_size, bias=False)
        self.head.weight = self.tokens.weight
        _init_gpt2(self, layers=args.layers)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(super().forward(ids))


class EncoderClassifier(nn.Module):
    """Token ids (batch, context), `pad_id` after each sequence's end -> class logits (batch, classes)."""

    def __init__(self, args: TransformerArgs, *, vocab_size: int, context: int, num_classes: int, pad_id: int):
        super().__init__()
        self.pad_id = pad_id
        self.trunk = Trunk(args, vocab_size=vocab_size, context=context)
        self.drop = nn.Dropout(args.dropout)
        self.head = nn.Linear(args.dim, num_classes)
        _init_gpt2(self, layers=args.layers)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        kept = ids != self.pad_id
        kept[:, 0] = True  # an empty sequence still has one position to attend to and average
        x = self.trunk(ids, kept[:, None, None, :])
        weights = kept.unsqueeze(-1).to(x.dtype)
        pooled = (x * weights).sum(dim=1) / weights.sum(dim=1)
        return self.head(self.drop(pooled))


def _init_gpt2(model: nn.Module, *, layers: int) -> None:
    model.apply(_init_weights)
    for name, parameter in model.named_parameters():  # GPT-2: residual outputs scaled by depth
        if name.endswith("out.weight") or name.endswith("mlp.2.weight"):
            nn.init.normal_(parameter, mean=0.0, std=0.02 / (2 * layers) ** 0.5)


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear | nn.Embedding):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
