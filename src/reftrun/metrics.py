"""Headline scores and their averages, named by the task's metric (torch-free: the tables use it)."""


def headline(metrics: dict) -> float | None:
    """A set's (or an average's) headline number: its `score` where the task names a metric, else the value
    stored under the metric's name (`accuracy` for every generation task)."""
    if "score" in metrics:
        return metrics["score"]
    return metrics.get(metrics.get("metric", "accuracy"))


def with_average(results: dict, metric: str = "accuracy") -> dict:
    """Add 'average': the unweighted mean over eval sets (as the paper's tables average), stored under the
    metric's own name (a mean of Matthews correlations is not an accuracy)."""
    scored = [m for s, m in results.items() if s != "average" and m.get("n") and headline(m) is not None]
    average = {metric: sum(headline(m) for m in scored) / len(scored), "metric": metric} if scored else {}
    for key in ("majority", "chance"):
        if scored and all(m.get(key) is not None for m in scored):
            average[key] = sum(m[key] for m in scored) / len(scored)
    return {**{s: m for s, m in results.items() if s != "average"}, "average": average}
