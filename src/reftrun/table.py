"""Results tables built from run folders (metrics.json + config.yaml), never from memory.

`run_summary` is the small table printed at the end of `reftrun train`; `build_table` groups runs by
everything but the seed and reports mean ± sd over seeds per eval set (`reftrun table`).
"""
import glob
import json
import statistics
from pathlib import Path

from omegaconf import OmegaConf

from .config import identity
from .evaluate import headline


def run_summary(metrics: dict) -> str:
    after, before = metrics.get("after", {}), metrics.get("before", {})
    sets = [s for s in after if s != "average"] + ["average"]
    lines = ["| eval set | n | untrained | trained | majority class |", "|---|---|---|---|---|"]
    for s in sets:
        a, b = after.get(s, {}), before.get(s, {})
        n = a.get("n", "") if s != "average" else sum(after[x]["n"] for x in sets[:-1])
        fmt = lambda value: f"{value:.3f}" if value is not None else "—"
        lines.append(f"| {s} | {n} | {fmt(headline(b))} | {fmt(headline(a))} | {fmt(a.get('majority'))} |")
    return "\n".join(lines)


def find_runs(pattern: str) -> list[Path]:
    """A directory (searched recursively) or a glob; a run is a folder with config.yaml."""
    roots = [Path(p) for p in sorted(glob.glob(pattern))] if any(c in pattern for c in "*?[") else [Path(pattern)]
    runs = set()
    for root in roots:
        if (root / "config.yaml").exists():
            runs.add(root)
        elif root.is_dir():
            runs.update(p.parent for p in root.rglob("config.yaml") if ".hydra" not in p.parts)
    if not runs:
        raise FileNotFoundError(f"no run folders match {pattern!r}; pass a runs directory or a glob like 'runs/*/*'")
    return sorted(runs)


SHOWN = {"task.name": "task", "model.short_name": "model", "intervention.type": "intervention", "rank": "rank",
         "layers": "layers", "positions": "positions", "share_weights": "tied"}


def _identity(config: dict) -> tuple:
    """Runs that differ only in their seed (and runtime settings) share a row."""
    fields = {k: v for k, v in identity(config).items() if k != "seed"}
    fields["model.short_name"] = json.dumps(config["model"].get("short_name") or config["model"]["name_or_path"])
    return tuple(sorted(fields.items()))


def build_table(pattern: str, stage: str = "after") -> str:
    groups: dict[tuple, list[dict]] = {}
    sets: list[str] = []
    for run in find_runs(pattern):
        config = OmegaConf.to_container(OmegaConf.load(run / "config.yaml"))
        metrics_path = run / "metrics.json"
        metrics = json.loads(metrics_path.read_text()).get(stage, {}) if metrics_path.exists() else {}
        groups.setdefault(_identity(config), []).append(metrics)
        sets += [s for s in metrics if s != "average" and s not in sets]
    varying = sorted({k for key in groups for k, v in key if k not in SHOWN and k != "model.name_or_path"
                      and len({dict(other).get(k) for other in groups}) > 1})
    head = list(SHOWN.values()) + (["other"] if varying else []) + ["seeds"] + sets + ["average"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, runs in sorted(groups.items(), key=lambda kv: str(kv[0])):
        fields = dict(key)
        done = [m for m in runs if m]
        cells = []
        for s in sets + ["average"]:
            vals = [100 * headline(m[s]) for m in done if headline(m.get(s, {})) is not None]
            if not vals or len(vals) < len(runs):
                cells.append(f"— ({len(vals)}/{len(runs)})")
            else:
                sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
                cells.append(f"{statistics.mean(vals):.1f} ± {sd:.1f}")
        name = [str(json.loads(fields.get(k, "null"))) for k in SHOWN]
        name[-1] = "tied" if name[-1] == "True" else "untied"
        if varying:
            name.append(", ".join(f"{k}={json.loads(fields[k])}" for k in varying if k in fields))
        lines.append("| " + " | ".join(name) + f" | {len(done)}/{len(runs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
