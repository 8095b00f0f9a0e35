"""ReFT beside LoRA and DoRA on the embedded default, one process per run, through the shipped CLI.

    python scripts/compare_methods.py                 # 7 settings × 3 seeds, then the table (about 50 min on 2 cores)
    python scripts/compare_methods.py --table-only    # the table from the run folders already written

Same task, prompts, decoding, scoring and data order for every row; only the method changes. "Comparable" rows
give LoRA/DoRA rank 1, about LoReFT r8's parameter count; "paper" rows use each method's published rank (ReFT
paper Table 1: r8; DoRA paper commonsense: r32). Each run is its own process, so its peak memory is its own.
"""
import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

SETTINGS = {  # label → overrides of `reftrun train` (the default task and model)
    "LoReFT r8 (paper rank)": ["method=reft", "intervention=loreft", "rank=8"],
    "DiReFT r8 (paper rank)": ["method=reft", "intervention=direft", "rank=8"],
    "LoRA r1 (comparable size)": ["method=lora", "method.rank=1", "method.alpha=2"],
    "DoRA r1 (comparable size)": ["method=dora", "method.rank=1", "method.alpha=2"],
    "LoRA r32 (paper rank)": ["method=lora"],
    "DoRA r32 (paper rank)": ["method=dora"],
    # the peft methods' published learning rates (3e-4, 2e-4) were set for 3 epochs of 170k rows, not 60 steps:
    # LoRA r1 again at ReFT's learning rate for this task
    "LoRA r1, lr 9e-4 (comparable size, ReFT's lr)": ["method=lora", "method.rank=1", "method.alpha=2", "optim.lr=9e-4"],
}
SEEDS = (42, 43, 44)


def folder(root: Path, label: str, seed: int) -> Path:
    return root / f"{label.split(' (')[0].replace(',', '').replace(' ', '_').lower()}_s{seed}"


def run_all(root: Path) -> None:
    for label, overrides in SETTINGS.items():
        for seed in SEEDS:
            run = folder(root, label, seed)
            if (run / "metrics.json").exists() and "after" in json.loads((run / "metrics.json").read_text()):
                continue
            cmd = [sys.executable, "-m", "reftrun.cli", "train", *overrides, f"seed={seed}", "eval.before=false",
                   f"hydra.run.dir={run}"]
            print("+", " ".join(cmd[2:]), flush=True)
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def table(root: Path) -> str:
    lines = ["| method | trainable params | % of model | held-out accuracy (3 seeds) | train tokens/s | peak memory (GiB) | wall time (s) |",
             "|---|---|---|---|---|---|---|"]
    for label in SETTINGS:
        runs = [json.loads((folder(root, label, s) / "metrics.json").read_text()) for s in SEEDS
                if (folder(root, label, s) / "metrics.json").exists()]
        if not runs:
            continue
        acc = [m["after"]["average"]["accuracy"] for m in runs]
        t = [m["train"] for m in runs]
        mean = lambda key: statistics.mean(x[key] for x in t)
        sd = statistics.stdev(acc) if len(acc) > 1 else 0.0
        lines.append(f"| {label} | {t[0]['num_parameters']:,} | {100 * t[0]['num_parameters'] / t[0]['base_parameters']:.3f} | "
                     f"{statistics.mean(acc):.3f} ± {sd:.3f} (n={len(acc)}) | {mean('tokens_per_s'):.0f} | "
                     f"{mean('peak_memory_gib'):.2f} | {mean('wall_s'):.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="runs/compare_methods")
    parser.add_argument("--table-only", action="store_true")
    args = parser.parse_args()
    root = Path(args.root)
    if not args.table_only:
        run_all(root)
    print(table(root))


if __name__ == "__main__":
    main()
