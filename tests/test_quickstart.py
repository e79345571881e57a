"""The quickstart (``python -m overparam_sklearn``): rows, baselines and the --only check."""

import pytest

from overparam_sklearn import __main__ as quickstart


def test_unknown_only_is_an_error(capsys):
    with pytest.raises(SystemExit) as exc:
        quickstart.main(["--only", "NoSuchEstimator", "--device", "cpu"])
    assert exc.value.code == 2
    assert "matches no estimator" in capsys.readouterr().err


def test_baselines_come_first_and_rows_print_as_they_finish(capsys):
    rows = quickstart.run("cpu", only=["baseline", "NTKRegressor()"], verbose=0, threads=1)
    labels = [r[0] for r in rows]
    assert labels[:2] == ["baseline: RidgeCV", "baseline: LogisticRegression"]
    assert "NTKRegressor()" in labels
    out = capsys.readouterr().out
    assert "baseline: RidgeCV" in out and "total" in out
    scores = {label: score for label, _, score, _ in rows}
    # alpha="auto" on load_diabetes: close to the RidgeCV baseline (it interpolated before)
    assert scores["NTKRegressor()"] > scores["baseline: RidgeCV"] - 0.05


def test_threads_option_reaches_every_estimator():
    from sklearn.pipeline import make_pipeline

    import overparam_sklearn as ops

    pipe = make_pipeline(ops.RandomFeatures(), ops.NTKRegressor())
    quickstart._set_nested(pipe, "n_threads", 2)
    assert pipe[0].n_threads == 2 and pipe[1].n_threads == 2
