"""One optimiser step, the optimiser itself, and the best-epoch keeper: the pieces the loop (train.py) and the
benchmarks (scripts/bench.py) share, so a benchmark times the code that ships."""
import contextlib
import math

import torch

from . import distributed
from .models import training_attention


def make_optimizer(method, run, total_steps: int, head: list | None = None):
    """AdamW over the method's groups (and a classifier head, always decayed) with HF's linear warmup schedule."""
    groups = method.parameter_groups(run.optim.weight_decay)
    groups.append({"params": list(head or []), "weight_decay": run.optim.weight_decay})
    opt = torch.optim.AdamW([g for g in groups if g["params"]], lr=run.optim.lr, betas=(0.9, 0.999), eps=1e-8)
    warmup = int(math.ceil(run.optim.warmup_ratio * total_steps))

    def linear(step: int) -> float:
        if step < warmup:
            return step / max(1, warmup)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, linear)


def autocast(run, device: str):
    """CUDA mixed precision for an fp32 model (run.autocast), else nothing."""
    if run.autocast is not None and device.startswith("cuda"):
        return torch.autocast("cuda", dtype=getattr(torch, run.autocast))
    return contextlib.nullcontext()


def train_step(model, method, objective, collator, group: list[list[dict]], opt, sched, scaler, trainable: list,
               device: str, max_grad_norm: float, amp=contextlib.nullcontext, rank: int = 0, world: int = 1) -> dict:
    """One optimiser step over the micro-batches in `group` (rank r takes r, r + world, ...): the loss is the
    mean over every target of the step (all micro-batches, all ranks). Returns loss, grad norm and the
    non-pad tokens seen on all ranks."""
    n_targets = max(1, sum(objective.targets(micro) for micro in group))  # compat=pyreft keeps target-less rows
    local_loss, tokens = torch.zeros((), device=device), 0
    for micro in group[rank::world]:
        batch = {k: v.to(device) for k, v in objective.collate(collator, micro).items()}
        # backward inside the context: libraries that checkpoint a block's __call__ replay its hooks
        with method.active(model, batch), training_attention(model):
            with amp():
                loss_sum = objective.loss(model, batch)
            scaler.scale(loss_sum / n_targets).backward()
        local_loss += loss_sum.detach()
        tokens += int(batch["attention_mask"].sum()) * world
    loss = float(distributed.sum_gradients(trainable, local_loss)) / n_targets
    if not math.isfinite(loss):
        return {"loss": loss, "grad_norm": math.nan, "tokens": tokens}
    scaler.unscale_(opt)
    grad_norm = torch.nn.utils.clip_grad_norm_(trainable, max_grad_norm)
    scaler.step(opt)
    scaler.update()
    sched.step()
    opt.zero_grad(set_to_none=True)
    return {"loss": loss, "grad_norm": float(grad_norm), "tokens": tokens}


class BestEpoch:
    """Keeps copies of the weights of the epoch that scored best on the task's tune set (GLUE: validation_tune)."""

    def __init__(self, state: dict | None = None):
        if state is not None and "reft" in state:  # a checkpoint written before methods existed
            state["method"] = state.pop("reft")
        self.state = state  # {"epoch", "score", "method", "head"}, from a checkpoint when resumed

    def update(self, epoch: int, score: float, method, head: dict) -> None:
        if self.state is not None and not score > self.state["score"]:
            return
        self.state = {"epoch": epoch, "score": score, "method": {k: v.clone() for k, v in method.state_dict().items()},
                      "head": {k: p.detach().clone() for k, p in head.items()}}

    def restore(self, method, head: dict, what: str = "score") -> None:
        print(f"[reftrun] kept epoch {self.state['epoch']} ({what}: {self.state['score']:.4f})")
        method.load_state_dict(self.state["method"])
        with torch.no_grad():
            for name, p in head.items():
                p.copy_(self.state["head"][name])
