"""Data parallelism under torchrun: one process per device, each on its share of every step's
micro-batches. Interventions are tiny, so their gradients (and the loss) are summed in one all-reduce;
the frozen base model is never wrapped. Only rank 0 evaluates and writes files."""
import os
from datetime import timedelta

import torch
import torch.distributed as dist


def setup() -> tuple[int, int]:
    """(rank, world size); initialises the process group when torchrun started several processes."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        # rank 0 evaluates alone while the others wait: a long generation must not hit the default timeout
        dist.init_process_group(backend, timeout=timedelta(hours=6))
    return (dist.get_rank() if world > 1 else 0), world


def device_for_rank(device: str) -> str:
    if device == "cuda" and "LOCAL_RANK" in os.environ:
        return f"cuda:{os.environ['LOCAL_RANK']}"
    return device


def sum_gradients(params: list[torch.Tensor], loss: torch.Tensor) -> torch.Tensor:
    """All-reduce (sum) every gradient and the loss across ranks in one flat buffer; returns the summed loss."""
    if not (dist.is_available() and dist.is_initialized()):
        return loss
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1).float() for g in grads] + [loss.reshape(1).float().to(grads[0].device)])
    dist.all_reduce(flat)
    offset = 0
    for p, g in zip(params, grads):
        p.grad = flat[offset:offset + g.numel()].view_as(g).to(g.dtype)
        offset += g.numel()
    return flat[-1]


def any_rank(flag: bool, device: str) -> bool:
    """True on every rank when `flag` is true on any (e.g. one of them received SIGTERM)."""
    value = torch.tensor([float(flag)], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
