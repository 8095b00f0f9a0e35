"""GPU benchmark (reftrun side): a model with LLaMA-7B's shape and random weights in bf16, the paper's
commonsense recipe (LoReFT r8, all 32 layers, f7+l7 tied, batch 16), Commonsense170K-like lengths.

    python scripts/bench_gpu.py [--steps 10] [--warmup 3]

Prints training step time, non-pad tokens/s, CUDA max allocated, model FLOPs utilisation against
4·N FLOPs per trained token (forward plus backward without weight gradients) and the card's measured
bf16 matrix rate, and greedy eval examples/s (32 new tokens). Needs only torch and transformers.
"""
import argparse
import random
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from reftrun.loss import target_loss
from reftrun.positions import PositionSpec, batch_positions
from reftrun.reft import Reft, ReftSpec

LLAMA_7B = dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                num_key_value_heads=32, vocab_size=32000, max_position_embeddings=2048)
TINY = dict(LLAMA_7B, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=4)  # --tiny: a smoke test of this script on any machine
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def sync() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def matmul_tflops(n: int = 8192, repeats: int = 10) -> float:
    a, b = (torch.randn(n, n, device=DEVICE, dtype=torch.bfloat16) for _ in range(2))
    for _ in range(3):
        a @ b
    sync()
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync()
    return 2 * n ** 3 * repeats / (time.perf_counter() - start) / 1e12


def batch_of(lengths: list[int], spec: PositionSpec, target: int = 6) -> dict:
    """Right-padded rows: a random prompt of each length followed by `target` answer tokens."""
    width = max(lengths) + target
    ids = torch.randint(3, 32000, (len(lengths), width))
    attn = torch.zeros_like(ids)
    labels = torch.full_like(ids, -100)
    for i, n in enumerate(lengths):
        attn[i, :n + target] = 1
        labels[i, n:n + target] = ids[i, n:n + target]
    positions, mask = batch_positions(spec, True, lengths, [0] * len(lengths))
    return {k: v.to(DEVICE) for k, v in dict(input_ids=ids, attention_mask=attn, labels=labels, positions=positions,
                                         position_mask=mask).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--eval-batch", type=int, default=32)
    parser.add_argument("--checkpointing", action="store_true", help="gradient checkpointing on the blocks")
    parser.add_argument("--tiny", action="store_true", help="a 2-layer model: checks the script itself, on CPU too")
    args = parser.parse_args()
    torch.manual_seed(0)
    random.seed(0)
    peak = matmul_tflops(512 if args.tiny else 8192)
    shape = TINY if args.tiny else LLAMA_7B
    torch.set_default_dtype(torch.bfloat16)
    with torch.device(DEVICE):
        model = LlamaForCausalLM(LlamaConfig(**shape)).eval().requires_grad_(False)
    torch.set_default_dtype(torch.float32)
    if args.checkpointing:
        from reftrun.models import enable_gradient_checkpointing
        from reftrun.reft import find_layers
        enable_gradient_checkpointing(model, find_layers(model))
    n_params = sum(p.numel() for p in model.parameters())
    spec = PositionSpec.parse("f7+l7")
    layers = shape["num_hidden_layers"]
    reft = Reft(ReftSpec("loreft", 8, list(range(layers)), "f7+l7", True, shape["hidden_size"])).to(DEVICE).train()
    opt = torch.optim.AdamW(reft.parameters(), lr=9e-4)
    # Commonsense170K-like prompt lengths (60-200 tokens), length-grouped as reftrun batches them
    lengths = sorted(random.randint(60, 200) for _ in range(args.batch * (args.steps + args.warmup)))
    batches = [batch_of(lengths[i:i + args.batch], spec) for i in range(0, len(lengths), args.batch)]
    random.shuffle(batches)
    if DEVICE == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times, tokens = [], 0
    for step, batch in enumerate(batches):
        sync()
        start = time.perf_counter()
        with reft.attached(model, batch["positions"], batch["position_mask"]):
            loss = target_loss(model, batch) / int((batch["labels"] != -100).sum())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(reft.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync()
        if step >= args.warmup:
            times.append(time.perf_counter() - start)
            tokens += int(batch["attention_mask"].sum())
    tokens_per_s = tokens / sum(times)
    mfu = 4 * n_params * tokens_per_s / (peak * 1e12)
    memory = torch.cuda.max_memory_allocated() / 2 ** 30 if DEVICE == "cuda" else float("nan")

    reft.eval()
    prompts = [random.randint(60, 200) for _ in range(args.eval_batch * 2)]
    generated = 0
    sync()
    start = time.perf_counter()
    for i in range(0, len(prompts), args.eval_batch):
        lens = sorted(prompts[i:i + args.eval_batch], reverse=True)
        width = lens[0]
        ids = torch.randint(3, 32000, (len(lens), width), device=DEVICE)
        attn = torch.tensor([[0] * (width - n) + [1] * n for n in lens], device=DEVICE)
        positions, mask = batch_positions(spec, True, lens, [width - n for n in lens])
        out = reft.generate(model, ids, attn, positions.to(DEVICE), mask.to(DEVICE), max_new_tokens=32, do_sample=False,
                            pad_token_id=0, eos_token_id=None, min_new_tokens=32)
        generated += out.shape[0]
    sync()
    eval_rate = generated / (time.perf_counter() - start)
    name = torch.cuda.get_device_name() if DEVICE == "cuda" else "CPU"
    print(f"| device | {name} |\n|---|---|")
    print(f"| model | {'tiny' if args.tiny else 'LLaMA-7B'} shape, random weights, bf16, {n_params / 1e9:.3f}B parameters |")
    print(f"| recipe | LoReFT r8, {layers} layers, f7+l7 tied, batch {args.batch}, prompts 60-200 tokens + 6 target tokens"
          f"{', gradient checkpointing' if args.checkpointing else ''} |")
    print(f"| measured bf16 matmul rate | {peak:.0f} TFLOP/s |")
    print(f"| training step time (median) | {sorted(times)[len(times) // 2] * 1000:.0f} ms |")
    print(f"| training tokens/s (non-pad) | {tokens_per_s:.0f} |")
    print(f"| model FLOPs utilisation (4·N per token) | {100 * mfu:.1f}% |")
    print(f"| CUDA max allocated | {memory:.1f} GiB |")
    print(f"| eval examples/s (greedy, 32 new tokens, batch {args.eval_batch}) | {eval_rate:.1f} |")


if __name__ == "__main__":
    main()
