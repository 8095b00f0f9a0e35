"""The training loop: one file, every method and task, read top to bottom.

Phases in order: build (task, objective, method checked on a meta-device model), data, model, evaluate before,
optimizer, loop, save, evaluate after. The base model is frozen; AdamW sees only the method's parameters (and a
classifier's new head). The loss is the mean over all targets of an optimizer step (micro-batches and ranks).
"""
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
from .checkpoint import load_checkpoint, preserved_rng, remove_checkpoint, save_checkpoint
from .config import RunConfig
from .curves import draw_curves
from .data import Collator, train_batches
from .evaluate import evaluate
from .methods import build_method, dry_run, report_parameters
from .metrics import headline
from .models import classifier_head, enable_gradient_checkpointing, load_model, load_tokenizer, pick_device
from .objectives import objective_for
from .reft import find_layers
from .runio import Preempted, Recorder, atomic_write, merge_metrics, read_json
from .step import BestEpoch, autocast, make_optimizer, train_step
from .tasks import task_for_run


def train(run: RunConfig, run_dir: Path, resolved_config: dict) -> dict:
    run_dir, began = Path(run_dir), time.perf_counter()
    task, sets = task_for_run(run)
    objective = objective_for(task, run.compat)
    counts = dry_run(run, objective.num_labels, task.kind)  # also checks the method against the model's shapes
    if run.dry_run:
        report_parameters(counts["num_parameters"], counts["base_parameters"])
        return counts
    with Interrupts(run_dir) as interrupts:
        rank, world = distributed.setup()
        main = rank == 0
        tok, rows = prepare_data(run, task, objective, sets)  # bad data fails here: before the weights load, no file written
        if main:
            atomic_write(run_dir / "config.yaml", OmegaConf.to_yaml(OmegaConf.create(resolved_config)))
        set_seed(run.seed)
        model, device = load_model(run.model.name_or_path, run.model.dtype,
                                   distributed.device_for_rank(pick_device(run.device)), run.model.trust_remote_code,
                                   run.model.device_map, objective.num_labels)
        head = classifier_head(model) if objective.num_labels else {}  # GLUE: the new head trains beside the method
        torch.manual_seed(run.seed)
        method = build_method(run, model.config, task.kind)
        collator = Collator(tok.pad_token_id, method.spec)
        evaluate_kw = evaluate_settings(run)
        if main and run.eval.before and "before" not in read_metrics(run_dir):  # the untrained model, method off
            with preserved_rng():
                merge_metrics(run_dir, {"before": evaluate(model, tok, None, objective, sets, collator, device, run_dir,
                                                           "before", **evaluate_kw)})
        distributed.barrier()
        method.attach(model)
        if run.model.gradient_checkpointing:
            enable_gradient_checkpointing(model, find_layers(model))
        if main:
            report_parameters(counts["num_parameters"], counts["base_parameters"])
        per_step, steps_per_epoch, total_steps = schedule(run, len(rows), world)
        opt, sched = make_optimizer(method, run, total_steps, list(head.values()))
        scaler = torch.amp.GradScaler("cuda", enabled=run.autocast == "float16" and device.startswith("cuda"))
        start, extra = resume(run_dir, method, head, opt, sched, scaler, total_steps, main)
        best, loss, last_saved = BestEpoch(extra["best"]), extra["loss"], start
        status = {**counts, "train_examples": len(rows), "total_steps": total_steps, "world_size": world}
        recorder = interrupts.recorder = Recorder(run_dir, main, status, start, wandb_settings(run, run_dir, resolved_config))
        batches = micro_batches(rows, run.optim.batch_size, run.seed, run.optim.group_by_length, skip=start * per_step)
        trainable = [p for _, p in method.named_parameters()] + list(head.values())
        save = lambda step: save_checkpoint(run_dir, step, method, head, opt, sched, scaler, {"loss": loss, "best": best.state})
        interrupts.step, interrupts.total = start, total_steps
        set_mode(model, method, training=True)  # the frozen model's own dropout is on, as in the paper's runs
        bar = tqdm(range(start, total_steps), desc="train", initial=start, total=total_steps, disable=not main)
        started, tokens = time.perf_counter(), 0
        for step in interrupts.loop(bar):
            out = train_step(model, method, objective, collator, [next(batches) for _ in range(per_step)], opt, sched,
                             scaler, trainable, device, run.optim.max_grad_norm, lambda: autocast(run, device), rank, world)
            loss, tokens, done = out["loss"], tokens + out["tokens"], step + 1
            check_finite(loss, done, last_saved)
            elapsed = time.perf_counter() - started
            record = {"step": done, "loss": loss, "lr": sched.get_last_lr()[0], "grad_norm": out["grad_norm"],
                      "tokens_per_s": tokens / elapsed, "elapsed_s": elapsed}
            bar.set_postfix(loss=f"{loss:.4f}", lr=f"{record['lr']:.2e}", tok_s=f"{record['tokens_per_s']:.0f}")
            if done % run.log_every == 0 or done == total_steps:
                recorder.log(record)
            if task.tune_set and main and (done % steps_per_epoch == 0 or done == total_steps):
                score = tune_score(model, tok, method, objective, collator, device, run)
                print(f"[reftrun] epoch {done // steps_per_epoch}: {task.metric} {score:.4f} on {task.tune_set}")
                best.update(done // steps_per_epoch, score, method, head)
            stopping = interrupts.requested(device, world)
            if stopping or (run.checkpoint_every > 0 and done % run.checkpoint_every == 0 and done < total_steps):
                if main:
                    save(done)
                last_saved = interrupts.step = done
            if stopping:
                interrupts.stop(done, f"at step {done}: checkpoint saved in {run_dir}; re-run the same command to resume")
        bar.close()
        trained = time.perf_counter() - started
        if main and last_saved != total_steps:  # kept until the run is done: an interrupted evaluation resumes here
            save(total_steps)
        interrupts.step = total_steps
        set_mode(model, method, training=False)
        if not main:
            distributed.teardown()
            return {}
        if best.state is not None:  # keep the epoch that scored best on the tune set
            best.restore(method, head, f"{task.metric} on {task.tune_set}")
        method.save(run_dir, head)
        after = evaluate(model, tok, method, objective, sets, collator, device, run_dir, "after", **evaluate_kw)
        metrics = merge_metrics(run_dir, {"after": after, "train": {"steps": total_steps, "final_loss": loss, **counts,
                                                                    "world_size": world, **usage(device, began, trained, tokens)}})
        draw_curves([run_dir], run_dir / "curves.png")
        recorder.finish({s: headline(m) for s, m in after.items() if headline(m) is not None})
        remove_checkpoint(run_dir)
    distributed.teardown()
    return metrics


def prepare_data(run: RunConfig, task, objective, sets: list[str]):
    """The tokenizer and the encoded training rows; an eval prompt too long for max_length fails now, not after training."""
    examples = task.train_examples()[:run.task.max_train_examples]
    if not examples:
        raise ValueError(f"task {task.name} has no training examples (task.max_train_examples={run.task.max_train_examples})")
    tok = load_tokenizer(run.model.name_or_path, run.model.max_length, run.model.trust_remote_code,
                         run.model.use_fast_tokenizer)
    for eval_set in sets:
        objective.check_eval_prompts(tok, task.eval_examples(eval_set)[:run.eval.max_examples], run.model.max_length)
    return tok, objective.encode(tok, examples, run.model.max_length)


def resume(run_dir: Path, method, head: dict, opt, sched, scaler, total_steps: int, main: bool) -> tuple[int, dict]:
    """The step to start from and the checkpoint's extras (loss, best epoch); a checkpoint restores RNG states too,
    so nothing random may happen after this."""
    resumed = load_checkpoint(run_dir, method, head, opt, sched, scaler)
    if not resumed:
        return 0, {"loss": float("nan"), "best": None}
    if main:
        print(f"[reftrun] resuming {run_dir} from the checkpoint at step {resumed['step']}/{total_steps}")
    return resumed["step"], resumed["extra"]


def check_finite(loss: float, step: int, last_saved: int) -> None:
    if not math.isfinite(loss):
        kept = f"the checkpoint at step {last_saved} is kept" if last_saved else "no checkpoint was written yet"
        raise FloatingPointError(f"loss became {loss} at step {step}; {kept}; lower optim.lr or check the data")


def schedule(run: RunConfig, n_rows: int, world: int) -> tuple[int, int, int]:
    """Micro-batches per optimizer step (over all ranks), steps per epoch, and the run's total steps."""
    per_step = run.optim.grad_accum * world
    steps_per_epoch = math.ceil(math.ceil(n_rows / run.optim.batch_size) / per_step)
    total = run.optim.max_steps if run.optim.max_steps > 0 else max(1, int(math.ceil(steps_per_epoch * run.optim.epochs)))
    return per_step, steps_per_epoch, total


def evaluate_settings(run: RunConfig) -> dict:
    return dict(batch_size=run.eval.batch_size, max_length=run.model.max_length, max_examples=run.eval.max_examples,
                max_new_tokens=run.task.max_new_tokens, decoding=run.decoding)


def usage(device: str, began: float, trained: float, tokens: int) -> dict:
    """What this process's run cost: wall time (model load and evaluations included), training time and non-pad
    tokens/s (this process's steps: a resumed run counts only its own), and peak memory (GPU: allocated by torch;
    CPU: the process's peak resident set, whatever it held)."""
    import resource
    peak = torch.cuda.max_memory_allocated() if device.startswith("cuda") else \
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
    return {"wall_s": time.perf_counter() - began, "train_s": trained, "tokens_per_s": tokens / max(trained, 1e-9),
            "peak_memory_gib": peak / 2**30}


def read_metrics(run_dir: Path) -> dict:
    return read_json(run_dir / "metrics.json") if (run_dir / "metrics.json").exists() else {}


def set_seed(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def micro_batches(rows: list[dict], batch_size: int, seed: int, group_by_length: bool, skip: int = 0):
    """Endless micro-batches, epoch after epoch; `skip` of them are passed over (the data position of a resumed run)."""
    epoch, seen = 0, 0
    while True:
        for batch in train_batches(rows, batch_size, seed, epoch, group_by_length):
            seen += 1
            if seen > skip:
                yield batch
        epoch += 1


def set_mode(model, method, training: bool) -> None:
    model.train(training)
    method.train(training)


def tune_score(model, tok, method, objective, collator, device: str, run: RunConfig) -> float:
    """The epoch's score on the task's tune set (it picks the best epoch), leaving the RNG stream as it was."""
    set_mode(model, method, training=False)
    with preserved_rng():
        metrics, _, _ = objective.score_set(model, tok, method, objective.task, objective.task.tune_set, collator,
                                            device, run.eval.batch_size, run.model.max_length)
    set_mode(model, method, training=True)
    return headline(metrics)


def wandb_settings(run: RunConfig, run_dir: Path, resolved_config: dict) -> dict | None:
    if run.logger != "wandb":
        return None
    return dict(project=run.wandb.get("project", "reftrun"), name=run_dir.name, dir=str(run_dir), config=resolved_config,
                mode=os.environ.get("WANDB_MODE", run.wandb.get("mode")), id=run_dir.name.replace("+", "-")[:64],
                resume="allow")


class Interrupts:
    """SIGTERM and SIGINT: inside the training loop the step finishes and a checkpoint is written; elsewhere the
    checkpoint on disk already holds the training (it is kept until the run is done), so the run stops at once."""

    def __init__(self, run_dir: Path):
        self.run_dir, self.signal, self.in_loop, self.step, self.total, self.recorder = run_dir, None, False, 0, None, None

    def __enter__(self):
        self.previous = {num: signal.signal(num, self.handle) for num in (signal.SIGTERM, signal.SIGINT)}
        return self

    def __exit__(self, *exc):
        for num, handler in self.previous.items():
            signal.signal(num, handler)

    def handle(self, num, frame):
        self.signal = num
        if self.in_loop:
            return
        where = "during the final evaluation" if self.step == self.total else f"at step {self.step}"
        self.stop(self.step, f"{where}: the training so far is kept in {self.run_dir}; re-run the same command to resume")

    def loop(self, steps):
        self.in_loop = True
        try:
            yield from steps
        finally:
            self.in_loop = False

    def requested(self, device: str, world: int) -> bool:
        if world > 1:
            self.signal = distributed.any_rank(bool(self.signal), device) or None
        return bool(self.signal)

    def stop(self, step: int, message: str):
        if self.recorder is not None:
            self.recorder.set("interrupted", step=step)
        raise Preempted(self.signal, message)
