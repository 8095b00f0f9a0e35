"""`model.dtype=auto` follows the hardware: bfloat16 where it runs natively, float32 where it would be emulated."""
import pytest
import torch

from reftrun import models


@pytest.mark.parametrize("device, native, expected", [
    ("cuda", False, torch.bfloat16), ("cuda:1", False, torch.bfloat16),
    ("cpu", True, torch.bfloat16), ("cpu", False, torch.float32), ("mps", True, torch.float32)])
def test_auto_dtype_follows_the_hardware(monkeypatch, device, native, expected):
    monkeypatch.setattr(models, "cpu_has_native_bf16", lambda: native)
    dtype, why = models.choose_dtype("auto", device)
    assert dtype == expected and why.startswith("auto:")


def test_explicit_dtype_wins(monkeypatch):
    monkeypatch.setattr(models, "cpu_has_native_bf16", lambda: True)
    assert models.choose_dtype("float32", "cpu") == (torch.float32, "model.dtype=float32")
    assert models.choose_dtype("float16", "cuda")[0] == torch.float16


def test_load_model_prints_its_choice_and_reason(monkeypatch, capsys, tiny_model_dir):
    monkeypatch.setattr(models, "cpu_has_native_bf16", lambda: False)
    model, _ = models.load_model(str(tiny_model_dir), "auto", "cpu")
    assert model.dtype == torch.float32
    line = [l for l in capsys.readouterr().out.splitlines() if "model dtype" in l]
    assert line == ["[reftrun] model dtype: float32 (auto: this CPU has no native bfloat16; emulated it is about 3x slower than float32)"]


def test_lm_head_gets_a_contiguous_input_on_the_prefill(tiny_model_dir):
    """The prefill computes logits for the last position only, a strided view; load_model's pre-hook makes it
    contiguous so that torch.matmul does not copy the head's weight once per row (models.contiguous_head_input)."""
    model, _ = models.load_model(str(tiny_model_dir), "float32", "cpu")
    seen = []
    model.get_output_embeddings().register_forward_pre_hook(lambda m, args: seen.append(args[0].is_contiguous()))
    ids = torch.randint(3, 50, (3, 7))
    logits = model(input_ids=ids, logits_to_keep=1).logits
    assert seen == [True] and logits.shape[:2] == (3, 1)
    assert torch.allclose(logits, model(input_ids=ids).logits[:, -1:], atol=1e-5)


@pytest.mark.parametrize("dtype,inside", [("bfloat16", "eager"), ("float32", "sdpa")])
def test_bf16_on_cpu_trains_through_eager_attention_and_generates_through_sdpa(tiny_model_dir, dtype, inside):
    """models.training_attention: eager attention inside the training step for bfloat16 on a CPU only, restored
    after (also when the step raises); the loss is the same function either way."""
    model, _ = models.load_model(str(tiny_model_dir), dtype, "cpu")
    assert model.config._attn_implementation == "sdpa"
    ids = torch.randint(3, 50, (2, 9))
    with models.training_attention(model):
        assert model.config._attn_implementation == inside
        assert all(layer.self_attn.config._attn_implementation == inside for layer in model.model.layers)
        loss_inside = model(input_ids=ids, labels=ids).loss
    with pytest.raises(RuntimeError), models.training_attention(model):
        raise RuntimeError("a failed step")
    assert model.config._attn_implementation == "sdpa"
    assert torch.allclose(loss_inside, model(input_ids=ids, labels=ids).loss, atol=0.05 if dtype == "bfloat16" else 1e-5)


def test_the_training_step_runs_inside_training_attention(tiny_model_dir):
    from types import SimpleNamespace
    from reftrun.data import Collator
    from reftrun.methods.reft import ReftMethod
    from reftrun.objectives import Generate
    from reftrun.reft import ReftSpec
    from reftrun.step import make_optimizer, train_step
    model, _ = models.load_model(str(tiny_model_dir), "bfloat16", "cpu")
    seen = []
    model.model.layers[0].self_attn.register_forward_pre_hook(lambda m, a: seen.append(m.config._attn_implementation))
    spec = ReftSpec(intervention="loreft", rank=2, layers=[0], positions="f1+l1", share_weights=True,
                    hidden_size=model.config.hidden_size)
    method = ReftMethod(spec)
    method.attach(model)
    opt, sched = make_optimizer(method, SimpleNamespace(optim=SimpleNamespace(lr=1e-3, weight_decay=0.0, warmup_ratio=0.0)), 1)
    rows = [{"input_ids": [5, 6, 7, 8, 9], "labels": [-100, -100, -100, 8, 9], "prompt_length": 3}]
    out = train_step(model, method, Generate(None), Collator(0, spec), [rows], opt, sched,
                     torch.amp.GradScaler("cuda", enabled=False), [p for _, p in method.named_parameters()], "cpu", 1.0)
    assert seen == ["eager"] and model.config._attn_implementation == "sdpa" and out["tokens"] == 5
