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
import signal
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf
from tqdm.auto import tqdm

from . import distributed
from .checkpoint import load_checkpoint, remove_checkpoint, save_checkpoint
from .config import ConfigError, RunConfig
from .curves import draw_curves
from .data import Collator, encode_classify, encode_prompts, encode_train, train_batches
from .evaluate import classify_set, evaluate
from .loss import classification_loss, target_loss
from .models import base_parameters, classifier_head, enable_gradient_checkpointing, load_model, load_tokenizer, model_shape, pick_device
from .reft import Reft, ReftSpec, find_layers, parse_layers
from .runio import atomic_write, merge_metrics, read_json, save_reft, write_json
from .tasks import Task, get_task

@contextlib.contextmanager
def preserved_rng():
    """Evaluation inside training must not shift the RNG stream (resumed runs skip it)."""
    state = torch.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
    try:
        yield
    finally:
        torch.set_rng_state(state)
        if cuda:
            torch.cuda.set_rng_state_all(cuda)


def logged_step(line: str) -> float:
    """The step of a train_log line; a line cut short by a kill counts as past any checkpoint."""
    try:
        return json.loads(line)["step"]
    except (ValueError, KeyError):
        return math.inf


def report_parameters(n_params: int, n_base: int) -> None:
    print(f"[reftrun] trainable intervention parameters: {n_params:,} ({100 * n_params / n_base:.4f}% of {n_base:,})")


def set_seed(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def build_task(run: RunConfig) -> tuple[Task, list[str]]:
    task = get_task(run.task.name, data_dir=run.task.data_dir, seed=run.task.split_seed, compat=run.compat,
                    **run.task.options)
    sets = run.eval.sets or run.task.eval_sets or list(task.default_eval_sets or task.eval_sets)
    bad = [s for s in sets if s not in task.eval_sets]
    if bad:
        raise ConfigError(f"unknown eval set {bad[0]!r} for task {task.name}; valid: {', '.join(task.eval_sets)}")
    return task, sets


def build_spec(run: RunConfig, hidden_size: int, num_layers: int, classify: bool = False) -> ReftSpec:
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
                    base_model=run.model.name_or_path, dropout_whole_output=pyreft, pyreft_clipping=pyreft,
                    sink_token=pyreft and not classify)  # pyreft's GLUE data has no leading sink: the head reads token 0


def choose_epoch(model, tok, reft, head, task, collator, device, run: RunConfig, epoch: int, best: dict | None):
    """Score an epoch on validation_tune; return the best so far (with copies of its weights)."""
    model.eval()
    with preserved_rng():
        metrics, _, _ = classify_set(model, tok, reft, task, "validation_tune", collator, device, run.eval.batch_size,
                                     run.model.max_length)
    reft.train()
    model.train()
    print(f"[reftrun] epoch {epoch}: {task.metric} {metrics['score']:.4f} on validation_tune")
    if best is not None and not metrics["score"] > best["score"]:
        return best
    return {"epoch": epoch, "score": metrics["score"],
            "reft": {k: v.detach().clone() for k, v in reft.state_dict().items()},
            "head": {k: p.detach().clone() for k, p in head.items()}}


def make_optimizer(reft: Reft, run: RunConfig, total_steps: int, head: list | None = None):
    decay, no_decay = [], []
    for name, p in reft.named_parameters():
        (no_decay if "rotation" in name else decay).append(p)  # R's chart coordinates are never decayed
    wd = 0.0 if run.compat == "pyreft" else run.optim.weight_decay  # pyreft never decays intervention params
    groups = [{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0},
              {"params": list(head or []), "weight_decay": run.optim.weight_decay}]  # a classifier head: always
    opt = torch.optim.AdamW([g for g in groups if g["params"]], lr=run.optim.lr, betas=(0.9, 0.999), eps=1e-8)
    warmup = int(math.ceil(run.optim.warmup_ratio * total_steps))
    def linear(step: int) -> float:  # HF's linear schedule with warmup
        if step < warmup:
            return step / max(1, warmup)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, linear)


class Preempted(Exception):
    """SIGTERM (SLURM preemption) or SIGINT (Ctrl-C) arrived: the training so far is in the checkpoint and
    re-running the command resumes. `code` is the shell's exit status for that signal (143, 130)."""

    def __init__(self, signum: int, message: str):
        super().__init__(f"{signal.Signals(signum).name} {message}")
        self.code = 128 + signum


def train(run: RunConfig, run_dir: Path, resolved_config: dict) -> dict:
    """SIGTERM and SIGINT: inside the training loop the step finishes and a checkpoint is written; elsewhere the
    checkpoint on disk already holds the training (it is kept until the run is done), so the run stops at once."""
    stop = {"signal": None, "in_loop": False, "step": 0, "total": None, "status": None}

    def on_signal(num, frame):
        stop["signal"] = num
        if stop["in_loop"]:
            return
        if stop["status"] is not None:
            write_json(Path(run_dir) / "run.json", {**stop["status"], "status": "interrupted", "step": stop["step"]})
        where = "during the final evaluation" if stop["step"] == stop["total"] else f"at step {stop['step']}"
        raise Preempted(num, f"{where}: the training so far is kept in {run_dir}; re-run the same command to resume")
    previous = {num: signal.signal(num, on_signal) for num in (signal.SIGTERM, signal.SIGINT)}
    try:
        return _train(run, Path(run_dir), resolved_config, stop)
    finally:
        for num, handler in previous.items():
            signal.signal(num, handler)


def _train(run: RunConfig, run_dir: Path, resolved_config: dict, stop: dict) -> dict:
    task, sets = build_task(run)
    classify = getattr(task, "kind", "generate") == "classify"
    spec = build_spec(run, *model_shape(run.model.name_or_path, run.model.trust_remote_code, run.model.architecture),
                      classify)
    num_labels = task.num_labels if classify else None
    if run.dry_run:
        n_params = Reft(spec).num_parameters()
        n_base = base_parameters(run.model.name_or_path, run.model.trust_remote_code, num_labels, run.model.architecture)
        report_parameters(n_params, n_base)
        return {"num_parameters": n_params, "base_parameters": n_base}
    rank, world = distributed.setup()
    main = rank == 0
    # Everything that can fail on bad input happens before the weights load and before any file is written.
    examples = task.train_examples()[:run.task.max_train_examples]
    if not examples:
        raise ValueError(f"task {task.name} has no training examples (task.max_train_examples={run.task.max_train_examples})")
    tok = load_tokenizer(run.model.name_or_path, run.model.max_length, run.model.trust_remote_code,
                         run.model.use_fast_tokenizer)
    for eval_set in sets:  # an eval prompt too long for max_length fails now, not after training
        eval_examples = task.eval_examples(eval_set)[:run.eval.max_examples]
        if not classify:
            encode_prompts(tok, eval_examples, run.model.max_length)
    rows = (encode_classify(tok, examples, run.model.max_length) if classify else
            encode_train(tok, examples, run.model.max_length, keep_full_prompts=run.compat == "pyreft"))
    if main:
        atomic_write(run_dir / "config.yaml", OmegaConf.to_yaml(OmegaConf.create(resolved_config)))
    set_seed(run.seed)
    model, device = load_model(run.model.name_or_path, run.model.dtype,
                               distributed.device_for_rank(pick_device(run.device)), run.model.trust_remote_code,
                               run.model.device_map, num_labels)
    head = classifier_head(model) if classify else {}  # GLUE: the new head trains beside the interventions
    layers = find_layers(model)  # an unsupported architecture fails here, naming the paths it tried
    if run.model.gradient_checkpointing:
        enable_gradient_checkpointing(model, layers)
    torch.manual_seed(run.seed)
    reft = Reft(spec).to(device)
    n_params, n_base = reft.num_parameters(), sum(p.numel() for p in model.parameters())
    if main:
        report_parameters(n_params, n_base)
    collator = Collator(tok.pad_token_id, spec)
    o = run.optim
    per_step = o.grad_accum * world  # micro-batches in one optimizer step, over all ranks
    steps_per_epoch = math.ceil(math.ceil(len(rows) / o.batch_size) / per_step)
    total_steps = o.max_steps if o.max_steps > 0 else max(1, int(math.ceil(steps_per_epoch * o.epochs)))
    opt, sched = make_optimizer(reft, run, total_steps, list(head.values()))
    cuda_amp = run.autocast is not None and device.startswith("cuda")
    amp = lambda: torch.autocast("cuda", dtype=getattr(torch, run.autocast)) if cuda_amp else contextlib.nullcontext()
    scaler = torch.amp.GradScaler("cuda", enabled=cuda_amp and run.autocast == "float16")
    resumed = load_checkpoint(run_dir, reft, head, opt, sched, scaler)  # restores RNG states too: nothing random after
    best = resumed["extra"].get("best") if resumed else None  # classification: the best epoch so far
    start = resumed["step"] if resumed else 0
    loss_value, last_saved = resumed["extra"]["loss"] if resumed else float("nan"), start
    stop.update(step=start, total=total_steps)
    status = {"num_parameters": n_params, "base_parameters": n_base, "train_examples": len(rows),
              "total_steps": total_steps, "world_size": world}
    logger = None
    if main:
        if resumed:
            print(f"[reftrun] resuming {run_dir} from the checkpoint at step {start}/{total_steps}")
        write_json(run_dir / "run.json", {**status, "status": "running"})
        stop["status"] = status
        if run.logger == "wandb":
            import wandb
            logger = wandb.init(project=run.wandb.get("project", "reftrun"), name=run_dir.name, dir=str(run_dir),
                                config=resolved_config, mode=os.environ.get("WANDB_MODE", run.wandb.get("mode")),
                                id=run_dir.name.replace("+", "-")[:64], resume="allow")
    evaluate_kw = dict(batch_size=run.eval.batch_size, max_length=run.model.max_length,
                       max_examples=run.eval.max_examples, max_new_tokens=run.task.max_new_tokens,
                       decoding=run.decoding)
    metrics_path = run_dir / "metrics.json"
    if main and run.eval.before and not (metrics_path.exists() and "before" in read_json(metrics_path)):
        with preserved_rng():
            before = evaluate(model, tok, None, task, sets, collator, device, run_dir, "before", **evaluate_kw)
        merge_metrics(run_dir, {"before": before})
    distributed.barrier()

    def micro_batches():
        epoch = 0
        while True:
            yield from train_batches(rows, o.batch_size, run.seed, epoch, o.group_by_length)
            epoch += 1
    batches = micro_batches()
    for _ in range(start * per_step):  # the data position of a resumed run
        next(batches)
    log_path = run_dir / "train_log.jsonl"
    if main:
        kept = [l for l in log_path.read_text().splitlines() if logged_step(l) <= start] if log_path.exists() and start else []
        atomic_write(log_path, "".join(l + "\n" for l in kept))
    regression = classify and task.num_labels == 1
    count_targets = (lambda r: 1) if classify else (lambda r: sum(l != -100 for l in r["labels"]))
    collate = (lambda micro: collator.classify(micro, regression)) if classify else collator.train
    trainable = list(reft.parameters()) + list(head.values())
    reft.train()
    model.train()  # the frozen model's own dropout is on while training, as in the paper's runs (RoBERTa: 0.1)
    bar = tqdm(range(start, total_steps), desc="train", initial=start, total=total_steps, disable=not main)
    started, tokens_seen = time.perf_counter(), 0
    stop["in_loop"] = True
    try:
        for step in bar:
            group = [next(batches) for _ in range(per_step)]
            n_targets = max(1, sum(count_targets(r) for micro in group for r in micro))  # compat=pyreft keeps target-less rows
            local_loss = torch.zeros((), device=device)
            for micro in group[rank::world]:  # rank r takes micro-batches r, r + world, ...
                batch = {k: v.to(device) for k, v in collate(micro).items()}
                # backward inside the context: libraries that checkpoint a block's __call__ replay its hooks
                with reft.attached(model, batch["positions"], batch["position_mask"]):
                    with amp():
                        loss_sum = classification_loss(model, batch, regression) if classify else target_loss(model, batch)
                    scaler.scale(loss_sum / n_targets).backward()
                local_loss += loss_sum.detach()
                tokens_seen += int(batch["attention_mask"].sum()) * world
            loss_value = float(distributed.sum_gradients(trainable, local_loss)) / n_targets
            if not math.isfinite(loss_value):
                kept_at = f"the checkpoint at step {last_saved} is kept" if last_saved else "no checkpoint was written yet"
                raise FloatingPointError(f"loss became {loss_value} at step {step + 1}; {kept_at}; lower optim.lr or check the data")
            scaler.unscale_(opt)
            grad_norm = torch.nn.utils.clip_grad_norm_(trainable, o.max_grad_norm)
            scaler.step(opt)
            scaler.update()
            sched.step()
            opt.zero_grad(set_to_none=True)
            elapsed = time.perf_counter() - started
            record = {"step": step + 1, "loss": loss_value, "lr": sched.get_last_lr()[0], "grad_norm": float(grad_norm),
                      "tokens_per_s": tokens_seen / elapsed, "elapsed_s": elapsed}
            bar.set_postfix(loss=f"{loss_value:.4f}", lr=f"{record['lr']:.2e}", tok_s=f"{record['tokens_per_s']:.0f}")
            if main and ((step + 1) % run.log_every == 0 or step + 1 == total_steps):
                with open(log_path, "a") as f:
                    f.write(json.dumps(record) + "\n")
                if logger is not None:
                    logger.log({f"train/{k}": v for k, v in record.items() if k != "step"}, step=step + 1)
            done = step + 1
            if classify and main and (done % steps_per_epoch == 0 or done == total_steps):
                best = choose_epoch(model, tok, reft, head, task, collator, device, run, done // steps_per_epoch, best)
            due = run.checkpoint_every > 0 and done % run.checkpoint_every == 0 and done < total_steps
            if world > 1:
                stop["signal"] = distributed.any_rank(bool(stop["signal"]), device) or None
            if due or stop["signal"]:
                if main:
                    save_checkpoint(run_dir, done, reft, head, opt, sched, scaler, {"loss": loss_value, "best": best})
                last_saved = stop["step"] = done
            if stop["signal"]:
                if main:
                    write_json(run_dir / "run.json", {**status, "status": "interrupted", "step": done})
                raise Preempted(stop["signal"], f"at step {done}: checkpoint saved in {run_dir}; re-run the same command to resume")
    finally:
        bar.close()
        stop["in_loop"] = False
    if main and last_saved != total_steps:  # kept until the run is done: an interrupted evaluation resumes here
        save_checkpoint(run_dir, total_steps, reft, head, opt, sched, scaler, {"loss": loss_value, "best": best})
    stop["step"] = total_steps
    reft.eval()
    model.eval()
    if not main:
        distributed.teardown()
        return {}
    if best is not None:  # classification: keep the epoch that scored best on validation_tune
        reft.load_state_dict(best["reft"])
        with torch.no_grad():
            for name, p in head.items():
                p.copy_(best["head"][name])
        print(f"[reftrun] kept epoch {best['epoch']} ({task.metric} {best['score']:.4f} on validation_tune)")
    save_reft(reft, run_dir, head)
    after = evaluate(model, tok, reft, task, sets, collator, device, run_dir, "after", **evaluate_kw)
    metrics = merge_metrics(run_dir, {"after": after, "train": {"steps": total_steps, "final_loss": loss_value,
                                                                "num_parameters": n_params, "world_size": world}})
    draw_curves([run_dir], run_dir / "curves.png")
    write_json(run_dir / "run.json", {**status, "status": "done"})
    remove_checkpoint(run_dir)
    if logger is not None:
        logger.log({f"eval/{s}": m["accuracy"] for s, m in after.items() if "accuracy" in m})
        logger.finish()
    distributed.teardown()
    return metrics
