"""Human-readable result tables.

Results are flat dicts of percentages. The cross-modality evaluators give ``"<mode>/<metric>"`` keys (one row per
search mode, with ``"<mode>/<metric>_std"`` over trials); fast-reid's ``ReidEvaluator`` (single-modality datasets)
gives plain ``"<metric>"`` keys, shown as one row of mode ``-``. ``"metric"`` (the checkpoint-selection score) is
not shown.
"""
import numbers

from tabulate import tabulate

__all__ = ["format_results_table", "format_comparison_table", "split_modes"]

_COLUMNS = ("Rank-1", "Rank-5", "Rank-10", "Rank-20", "mAP", "mINP")
SINGLE_MODE = "-"  # the row of plain (mode-less) keys


def split_modes(results) -> dict:
    """``{mode: {metric: value}}`` of flat results; plain metric keys go under :data:`SINGLE_MODE`."""
    modes = {}
    for key, value in results.items():
        mode, _, metric = key.rpartition("/")
        if key == "metric" or not isinstance(value, numbers.Real):  # numpy scalars included
            continue
        modes.setdefault(mode or SINGLE_MODE, {})[metric] = value
    return modes


def _cell(metrics, col) -> str:
    mean, std = metrics.get(col), metrics.get(f"{col}_std")
    if mean is None:
        return "-"
    return f"{mean:.2f}" if std is None else f"{mean:.2f} ± {std:.2f}"


def format_results_table(dataset_name: str, results) -> str:
    """One row per search mode: ``mean ± std`` over trials (x100), or the single value of a one-split protocol."""
    rows = [[dataset_name, mode] + [_cell(metrics, col) for col in _COLUMNS]
            for mode, metrics in split_modes(results).items()]
    return tabulate(rows, headers=("dataset", "mode") + _COLUMNS, tablefmt="pipe", disable_numparse=True)


def _by_dataset(results):
    """``{dataset: flat results}`` whether ``results`` holds one dataset's keys or several datasets."""
    if any(isinstance(v, dict) for v in results.values()):
        return {name: r for name, r in results.items() if isinstance(r, dict)}
    return {"": results}


def format_comparison_table(before, after) -> str:
    """Rank-1 / mAP / mINP per dataset and mode, before -> after (e.g. an untrained vs the trained model)."""
    rows = []
    for name, new in _by_dataset(after).items():
        old = split_modes(_by_dataset(before).get(name, {}))
        for mode, metrics in split_modes(new).items():
            row = [name, mode]
            for col in ("Rank-1", "mAP", "mINP"):
                row.append(f"{old.get(mode, {}).get(col, float('nan')):.2f} -> {metrics[col]:.2f}")
            rows.append(row)
    return tabulate(rows, headers=("dataset", "mode", "Rank-1", "mAP", "mINP"), tablefmt="pipe", disable_numparse=True)
