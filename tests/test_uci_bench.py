"""benchmarks/uci_bench.py: the table's 10% check picks its kernel without the test set."""

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def uci_bench():
    spec = importlib.util.spec_from_file_location("uci_bench", REPO / "benchmarks" /
                                                  "uci_bench.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cell(model, split, rmse, lml=None):
    return dict(dataset="d", model=model, split=split, rmse=rmse, info={"lml": lml})


def test_the_ard_kernel_of_a_split_is_the_one_with_the_higher_marginal_likelihood(uci_bench):
    cells = [
        # split 0: the NTK has the higher LML but the worse test RMSE, and is chosen
        _cell("nngp_ard", 0, 1.0, lml=-10.0), _cell("ntk_ard", 0, 3.0, lml=-5.0),
        # split 1: only the NNGP ran
        _cell("nngp_ard", 1, 2.0, lml=-7.0),
        # split 2: the NNGP ran but a baseline did not, so the split does not count
        _cell("nngp_ard", 2, 9.0, lml=0.0),
        _cell("rf", 0, 2.0), _cell("rf", 1, 2.0),
        _cell("hgb", 0, 4.0), _cell("hgb", 1, 4.0), _cell("hgb", 2, 4.0),
    ]
    ratio, (best, who), n_splits, picks = uci_bench.common_ratio(cells, "d", ["rf", "hgb"])
    assert (best, who) == (2.0, "rf")
    assert n_splits == 2 and picks == {"ntk": 1, "nngp": 1}
    assert ratio == pytest.approx((3.0 + 2.0) / 2 / 2.0)


def test_no_ratio_until_every_baseline_ran(uci_bench):
    cells = [_cell("nngp_ard", 0, 1.0, lml=0.0), _cell("rf", 0, 2.0)]
    assert uci_bench.common_ratio(cells, "d", ["rf", "hgb"]) is None
    assert uci_bench.common_ratio(cells, "d", []) is None  # a run of kernel models only
