"""Shared fixtures and helpers: tiny models built in code (never downloaded), the commonsense fixture files, and
`reftrun(...)` to run the real CLI in a subprocess (test files import the helpers with `from conftest import ...`)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # an accidental download fails fast instead of hanging
os.environ.setdefault("WANDB_MODE", "disabled")

FIXTURES = Path(__file__).parent / "fixtures"


def byte_tokenizer():
    """A real byte-level BPE tokenizer with no merges: 256 byte symbols plus <s>, </s>, <pad>."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {c: i for i, c in enumerate(alphabet)}
    for special in ("<s>", "</s>", "<pad>"):
        vocab[special] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   model_max_length=512)


def tiny_llama(seed: int = 0, layers: int = 2, hidden: int = 64):
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=259, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         bos_token_id=256, eos_token_id=257, pad_token_id=258, tie_word_embeddings=True)
    return LlamaForCausalLM(config).eval()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A 2-layer Llama and its tokenizer saved as a local model directory (loaded like any hub model)."""
    out = tmp_path_factory.mktemp("tiny-llama")
    tiny_llama().save_pretrained(out)
    byte_tokenizer().save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_roberta_dir(tmp_path_factory) -> Path:
    """A 2-layer RoBERTa MLM checkpoint (like roberta-base): a classifier head is new when loaded for GLUE."""
    from transformers import RobertaConfig, RobertaForMaskedLM
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("tiny-roberta")
    RobertaForMaskedLM(RobertaConfig(vocab_size=259, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=128, max_position_embeddings=600, pad_token_id=258,
                                     bos_token_id=256, eos_token_id=257, type_vocab_size=1)).save_pretrained(out)
    byte_tokenizer().save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def commonsense_dir() -> Path:
    return FIXTURES / "commonsense"


# Overrides for a fast end-to-end run on the tiny model; add the model and data folders with tiny_args.
TINY = ["model=hub", "model.dtype=float32", "task=commonsense", "optim.batch_size=4", "eval.batch_size=8", "task.max_new_tokens=6"]


def reftrun(*args, cwd=None, check=True) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "HYDRA_FULL_ERROR": "0"}
    proc = subprocess.run([sys.executable, "-m", "reftrun.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"reftrun {' '.join(map(str, args))} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def tiny_args(model_dir, data_dir):
    return TINY + [f"model.name_or_path={model_dir}", f"task.data_dir={data_dir}"]


def assert_one_line_error(tmp_path, message, *args, command="train"):
    """One line on stderr naming the problem, exit 2, no traceback, and no files left behind."""
    run = tmp_path / "bad"
    proc = reftrun(command, *args, *([f"hydra.run.dir={run}"] if command == "train" else []), check=False)
    assert proc.returncode == 2, proc.stderr
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("reftrun: error: ") and message in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not run.exists(), sorted(run.rglob("*"))
