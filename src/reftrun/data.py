"""Tokenise examples and collate padded batches with their intervention positions.

Training batches are right-padded with labels only on target tokens; generation batches are
left-padded. Either way positions are computed after padding from each row's prompt length.
"""
import random

import torch

from .positions import batch_positions
from .tasks import Example


def encode_train(tokenizer, examples: list[Example], max_length: int, keep_full_prompts: bool = False) -> list[dict]:
    """Prompt and prompt+target+EOS are tokenised separately, as pyreft does; labels mask the prompt.

    A prompt that fills max_length leaves no target token. Such rows are dropped and counted; with
    `keep_full_prompts` (compat=pyreft) they are kept, as pyreft keeps them: they add no loss term."""
    encoded, too_long = [], 0
    for ex in examples:
        prompt = tokenizer(ex.prompt, truncation=True, max_length=max_length)["input_ids"]
        full = tokenizer(ex.prompt + ex.target + tokenizer.eos_token, truncation=True, max_length=max_length)["input_ids"]
        if len(prompt) >= len(full):
            too_long += 1
            if not keep_full_prompts:
                continue
        encoded.append({"input_ids": full, "labels": [-100] * len(prompt) + full[len(prompt):],
                        "prompt_length": min(len(prompt), len(full))})
    if too_long:
        what = "kept (as pyreft; no target token)" if keep_full_prompts else "skipped"
        print(f"[reftrun] {what} {too_long} training example(s) whose prompt fills max_length={max_length}")
    if not any(-100 != l for r in encoded for l in r["labels"]):
        raise ValueError(f"max_length {max_length} is shorter than every training prompt; raise max_length")
    return encoded


def encode_classify(tokenizer, examples: list[Example], max_length: int) -> list[dict]:
    """Sentence or sentence pair, truncated to max_length; positions count over the whole input (prefix ones:
    the first tokens, which the classification head reads)."""
    rows = []
    for ex in examples:
        ids = tokenizer(ex.prompt, ex.meta.get("pair"), truncation=True, max_length=max_length)["input_ids"]
        rows.append({"input_ids": ids, "label": ex.meta["label"], "prompt_length": len(ids)})
    return rows


def encode_prompts(tokenizer, examples: list[Example], max_length: int) -> list[list[int]]:
    ids = [tokenizer(ex.prompt)["input_ids"] for ex in examples]
    longest = max((len(x) for x in ids), default=0)
    if longest > max_length:
        raise ValueError(f"an eval prompt has {longest} tokens, more than max_length={max_length}; raise max_length")
    return ids


class Collator:
    """Pads batches and computes their intervention positions from the ReftSpec (none for `spec=None`: methods
    that edit no positions).

    With `spec.sink_token` (compat=pyreft) every sequence starts with one masked pad token, as pyreft's
    datasets prepend it; positions shift by one and real tokens keep their relative positions."""

    def __init__(self, pad_id: int, spec=None):
        self.pad_id, self.spec = pad_id, spec
        self.sink = [pad_id] if spec is not None and spec.sink_token else []

    def _positions(self, lengths, offsets) -> dict:
        if self.spec is None:
            return {}
        positions, mask = batch_positions(self.spec.positions, self.spec.share_weights, lengths,
                                          [o + len(self.sink) for o in offsets], self.spec.pyreft_clipping)
        return {"positions": positions, "position_mask": mask}

    def train(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        """Right padding; positions start at each row's first prompt token."""
        ids = [self.sink + r["input_ids"] for r in rows]
        labels = [[-100] * len(self.sink) + r["labels"] for r in rows]
        width = max(map(len, ids))
        pad = [width - len(x) for x in ids]
        return {
            "input_ids": torch.tensor([x + [self.pad_id] * p for x, p in zip(ids, pad)]),
            "attention_mask": torch.tensor([[0] * len(self.sink) + [1] * (len(x) - len(self.sink)) + [0] * p
                                            for x, p in zip(ids, pad)]),
            "labels": torch.tensor([l + [-100] * p for l, p in zip(labels, pad)]),
            **self._positions([r["prompt_length"] for r in rows], [0] * len(rows)),
        }

    def classify(self, rows: list[dict], regression: bool = False) -> dict[str, torch.Tensor]:
        """Right padding, one label per row (a float for regression)."""
        batch = self.train([{**r, "labels": [-100] * len(r["input_ids"])} for r in rows])
        batch["labels"] = torch.tensor([r["label"] for r in rows], dtype=torch.float if regression else torch.long)
        return batch

    def prompts(self, prompts: list[list[int]]) -> dict[str, torch.Tensor]:
        """Left padding for generation; positions shift by each row's pad count."""
        width = max(len(p) for p in prompts) + len(self.sink)
        pad = [width - len(p) - len(self.sink) for p in prompts]
        return {
            "input_ids": torch.tensor([[self.pad_id] * (n + len(self.sink)) + p for p, n in zip(prompts, pad)]),
            "attention_mask": torch.tensor([[0] * (n + len(self.sink)) + [1] * len(p) for p, n in zip(prompts, pad)]),
            **self._positions([len(p) for p in prompts], pad),
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
