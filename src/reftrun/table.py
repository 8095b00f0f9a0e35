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
    fields = {k: v for k, v in identity(config).items() if k not in ("seed", "task.split_seed")}
    fields["model.short_name"] = json.dumps(config["model"].get("short_name") or config["model"]["name_or_path"])
    return tuple(sorted(fields.items()))


PAPER = json.loads((Path(__file__).with_name("paper_results.json")).read_text())  # transcribed from the paper


def paper_score(row: str | None, eval_set: str, config: dict) -> float | None:
    """The paper's number for one of our cells; GLUE runs score one subtask on their held-out half."""
    scores = PAPER.get(row or "", {}).get("scores", {})
    if eval_set == "validation" and config["task"]["name"] == "glue":
        eval_set = config["task"]["options"]["subtask"]
    return scores.get(eval_set)


def collect(pattern: str, stage: str = "after") -> tuple[list[dict], list[str]]:
    """Group runs by everything but the seed: one dict per row with its name, config, per-set values and counts."""
    groups: dict[tuple, dict] = {}
    sets: list[str] = []
    for run in find_runs(pattern):
        config = OmegaConf.to_container(OmegaConf.load(run / "config.yaml"))
        metrics_path = run / "metrics.json"
        metrics = json.loads(metrics_path.read_text()).get(stage, {}) if metrics_path.exists() else {}
        group = groups.setdefault(_identity(config), {"config": config, "runs": []})
        group["runs"].append(metrics)
        sets += [s for s in metrics if s != "average" and s not in sets]
    varying = sorted({k for key in groups for k, _ in key if k not in SHOWN and k != "model.name_or_path"
                      and len({dict(other).get(k) for other in groups}) > 1})
    rows = []
    for key, group in sorted(groups.items(), key=lambda kv: str(kv[0])):
        fields, runs = dict(key), group["runs"]
        name = {label: str(json.loads(fields.get(k, "null"))) for k, label in SHOWN.items()}
        name["tied"] = "tied" if name["tied"] == "True" else "untied"
        if varying:
            name["other"] = ", ".join(f"{k}={json.loads(fields[k])}" for k in varying if k in fields)
        values = {s: [100 * headline(m[s]) for m in runs if headline(m.get(s, {})) is not None] for s in sets}
        rows.append({"name": name, "config": group["config"], "n_runs": len(runs), "values": values,
                     "done": sum(1 for m in runs if m)})
    return rows, sets


def _cell(values: list[float], n_runs: int) -> str:
    """mean ± sd over seeds; "—" with the count found whenever any seed is missing (never a partial mean)."""
    if not values or len(values) < n_runs:
        return f"— ({len(values)}/{n_runs})"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.1f} ± {sd:.1f}"


def _average(row: dict, sets: list[str]) -> list[float]:
    """Per-seed averages over the row's sets, only where every set has every seed."""
    per_set = [row["values"][s] for s in sets if row["values"][s]]
    if not per_set or any(len(v) != row["n_runs"] for v in per_set):
        return []
    return [statistics.mean(seed) for seed in zip(*per_set)]


def build_table(pattern: str, stage: str = "after", fmt: str = "markdown", compare: str | None = None,
                figure: str | None = None) -> str:
    rows, sets = collect(pattern, stage)
    head = list(rows[0]["name"]) + ["seeds"] + sets + ["average"]
    lines = []
    for row in rows:
        row_sets = [s for s in sets if row["values"][s] or row["n_runs"]]
        cells = list(row["name"].values()) + [f"{row['done']}/{row['n_runs']}"]
        cells += [_cell(row["values"][s], row["n_runs"]) for s in sets] + [_cell(_average(row, row_sets), row["n_runs"])]
        lines.append(cells)
        if compare == "paper":
            paper_row = row["config"].get("paper_row")
            paper = [paper_score(paper_row, s, row["config"]) for s in sets]
            blank = [""] * (len(row["name"]) + 1)
            known = [p for p in paper if p is not None]
            avg = PAPER[paper_row]["average"] if paper_row in PAPER and len(known) == len(PAPER[paper_row]["scores"]) \
                else (statistics.mean(known) if known and len(known) == len(paper) else None)
            lines.append(["paper" + (f" ({paper_row})" if paper_row else ": no row"), *blank[1:]]
                         + [f"{p:.1f}" if p is not None else "—" for p in paper] + [f"{avg:.1f}" if avg is not None else "—"])
            ours = [statistics.mean(row["values"][s]) if row["values"][s] and len(row["values"][s]) == row["n_runs"] else None
                    for s in sets] + [statistics.mean(_average(row, row_sets)) if _average(row, row_sets) else None]
            lines.append(["Δ ours − paper", *blank[1:]] + [f"{o - p:+.1f}" if o is not None and p is not None else "—"
                                                          for o, p in zip(ours, paper + [avg])])
    if figure:
        draw(rows, sets, figure)
    return render(head, lines, fmt)


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
    if fmt != "markdown":
        raise ValueError(f"unknown table format {fmt!r}; valid: markdown, csv, latex")
    return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(l) + " |" for l in lines])


def draw(rows: list[dict], sets: list[str], path: str) -> None:
    """Bars per eval set: ours (mean, sd as error bar) beside the paper's number, one panel per row."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ValueError("figure= needs matplotlib: pip install -e '.[plot]'")
    fig, axes = plt.subplots(len(rows), 1, figsize=(max(6, 1.2 * len(sets)), 3 * len(rows)), squeeze=False)
    for ax, row in zip(axes[:, 0], rows):
        xs = range(len(sets))
        ours = [statistics.mean(row["values"][s]) if row["values"][s] else 0 for s in sets]
        sds = [statistics.stdev(row["values"][s]) if len(row["values"][s]) > 1 else 0 for s in sets]
        paper = [paper_score(row["config"].get("paper_row"), s, row["config"]) for s in sets]
        ax.bar([x - 0.2 for x in xs], ours, 0.4, yerr=sds, label="reftrun (mean ± sd over seeds)")
        ax.bar([x + 0.2 for x in xs], [p or 0 for p in paper], 0.4, label="paper", alpha=0.7)
        ax.set_xticks(list(xs), sets, rotation=30, ha="right")
        ax.set_title(" · ".join(v for v in row["name"].values() if v), fontsize=8)
        ax.set_ylabel("score (%)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
