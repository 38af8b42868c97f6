"""Human-readable result tables."""
from tabulate import tabulate

__all__ = ["format_results_table", "format_comparison_table"]

_COLUMNS = ("Rank-1", "Rank-5", "Rank-10", "Rank-20", "mAP", "mINP")


def format_results_table(dataset_name: str, results) -> str:
    """One row per search mode, ``mean ± std`` over trials (×100), from ``"<mode>/<metric>"`` keys."""
    modes = list(dict.fromkeys(k.split("/")[0] for k in results if "/" in k))
    rows = []
    for mode in modes:
        row = [dataset_name, mode]
        for col in _COLUMNS:
            mean, std = results.get(f"{mode}/{col}"), results.get(f"{mode}/{col}_std", 0.0)
            row.append("-" if mean is None else f"{mean:.2f} ± {std:.2f}")
        rows.append(row)
    return tabulate(rows, headers=("dataset", "mode") + _COLUMNS, tablefmt="pipe")


def _by_dataset(results):
    """``{dataset: flat results}`` whether ``results`` holds one dataset's keys or several datasets."""
    if any(isinstance(v, dict) for v in results.values()):
        return {name: r for name, r in results.items() if isinstance(r, dict)}
    return {"": results}


def format_comparison_table(before, after) -> str:
    """Rank-1 / mAP / mINP per dataset and mode, before -> after (e.g. an untrained vs the trained model)."""
    rows = []
    for name, new in _by_dataset(after).items():
        old = _by_dataset(before).get(name, {})
        for mode in dict.fromkeys(k.split("/")[0] for k in new if "/" in k):
            row = [name, mode]
            for col in ("Rank-1", "mAP", "mINP"):
                key = f"{mode}/{col}"
                row.append(f"{old.get(key, float('nan')):.2f} -> {new[key]:.2f}")
            rows.append(row)
    return tabulate(rows, headers=("dataset", "mode", "Rank-1", "mAP", "mINP"), tablefmt="pipe")
