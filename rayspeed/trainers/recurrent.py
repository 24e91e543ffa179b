"""The recurrent network of `model.name: rnn`: an LSTM or GRU over a sequence (token ids, or windows of
numeric rows), its last state (both directions' when bidirectional) through dropout to a linear head."""

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from rayspeed.config.model import RnnArgs

CELLS = {"lstm": nn.LSTM, "gru": nn.GRU}


class RecurrentNet(nn.Module):
    """(batch, length, features) floats, or (batch, length) token ids ended by `pad_id` padding
    -> (batch, num_outputs)."""

    def __init__(self, args: RnnArgs, *, num_outputs: int, sequence_shape: list[int] | None = None,
                 vocab_size: int | None = None, pad_id: int | None = None):
        super().__init__()
        self.sequence_shape, self.pad_id = sequence_shape, pad_id
        self.embedding = nn.Embedding(vocab_size, args.embedding_dim) if vocab_size else None
        width = args.embedding_dim if vocab_size else sequence_shape[1]
        self.cell = CELLS[args.cell](width, args.hidden_size, num_layers=args.layers, batch_first=True,
                                     bidirectional=args.bidirectional, dropout=args.dropout if args.layers > 1 else 0.0)
        self.drop = nn.Dropout(args.dropout)
        self.head = nn.Linear(args.hidden_size * (2 if args.bidirectional else 1), num_outputs)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if self.embedding is None:
            _, state = self.cell(inputs.view(len(inputs), *self.sequence_shape))
        else:  # packed: each sequence's last state is at its own end, not after the padding
            lengths = (inputs != self.pad_id).sum(dim=1).clamp(min=1).cpu()
            packed = pack_padded_sequence(self.embedding(inputs), lengths, batch_first=True, enforce_sorted=False)
            _, state = self.cell(packed)
        hidden = state[0] if isinstance(state, tuple) else state  # an LSTM's (h, c); a GRU's h
        directions = 2 if self.cell.bidirectional else 1
        last = hidden[-directions:].transpose(0, 1).reshape(len(inputs), -1)  # the top layer, every direction
        return self.head(self.drop(last))
