"""MLflow tracking (``log.mlflow=true``): the run's resolved config as params, every number of
every ``metrics.jsonl`` row as a metric at its step, and at the end the last sample grid,
``curves.png``, ``training.gif`` and ``report.html`` as artifacts.

Why MLflow: a well-kept library for experiment tracking, so ganforge writes no tracking store
of its own. It is optional (``pip install "ganforge[mlflow]"``, the light ``mlflow-skinny``)
and imported when the callback is built, never when this module is imported. The store is
``$MLFLOW_TRACKING_URI``, else a local file store ``mlruns/`` beside the run folder (in its
parent folder). A resumed run continues the same MLflow run: its id travels in checkpoints
(``state_dict``). Only rank 0 logs, and tracking never fails the training: the first error
is one warning line, after which this session logs nothing more to MLflow.
"""
from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from ganforge.core import runfolder
from ganforge.core.config import ConfigError, LogConfig
from ganforge.training.callbacks import Callback, TrainerT

#: the checkpoint entry holding the MLflow run id
STATE_KEY = "mlflow_run_id"
DEFAULT_EXPERIMENT = "ganforge"
_FINAL_FILES = (runfolder.CURVES, runfolder.GIF, runfolder.REPORT)


def flatten(d: Dict[str, Any], prefix: str = "") -> Dict[str, str]:
    """``{"train": {"lr_g": 2e-4}}`` -> ``{"train.lr_g": "0.0002"}`` (MLflow params are strings)."""
    out: Dict[str, str] = {}
    for k, v in d.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, name + "."))
        else:
            out[name] = "" if v is None else str(v)
    return out


def metric_name(key: str) -> str:
    """A metrics.jsonl key as MLflow accepts it: ``D(G(z))`` -> ``D_G_z``, ``D(x)`` -> ``D_x``."""
    return re.sub(r"[^\w\-. :/]+", "_", key).strip("_") or "_"


def row_metrics(row: Dict[str, Any]) -> Dict[str, float]:
    """The numbers of a metrics.jsonl row (not ``step``, not booleans, not text)."""
    return {metric_name(k): float(v) for k, v in row.items()
            if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool)}


class MlflowTracking(Callback):
    """Logs one ganforge run to one MLflow run. Built by the trainer at init, before any data,
    so that a missing package is a one-line :class:`ConfigError` at once."""

    def __init__(self, log: LogConfig, run_dir: Path, write: bool):
        try:
            from mlflow.entities import Metric, Param
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise ConfigError('log.mlflow=true needs MLflow: pip install "ganforge[mlflow]" '
                              '(or set log.mlflow=false)') from None
        self._Metric, self._Param, self._Client = Metric, Param, MlflowClient
        self.log = log
        self.run_dir = Path(run_dir)
        self.write = write
        self.every = log.log_every
        self.run_id: Optional[str] = None
        self._client = None
        self._pos = 0            # bytes of metrics.jsonl already logged
        self._failed = False

    # ------------------------------------------------------------------ where and what
    def tracking_uri(self) -> str:
        uri = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
        if not uri:
            uri = (self.run_dir.resolve().parent / "mlruns").as_uri()
        if uri.startswith("file:") or "://" not in uri:
            # MLflow 3.x refuses its file store unless asked to (it prefers a database, which
            # needs the full mlflow package); the file store is the point of a local default.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        return uri

    def experiment_name(self) -> str:
        return (self.log.mlflow_experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME", "")
                or DEFAULT_EXPERIMENT)

    def _guard(self, trainer: TrainerT, what: str, fn) -> None:
        """Run ``fn``; an error is one warning line and switches tracking off for the session."""
        if self._failed or not self.write:
            return
        try:
            fn()
        except Exception as e:
            self._failed = True
            msg = " ".join(str(e).split())[:200] or type(e).__name__
            trainer.note(f"warning: MLflow {what} failed, not logging to MLflow for the rest of "
                         f"this session: {msg}")

    # ------------------------------------------------------------------ hooks
    def on_start(self, trainer: TrainerT, resumed: bool) -> None:
        self._guard(trainer, "start", lambda: self._start(trainer))

    def _start(self, trainer: TrainerT) -> None:
        client = self._client = self._Client(tracking_uri=self.tracking_uri())
        existing: Dict[str, str] = {}
        log_path = runfolder.log_path(self.run_dir)
        run = None
        if self.run_id is not None:
            try:
                run = client.get_run(self.run_id)
            except Exception:
                trainer.note(f"warning: MLflow run {self.run_id} not found in {client.tracking_uri}; "
                             f"starting a new one")
        if run is not None:              # a resumed run: continue it, rows after the checkpoint
            existing = dict(run.data.params)
            client.update_run(self.run_id, status="RUNNING")
            client.set_tag(self.run_id, "ganforge.resumed_at_step", str(trainer.step_count))
            self._pos = log_path.stat().st_size if log_path.exists() else 0
        else:                            # a new MLflow run (also for a run that had none yet)
            name = self.experiment_name()
            exp = client.get_experiment_by_name(name)
            exp_id = exp.experiment_id if exp is not None else client.create_experiment(name)
            self.run_id = client.create_run(exp_id, run_name=self.run_dir.name, tags={
                "ganforge.run_dir": str(self.run_dir.resolve())}).info.run_id
            self._pos = 0                # the whole log (earlier sessions' rows too)
        params = [self._Param(k, v[:6000]) for k, v in sorted(flatten(trainer.cfg.to_dict()).items())
                  if k not in existing]   # MLflow params cannot change: the first value stays
        for i in range(0, len(params), 100):
            client.log_batch(self.run_id, params=params[i:i + 100])
        trainer.note(f"MLflow: run {self.run_id} in {client.tracking_uri}")

    def on_step(self, trainer: TrainerT, step: int, row: Optional[Dict[str, Any]]) -> Optional[str]:
        self._guard(trainer, "logging", self._log_new_rows)
        return None

    def _log_new_rows(self) -> None:
        """Log the rows appended to metrics.jsonl since the last call (complete lines only):
        the training rows, and the evaluation and guard rows other callbacks wrote."""
        path = runfolder.log_path(self.run_dir)
        if self._client is None or not path.exists():
            return
        if path.stat().st_size < self._pos:
            self._pos = path.stat().st_size
        with open(path, "rb") as f:
            f.seek(self._pos)
            data = f.read()
        end = data.rfind(b"\n") + 1
        if not end:
            return
        now = int(time.time() * 1000)
        metrics: List[Any] = []
        for line in data[:end].splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict) and isinstance(row.get("step"), int):
                metrics += [self._Metric(k, v, now, row["step"]) for k, v in row_metrics(row).items()]
        for i in range(0, len(metrics), 1000):
            self._client.log_batch(self.run_id, metrics=metrics[i:i + 1000])
        self._pos += end

    def on_end(self, trainer: TrainerT) -> None:
        self._guard(trainer, "logging", self._log_new_rows)
        self._guard(trainer, "artifacts", lambda: self._finish(trainer))

    def _finish(self, trainer: TrainerT) -> None:
        if self._client is None:
            return
        grids = runfolder.sample_grids(self.run_dir)
        if grids:
            self._client.log_artifact(self.run_id, str(grids[-1]), "samples")
        for name in _FINAL_FILES:
            if (self.run_dir / name).is_file():
                self._client.log_artifact(self.run_id, str(self.run_dir / name))
        done = trainer.step_count >= trainer.total_steps
        self._client.set_terminated(self.run_id, "FINISHED" if done else "KILLED")

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> Dict[str, Any]:
        return {STATE_KEY: self.run_id} if self.run_id else {}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        if state.get(STATE_KEY):
            self.run_id = str(state[STATE_KEY])
