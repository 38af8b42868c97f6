"""tools/run_ablation.py: rows files, results read from a run's final_metrics.json and history.json, the table."""
import importlib.util
import json
import os

import pytest
from conftest import ROOT

spec = importlib.util.spec_from_file_location("run_ablation", os.path.join(ROOT, "tools", "run_ablation.py"))
run_ablation = importlib.util.module_from_spec(spec)
spec.loader.exec_module(run_ablation)


def test_read_run_takes_the_final_metrics_and_the_last_association(tmp_path):
    (tmp_path / "pseudo_labels").mkdir()
    final = {"all/Rank-1": 19.05, "all/mAP": 38.89, "indoor/Rank-1": 26.67, "indoor/mAP": 48.86, "metric": 28.97}
    (tmp_path / "final_metrics.json").write_text(json.dumps({"epoch": 2, "initial": None, "final": final}))
    history = [{"epoch": 0, "visible": {"ari": 0.5}},
               {"epoch": 1, "association": {"infrared->visible": 0.2, "visible->infrared": 0.1}},
               {"epoch": 2, "association": {"infrared->visible": 0.4815, "visible->infrared": 0.3333}}]
    (tmp_path / "pseudo_labels" / "history.json").write_text(json.dumps(history))
    assert run_ablation.read_run(str(tmp_path)) == {"Rank-1": 19.05, "mAP": 38.89, "acc infrared->visible": 0.4815,
                                                    "acc visible->infrared": 0.3333}
    assert run_ablation.read_run(str(tmp_path), "indoor")["mAP"] == 48.86


def test_a_run_without_final_evaluation_is_refused(tmp_path):
    (tmp_path / "final_metrics.json").write_text(json.dumps({"epoch": 2, "initial": None, "final": None}))
    with pytest.raises(ValueError, match="evaluated nothing after training.*TEST.EVAL_PERIOD"):
        run_ablation.read_run(str(tmp_path))


def test_several_test_sets_report_the_first(tmp_path):
    final = {"SYSUMM01": {"all/Rank-1": 1.0, "all/mAP": 2.0}, "RegDB": {"all/Rank-1": 3.0, "all/mAP": 4.0}}
    (tmp_path / "final_metrics.json").write_text(json.dumps({"final": final}))
    assert run_ablation.read_run(str(tmp_path)) == {"Rank-1": 1.0, "mAP": 2.0}


def test_table_reports_mean_and_std_over_seeds():
    runs = [{"Rank-1": 10.0, "mAP": 20.0, "acc visible->infrared": 0.5},
            {"Rank-1": 20.0, "mAP": 30.0, "acc visible->infrared": 0.7}]
    table = run_ablation.format_table({"full": runs, "baseline": [{"Rank-1": 1.0, "mAP": 2.0}]})
    assert "| full | 15.00 ± 5.00 | 25.00 ± 5.00 | 60.00 ± 10.00 |" in table
    assert "| baseline | 1.00 ± 0.00 | 2.00 ± 0.00 | - |" in table


def test_rows_files_of_the_repository_parse_and_name_real_configs():
    config, rows = run_ablation.read_rows(os.path.join(ROOT, "configs", "Synthetic", "ablations", "dotla.yml"))
    assert os.path.isfile(config) and list(rows)[0] == "baseline" and "full" in rows
    assert all(len(opts) % 2 == 0 for opts in rows.values())


def test_a_malformed_rows_file_is_named(tmp_path):
    path = tmp_path / "bad.yml"
    path.write_text("config: x.yml\nrows:\n  full: [DOTLA.NCLR.ENABLED]\n")
    with pytest.raises(ValueError, match="bad.yml: row 'full' must be a list of KEY VALUE pairs"):
        run_ablation.read_rows(str(path))
