"""PEFT baselines in the same harness (issue 12): LoRA, DoRA, VeRA and IA3 train through the same loop, generate in
the same left-padded batches, save and reload to the same scores, resume bit-identically, and fail in one line on
bad input before any model loads."""
import json
import signal

import pytest
import torch
from safetensors.torch import load_file

from conftest import assert_one_line_error, reftrun, tiny_args
from test_resume import interrupt_after, start

FAST = ["optim.max_steps=3", "optim.lr=1e-2", "eval.sets=[boolq,piqa]", "eval.max_examples=6", "method.target_modules=[q_proj,v_proj]"]


@pytest.mark.parametrize("method", ["lora", "dora", "vera", "ia3"])
def test_a_peft_method_trains_saves_and_reloads_to_the_same_scores(tmp_path, tiny_model_dir, commonsense_dir, method):
    run = tmp_path / method
    extra = ["method.feedforward_modules=[]", "method.rank=4"] if method in ("ia3", "vera") else []
    out = reftrun("train", *tiny_args(tiny_model_dir, commonsense_dir), f"method={method}", *FAST, *extra,
                  f"hydra.run.dir={run}")
    assert "trainable parameters:" in out.stdout
    saved = json.loads((run / "adapter.json").read_text())
    assert saved["method"] == method and saved["target_modules"] == ["q_proj", "v_proj"]
    weights = load_file(run / "adapter.safetensors")
    assert sum(t.numel() for t in weights.values()) == saved["num_parameters"] > 0
    log = [json.loads(l) for l in (run / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 3 and all(l["grad_norm"] > 0 for l in log)  # the adapters receive gradients
    if method in ("lora", "dora"):  # B starts at zero: training must move it
        assert any(t.abs().sum() > 0 for k, t in weights.items() if "lora_B" in k)
    from reftrun.methods import load_method
    from reftrun.models import load_model
    reloaded = load_method(run)
    model, _ = load_model(str(tiny_model_dir), "float32", "cpu")
    reloaded.attach(model)  # the saved weights are in the model's adapters, tensor for tensor
    assert {n: p.detach() for n, p in reloaded.named_parameters()}.keys() == weights.keys()
    assert all(torch.equal(p, weights[n]) for n, p in reloaded.named_parameters())
    trained = json.loads((run / "metrics.json").read_text())["after"]
    reftrun("eval", f"run_dir={run}")
    again = json.loads((run / "evals" / "default" / "metrics.json").read_text())["after"]
    for s in ("boolq", "piqa"):
        assert again[s]["accuracy"] == trained[s]["accuracy"]
        a = [json.loads(l)["generation"] for l in (run / "predictions" / "after" / f"{s}.jsonl").read_text().splitlines()]
        b = [json.loads(l)["generation"] for l in
             (run / "evals" / "default" / "predictions" / "after" / f"{s}.jsonl").read_text().splitlines()]
        assert a == b  # the reloaded adapters generate exactly what the trained ones did


@pytest.mark.parametrize("training", [False, True])
def test_attaching_keeps_the_models_mode(tiny_model_dir, training):
    """Injected adapters follow the model: no dropout left on in an evaluation (reftrun eval attaches to an eval model)."""
    from reftrun.methods.peft import PeftMethod
    from reftrun.models import load_model
    model, _ = load_model(str(tiny_model_dir), "float32", "cpu")
    model.train(training)
    PeftMethod("lora", 4, 8, 0.5, ["q_proj", "v_proj"]).attach(model)
    dropouts = [m for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    assert dropouts and all(m.training == training for m in dropouts)


def test_lora_generation_batches_like_one_by_one(tiny_model_dir, commonsense_dir):
    """Left-padded batched generation with LoRA active equals generating each prompt alone (same decoding)."""
    from reftrun.data import Collator
    from reftrun.evaluate import generate_batch
    from reftrun.methods.peft import PeftMethod
    from reftrun.models import load_model, load_tokenizer
    tok = load_tokenizer(str(tiny_model_dir), 64)
    model, device = load_model(str(tiny_model_dir), "float32", "cpu")
    prompts = [tok(t)["input_ids"] for t in ("a b c d e f g", "h i", "j k l m")]
    collator = Collator(tok.pad_token_id)
    bare = generate_batch(model, tok, None, collator.prompts(prompts), device, 5, {})
    torch.manual_seed(0)
    method = PeftMethod("lora", 4, 8, 0.0, ["q_proj", "v_proj"])
    method.attach(model)
    with torch.no_grad():
        for name, p in method.named_parameters():
            p.normal_(0, 0.5)  # a trained-looking adapter, so that it changes the generations
    model.eval()
    batched = generate_batch(model, tok, method, collator.prompts(prompts), device, 5, {})
    alone = [generate_batch(model, tok, method, collator.prompts([p]), device, 5, {})[0] for p in prompts]
    assert batched == alone
    assert batched != bare  # the adapters change what is generated: the equality above is not vacuous


def test_a_lora_run_killed_and_resumed_is_bit_identical(tmp_path, tiny_model_dir, commonsense_dir, monkeypatch):
    import test_resume
    lora = ["method=lora", "method.target_modules=[q_proj,v_proj]", "method.dropout=0.2"]  # dropout: RNG restored too
    monkeypatch.setattr(test_resume, "RESUMABLE", test_resume.RESUMABLE + lora)
    reference = tmp_path / "reference"
    reftrun("train", *tiny_args(tiny_model_dir, commonsense_dir), *test_resume.RESUMABLE, f"hydra.run.dir={reference}")
    run = tmp_path / "killed"
    proc = start(tiny_model_dir, commonsense_dir, run)
    interrupt_after(proc, run, 5, signal.SIGTERM)
    assert proc.returncode == 143, proc.stderr.read()
    reftrun("train", *tiny_args(tiny_model_dir, commonsense_dir), *test_resume.RESUMABLE, f"hydra.run.dir={run}")
    wa, wb = load_file(reference / "adapter.safetensors"), load_file(run / "adapter.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    la = [json.loads(l)["loss"] for l in (reference / "train_log.jsonl").read_text().splitlines()]
    lb = [json.loads(l)["loss"] for l in (run / "train_log.jsonl").read_text().splitlines()]
    assert la == lb and len(la) == 12


@pytest.mark.parametrize("override,message", [
    ("method=lorra", "unknown method 'lorra'; valid:"),
    ("method.name=lorra", "unknown method 'lorra'; valid: reft, lora, dora, vera, ia3"),
    ("method.target_modules=[q_proj,qkv]", "method.target_modules: 'qkv' is not a linear layer of"),
    ("method.target_modules=[]", "method.target_modules [] must be a non-empty list"),
    ("method.rank=0", "method.rank 0 must be a positive integer"),
])
def test_bad_method_settings_are_one_line_before_any_model_loads(tmp_path, tiny_model_dir, commonsense_dir,
                                                                 override, message):
    method = [] if override.startswith("method=") else ["method=lora"]
    assert_one_line_error(tmp_path, message, *tiny_args(tiny_model_dir, commonsense_dir), *method, override)


def test_multirun_across_methods_groups_by_method(tmp_path, tiny_model_dir, commonsense_dir):
    root = tmp_path / "sweep"
    reftrun("train", "-m", *tiny_args(tiny_model_dir, commonsense_dir), "method=reft,lora", "optim.max_steps=2",
            "eval.sets=[boolq]", "eval.max_examples=4", "eval.before=false", "method.target_modules=[q_proj,v_proj]",
            "seed=1,2", f"hydra.sweep.dir={root}")
    table = reftrun("table", f"runs={root}").stdout
    rows = [l for l in table.splitlines() if l.startswith("| commonsense")]
    assert len(rows) == 2 and {r.split("|")[3].strip() for r in rows} == {"reft", "lora"}
    assert all("2/2" in r for r in rows)
