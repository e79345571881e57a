"""benchmarks/gpu_check.py --dry-run: the GPU check's own code runs green on the CPU."""

import importlib.util
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_gpu_check_dry_run(tmp_path):
    path = REPO / "benchmarks" / "gpu_check.py"
    spec = importlib.util.spec_from_file_location("gpu_check", path)
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)
    assert gpu_check.main(["--out", str(tmp_path), "--dry-run"]) == 0
    result = json.loads((tmp_path / "gpu_check.json").read_text())
    assert result["dry_run"] and result["device"] == "cpu"
    tests = result["tests"]
    # every cuda-marked test ran (the CPU standing in), none failed, none skipped but the one
    # that needs a real GPU (test_data_diet.py::test_cuda_fit_keeps_state_on_cpu)
    assert tests["returncode"] == 0 and tests["failures"] == 0 and tests["errors"] == 0
    assert tests["passed"] >= 9 and tests["skipped"] <= 1
    ops = {row["operation"] for row in result["speed"]}
    assert ops == {"ntk_kernel", "ntk_exact", "rf_ridge", "pfn_predict", "grand"}
    for row in result["speed"]:
        assert row["gpu_seconds"] > 0 and row["cpu_seconds"] > 0, row
    table = (tmp_path / "gpu_check.md").read_text()
    assert "DRY RUN" in table and "| ntk_kernel |" in table
