"""How the cost of a run grows with the work: training seconds per step and greedy eval examples per second
against prompt length (64, 128, 256, 512 tokens, rank 8) and LoReFT rank (1, 4, 8, 32, prompts of 128 tokens),
for reftrun and the bare model on the same batches (batch by batch in alternation with reftrun's, so that both
see the same machine; the bare model's spread across the rank points shows the machine's noise). Runs the shipped code: training with
reftrun.step.train_step (through scripts/bench.py's reftrun_loop), generation with reftrun.evaluate.generate_batch.

    python scripts/bench_scaling.py                       # float32 and bfloat16 → docs/scaling.{json,png}
    python scripts/bench_scaling.py --dtypes float32 --out /tmp/scaling

Workload: SmolLM2-135M-Instruct, all 30 layers, f7+l7 tied, training batch 8 of prompt + 16 target tokens,
eval batch 32 (reftrun's default) with exactly 32 new tokens each (min_new_tokens: no early stop, so the figures do
not depend on what the model answers). Token ids are random: speed does not depend on them.
"""
import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench import alternate, bare_loop, cpu_features, reftrun_loop  # noqa: E402

LENGTHS, RANKS = (64, 128, 256, 512), (1, 4, 8, 32)


def measure(model, tok, length: int, rank: int, args) -> dict:
    """reftrun at `rank` and the bare model (forward and backward to the first layer's output, generation
    without edits) on the same batches, batch by batch in alternation. Returns {side: {"s_per_step", "eval_per_s"}}."""
    from reftrun.evaluate import generate_batch
    gen = torch.Generator().manual_seed(length)
    ids = lambda n: torch.randint(100, tok.vocab_size, (n,), generator=gen).tolist()
    rows = [{"input_ids": p + t, "labels": [-100] * length + t, "prompt_length": length}
            for p, t in ((ids(length), ids(16)) for _ in range(args.batch * (args.steps + 1)))]
    spec = dict(intervention="loreft", rank=rank, layers=list(range(30)), positions="f7+l7", share_weights=True,
                hidden_size=model.config.hidden_size)
    method, collator, step = reftrun_loop(model, spec, None, tok.pad_token_id, "cpu", args.steps + 1, None)
    jobs = {"reftrun": step, "bare": bare_loop(model, collator, "cpu", 0)}
    method.train(True)
    trained = alternate(jobs, [rows[i * args.batch:(i + 1) * args.batch] for i in range(args.steps + 1)])
    method.train(False)
    prompts = collator.prompts([ids(length) for _ in range(args.eval_batch)])
    generate_batch(model, tok, method, {k: v[:2] for k, v in prompts.items()}, "cpu", 2, {})  # warm-up
    forced = {"min_new_tokens": 32, "eos_token_id": None}
    generated = alternate({name: (lambda b, m=(method if name == "reftrun" else None): generate_batch(
        model, tok, m, b, "cpu", 32, forced)) for name in jobs}, [prompts])
    return {name: {"s_per_step": statistics.median(trained[name][1][1:]),
                   "eval_per_s": args.eval_batch / generated[name][1][0]} for name in jobs}


def plot(record: dict, path: Path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    for dtype, runs in record["runs"].items():
        for who, style in (("reftrun", "-o"), ("bare", "--s")):
            by_length = sorted((r for r in runs if r["beside_rank"] == 8 and (r["rank"] is None) == (who == "bare")),
                               key=lambda r: r["length"])
            if not by_length:
                continue
            x = [r["length"] for r in by_length]
            label = f"{who} {dtype}"
            axes[0, 0].plot(x, [r["s_per_step"] for r in by_length], style, label=label)
            axes[0, 1].plot(x, [r["eval_per_s"] for r in by_length], style, label=label)
        for who, style in (("reftrun", "-o"), ("bare", "--s")):  # bare: the same model at each point, the noise floor
            by_rank = sorted((r for r in runs if r["length"] == 128 and (r["rank"] is None) == (who == "bare")),
                             key=lambda r: r["beside_rank"])
            axes[1, 0].plot([r["beside_rank"] for r in by_rank], [r["s_per_step"] for r in by_rank], style, label=f"{who} {dtype}")
            axes[1, 1].plot([r["beside_rank"] for r in by_rank], [r["eval_per_s"] for r in by_rank], style, label=f"{who} {dtype}")
    titles = [("training s/step (batch 8), LoReFT r8", "prompt length (tokens)"),
              ("eval examples/s (batch 32, 32 new tokens), r8", "prompt length (tokens)"),
              ("training s/step (batch 8), 128-token prompts", "LoReFT rank"),
              ("eval examples/s (batch 32, 32 new tokens), 128-token prompts", "LoReFT rank")]
    for ax, (title, xlabel) in zip(axes.flat, titles):
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(xlabel)
        ax.set_xscale("log", base=2)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(f"SmolLM2-135M, 30 layers, f7+l7 tied; {record['cpu']}, {record['threads']} threads", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return fig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--steps", type=int, default=3, help="measured training steps per point, after one warm-up")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--eval-batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--out", type=Path, default=Path(__file__).parents[1] / "docs" / "scaling")
    args = parser.parse_args()
    from reftrun.models import load_model, load_tokenizer, smollm2_dir
    torch.set_num_threads(args.threads)
    record = {"cpu": cpu_features(), "threads": args.threads, "date": time.strftime("%Y-%m-%d"), "runs": {}}
    print(f"CPU: {record['cpu']}, {args.threads} threads\n\n| dtype | side | rank | prompt tokens | s/step | eval examples/s |\n|---|---|---|---|---|---|")
    for dtype in args.dtypes.split(","):
        model, _ = load_model(str(smollm2_dir()), dtype, "cpu")
        tok = load_tokenizer(str(smollm2_dir()), 1024)
        runs = record["runs"][dtype] = []
        for length, rank in [(n, 8) for n in LENGTHS] + [(128, r) for r in RANKS if r != 8]:
            for side, figures in measure(model, tok, length, rank, args).items():
                runs.append({"length": length, "rank": rank if side == "reftrun" else None, "beside_rank": rank, **figures})
                r = runs[-1]
                print(f"| {dtype} | {side} | {r['rank'] or ''} | {length} | {r['s_per_step']:.2f} | {r['eval_per_s']:.2f} |",
                      flush=True)
    args.out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    plot(record, args.out.with_suffix(".png"))
    print(f"\nwrote {args.out.with_suffix('.json')} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
