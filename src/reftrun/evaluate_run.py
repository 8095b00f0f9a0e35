"""`reftrun eval run_dir=<dir>`: reload a run's interventions from its folder and score them again.

Only the run folder is needed (config.yaml and the saved method: reft.json + interventions.safetensors, or
adapter.json + adapter.safetensors); `eval.*` overrides
select sets and caps. Results go to <run_dir>/evals/<name>/ (metrics.json, predictions/after/), beside the
training's own results, which are never touched; `reftrun table eval=<name>` reads them.
"""
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from .config import ConfigError, load_yaml, slug, validate
from .data import Collator
from .evaluate import evaluate
from .methods import load_head, load_method
from .models import load_model, load_tokenizer, model_config
from .objectives import objective_for
from .runio import read_json, write_json
from .table import run_summary
from .tasks import task_for_run


def eval_name(cfg: DictConfig) -> str:
    """The folder under evals/: `name=` if given, else the overrides (e.g. 'piqa_max3'), or 'default'."""
    if cfg.get("name"):
        name = slug(cfg.name)
        if not name or name in (".", ".."):
            raise ConfigError(f"name {cfg.name!r} is not usable as a folder name")
        return name
    parts = [slug(cfg.eval.sets)] if cfg.eval.sets else []
    parts += [f"max{cfg.eval.max_examples}"] if cfg.eval.max_examples is not None else []
    return "_".join(parts) or "default"


def evaluate_run(cfg: DictConfig) -> dict:
    run_dir = Path(str(cfg.run_dir))
    if not (run_dir / "config.yaml").exists():
        raise FileNotFoundError(f"run directory {run_dir} does not exist or holds no config.yaml")
    saved = load_yaml(run_dir / "config.yaml")
    overrides = {k: v for k, v in OmegaConf.to_container(cfg.eval).items() if v is not None}
    saved.eval = OmegaConf.merge(saved.get("eval", {}), overrides)
    if cfg.get("device"):
        saved.device = cfg.device
    run = validate(saved)
    out = run_dir / "evals" / eval_name(cfg)
    task, sets = task_for_run(run)
    objective = objective_for(task, run.compat)
    method = load_method(run_dir)
    if method.spec is not None:  # config only, no weights yet: a mismatch fails before the model loads
        config = model_config(method.spec.base_model, run.model.trust_remote_code)
        hidden_size = getattr(config, "text_config", config).hidden_size
        if hidden_size != method.spec.hidden_size:
            raise ValueError(f"interventions in {run_dir} are for hidden size {method.spec.hidden_size}, "
                             f"but {method.spec.base_model} has hidden size {hidden_size}")
    tok = load_tokenizer(run.model.name_or_path, run.model.max_length, run.model.trust_remote_code,
                         run.model.use_fast_tokenizer)
    model, device = load_model(run.model.name_or_path, run.model.dtype, run.device, run.model.trust_remote_code,
                               run.model.device_map, objective.num_labels)
    if objective.num_labels:
        load_head(run_dir, model)
    method.attach(model)
    method.train(False)
    collator = Collator(tok.pad_token_id, method.spec)
    after = evaluate(model, tok, method, objective, sets, collator, device, out, "after", batch_size=run.eval.batch_size,
                     max_length=run.model.max_length, max_examples=run.eval.max_examples,
                     max_new_tokens=run.task.max_new_tokens, decoding=run.decoding)
    metrics = {"after": after, "eval": OmegaConf.to_container(saved.eval)}
    training = read_json(run_dir / "metrics.json") if (run_dir / "metrics.json").exists() else {}
    if "before" in training:  # the untrained scores, where they were measured on the same examples
        metrics["before"] = {s: m for s, m in training["before"].items() if s in after and m.get("n") == after[s].get("n")}
    write_json(out / "metrics.json", metrics)
    print(f"results: {out}\n\n{run_summary(metrics)}")
    return metrics
