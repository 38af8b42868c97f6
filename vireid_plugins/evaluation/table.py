"""Human-readable result tables."""
from tabulate import tabulate

__all__ = ["format_results_table"]

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
