"""What a language model writes, to read beside its perplexity: at every epoch end, greedy
continuations of the first tokens of a few validation blocks (W&B table `val/samples`)."""

import torch

from rayspeed.datasets.tokenizing import Tokenizer

SAMPLES = 3
PROMPT_TOKENS = 16
NEW_TOKENS = 32


def first_prompts(iterator, *, device) -> torch.Tensor:
    """The first tokens of the first validation blocks this rank reads (kept for the whole run, so
    every epoch continues the same prompts)."""
    batch = next(iter(iterator.iter_torch_batches(batch_size=SAMPLES, device=device)))
    return batch["features"][:SAMPLES, :PROMPT_TOKENS].long()


@torch.no_grad()
def continuations(engine, prompts: torch.Tensor, *, context: int, tokenizer: Tokenizer) -> list[dict]:
    """Every rank runs the same number of forwards (ZeRO-3 gathers the weights in each of them)."""
    engine.eval()
    ids = prompts
    for _ in range(NEW_TOKENS):
        logits = engine(ids[:, -context:])
        ids = torch.cat([ids, logits[:, -1].argmax(dim=-1, keepdim=True)], dim=1)
    engine.train()
    return [{"prompt": tokenizer.decode(prompt.tolist()), "continuation": tokenizer.decode(written.tolist())}
            for prompt, written in zip(prompts.cpu(), ids[:, prompts.shape[1]:].cpu(), strict=True)]
