"""curves.png: a run's training loss per step beside its held-out scores before and after training.

Read from the run folder's own files (train_log.jsonl, metrics.json), so `reftrun table curves=` can draw
any finished runs side by side. Torch-free.
"""
import json
from pathlib import Path

from .metrics import headline as _score

def _read(run_dir: Path) -> tuple[list[dict], dict]:
    log = run_dir / "train_log.jsonl"
    steps = [json.loads(line) for line in log.read_text().splitlines() if line.strip()] if log.exists() else []
    metrics = run_dir / "metrics.json"
    return steps, json.loads(metrics.read_text()) if metrics.exists() else {}


def _panels(loss_ax, score_ax, run_dir: Path, title: str) -> None:
    steps, metrics = _read(run_dir)
    loss_ax.plot([s["step"] for s in steps], [s["loss"] for s in steps], lw=1)
    if steps and all(s["loss"] > 0 for s in steps):
        loss_ax.set_yscale("log")
    loss_ax.set_xlabel("step")
    loss_ax.set_ylabel("training loss")
    loss_ax.set_title(title, fontsize=8)
    after, before = metrics.get("after", {}), metrics.get("before", {})
    sets = [s for s in after if s != "average" and _score(after[s]) is not None]
    sets += ["average"] if len(sets) > 1 and _score(after.get("average", {})) is not None else []
    xs = range(len(sets))
    for offset, stage, label in ((-0.2, before, "untrained"), (0.2, after, "trained")):
        values = [_score(stage.get(s, {})) for s in sets]
        bars = score_ax.bar([x + offset for x in xs], [v or 0 for v in values], 0.4, label=label)
        score_ax.bar_label(bars, ["—" if v is None else f"{v:.2f}" for v in values], fontsize=7)
    for x, s in zip(xs, sets):
        for key, style, label in (("majority", "k--", "majority class"), ("chance", "k:", "chance")):
            value = after[s].get(key)
            if value is not None:
                score_ax.plot([x - 0.45, x + 0.45], [value, value], style, lw=1, label=label if x == 0 else None)
    score_ax.set_xticks(list(xs), sets, rotation=20, ha="right", fontsize=8)
    score_ax.set_ylim(0, 1.1)
    score_ax.set_ylabel("held-out score")
    score_ax.legend(fontsize=7, loc="upper left")


def draw_curves(run_dirs: list[Path], path: Path):
    """One column per run: loss per step on top, scores before/after against the majority line below."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    # side by side, each row shares its y-scale so that runs compare at a glance
    fig, axes = plt.subplots(2, len(run_dirs), figsize=(4.5 * len(run_dirs), 6.5), squeeze=False, sharey="row")
    for i, run_dir in enumerate(run_dirs):
        _panels(axes[0, i], axes[1, i], Path(run_dir), Path(run_dir).name)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return fig
