"""The training loop: one file, every intervention and task.

Phases in order: build (task, model, interventions), data, optimizer, evaluate before, loop, save,
evaluate after. The base model is frozen; AdamW sees only intervention parameters. The loss is the
mean cross-entropy over all target tokens of an optimizer step (micro-batches and ranks summed).
"""
import contextlib
import json
import math
import os
import random
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .config import ConfigError, RunConfig
from .data import Collator, encode_train, train_batches
from .evaluate import evaluate
from .models import base_parameters, load_model, model_shape, pick_device
from .reft import Reft, ReftSpec, find_layers, parse_layers
from .runio import merge_metrics, save_reft, write_json
from .tasks import Task, get_task

FAST_LOSS_TYPES = {"llama", "mistral", "qwen2", "qwen3", "gemma", "gpt2", "gpt_neox", "olmo", "olmo2", "phi3", "smollm3"}


def set_seed(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def build_task(run: RunConfig) -> tuple[Task, list[str]]:
    task = get_task(run.task.name, data_dir=run.task.data_dir, seed=run.task.split_seed, **run.task.options)
    sets = run.eval.sets or run.task.eval_sets or list(task.eval_sets)
    bad = [s for s in sets if s not in task.eval_sets]
    if bad:
        raise ConfigError(f"unknown eval set {bad[0]!r} for task {task.name}; valid: {', '.join(task.eval_sets)}")
    return task, sets


def build_spec(run: RunConfig, hidden_size: int, num_layers: int) -> ReftSpec:
    try:
        layers = parse_layers(run.layers, num_layers)
    except ValueError as e:
        raise ConfigError(str(e))
    if run.rank > hidden_size:
        raise ConfigError(f"rank {run.rank} exceeds the model's hidden size {hidden_size}; valid: 1..{hidden_size}")
    pyreft = run.compat == "pyreft"
    return ReftSpec(intervention=run.intervention.type, rank=run.rank, layers=layers, positions=run.positions,
                    share_weights=run.share_weights, hidden_size=hidden_size, dtype=run.intervention.dtype,
                    dropout=run.intervention.dropout, act_fn=run.intervention.act_fn,
                    base_model=run.model.name_or_path, dropout_whole_output=pyreft, pyreft_clipping=pyreft)


def target_loss(model, batch: dict) -> torch.Tensor:
    """Summed cross-entropy over target tokens. For known architectures the LM head runs on target
    positions only (a fraction of the sequence), which saves its time and memory."""
    labels = batch["labels"][:, 1:]
    keep = labels != -100
    if model.config.model_type in FAST_LOSS_TYPES and not getattr(model.config, "final_logit_softcapping", None):
        hidden = model.base_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        logits = model.get_output_embeddings()(hidden[:, :-1][keep])
    else:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1][keep]
    return torch.nn.functional.cross_entropy(logits.float(), labels[keep], reduction="sum")


def make_optimizer(reft: Reft, run: RunConfig, total_steps: int):
    decay, no_decay = [], []
    for name, p in reft.named_parameters():
        (no_decay if "rotation" in name else decay).append(p)  # R's chart coordinates are never decayed
    wd = 0.0 if run.compat == "pyreft" else run.optim.weight_decay  # pyreft never decays intervention params
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=run.optim.lr, betas=(0.9, 0.999), eps=1e-8)
    warmup = int(math.ceil(run.optim.warmup_ratio * total_steps))
    def linear(step: int) -> float:  # HF's linear schedule with warmup
        if step < warmup:
            return step / max(1, warmup)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, linear)


def train(run: RunConfig, run_dir: Path, resolved_config: dict) -> dict:
    run_dir = Path(run_dir)
    task, sets = build_task(run)
    spec = build_spec(run, *model_shape(run.model.name_or_path, run.model.trust_remote_code))  # fails before weights load
    if run.dry_run:
        n_params, n_base = Reft(spec).num_parameters(), base_parameters(run.model.name_or_path, run.model.trust_remote_code)
        print(f"[reftrun] trainable intervention parameters: {n_params:,} ({100 * n_params / n_base:.4f}% of {n_base:,})")
        return {"num_parameters": n_params, "base_parameters": n_base}
    set_seed(run.seed)
    model, tok, device = load_model(run.model.name_or_path, run.model.dtype, pick_device(run.device),
                                    run.model.max_length, run.model.trust_remote_code)
    find_layers(model)  # an unsupported architecture fails here, naming the paths it tried
    torch.manual_seed(run.seed)
    reft = Reft(spec).to(device)
    n_params, n_base = reft.num_parameters(), sum(p.numel() for p in model.parameters())
    print(f"[reftrun] trainable intervention parameters: {n_params:,} ({100 * n_params / n_base:.4f}% of {n_base:,})")

    collator = Collator(tok.pad_token_id, spec.position_spec, spec.share_weights, spec.pyreft_clipping)
    examples = task.train_examples()[:run.task.max_train_examples]
    rows = encode_train(tok, examples, run.model.max_length)
    o = run.optim
    steps_per_epoch = math.ceil(math.ceil(len(rows) / o.batch_size) / o.grad_accum)
    total_steps = o.max_steps if o.max_steps > 0 else max(1, int(math.ceil(steps_per_epoch * o.epochs)))
    opt, sched = make_optimizer(reft, run, total_steps)

    logger = None
    if run.logger == "wandb":
        import wandb
        logger = wandb.init(project=run.wandb.get("project", "reftrun"), name=run_dir.name, dir=str(run_dir),
                            config=resolved_config, mode=os.environ.get("WANDB_MODE", run.wandb.get("mode")))
    write_json(run_dir / "run.json", {"status": "running", "num_parameters": n_params, "base_parameters": n_base,
                                      "train_examples": len(rows), "total_steps": total_steps})
    evaluate_kw = dict(batch_size=run.eval.batch_size, max_length=run.model.max_length,
                       max_examples=run.eval.max_examples, max_new_tokens=run.task.max_new_tokens)
    if run.eval.before:
        before = evaluate(model, tok, None, task, sets, collator, device, run_dir, "before", **evaluate_kw)
        merge_metrics(run_dir, {"before": before})

    cuda_amp = run.autocast is not None and device == "cuda"
    amp = lambda: torch.autocast("cuda", dtype=getattr(torch, run.autocast)) if cuda_amp else contextlib.nullcontext()
    scaler = torch.amp.GradScaler("cuda", enabled=cuda_amp and run.autocast == "float16")
    reft.train()
    def micro_batches():
        epoch = 0
        while True:
            yield from train_batches(rows, o.batch_size, run.seed, epoch, o.group_by_length)
            epoch += 1
    batches = micro_batches()
    log_path = run_dir / "train_log.jsonl"
    log_path.unlink(missing_ok=True)
    bar = tqdm(range(total_steps), desc="train")
    started = time.perf_counter()
    tokens_seen = 0
    for step in bar:
        group = [collator.train(next(batches)) for _ in range(o.grad_accum)]
        n_targets = sum(int((b["labels"][:, 1:] != -100).sum()) for b in group)
        loss_value = 0.0
        for batch in group:
            batch = {k: v.to(device) for k, v in batch.items()}
            with amp(), reft.attached(model, batch["positions"], batch["position_mask"]):
                loss_sum = target_loss(model, batch)
            scaler.scale(loss_sum / n_targets).backward()
            loss_value += loss_sum.item() / n_targets
            tokens_seen += int(batch["attention_mask"].sum())
        if not math.isfinite(loss_value):
            raise FloatingPointError(f"loss became {loss_value} at step {step + 1}; lower optim.lr or check the data")
        scaler.unscale_(opt)
        grad_norm = torch.nn.utils.clip_grad_norm_(reft.parameters(), o.max_grad_norm)
        scaler.step(opt)
        scaler.update()
        sched.step()
        opt.zero_grad(set_to_none=True)
        elapsed = time.perf_counter() - started
        record = {"step": step + 1, "loss": loss_value, "lr": sched.get_last_lr()[0], "grad_norm": float(grad_norm),
                  "tokens_per_s": tokens_seen / elapsed, "elapsed_s": elapsed}
        bar.set_postfix(loss=f"{loss_value:.4f}", lr=f"{record['lr']:.2e}", tok_s=f"{record['tokens_per_s']:.0f}")
        if (step + 1) % run.log_every == 0 or step + 1 == total_steps:
            with open(log_path, "a") as f:
                f.write(json.dumps(record) + "\n")
            if logger is not None:
                logger.log({f"train/{k}": v for k, v in record.items() if k != "step"}, step=step + 1)
    train_seconds = time.perf_counter() - started
    reft.eval()
    save_reft(reft, run_dir)

    after = evaluate(model, tok, reft, task, sets, collator, device, run_dir, "after", **evaluate_kw)
    metrics = merge_metrics(run_dir, {"after": after, "train": {"steps": total_steps, "seconds": train_seconds,
                                                                "final_loss": loss_value, "num_parameters": n_params}})
    write_json(run_dir / "run.json", {"status": "done", "num_parameters": n_params, "base_parameters": n_base,
                                      "train_examples": len(rows), "total_steps": total_steps})
    if logger is not None:
        logger.log({f"eval/{s}": m["accuracy"] for s, m in after.items() if "accuracy" in m})
        logger.finish()
    return metrics
