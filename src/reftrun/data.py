"""Tokenise examples and collate padded batches with their intervention positions.

Training batches are right-padded with labels only on target tokens; generation batches are
left-padded. Either way positions are computed after padding from each row's prompt length.
"""
import random

import torch

from .positions import PositionSpec, batch_positions
from .tasks import Example


def encode_train(tokenizer, examples: list[Example], max_length: int) -> list[dict]:
    """Prompt and prompt+target+EOS are tokenised separately, as pyreft does; labels mask the prompt."""
    encoded, too_long = [], 0
    for ex in examples:
        prompt = tokenizer(ex.prompt, truncation=True, max_length=max_length)["input_ids"]
        full = tokenizer(ex.prompt + ex.target + tokenizer.eos_token, truncation=True, max_length=max_length)["input_ids"]
        if len(prompt) >= len(full):
            too_long += 1
            continue
        encoded.append({"input_ids": full, "labels": [-100] * len(prompt) + full[len(prompt):],
                        "prompt_length": len(prompt)})
    if not encoded:
        raise ValueError(f"max_length {max_length} is shorter than every training prompt; raise max_length")
    if too_long:
        print(f"[reftrun] skipped {too_long} training example(s) whose prompt fills max_length={max_length}")
    return encoded


def encode_prompts(tokenizer, examples: list[Example], max_length: int) -> list[list[int]]:
    ids = [tokenizer(ex.prompt)["input_ids"] for ex in examples]
    longest = max((len(x) for x in ids), default=0)
    if longest > max_length:
        raise ValueError(f"an eval prompt has {longest} tokens, more than max_length={max_length}; raise max_length")
    return ids


class Collator:
    def __init__(self, pad_id: int, spec: PositionSpec, share_weights: bool, pyreft_clipping: bool = False):
        self.pad_id, self.spec, self.share_weights, self.pyreft_clipping = pad_id, spec, share_weights, pyreft_clipping

    def _positions(self, lengths, offsets):
        return batch_positions(self.spec, self.share_weights, lengths, offsets, self.pyreft_clipping)

    def train(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        """Right padding; positions start at each row's first token."""
        width = max(len(r["input_ids"]) for r in rows)
        pad = [width - len(r["input_ids"]) for r in rows]
        positions, mask = self._positions([r["prompt_length"] for r in rows], [0] * len(rows))
        return {
            "input_ids": torch.tensor([r["input_ids"] + [self.pad_id] * p for r, p in zip(rows, pad)]),
            "attention_mask": torch.tensor([[1] * len(r["input_ids"]) + [0] * p for r, p in zip(rows, pad)]),
            "labels": torch.tensor([r["labels"] + [-100] * p for r, p in zip(rows, pad)]),
            "positions": positions, "position_mask": mask,
        }

    def prompts(self, prompts: list[list[int]]) -> dict[str, torch.Tensor]:
        """Left padding for generation; positions shift by each row's pad count."""
        width = max(len(p) for p in prompts)
        pad = [width - len(p) for p in prompts]
        positions, mask = self._positions([len(p) for p in prompts], pad)
        return {
            "input_ids": torch.tensor([[self.pad_id] * n + p for p, n in zip(prompts, pad)]),
            "attention_mask": torch.tensor([[0] * n + [1] * len(p) for p, n in zip(prompts, pad)]),
            "positions": positions, "position_mask": mask,
        }


def train_batches(rows: list[dict], batch_size: int, seed: int, epoch: int, group_by_length: bool = True):
    """Shuffled batches; with `group_by_length`, rows are sorted by length within windows of 50 batches
    (much less padding) and the batches are shuffled again, so the order stays random."""
    rng = random.Random(seed * 100_003 + epoch)
    order = list(range(len(rows)))
    rng.shuffle(order)
    if group_by_length:
        window = batch_size * 50
        order = [i for s in range(0, len(order), window)
                 for i in sorted(order[s:s + window], key=lambda i: len(rows[i]["input_ids"]))]
    batches = [order[s:s + batch_size] for s in range(0, len(order), batch_size)]
    if group_by_length:
        rng.shuffle(batches)
    return [[rows[i] for i in b] for b in batches]
