"""tools/demo_summary.py: rows read from final_metrics.json, initial vs final, runs that are missing."""
import importlib.util
import json
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
spec = importlib.util.spec_from_file_location("demo_summary", os.path.join(ROOT, "tools", "demo_summary.py"))
demo_summary = importlib.util.module_from_spec(spec)
spec.loader.exec_module(demo_summary)


def write_run(path, initial, final):
    path.mkdir()
    (path / "final_metrics.json").write_text(json.dumps({"epoch": 9, "initial": initial, "final": final}))
    return str(path)


def test_rows_show_the_requested_evaluation_and_missing_runs(tmp_path):
    dotla = write_run(tmp_path / "dotla", {"all/Rank-1": 5.5, "all/mAP": 10.25, "all/mINP": 3.0, "all/mAP_std": 0.4},
                      {"all/Rank-1": 20.0, "all/mAP": 25.125, "all/mINP": 9.0})
    table = demo_summary.summary_table([demo_summary.parse_row(f"start={dotla}:initial"),
                                        demo_summary.parse_row(f"DOTLA={dotla}"),
                                        demo_summary.parse_row(f"ceiling={tmp_path / 'none'}")])
    lines = table.splitlines()[2:]
    assert [c.strip() for c in lines[0].split("|")[1:6]] == ["start", "all", "5.50", "10.25", "3.00"]
    assert [c.strip() for c in lines[1].split("|")[1:6]] == ["DOTLA", "all", "20.00", "25.12", "9.00"]
    assert [c.strip() for c in lines[2].split("|")[1:4]] == ["ceiling", "-", "not run"]


def test_nested_datasets_and_errors(tmp_path):
    run = write_run(tmp_path / "run", None, {"SYSUMM01": {"indoor/Rank-1": 1.0, "indoor/mAP": 2.0, "indoor/mINP": 3.0}})
    assert demo_summary.read_results(run, "final") == {"indoor": {"Rank-1": 1.0, "mAP": 2.0, "mINP": 3.0}}
    with pytest.raises(ValueError, match=r"final_metrics.json: has no 'initial' evaluation \(TEST.EVAL_AT_START"):
        demo_summary.read_results(run, "initial")
    with pytest.raises(ValueError, match="expected LABEL=RUN_DIR"):
        demo_summary.parse_row("logs/run")
