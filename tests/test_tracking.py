"""MLflow tracking (log.mlflow=true) against a local file store in tmp_path."""
import builtins
import sys

import pytest

from ganforge.core.config import ConfigError
from ganforge.training.callbacks.tracking import STATE_KEY
from ganforge.training.trainer import Trainer
from tests.helpers import blobs, tiny_cfg

mlflow = pytest.importorskip("mlflow")
from mlflow.tracking import MlflowClient  # noqa: E402


@pytest.fixture
def store(tmp_path, monkeypatch):
    uri = (tmp_path / "mlruns").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    return MlflowClient(tracking_uri=uri)


def _run_id(run_dir):
    from ganforge.core.checkpoint import load_checkpoint
    return load_checkpoint(run_dir)[STATE_KEY]


def test_logs_params_metrics_and_artifacts_and_resume_continues(tmp_path, store):
    out, ds = tmp_path / "run", blobs(n=64)
    cfg = tiny_cfg(out, **{"log.mlflow": True, "train.steps": 4, "log.mlflow_experiment": "t"})
    tr = Trainer(cfg, dataset=ds, quiet=True)
    tr.fit()
    rid = _run_id(out)
    run = store.get_run(rid)
    assert run.info.status == "FINISHED"
    assert run.data.params["train.batch_size"] == "16" and run.data.params["log.mlflow"] == "True"
    assert store.get_experiment(run.info.experiment_id).name == "t"
    hist = store.get_metric_history(rid, "loss_D")
    assert sorted(m.step for m in hist) == [2, 4]
    assert {"lr_D", "lr_G", "images_per_sec", "D_x", "D_G_z"} <= set(run.data.metrics)
    arts = {a.path for a in store.list_artifacts(rid)}
    assert {"curves.png", "training.gif", "samples"} <= arts
    assert [a.path for a in store.list_artifacts(rid, "samples")] == ["samples/step-0000004.png"]

    # resume with a longer target: the same MLflow run, new rows at their steps, no params error
    cfg2 = tiny_cfg(out, **{"log.mlflow": True, "train.steps": 8, "log.mlflow_experiment": "t"})
    Trainer(cfg2, dataset=ds, quiet=True, resume=True).fit()
    assert _run_id(out) == rid
    assert sorted(m.step for m in store.get_metric_history(rid, "loss_D")) == [2, 4, 6, 8]
    assert store.get_run(rid).data.params["train.steps"] == "4"   # params keep the first value
    assert len(store.search_runs([run.info.experiment_id])) == 1


def test_mlflow_error_is_one_warning_not_a_failure(tmp_path, store, monkeypatch, capsys):
    def boom(*a, **k):
        raise RuntimeError("store down")
    monkeypatch.setattr(MlflowClient, "log_batch", boom)
    tr = Trainer(tiny_cfg(tmp_path / "run", **{"log.mlflow": True, "train.steps": 2}),
                 dataset=blobs(n=32))
    tr.fit()
    assert tr.step_count == 2
    warn = [ln for ln in capsys.readouterr().err.splitlines() if "MLflow" in ln and "warning" in ln]
    assert len(warn) == 1 and "store down" in warn[0]


def test_missing_mlflow_is_a_one_line_config_error(tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_mlflow(name, *a, **k):
        if name == "mlflow" or name.startswith("mlflow."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *a, **k)
    monkeypatch.setattr(builtins, "__import__", no_mlflow)
    loaded = []
    monkeypatch.setattr("ganforge.training.tasks.Task.load_data", classmethod(lambda cls, cfg: loaded.append(1)))
    with pytest.raises(ConfigError) as e:
        Trainer(tiny_cfg(tmp_path / "run", **{"log.mlflow": True}), quiet=True)
    msg = str(e.value)
    assert "\n" not in msg and 'pip install "ganforge[mlflow]"' in msg
    assert not loaded      # raised before any data


def test_off_by_default_imports_nothing(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)   # an import would fail
    tr = Trainer(tiny_cfg(tmp_path / "run", **{"train.steps": 2}), dataset=blobs(n=32), quiet=True)
    assert not any(type(cb).__name__ == "MlflowTracking" for cb in tr.callbacks)
