"""Batched greedy evaluation: generate, extract, score, write per-example predictions.

Prompts are sorted by length and left-padded; every method runs the same batches (ReFT edits the prompt on
the prefill only). `method=None` scores the untouched base model (the "before" column of the results table).
"""
from collections import Counter
from contextlib import nullcontext
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .data import Collator, encode_classify, encode_prompts
from .metrics import with_average
from .runio import write_json, write_jsonl
from .tasks import Task


def running(method, model, batch: dict, generating: bool = False):
    return method.active(model, batch, generating) if method is not None else nullcontext()


def generate_batch(model, tok, method, batch: dict, device: str, max_new_tokens: int | None,
                   decoding: dict) -> list[str]:
    """Greedy unless `decoding` says otherwise. A task may bound generations by `max_length` (all tokens, as
    pyreft's instruction tasks); an explicit max_new_tokens takes precedence."""
    kw = dict(do_sample=False, num_beams=1, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    kw.update(decoding)
    if max_new_tokens is not None:
        kw.pop("max_length", None)
        kw["max_new_tokens"] = max_new_tokens
    batch = {k: v.to(device) for k, v in batch.items()}
    ids = batch["input_ids"]
    with torch.no_grad(), running(method, model, batch, generating=True):
        out = model.generate(input_ids=ids, attention_mask=batch["attention_mask"], **kw)
    return tok.batch_decode(out[:, ids.shape[1]:], skip_special_tokens=True)


def generate_set(model, tok, method, task: Task, eval_set: str, collator: Collator, device: str,
                 batch_size: int, max_length: int, max_examples: int | None = None,
                 max_new_tokens: int | None = None, decoding: dict | None = None,
                 desc: str = "") -> tuple[dict, list[dict], list]:
    examples = task.eval_examples(eval_set)[:max_examples]
    decoding = {**task.decoding, **(decoding or {})}
    prompts = encode_prompts(tok, examples, max_length)
    order = sorted(range(len(examples)), key=lambda i: -len(prompts[i]))  # longest first: memory peak up front
    generations: dict[int, str] = {}
    for start in tqdm(range(0, len(order), batch_size), desc=desc or eval_set, leave=False):
        idx = order[start:start + batch_size]
        batch = collator.prompts([prompts[i] for i in idx])
        texts = generate_batch(model, tok, method, batch, device, max_new_tokens, decoding)
        generations.update(zip(idx, texts))
    rows = []
    for i, ex in enumerate(examples):
        extracted = task.extract(generations[i], ex.gold)
        correct = task.score(extracted, ex.gold)
        rows.append({"id": ex.id, "prompt": ex.prompt, "generation": generations[i], "extracted": extracted,
                     "filter": task.filter, "gold": ex.gold, "correct": None if correct is None else bool(correct)})
    n = len(rows)
    scored = [r["correct"] for r in rows if r["correct"] is not None]
    golds = Counter(r["gold"] for r in rows)
    metrics = {"accuracy": sum(scored) / len(scored) if scored else None, "n": n,
               "majority": max(golds.values()) / n if scored else None,
               "predicted": dict(Counter(r["extracted"][:40] for r in rows).most_common(5))}
    if examples and scored:
        metrics.update(task.baselines(eval_set, examples))
    return metrics, rows, examples


@torch.no_grad()
def classify_set(model, tok, method, task: Task, eval_set: str, collator: Collator, device: str,
                 batch_size: int, max_length: int, max_examples: int | None = None, max_new_tokens=None,
                 decoding=None, desc: str = "") -> tuple[dict, list[dict], list]:
    """Batched classification: argmax of the head (its value for regression), scored by the task's metric."""
    examples = task.eval_examples(eval_set)[:max_examples]
    rows = encode_classify(tok, examples, max_length)
    regression = task.num_labels == 1
    predictions = []
    for start in range(0, len(rows), batch_size):
        batch = {k: v.to(device) for k, v in collator.classify(rows[start:start + batch_size], regression).items()}
        with running(method, model, batch):
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
        predictions += (logits.squeeze(-1) if regression else logits.argmax(-1)).tolist()
    out = [{"id": ex.id, "prompt": ex.prompt, "pair": ex.meta.get("pair"), "prediction": p, "gold": ex.meta["label"],
            "correct": None if regression else p == ex.meta["label"]} for ex, p in zip(examples, predictions)]
    labels = Counter(ex.meta["label"] for ex in examples)
    metrics = {"score": task.score_all(predictions, examples), "metric": task.metric, "n": len(examples),
               "majority": None if regression or not examples else max(labels.values()) / len(examples)}
    return metrics, out, examples


def evaluate(model, tok, method, objective, sets: list[str], collator: Collator, device: str, run_dir: Path,
             stage: str, batch_size: int, max_length: int, max_examples: int | None = None,
             max_new_tokens: int | None = None, decoding: dict | None = None) -> dict:
    """Score every set, write predictions/<stage>/<set>.jsonl, return {set: metrics, 'average': ...}.
    The model and the method are in eval mode here; the caller restores training mode."""
    task, results = objective.task, {}
    for eval_set in sets:
        torch.manual_seed(0)  # sampling presets decode reproducibly
        metrics, rows, examples = objective.score_set(model, tok, method, task, eval_set, collator, device, batch_size,
                                                      max_length, max_examples, max_new_tokens, decoding,
                                                      desc=f"eval {stage} {eval_set}")
        write_jsonl(Path(run_dir) / "predictions" / stage / f"{eval_set}.jsonl", rows)
        if stage != "before":
            files = {}
            for name, data in task.outputs(eval_set, rows, examples, Path(run_dir).name).items():
                files[name] = Path(run_dir) / name
                write_json(files[name], data)
            metrics.update(task.judge(files, Path(run_dir) / "judge", Path(run_dir).name))
        results[eval_set] = metrics
    return with_average(results, task.metric)
