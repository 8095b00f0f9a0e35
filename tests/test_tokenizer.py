"""model.use_fast_tokenizer: token ids on real prompts, from a real LLaMA-style SentencePiece model (Mistral v1,
from the mistral-common package: docs/reference/offline_assets.md §5), agree with SentencePiece itself, which pyreft's slow
tokenizer (use_fast=False) wraps; and, where pyreft's environment exists, with pyreft's transformers 4.45.1 slow class."""
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import FIXTURES
from reftrun.models import cache_dir, load_tokenizer
from reftrun.tasks import get_task

pytest.importorskip("sentencepiece", reason="scripts/setup.sh installs sentencepiece")
pytest.importorskip("mistral_common", reason="scripts/setup.sh installs mistral-common (the tokenizer file only)")


@pytest.fixture(scope="module")
def llama_style_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("mistral-v1")
    root = Path(importlib.util.find_spec("mistral_common").submodule_search_locations[0])
    shutil.copy(root / "data" / "tokenizer.model.v1", out / "tokenizer.model")
    (out / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
        "add_bos_token": True, "add_eos_token": False, "legacy": False}))
    return out


def real_texts() -> list[str]:
    """Training strings as pyreft tokenises them: prompt alone, and prompt + target + EOS text."""
    texts = []
    for name, data, split in [("commonsense", "commonsense", "boolq"), ("arithmetic", "arithmetic", "SVAMP"),
                              ("arithmetic", "arithmetic", "AQuA"), ("gsm8k", "gsm8k", "test")]:
        for ex in get_task(name, data_dir=FIXTURES / data).eval_examples(split)[:3]:
            texts += [ex.prompt, ex.prompt + (ex.target or " The answer is 5.") + "</s>"]
    texts += [ex.prompt for ex in get_task("alpaca", data_dir=FIXTURES / "instruct").train_examples()]
    # not here: runs of leading spaces ("  two"), where transformers 5's LlamaTokenizer (no slow class left) and
    # SentencePiece disagree; test_transformers_5_has_no_slow_class_and_says_so pins that
    return texts + ["Q: 3 + 4?\n\n### Response:\n 7</s>", "Hello world"]


def sentencepiece_ids(model_file: Path, text: str) -> list[int]:
    """What a slow LLaMA tokenizer does: BOS, SentencePiece on the text, EOS for a trailing "</s>"."""
    import sentencepiece
    sp = sentencepiece.SentencePieceProcessor(model_file=str(model_file))
    eos = text.endswith("</s>")
    return [sp.bos_id()] + sp.encode(text[:-4] if eos else text) + ([sp.eos_id()] if eos else [])


@pytest.mark.parametrize("use_fast", [False, True], ids=["slow", "fast"])
def test_token_ids_agree_with_sentencepiece_on_real_prompts(llama_style_dir, use_fast):
    tok = load_tokenizer(str(llama_style_dir), 512, use_fast=use_fast)
    assert tok.pad_token == "<unk>"  # pyreft: pad = unk where there is one
    for text in real_texts():
        assert tok(text)["input_ids"] == sentencepiece_ids(llama_style_dir / "tokenizer.model", text), text


def test_presets_load_llama_and_roberta_tokenizers_as_pyreft_does():
    from omegaconf import OmegaConf
    conf = Path(__file__).parents[1] / "conf" / "model"
    for name in ("llama-7b", "llama-13b", "llama2-7b", "roberta-base", "roberta-large"):
        assert OmegaConf.load(conf / f"{name}.yaml").use_fast_tokenizer is False, name
    assert OmegaConf.load(conf / "hub.yaml").use_fast_tokenizer is True


def test_transformers_5_has_no_slow_class_and_says_so(llama_style_dir, capsys):
    import transformers
    tok = load_tokenizer(str(llama_style_dir), 512, use_fast=False)
    if not tok.is_fast:
        pytest.skip(f"transformers {transformers.__version__} has the slow class")
    assert "has no slow tokenizer class" in capsys.readouterr().out
    text = "  two leading spaces"  # where the slow (SentencePiece) and the tokenizers-based class part ways
    assert tok(text)["input_ids"] != sentencepiece_ids(llama_style_dir / "tokenizer.model", text)


PYREFT = os.environ.get("REFTRUN_PYREFT_PYTHON", str(cache_dir() / "pyreft-env" / "bin" / "python"))


@pytest.mark.skipif(not os.path.exists(PYREFT), reason=f"no pyreft environment at {PYREFT}")
def test_token_ids_agree_with_pyreft_slow_tokenizer(llama_style_dir):
    """pyreft's environment (transformers 4.45.1) loads the same file with use_fast=False: the same ids."""
    texts = real_texts()
    code = ("import json, sys; from transformers import AutoTokenizer; "
            "tok = AutoTokenizer.from_pretrained(sys.argv[1], use_fast=False); "
            "print(type(tok).__name__); print(json.dumps([tok(t)['input_ids'] for t in json.load(sys.stdin)]))")
    proc = subprocess.run([PYREFT, "-c", code, str(llama_style_dir)], input=json.dumps(texts), capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    name, ids = proc.stdout.strip().splitlines()[-2:]
    assert name == "LlamaTokenizer"  # the slow SentencePiece class
    ours = load_tokenizer(str(llama_style_dir), 512, use_fast=False)
    for text, theirs in zip(texts, json.loads(ids)):
        assert ours(text)["input_ids"] == theirs, text
