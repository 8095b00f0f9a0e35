"""curves.png: each run's loss per step and its held-out scores before/after against the majority line;
`reftrun table curves=` puts several runs side by side."""
import json

from reftrun.curves import draw_curves
from conftest import reftrun, tiny_args


def fake_run(folder, losses, before, after, majority):
    folder.mkdir(parents=True)
    (folder / "train_log.jsonl").write_text("".join(json.dumps({"step": i + 1, "loss": l}) + "\n" for i, l in enumerate(losses)))
    stage = lambda acc: {"words": {"accuracy": acc, "n": 10, "majority": majority, "chance": 0.5}}
    (folder / "metrics.json").write_text(json.dumps({"before": stage(before), "after": stage(after)}))
    return folder


def test_curves_plot_the_logged_losses_and_scores_against_the_majority(tmp_path):
    a = fake_run(tmp_path / "a", [3.0, 1.0, 0.5], 0.0, 0.9, 0.6)
    b = fake_run(tmp_path / "b", [2.0, 0.2], 0.1, 0.7, 0.6)
    fig = draw_curves([a, b], tmp_path / "curves.png")
    assert (tmp_path / "curves.png").stat().st_size > 5_000
    (loss_a, loss_b), (score_a, score_b) = fig.axes[:2], fig.axes[2:]
    assert list(loss_a.lines[0].get_ydata()) == [3.0, 1.0, 0.5] and list(loss_b.lines[0].get_xdata()) == [1, 2]
    assert [t.get_text() for t in score_b.get_xticklabels()] == ["words"]
    heights = [round(p.get_height(), 3) for p in score_b.patches]
    assert heights == [0.1, 0.7]  # untrained, trained
    levels = {line.get_label(): line.get_ydata()[0] for line in score_a.lines}
    assert levels == {"majority class": 0.6, "chance": 0.5}
    assert loss_a.get_ylim() == loss_b.get_ylim()  # one scale across runs


def test_a_run_draws_its_curves_and_table_draws_runs_side_by_side(tmp_path, tiny_model_dir, commonsense_dir):
    for seed in (1, 2):
        reftrun("train", *tiny_args(tiny_model_dir, commonsense_dir), "optim.max_steps=2", "eval.max_examples=1",
                "eval.sets=[boolq]", f"seed={seed}", f"hydra.run.dir={tmp_path / 'runs' / f's{seed}'}")
        assert (tmp_path / "runs" / f"s{seed}" / "curves.png").stat().st_size > 5_000
    out = reftrun("table", f"runs={tmp_path / 'runs'}", f"curves={tmp_path / 'both.png'}")
    assert "loss and held-out scores of 2 run(s) side by side" in out.stdout
    assert (tmp_path / "both.png").stat().st_size > 5_000
