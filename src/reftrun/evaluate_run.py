"""`reftrun eval run_dir=<dir>`: reload a run's interventions from its folder and score them again.

Only the run folder is needed (config.yaml, reft.json, interventions.safetensors); `eval.*` overrides
select sets and caps. Results merge into metrics.json under "after" without touching other entries.
"""
import json
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from .config import validate
from .data import Collator
from .evaluate import evaluate, with_average
from .models import load_model, load_tokenizer, model_shape
from .runio import load_head, load_reft, merge_metrics
from .table import run_summary
from .train import build_task


def evaluate_run(cfg: DictConfig) -> dict:
    run_dir = Path(str(cfg.run_dir))
    if not (run_dir / "config.yaml").exists():
        raise FileNotFoundError(f"run directory {run_dir} does not exist or holds no config.yaml")
    saved = OmegaConf.load(run_dir / "config.yaml")
    overrides = {k: v for k, v in OmegaConf.to_container(cfg.eval).items() if v is not None}
    saved.eval = OmegaConf.merge(saved.get("eval", {}), overrides)
    if cfg.get("device"):
        saved.device = cfg.device
    run = validate(saved)
    task, sets = build_task(run)
    reft = load_reft(run_dir)
    hidden_size, _ = model_shape(reft.spec.base_model, run.model.trust_remote_code)  # config only: no weights yet
    if hidden_size != reft.spec.hidden_size:
        raise ValueError(f"interventions in {run_dir} are for hidden size {reft.spec.hidden_size}, "
                         f"but {reft.spec.base_model} has hidden size {hidden_size}")
    tok = load_tokenizer(reft.spec.base_model, run.model.max_length, run.model.trust_remote_code,
                         run.model.use_fast_tokenizer)
    classify = getattr(task, "kind", "generate") == "classify"
    model, device = load_model(reft.spec.base_model, run.model.dtype, run.device, run.model.trust_remote_code,
                               run.model.device_map, task.num_labels if classify else None)
    if classify:
        load_head(run_dir, model)
    reft = reft.to(device)
    collator = Collator(tok.pad_token_id, reft.spec)
    after = evaluate(model, tok, reft, task, sets, collator, device, run_dir, "after", batch_size=run.eval.batch_size,
                     max_length=run.model.max_length, max_examples=run.eval.max_examples,
                     max_new_tokens=run.task.max_new_tokens, decoding=run.decoding)
    path = run_dir / "metrics.json"
    earlier = json.loads(path.read_text()).get("after", {}) if path.exists() else {}
    metrics = merge_metrics(run_dir, {"after": with_average({**earlier, **after})})  # other sets are kept
    print(run_summary(metrics))
    return metrics
