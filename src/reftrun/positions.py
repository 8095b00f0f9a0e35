"""Which prompt tokens an intervention edits: the paper's `f<p>+l<s>` notation, clipping, groups.

Positions are computed per example in the collator, after padding, as a [batch, groups, slots] index
tensor plus a validity mask: no sink token, and the same code serves right padding (training) and
left padding (generation). Facts: docs/reference/pyreft_behaviour.md §2.3, docs/reference/paper_results.md §5.0.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

_SPEC = re.compile(r"^(?:f(\d+))?(?:\+?l(\d+))?$")


@dataclass(frozen=True)
class PositionSpec:
    first: int  # p: number of leading prompt tokens
    last: int   # s: number of trailing prompt tokens

    @classmethod
    def parse(cls, text: str) -> "PositionSpec":
        """'f7+l7' → (7, 7); 'f3' → (3, 0); 'l1' → (0, 1)."""
        m = _SPEC.match(str(text).strip())
        ok = m and (m.group(1) or m.group(2)) and (("+" in text) == bool(m.group(1) and m.group(2)))
        spec = cls(int(m.group(1) or 0), int(m.group(2) or 0)) if ok else None
        if spec is None or spec.first + spec.last == 0:
            raise ValueError(f"positions {text!r} is malformed; valid: f<p>+l<s>, f<p> or l<s> with p, s ≥ 0 "
                             "and at least one positive (e.g. f7+l7, f1, l1)")
        return spec

    def __str__(self) -> str:
        return "+".join(([f"f{self.first}"] if self.first else []) + ([f"l{self.last}"] if self.last else []))

    def groups(self, share_weights: bool) -> list[str]:
        """Intervention groups per layer: one when tied or one-sided, else prefix and suffix (pyreft counts)."""
        if share_weights or not (self.first and self.last):
            return ["all"]
        return ["prefix", "suffix"]

    def slots(self, share_weights: bool) -> list[int]:
        groups = self.groups(share_weights)
        if groups == ["all"]:
            return [self.first + self.last]
        return [self.first, self.last]

    def prompt_positions(self, n: int, share_weights: bool, pyreft_clipping: bool = False) -> list[list[int]]:
        """Per group, the edited prompt indices of an n-token prompt; -1 marks an unused slot.

        Short prompts are clipped by the paper's rule (§4.1): only when n < p+s, p ← min(p, ⌊n/2⌋) and
        s ← min(s, ⌈n/2⌉), one-sided specs included; pyreft's code always uses ⌊n/2⌋ for both (`pyreft_clipping`).
        They differ for n ≥ p+s (f3+l5, n=8: suffix 3..7 here, 4..7 in pyreft) and for odd n."""
        if pyreft_clipping:
            first, last = min(self.first, n // 2), min(self.last, n // 2)
        elif n < self.first + self.last:
            first, last = min(self.first, n // 2), min(self.last, (n + 1) // 2)
        else:
            first, last = self.first, self.last
        prefix = list(range(first)) + [-1] * (self.first - first)
        suffix = list(range(n - last, n)) + [-1] * (self.last - last)
        if self.groups(share_weights) == ["all"]:
            return [prefix + suffix]
        return [prefix, suffix]


def batch_positions(spec: PositionSpec, share_weights: bool, prompt_lengths: list[int],
                    offsets: list[int], pyreft_clipping: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Absolute positions [B, G, P] and validity mask [B, G, P] for a padded batch.

    offsets[i] is where row i's prompt starts: 0 with right padding, the pad count with left padding."""
    import torch  # here, so that configs and tables that parse positions never load torch
    widths = spec.slots(share_weights)
    width = max(widths)
    rows, masks = [], []
    for n, offset in zip(prompt_lengths, offsets):
        groups = spec.prompt_positions(n, share_weights, pyreft_clipping)
        groups = [g + [-1] * (width - len(g)) for g in groups]
        rows.append([[offset + p if p >= 0 else 0 for p in g] for g in groups])
        masks.append([[p >= 0 for p in g] for g in groups])
    return torch.tensor(rows, dtype=torch.long), torch.tensor(masks, dtype=torch.bool)
