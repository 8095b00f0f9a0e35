"""Results tables built from run folders (metrics.json + config.yaml), never from memory.

`run_summary` is the small table printed at the end of `reftrun train`; `build_table` groups runs by
everything but the seed and reports mean ± sd over seeds per eval set (`reftrun table`).
"""
import glob
import json
import statistics
import sys
from pathlib import Path

from omegaconf import OmegaConf

from .config import ConfigError, identity, load_yaml
from .metrics import headline
from .runio import read_json


def run_summary(metrics: dict) -> str:
    """The table `reftrun train` prints: scores beside the rates that tell task learning from format
    learning (majority class) and from a shortcut (the best simple cue known for the data)."""
    after, before = metrics.get("after", {}), metrics.get("before", {})
    sets = [s for s in after if s != "average"]
    sets += ["average"] if len(sets) > 1 else []
    fmt = lambda value: f"{value:.3f}" if value is not None else "—"
    lines = ["| eval set | n | untrained | trained | majority class | chance | best simple cue |", "|---|---|---|---|---|---|---|"]
    for s in sets:
        a, b = after.get(s, {}), before.get(s, {})
        n = a.get("n", "") if s != "average" else sum(after[x]["n"] for x in sets if x != "average")
        cue = a.get("cue")
        cue = f"{cue['accuracy']:.3f} ({cue['rule']})" if cue else "—"
        lines.append(f"| {s} | {n} | {fmt(headline(b))} | {fmt(headline(a))} | {fmt(a.get('majority'))} | "
                     f"{fmt(a.get('chance'))} | {cue} |")
    return "\n".join(lines)


def find_runs(pattern: str) -> list[Path]:
    """A directory (searched recursively) or a glob; a run is a folder with config.yaml. A folder holding
    run.json or metrics.json without config.yaml cannot be placed in a row: it is named on stderr."""
    roots = [Path(p) for p in sorted(glob.glob(pattern))] if any(c in pattern for c in "*?[") else [Path(pattern)]
    runs, orphans = set(), set()
    for root in roots:
        if (root / "config.yaml").exists():
            runs.add(root)
        elif root.is_dir():
            for name, found in (("config.yaml", runs), ("run.json", orphans), ("metrics.json", orphans)):
                found.update(p.parent for p in root.rglob(name) if ".hydra" not in p.parts and "evals" not in p.parts)
    for orphan in sorted(orphans - runs):
        print(f"reftrun: warning: {orphan} holds results but no config.yaml; it is left out of the table", file=sys.stderr)
    if not runs:
        raise FileNotFoundError(f"no run folders match {pattern!r}; pass a runs directory or a glob like 'runs/*/*'")
    return sorted(runs)


SHOWN = {"task.name": "task", "model.short_name": "model", "method.name": "method", "intervention.type": "intervention", "rank": "rank",
         "layers": "layers", "positions": "positions", "share_weights": "tied"}


def _identity(config: dict) -> tuple:
    """Runs that differ only in their seed (and runtime settings) share a row."""
    fields = {k: v for k, v in identity(config).items() if k not in ("seed", "task.split_seed")}
    fields["model.short_name"] = json.dumps(config["model"].get("short_name") or config["model"]["name_or_path"])
    return tuple(sorted(fields.items()))


PAPER = json.loads((Path(__file__).with_name("paper_results.json")).read_text())  # transcribed from the paper


def paper_score(row: str | None, eval_set: str, config: dict) -> float | None:
    """The paper's number for one of our cells. A set the row has no column for is the run's subtask (a GLUE run
    scores one subtask, on its held-out half of the validation set)."""
    scores = PAPER.get(row or "", {}).get("scores", {})
    return scores.get(eval_set, scores.get((config["task"].get("options") or {}).get("subtask")))


STAGES, COMPARE, FORMATS = ("after", "before"), (None, "paper"), ("markdown", "csv", "latex")


def collect(pattern: str, stage: str = "after", eval_name: str | None = None) -> tuple[list[dict], list[str]]:
    """Group runs by everything but the seed: one dict per row with its name, config, per-set values and counts.
    Results are the training's own (metrics.json) unless `eval_name` picks a re-evaluation (evals/<name>/)."""
    groups: dict[tuple, dict] = {}
    sets: list[str] = []
    for run in find_runs(pattern):
        config = OmegaConf.to_container(load_yaml(run / "config.yaml"))
        metrics_path = run / "evals" / eval_name / "metrics.json" if eval_name else run / "metrics.json"
        metrics = read_json(metrics_path) if metrics_path.exists() else {}
        if not isinstance(metrics, dict) or not isinstance(metrics.get(stage, {}), dict):
            raise ValueError(f"{metrics_path} is malformed (expected {{stage: {{set: metrics}}}}); repair or delete it")
        metrics = metrics.get(stage, {})
        group = groups.setdefault(_identity(config), {"config": config, "runs": []})
        group["runs"].append(metrics)
        sets += [s for s in metrics if s != "average" and s not in sets]
    varying = sorted({k for key in groups for k, _ in key if k not in SHOWN and k not in ("model.name_or_path", "method.rank")
                      and len({dict(other).get(k) for other in groups}) > 1})
    rows = []
    for key, group in sorted(groups.items(), key=lambda kv: str(kv[0])):
        fields, runs = dict(key), group["runs"]
        name = {label: str(json.loads(fields.get(k, "null"))) for k, label in SHOWN.items()}
        name["tied"] = "tied" if name["tied"] == "True" else "untied"
        if name["method"] != "reft":  # a peft method: its own rank; ReFT's intervention, positions and tying do not apply
            name.update(intervention="—", rank=str(json.loads(fields.get("method.rank", "null"))), positions="—", tied="—")
        if varying:
            name["other"] = ", ".join(f"{k}={json.loads(fields[k])}" for k in varying if k in fields)
        scored = {s: [m[s] for m in runs if headline(m.get(s, {})) is not None] for s in sets}
        rows.append({"name": name, "config": group["config"], "n_runs": len(runs), "done": sum(1 for m in runs if m),
                     "values": {s: [100 * headline(m) for m in scored[s]] for s in sets},
                     "present": {s: sum(1 for m in runs if s in m) for s in sets},
                     "examples": {s: sorted({m.get("n") for m in scored[s]}, key=str) for s in sets}})
    return rows, sets


def _stats(row: dict, s: str | None) -> dict:
    """One cell (a set, or the average for s=None): mean, sd and the seeds found, or why there is no mean.
    Never a partial mean: every seed must be there, and all scored on the same number of examples."""
    values = row["values"][s] if s else _average(row)
    n, runs = len(values), row["n_runs"]
    if s and not values and row["done"] and not row["present"][s]:
        return {"n": 0, "why": "not evaluated"}  # the finished runs never scored this set: not a missing seed
    if not values or n < runs:
        return {"n": n, "why": f"{n}/{runs}"}
    examples = row["examples"][s] if s else sorted({n for x in row["examples"].values() if len(x) > 1 for n in x}, key=str)
    if len(examples) > 1:
        return {"n": n, "why": f"seeds scored on different n: {', '.join(map(str, examples))}"}
    return {"n": n, "mean": statistics.mean(values), "sd": statistics.stdev(values) if n > 1 else 0.0}


def _cell(stats: dict) -> str:
    return f"{stats['mean']:.1f} ± {stats['sd']:.1f}" if "mean" in stats else f"— ({stats['why']})"


def _average(row: dict) -> list[float]:
    """Per-seed averages over the sets this row scored, only where every set has every seed."""
    per_set = [v for v in row["values"].values() if v]
    if not per_set or any(len(v) != row["n_runs"] for v in per_set):
        return []
    return [statistics.mean(seed) for seed in zip(*per_set)]


def build_table(pattern: str, stage: str = "after", fmt: str = "markdown", compare: str | None = None,
                figure: str | None = None, eval_name: str | None = None) -> str:
    for key, value, valid in (("stage", stage, STAGES), ("compare", compare, COMPARE), ("format", fmt, FORMATS)):
        if value not in valid:
            raise ConfigError(f"{key} {value!r} is unknown; valid: {', '.join(str(v).lower() for v in valid)}")
    rows, sets = collect(pattern, stage, eval_name)
    columns = sets + ["average"]
    csv = fmt == "csv"  # a program reads it: mean, sd and n (seeds found) in columns of their own
    head = list(rows[0]["name"]) + ["seeds"] + ([f"{c} {x}" for c in columns for x in ("mean", "sd", "n")] if csv else columns)
    lines = []
    for row in rows:
        cells = [_stats(row, s) for s in sets] + [_stats(row, None)]
        lines.append(list(row["name"].values()) + [f"{row['done']}/{row['n_runs']}"]
                     + ([x for c in cells for x in (_num(c.get("mean")), _num(c.get("sd")), c["n"])] if csv
                        else [_cell(c) for c in cells]))
        if compare == "paper":
            paper_row = row["config"].get("paper_row")
            paper = [paper_score(paper_row, s, row["config"]) for s in sets]
            blank = [""] * (len(row["name"]) + 1)
            known = [p for p in paper if p is not None]
            avg = PAPER[paper_row]["average"] if paper_row in PAPER and len(known) == len(PAPER[paper_row]["scores"]) \
                else (statistics.mean(known) if known and len(known) == len(paper) else None)
            ours = [c.get("mean") for c in cells]
            diffs = [o - p if o is not None and p is not None else None for o, p in zip(ours, paper + [avg])]
            for label, values in (("paper" + (f" ({paper_row})" if paper_row else ": no row"), paper + [avg]),
                                  ("Δ ours − paper", diffs)):
                if csv:
                    lines.append([label, *blank[1:]] + [x for v in values for x in (_num(v), "", "")])
                else:
                    fmt_value = (lambda v: f"{v:+.1f}") if label.startswith("Δ") else (lambda v: f"{v:.1f}")
                    lines.append([label, *blank[1:]] + [fmt_value(v) if v is not None else "—" for v in values])
    if figure:
        draw(rows, sets, figure)
    return render(head, lines, fmt)


def _num(value: float | None) -> str:
    return f"{value:.4f}" if value is not None else ""


def render(head: list[str], lines: list[list[str]], fmt: str) -> str:
    if fmt == "csv":
        import csv
        import io
        out = io.StringIO()
        csv.writer(out).writerows([head, *lines])
        return out.getvalue().rstrip("\n")
    if fmt == "latex":
        escape = lambda t: str(t).replace("_", "\\_").replace("%", "\\%").replace("±", "$\\pm$").replace("Δ", "$\\Delta$").replace("—", "--")
        body = [" & ".join(escape(c) for c in line) + " \\\\" for line in lines]
        return "\n".join(["\\begin{tabular}{" + "l" * len(head) + "}", "\\toprule",
                          " & ".join(escape(h) for h in head) + " \\\\", "\\midrule", *body, "\\bottomrule", "\\end{tabular}"])
    return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(l) + " |" for l in lines])


TITLE = {"rank": "rank", "layers": "layers", "positions": "positions"}  # bare numbers get their name


def draw(rows: list[dict], sets: list[str], path: str):
    """Bars per eval set: ours (mean, sd as error bar, clipped at 0) beside the paper's number, one panel per
    row on one shared y-scale. Each bar is labelled with its value; a missing one says "missing"."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(len(rows), 1, figsize=(max(6, 1.2 * len(sets)), 3 * len(rows)), squeeze=False, sharey=True)
    top = 0.0
    for ax, row in zip(axes[:, 0], rows):
        xs = range(len(sets))
        cells = [_stats(row, s) for s in sets]
        ours = [c.get("mean") for c in cells]
        heights = [m if m is not None else 0.0 for m in ours]
        sds = [c.get("sd", 0.0) for c in cells]
        bars = ax.bar([x - 0.2 for x in xs], heights, 0.4, yerr=[[min(sd, h) for sd, h in zip(sds, heights)], sds],
                      label="reftrun (mean ± sd over seeds)")
        ax.bar_label(bars, [f"{m:.1f}" if m is not None else "missing" for m in ours], fontsize=6)
        paper = [paper_score(row["config"].get("paper_row"), s, row["config"]) for s in sets]
        if any(p is not None for p in paper):
            bars = ax.bar([x + 0.2 for x in xs], [p or 0.0 for p in paper], 0.4, label="paper", alpha=0.7)
            ax.bar_label(bars, [f"{p:.1f}" if p is not None else "" for p in paper], fontsize=6)
        top = max([top, *[h + sd for h, sd in zip(heights, sds)], *[p or 0.0 for p in paper]])
        ax.set_xticks(list(xs), sets, rotation=30, ha="right")
        ax.set_title(" · ".join(f"{TITLE[k]} {v}" if k in TITLE else v for k, v in row["name"].items() if v), fontsize=8)
        ax.set_ylabel("score (%)")
        ax.legend(fontsize=7)
    axes[0, 0].set_ylim(0, max(1.0, top) * 1.1)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return fig
