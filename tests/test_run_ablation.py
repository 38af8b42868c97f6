"""tools/run_ablation.py reads the final table and the last association accuracies of a train_net log."""
import importlib.util
import os

from conftest import ROOT

spec = importlib.util.spec_from_file_location("run_ablation", os.path.join(ROOT, "tools", "run_ablation.py"))
run_ablation = importlib.util.module_from_spec(spec)
spec.loader.exec_module(run_ablation)

LOG = (  # noqa: E501  (log lines are long)
    """
[..] DOTLA labels at epoch 1: visible->infrared: association accuracy 0.2000, NCLR noisy ratio 0.5; infrared->visible: association accuracy 0.1000, NCLR noisy ratio 0.9
| SYSUMM01  | all    | 10.00 ± 1.00 | 20.00 ± 1.00 | 30.00 ± 1.00 | 40.00 ± 1.00 | 11.00 ± 1.00 | 5.00 ± 1.00  |
[..] DOTLA labels at epoch 2: visible->infrared: association accuracy 0.4815, NCLR noisy ratio 0.7407; infrared->visible: association accuracy 0.3333, NCLR noisy ratio 0.6667
| SYSUMM01  | all    | 19.05 ± 4.76 | -        | -         | -         | 38.89 ± 1.57 | 34.58 ± 2.03 |
| SYSUMM01  | indoor | 26.67 ± 6.67 | -        | -         | -         | 48.86 ± 3.47 | 50.17 ± 3.83 |
"""
)


def test_parse_log_takes_the_final_all_search_row_and_last_accuracies():
    assert run_ablation.parse_log(LOG) == {"Rank-1": 19.05, "mAP": 38.89, "acc v->r": 0.4815, "acc r->v": 0.3333}


def test_table_reports_mean_and_std_over_seeds():
    runs = [{"Rank-1": 10.0, "mAP": 20.0, "acc v->r": 0.5, "acc r->v": float("nan")},
            {"Rank-1": 20.0, "mAP": 30.0, "acc v->r": 0.7, "acc r->v": float("nan")}]
    table = run_ablation.format_table({"full": runs})
    assert "| full | 15.00 ± 5.00 | 25.00 ± 5.00 | 60.00 ± 10.00 | - |" in table
