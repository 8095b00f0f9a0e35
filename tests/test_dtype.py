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
