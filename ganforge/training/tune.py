"""``ganforge tune``: hyper-parameter search with Optuna (Akiba et al. 2019, "Optuna: A
Next-generation Hyperparameter Optimization Framework", KDD).

How a study runs:

- A **search space** (``SPACE.yaml``) maps config keys to distributions, in the words of
  Optuna's ``trial.suggest_*`` calls (``float``: low, high, log, step; ``int``: low, high,
  step, log; ``categorical``: choices). :func:`load_space` checks every key and every value
  against the config schema (ganforge/core/config.py) and the registries (``tasks.resolve_config``)
  before the first trial, so a typo fails at once with the key named.
- Every **trial** is an ordinary training run in ``OUT/trials/<id>`` (resumable, inspectable
  with every other command), trained on ``train-minus-val`` (the training split without its
  validation images) for the same **budget**, ``300s`` (wall seconds, ``train.time_limit``)
  or ``5000steps`` (``train.steps``).
- The trial is **scored** by FID (Heusel et al. 2017) of ``--eval-n`` generated images against
  the **validation split** (``val``: a fixed 1/12 of the training images, at most 5,000,
  ganforge/data/resolve.py), never the test split, with the run's ``eval.extractor``. Scores
  are taken at ``--rungs`` evenly spaced points of the budget and reported to Optuna; the
  median pruner (Optuna's ``MedianPruner``) stops a trial whose score at a rung is worse than
  the median of earlier trials at that rung. The trial's value is its FID at the end of the
  budget (a pruned trial's, at the rung where it stopped).
- The **sampler** is TPE (Bergstra et al. 2011, "Algorithms for Hyper-Parameter
  Optimization"; Optuna's ``TPESampler``, multivariate), seeded by ``--seed`` (a
  ``--worker`` mixes its host name and process id into it, so workers started with one command
  line never propose the same values; two that still meet on one set of values are kept apart
  by a lock on its run folder: the second is pruned).
- **Storage** is a SQLite file, ``OUT/study.db``, unless ``--storage URL`` names another
  (any SQLAlchemy URL Optuna accepts: ``postgresql://...``, ``mysql://...``). Running the same
  command again continues the study: finished trials are kept; a trial that was running when
  the study stopped is marked failed and its parameters are queued again, and the new trial
  resumes that run folder from its last checkpoint. Several processes or machines may work on
  one study at once by giving each the same ``--study`` and ``--storage`` (Optuna's own
  mechanism); ``--jobs J`` starts J such worker processes here, each with ``cores / J``
  threads.
- When the trials are done: ``trials.csv`` (also printed), ``best.yaml`` (the preset with the
  best trial's values, usable with ``ganforge train --config best.yaml``), the plots
  ``history.png`` (optimisation history) and ``importance.png`` (parameter importances, Optuna's
  fANOVA), and the best run scored on the **test** split with every default metric
  (``best-test.json``).

Name map: Optuna's *trial* is one training run; its *value* is FID on ``val``; its *step*
(``trial.report(value, step)``) is the rung index 1..R.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import yaml

from ganforge.core import runfolder
from ganforge.core.argtypes import at_least, seed
from ganforge.core.checkpoint import CheckpointError, load_latest_good
from ganforge.core.command import Command
from ganforge.core.config import (
    Config,
    ConfigError,
    coerce,
    key_spec,
    load_config,
    load_yaml,
    parse_pairs,
    resolve_key,
    set_key,
)
from ganforge.core.errors import RunError, UserError
from ganforge.core.files import atomic_write_text
from ganforge.data import DataError
from ganforge.data.spec import TRAIN_MINUS_VAL
from ganforge.metrics import DEFAULT_METRICS, scoring
from ganforge.training.callbacks.evaluation import Evaluation
from ganforge.training.tasks import resolve_config
from ganforge.training.trainer import Trainer
from ganforge.use import evaluate

#: The splits a study trains on and scores against (ganforge/data/resolve.py).
FIT_SPLIT, VAL_SPLIT = TRAIN_MINUS_VAL, "val"
#: Steps used as ``train.steps`` under a time budget (the time limit ends the run first).
TIME_BUDGET_STEPS = 10_000_000
DIST_TYPES = ("float", "int", "categorical")


def _optuna():
    try:
        import optuna
    except ImportError:
        raise UserError("ganforge tune needs Optuna; install it with "
                        "pip install 'ganforge[tune]' (or pip install optuna)") from None
    import warnings
    # Multivariate TPE, heartbeats and the retry callback are marked experimental by Optuna.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


# --------------------------------------------------------------------------- budget
@dataclass(frozen=True)
class Budget:
    """What every trial may spend: ``kind`` "seconds" (wall time) or "steps" (G steps)."""
    kind: str
    amount: float

    def __str__(self) -> str:
        return f"{self.amount:g}s" if self.kind == "seconds" else f"{int(self.amount)}steps"


def parse_budget(text: str) -> Budget:
    """``300s``, ``5m``, ``1.5h`` (wall time) or ``5000steps`` / ``5000`` (G steps).
    Raises UserError naming ``--budget`` for anything else or a value <= 0."""
    t = str(text).strip().lower().replace(" ", "")
    units = {"steps": ("steps", 1), "step": ("steps", 1), "s": ("seconds", 1),
             "sec": ("seconds", 1), "m": ("seconds", 60), "min": ("seconds", 60),
             "h": ("seconds", 3600)}
    num, unit = t, "steps"
    for u in sorted(units, key=len, reverse=True):
        if t.endswith(u):
            num, unit = t[: -len(u)], u
            break
    try:
        value = float(num)
    except ValueError:
        raise UserError(f"--budget '{text}': write a time (300s, 5m) or a step count "
                        f"(5000steps)") from None
    kind, scale = units[unit]
    value *= scale
    if not math.isfinite(value) or value <= 0 or (kind == "steps" and not value.is_integer()):
        raise UserError(f"--budget '{text}': must be a positive time or a whole number of steps")
    return Budget(kind, value)


# --------------------------------------------------------------------------- search space
@dataclass(frozen=True)
class Param:
    """One dimension of the search space: a config ``key`` and an Optuna distribution."""
    key: str
    type: str                               # float | int | categorical
    low: Optional[float] = None
    high: Optional[float] = None
    log: bool = False
    step: Optional[float] = None
    choices: Tuple[Any, ...] = ()

    def suggest(self, trial) -> Any:
        """The value Optuna's ``trial`` proposes for this key."""
        if self.type == "float":
            return trial.suggest_float(self.key, self.low, self.high, log=self.log, step=self.step)
        if self.type == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), log=self.log,
                                     step=int(self.step or 1))
        return trial.suggest_categorical(self.key, list(self.choices))

    def values_to_check(self) -> List[Any]:
        return [self.low, self.high] if self.type != "categorical" else list(self.choices)


def load_space(path: str | Path, base: Config) -> List[Param]:
    """Read ``SPACE.yaml`` and check it against the config schema and the registries, applying
    each bound and each choice to ``base`` (so a value the run would refuse fails now, naming
    the key). Raises ConfigError / UserError with the key and the file named."""
    where = f"--space {path}"
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{where}: no such file; write a YAML mapping of config keys to "
                        f"distributions, e.g. train.lr_g: {{type: float, low: 1.0e-4, "
                        f"high: 1.0e-3, log: true}}")
    try:
        raw = yaml.safe_load(p.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"{where}: not valid YAML ({first})") from None
    if not isinstance(raw, Mapping) or not raw:
        raise UserError(f"{where}: expected a non-empty mapping of config keys to "
                        f"distributions (e.g. train.lr_g: {{type: float, low: 1.0e-4, high: 1.0e-3}})")
    params: List[Param] = []
    for key, dist in raw.items():
        sec, name = resolve_key(str(key), where)        # unknown keys: named, with a suggestion
        full = f"{sec}.{name}" if sec else name
        params.append(_param(full, dist, where))
    names = [q.key for q in params]
    if len(set(names)) != len(names):
        raise UserError(f"{where}: a key appears twice: {sorted({n for n in names if names.count(n) > 1})}")
    for q in params:                                    # each value, applied to the base run
        for v in q.values_to_check():
            try:
                resolve_config(set_key(base, q.key, v, where))
            except ConfigError as e:
                raise ConfigError(f"{where}: {q.key} value {v!r} is not usable: {e}") from None
    return params


def _param(key: str, dist: Any, where: str) -> Param:
    spec = key_spec(key)
    if not isinstance(dist, Mapping) or "type" not in dist:
        raise UserError(f"{where}: {key}: expected a mapping with 'type' ({', '.join(DIST_TYPES)}), "
                        f"e.g. {{type: float, low: 1.0e-4, high: 1.0e-3, log: true}}")
    kind = str(dist["type"]).lower()
    if kind not in DIST_TYPES:
        raise UserError(f"{where}: {key}: type '{dist['type']}' is not one of {', '.join(DIST_TYPES)}")
    allowed = {"float": {"type", "low", "high", "log", "step"}, "int": {"type", "low", "high", "log", "step"},
               "categorical": {"type", "choices"}}[kind]
    extra = set(dist) - allowed
    if extra:
        raise UserError(f"{where}: {key}: unknown field(s) {', '.join(sorted(map(str, extra)))} for "
                        f"type {kind} (allowed: {', '.join(sorted(allowed))})")
    if kind == "categorical":
        choices = dist.get("choices")
        if not isinstance(choices, (list, tuple)) or not choices:
            raise UserError(f"{where}: {key}: categorical needs a non-empty list 'choices'")
        values = tuple(coerce(c, spec.type, key, where) for c in choices)
        for v in values:
            spec.check(v, where)
        if len(set(map(repr, values))) != len(values):
            raise UserError(f"{where}: {key}: a choice appears twice in {list(choices)}")
        return Param(key, kind, choices=values)
    base = spec.base_type
    if base is bool or base is str or not spec.numeric and spec.choices is not None:
        raise UserError(f"{where}: {key} takes {getattr(spec.type, '__name__', spec.type)} values; "
                        f"give it type: categorical with choices")
    if kind == "float" and base is int:
        raise UserError(f"{where}: {key} is a whole number; use type: int")
    if "low" not in dist or "high" not in dist:
        raise UserError(f"{where}: {key}: type {kind} needs 'low' and 'high'")
    tp = int if kind == "int" else float
    low, high = (coerce(dist[b], tp, key, where) for b in ("low", "high"))
    for v in (low, high):
        spec.check(v, where)
    if not low <= high:
        raise UserError(f"{where}: {key}: low={low} must not exceed high={high}")
    log = coerce(dist.get("log", False), bool, f"{key}.log", where)
    step = dist.get("step")
    if step is not None:
        step = coerce(step, tp, f"{key}.step", where)
        if step <= 0:
            raise UserError(f"{where}: {key}: step={step} must be > 0")
        if log:
            raise UserError(f"{where}: {key}: Optuna cannot combine step and log; drop one")
    if log and low <= 0:
        raise UserError(f"{where}: {key}: a log scale needs low > 0 (got {low})")
    return Param(key, kind, low=low, high=high, log=bool(log), step=step)


# --------------------------------------------------------------------------- one trial
def trial_config(base: Config, params: Mapping[str, Any], budget: Budget, run_dir: Path, *,
                 rungs: int, eval_n: int, threads: int = 0) -> Config:
    """The config of one trial: ``base`` with the trial's values, trained on
    ``train-minus-val`` for ``budget``, scored against ``val`` (by :class:`TrialScore`; the
    trainer's own evaluation is off), quiet, in ``run_dir``."""
    over: Dict[str, Any] = dict(params)
    over.update({"data.split": FIT_SPLIT, "eval.split": VAL_SPLIT, "eval.n": eval_n,
                 "eval.metrics": "fid", "eval.every": 0, "log.progress": False,
                 "out": str(run_dir)})
    if budget.kind == "steps":
        over.update({"train.steps": int(budget.amount), "train.epochs": 0, "train.time_limit": 0})
    else:
        over.update({"train.steps": TIME_BUDGET_STEPS, "train.epochs": 0,
                     "train.time_limit": budget.amount})
    if threads:
        over["train.threads"] = threads
    cfg = base
    for k, v in over.items():
        cfg = set_key(cfg, k, v, where="tune")
    return resolve_config(cfg)


def trial_id(params: Mapping[str, Any]) -> str:
    """A run-folder name for a parameter set (the same values, the same folder: a re-queued
    trial resumes the run it left)."""
    blob = json.dumps({k: params[k] for k in sorted(params)}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


class TrialScore(Evaluation):
    """Scores a trial at ``rungs`` evenly spaced points of its budget and at its end (FID
    against ``val``), reports each score to the Optuna ``trial`` and stops the run when the
    pruner says so. Replaces the trainer's own :class:`Evaluation`; inherits its scoring,
    logging (rows of metrics.jsonl) and ``best.pt``."""

    def __init__(self, cfg: Config, trial, budget: Budget, rungs: int, check_every: int = 10):
        super().__init__(replace(cfg.eval, every=check_every), cfg.data, cfg.train.seed)
        self.trial, self.budget, self.rungs = trial, budget, rungs
        self.rung = 0              # rungs reported so far
        self.last: Optional[float] = None
        self.last_step = -1
        self.pruned = False
        self.t0 = 0.0
        self.spent0 = 0.0

    def on_start(self, trainer, resumed: bool) -> None:
        super().on_start(trainer, resumed)
        self.t0 = time.perf_counter()
        self.spent0 = trainer.elapsed
        done = self._progress(trainer)
        self.rung = min(self.rungs - 1, int(done * self.rungs + 1e-9))   # rungs already behind

    def _progress(self, trainer) -> float:
        if self.budget.kind == "steps":
            return trainer.step_count / self.budget.amount
        return (self.spent0 + time.perf_counter() - self.t0) / self.budget.amount

    def on_step(self, trainer, step: int, row) -> Optional[str]:
        if self.pruned or self.rung >= self.rungs - 1:
            return None            # the last rung is scored in on_end, after the budget
        if self._progress(trainer) >= (self.rung + 1) / self.rungs:
            self._score(trainer)
        return None

    def on_end(self, trainer) -> None:
        if not self.pruned and trainer.step_count != self.last_step and self.done(trainer):
            self._score(trainer)

    def done(self, trainer) -> bool:
        """True when the budget is spent (not when the session was interrupted)."""
        return self._progress(trainer) >= 1 - 1e-6 or trainer.step_count >= trainer.total_steps

    def _score(self, trainer) -> None:
        fid = self.evaluate(trainer)["fid"]
        self.last = fid if math.isfinite(fid) else float("inf")   # NaN images: the worst score
        self.last_step = trainer.step_count
        self.rung += 1
        self.trial.report(min(self.last, 1e9), self.rung)
        self.trial.set_user_attr("step", trainer.step_count)
        if self.rung < self.rungs and self.trial.should_prune():
            self.pruned = True
            trainer.request_stop(f"pruned by the median pruner (FID {self.last:.2f} on val at "
                                 f"rung {self.rung}/{self.rungs})")


# --------------------------------------------------------------------------- the study
@dataclass
class Study:
    """Everything one ``ganforge tune`` invocation needs (see :func:`run_study`)."""
    preset: Optional[str]
    space: str
    trials: int
    budget: Budget
    out: Path
    overrides: Sequence[str] = ()
    jobs: int = 1
    study: str = ""
    storage: str = ""
    seed: int = 0
    rungs: int = 4
    eval_n: int = 2000
    test_n: int = 10000
    threads: int = 0
    worker: bool = False

    @property
    def name(self) -> str:
        return self.study or (Path(self.preset).stem if self.preset else "study")

    @property
    def url(self) -> str:
        return self.storage or f"sqlite:///{(self.out / 'study.db').resolve()}"


def base_config(s: Study) -> Config:
    """The preset and the command line's ``key=value`` overrides, checked."""
    return resolve_config(load_config(s.preset, parse_pairs(list(s.overrides))))


def _storage(optuna, url: str):
    """Optuna's RDB storage with heartbeats: a trial whose process died (killed, machine lost)
    stops beating, is failed after the grace period and queued again by Optuna's
    ``RetryFailedTrialCallback`` (its run folder then resumes)."""
    import inspect
    kw = {"connect_args": {"timeout": 120}} if url.startswith("sqlite") else {}
    # Renamed in Optuna 4.9 (RetryHeartbeatStaleTrialCallback, heartbeat_stale_trial_callback).
    st = optuna.storages
    retry = getattr(st, "RetryHeartbeatStaleTrialCallback", None) or st.RetryFailedTrialCallback
    retry = retry(max_retry=3)
    params = inspect.signature(optuna.storages.RDBStorage).parameters
    cb = ("heartbeat_stale_trial_callback" if "heartbeat_stale_trial_callback" in params
          else "failed_trial_callback")
    return optuna.storages.RDBStorage(url, engine_kwargs=kw, heartbeat_interval=30,
                                      grace_period=120, **{cb: retry})


def open_study(s: Study):
    """Create or load the Optuna study (TPE sampler, median pruner) in ``s.url``."""
    optuna = _optuna()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    seed = s.seed
    if s.worker:   # workers on several machines run the same command: never the same proposals
        seed = int(hashlib.sha256(f"{s.seed}:{socket.gethostname()}:{os.getpid()}".encode())
                   .hexdigest()[:8], 16)
    sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True,
                                         n_startup_trials=max(2, min(10, s.trials // 3)))
    pruner = optuna.pruners.MedianPruner(n_startup_trials=max(2, min(5, s.trials // 4)),
                                         n_warmup_steps=0, interval_steps=1)
    try:
        return optuna.create_study(study_name=s.name, storage=_storage(optuna, s.url),
                                   sampler=sampler, pruner=pruner, direction="minimize",
                                   load_if_exists=True)
    except ImportError as e:    # e.g. a database driver that is not installed
        raise UserError(f"--storage {s.url}: {e}") from None
    except Exception as e:      # SQLAlchemy's errors: a bad URL, an unreachable server
        if type(e).__module__.startswith(("sqlalchemy", "optuna")):
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise UserError(f"--storage {s.url}: cannot open the study ({first})") from None
        raise


def _requeue_interrupted(study) -> int:
    """Trials stopped by Ctrl-C or SIGTERM (failed, with the ``interrupted`` mark), and a
    baseline trial that failed, not queued again yet: queue their values again, so the re-run
    resumes their run folders and the study keeps its baseline. Returns how many."""
    optuna = _optuna()
    trials = study.get_trials(deepcopy=False)
    again = {t.user_attrs.get("requeued_from") for t in trials}
    n = 0
    for t in trials:
        if t.state != optuna.trial.TrialState.FAIL or t.number in again:
            continue
        if t.user_attrs.get("interrupted") or t.user_attrs.get("baseline"):
            # the baseline too, whatever stopped it: a study must not end without its "(start)"
            attrs = {"requeued_from": t.number, **({"baseline": True} if t.user_attrs.get("baseline") else {})}
            study.enqueue_trial(dict(t.params), user_attrs=attrs)
            n += 1
    return n


def baseline_params(base: Config, space: List[Param]) -> Optional[Dict[str, Any]]:
    """The starting config's own values of the searched keys, when every one lies in the
    space (then it is the study's first trial, so the table shows what the search gained)."""
    out: Dict[str, Any] = {}
    for q in space:
        sec, name = q.key.split(".", 1) if "." in q.key else (None, q.key)
        v = getattr(base, name) if sec is None else getattr(getattr(base, sec), name)
        if q.type == "categorical":
            if v not in q.choices:
                return None
        elif not (q.low <= v <= q.high) or (q.step and abs((v - q.low) / q.step - round((v - q.low) / q.step)) > 1e-9):
            return None
        out[q.key] = v
    return out


def _enqueue_baseline(study, base: Config, space: List[Param], log) -> None:
    params = baseline_params(base, space)
    if params is None:
        log("the starting config's values are not all inside the space; no baseline trial")
        return
    study.enqueue_trial(params, user_attrs={"baseline": True})


def _counted(study) -> int:
    optuna = _optuna()
    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return len(study.get_trials(deepcopy=False, states=done))


def objective_for(s: Study, base: Config, space: List[Param], log):
    """The Optuna objective: one training run per trial, its FID on ``val`` as the value."""
    optuna = _optuna()

    def objective(trial) -> float:
        params = {q.key: q.suggest(trial) for q in space}
        trial.set_user_attr("pid", os.getpid())
        run_dir = s.out / "trials" / trial_id(params)
        run_dir.parent.mkdir(parents=True, exist_ok=True)
        lock = _try_lock(run_dir.parent / f"{run_dir.name}.lock")
        if lock is None:   # another process trains these very values right now
            trial.set_user_attr("error", "the same values are being trained by another process")
            log(f"trial {trial.number + 1} pruned: the same values are being trained by another "
                f"process")
            raise optuna.TrialPruned()
        try:
            return train_trial(trial, params, run_dir)
        finally:
            os.close(lock)

    def train_trial(trial, params, run_dir: Path) -> float:
        cfg = trial_config(base, params, s.budget, run_dir, rungs=s.rungs, eval_n=s.eval_n,
                           threads=s.threads)
        resume = runfolder.has_checkpoint(run_dir)
        if resume and s.budget.kind == "seconds":
            try:
                spent = float(load_latest_good(run_dir)[1].get("elapsed", 0.0))
            except CheckpointError:
                spent = 0.0
            cfg = set_key(cfg, "train.time_limit", max(1.0, s.budget.amount - spent), "tune")
        trial.set_user_attr("run", str(run_dir))
        trial.set_user_attr("resumed", bool(resume))
        score = TrialScore(cfg, trial, s.budget, s.rungs)
        t0 = time.perf_counter()
        try:
            trainer = Trainer(cfg, resume=resume, overwrite=not resume, quiet=True, callbacks=[score])
            summary = trainer.fit()
        except (RunError, ConfigError) as e:
            # A diverged run (the guard gave up) or values that do not combine (each value was
            # checked alone): this trial fails, the study goes on.
            trial.set_user_attr("error", str(e).splitlines()[0] if str(e) else type(e).__name__)
            log(f"trial {trial.number + 1} failed: {trial.user_attrs['error']}")
            raise
        trial.set_user_attr("seconds", round(time.perf_counter() - t0, 1))
        trial.set_user_attr("step", trainer.step_count)
        if summary.get("interrupted"):
            trial.set_user_attr("interrupted", True)
            raise KeyboardInterrupt
        if score.pruned:
            log(_line(trial, s, "pruned", score.last, trainer.step_count, params))
            raise optuna.TrialPruned()
        if score.last is None:       # finished before (a resumed, complete run): score it now
            score.on_start(trainer, True)
            score._score(trainer)
        log(_line(trial, s, "done", score.last, trainer.step_count, params))
        return float(score.last)

    return objective


def _try_lock(path: Path) -> Optional[int]:
    """An exclusive, non-blocking lock on ``path`` (a file descriptor to close when done), or
    None while another process holds it. The kernel drops the lock when its process dies."""
    import fcntl
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def _line(trial, s: Study, state: str, fid: Optional[float], step: int, params) -> str:
    """The progress line of a finished trial. Trial numbers count every trial of the study
    (failed and re-queued ones too, and other workers'), so the count of the --trials that
    are finished or pruned is shown beside it."""
    shown = ", ".join(f"{k}={_fmt(v)}" for k, v in params.items())
    f = "n/a" if fid is None else f"{fid:.2f}"
    done = _counted(trial.study) + 1
    return (f"trial {trial.number + 1} {state} ({min(done, s.trials)} of {s.trials}): FID(val) {f} "
            f"at step {step}  [{shown}]")


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def run_study(s: Study, log=print) -> Dict[str, Any]:
    """Run (or continue) the study ``s``; when this is not a ``--worker``, also write the
    summary files. Returns ``{"best": {...}, "files": [...]}`` (empty for a worker)."""
    optuna = _optuna()
    base = base_config(s)
    space = load_space(s.space, base)
    if not s.worker:
        # the ruler every trial is scored with, before the study starts: trained now for a
        # named dataset that has none yet, else one line saying how to get one (never a
        # failed trial and an Optuna traceback)
        scoring.get_extractor(base.eval.extractor, data_spec=base.data.name,
                              img_size=base.data.img_size, data_dir=base.data.data_dir)
    s.out.mkdir(parents=True, exist_ok=True)
    study = open_study(s)
    if not s.worker:
        if not study.get_trials(deepcopy=False):
            _enqueue_baseline(study, base, space, log)
        n = _requeue_interrupted(study)
        if n:
            log(f"continuing study '{s.name}': {n} interrupted trial(s) queued again (their runs resume)")
        done = _counted(study)
        if done:
            log(f"study '{s.name}' in {s.url}: {done} of {s.trials} trials already done")
    workers: List[subprocess.Popen] = []
    if s.jobs > 1 and not s.worker:
        workers = _start_workers(s)
    stop = optuna.study.MaxTrialsCallback(
        s.trials, states=(optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED))
    remaining = s.trials - _counted(study)
    try:
        if remaining > 0:
            study.optimize(objective_for(s, base, space, log), n_trials=remaining,
                           callbacks=[stop], catch=(RunError, ConfigError), gc_after_trial=True)
    finally:
        for w in workers:
            if w.wait() != 0:
                log(f"a worker process exited with code {w.returncode}")
    if s.worker:
        return {}
    return summarise(s, study, base, space, log)


def _start_workers(s: Study) -> List[subprocess.Popen]:
    threads = s.threads or max(1, (os.cpu_count() or 2) // s.jobs)
    args = [sys.executable, "-m", "ganforge", "tune", "--space", s.space, "--trials", str(s.trials),
            "--budget", str(s.budget), "--out", str(s.out), "--study", s.name, "--storage", s.url,
            "--seed", "0", "--rungs", str(s.rungs), "--eval-n", str(s.eval_n), "--worker",
            "--threads", str(threads)]
    if s.preset:
        args += ["--config", s.preset]
    args += list(s.overrides)
    procs = []
    for i in range(s.jobs - 1):
        env = dict(os.environ)
        # Each worker samples with its own seed, so they do not propose the same first trials.
        a = list(args)
        a[a.index("--seed") + 1] = str(s.seed + 1 + i)
        procs.append(subprocess.Popen(a, env=env))
    s.threads = threads
    return procs


# --------------------------------------------------------------------------- outputs
def summarise(s: Study, study, base: Config, space: List[Param], log) -> Dict[str, Any]:
    """trials.csv (printed), best.yaml, history.png / importance.png, best-test.json."""
    optuna = _optuna()
    trials = study.get_trials(deepcopy=False)
    rows = [_row(t, space) for t in trials]
    cols = ["trial", "state", "fid_val", "step", "seconds"] + [q.key for q in space] + ["note", "run"]
    text = _csv(cols, rows)
    atomic_write_text(s.out / "trials.csv", text)
    log(_table(cols[:-1] if any(r["note"] for r in rows) else cols[:-2], rows))
    files = [s.out / "trials.csv"]
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        log("no trial completed, so there is no best configuration yet (all were pruned or failed)")
        return {"best": None, "files": [str(f) for f in files]}
    best = min(complete, key=lambda t: t.value)
    best_yaml = s.out / "best.yaml"
    atomic_write_text(best_yaml, best_preset_yaml(s, best))
    files.append(best_yaml)
    files += _plots(s, study, log)
    run = best.user_attrs.get("run")
    result: Dict[str, Any] = {}
    if s.test_n and run:
        log(f"scoring the best run (trial {best.number + 1}) on the test split ({s.test_n} images)")
        try:
            result = evaluate.evaluate_run(run, split="test", metrics=DEFAULT_METRICS, n=s.test_n,
                                           extractor=base.eval.extractor, seed=0, progress=False,
                                           data_dir=base.data.data_dir)
        except DataError as e:      # a folder without a test/ subfolder has no test split
            log(f"best-test.json skipped: {e}")
        else:
            atomic_write_text(s.out / "best-test.json", json.dumps(result, indent=2) + "\n")
            files.append(s.out / "best-test.json")
            log(evaluate.format_table(result))
    log(f"best: trial {best.number + 1}, FID(val) {best.value:.2f}: "
        + ", ".join(f"{k}={_fmt(v)}" for k, v in best.params.items()))
    log(f"wrote {', '.join(str(f) for f in files)}; train it with "
        f"`ganforge train --config {best_yaml}`")
    return {"best": {"trial": best.number + 1, "fid_val": best.value, "params": best.params,
                     "run": run, "test": result}, "files": [str(f) for f in files]}


def _row(t, space: List[Param]) -> Dict[str, Any]:
    r = {"trial": f"{t.number + 1}{' (start)' if t.user_attrs.get('baseline') else ''}",
         "state": t.state.name.lower(),
         "fid_val": "" if t.value is None else round(t.value, 4),
         "step": t.user_attrs.get("step", ""), "seconds": t.user_attrs.get("seconds", ""),
         "run": t.user_attrs.get("run", ""), "note": t.user_attrs.get("error", "")}
    if t.value is None and t.intermediate_values:
        r["fid_val"] = round(t.intermediate_values[max(t.intermediate_values)], 4)
    for q in space:
        r[q.key] = _fmt(t.params[q.key]) if q.key in t.params else ""
    return r


def _csv(cols: List[str], rows: List[Dict[str, Any]]) -> str:
    import io
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def _table(cols: List[str], rows: List[Dict[str, Any]]) -> str:
    cells = [[str(r.get(c, "")) for c in cols] for r in rows]
    widths = [max([len(c)] + [len(x[i]) for x in cells]) for i, c in enumerate(cols)]
    line = lambda xs: "  ".join(x.ljust(w) for x, w in zip(xs, widths))   # noqa: E731
    return "\n".join([line(cols)] + [line(x) for x in cells])


def best_preset_yaml(s: Study, best) -> str:
    """The preset the study started from (``--config`` and its overrides) with the best
    trial's values and the budget as its length, in ``runs/<study>-best``: a file that
    ``ganforge train --config`` reads. Values are written with their config types."""
    d: Dict[str, Any] = json.loads(json.dumps(load_yaml(s.preset))) if s.preset else {}
    over: Dict[str, Any] = dict(parse_pairs(list(s.overrides)))
    over.update(best.params)
    steps = int(s.budget.amount) if s.budget.kind == "steps" else int(best.user_attrs.get("step") or 0)
    if steps:
        over.update({"train.steps": steps, "train.epochs": 0})
    over["out"] = f"runs/{s.name}-best"
    cfg = load_config(s.preset, over)           # typed, and checked like any preset
    for k in over:
        sec, name = resolve_key(k, "tune")
        value = getattr(cfg, name) if sec is None else getattr(getattr(cfg, sec), name)
        if sec is None:
            d[name] = value
        else:
            d.setdefault(sec, {})[name] = value
    old = d.get("description", "")
    d["description"] = (f"tuned by ganforge tune (study {s.name}, best of {s.trials} trials, "
                        f"FID {best.value:.2f} on val at a budget of {s.budget})"
                        + (f"; from: {old}" if old else ""))
    return ("# Written by ganforge tune; use with: ganforge train --config THIS_FILE\n"
            + yaml.safe_dump(d, sort_keys=False, width=100))


def _plots(s: Study, study, log) -> List[Path]:
    """history.png and importance.png (matplotlib, headless); skipped with a note when Optuna
    cannot draw one (e.g. importances need two finished trials with different values)."""
    import matplotlib
    matplotlib.use("Agg")
    import warnings

    import matplotlib.pyplot as plt
    optuna = _optuna()
    vis = optuna.visualization.matplotlib
    out = []
    for name, draw in (("history.png", vis.plot_optimization_history),
                       ("importance.png", vis.plot_param_importances)):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ax = draw(study)
            if name == "history.png" and hasattr(ax, "set_ylabel"):
                ax.set_ylabel("FID on the val split")
                ax.set_xlabel("trial (0-based)")
            fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
            fig.set_size_inches(7, 4.5)
            fig.tight_layout()
            tmp = s.out / f".{name}.tmp.png"
            fig.savefig(tmp, dpi=110)
            plt.close(fig)
            os.replace(tmp, s.out / name)
            out.append(s.out / name)
        except (ValueError, RuntimeError, ZeroDivisionError, IndexError) as e:
            log(f"{name} skipped: {e}")
    return out


# --------------------------------------------------------------------------- CLI
def arguments(t: argparse.ArgumentParser) -> None:
    t.add_argument("--config", help="preset or YAML file every trial starts from")
    t.add_argument("--space", required=True, help="SPACE.yaml: config keys -> distributions")
    t.add_argument("--trials", type=at_least(1, most=100000), default=20, help="trials (finished or pruned) in the study")
    t.add_argument("--budget", required=True, help="per trial: 300s, 5m or 5000steps")
    t.add_argument("--jobs", type=at_least(1, most=256), default=1, help="worker processes on this machine (each "
                                                        "gets cores/jobs threads)")
    t.add_argument("--study", default="", help="study name (default: the preset's name)")
    t.add_argument("--storage", default="", help="Optuna storage URL (default: sqlite:///OUT/study.db)")
    t.add_argument("--out", default="", help="output folder (default: runs/tune-<study>)")
    t.add_argument("--seed", type=seed(), default=0, help="seed of the TPE sampler")
    t.add_argument("--rungs", type=at_least(1, most=100), default=4, help="scores per trial reported to the pruner")
    t.add_argument("--eval-n", type=at_least(2, most=200000), default=2000, help="generated images per validation score")
    t.add_argument("--test-n", type=at_least(0, "no test score", most=200000), default=10000, help="images to score the best run on "
                                                             "the test split (0: skip)")
    t.add_argument("--threads", type=at_least(0, "auto", most=1024), default=0, help="train.threads of each trial (0: auto)")
    t.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    t.add_argument("overrides", nargs="*", help="key=value config overrides for every trial")


def run(args: argparse.Namespace) -> int:
    for flag, v, lo in (("--trials", args.trials, 1), ("--jobs", args.jobs, 1), ("--rungs", args.rungs, 1),
                        ("--eval-n", args.eval_n, 2), ("--test-n", args.test_n, 0),
                        ("--threads", args.threads, 0)):
        if v < lo:
            raise UserError(f"{flag} {v}: must be >= {lo}")
    budget = parse_budget(args.budget)
    name = args.study or (Path(args.config).stem if args.config else "study")
    out = Path(args.out or f"runs/tune-{name}")
    s = Study(preset=args.config, space=args.space, trials=args.trials, budget=budget, out=out,
              overrides=list(args.overrides), jobs=args.jobs, study=args.study, storage=args.storage,
              seed=args.seed, rungs=args.rungs, eval_n=args.eval_n, test_n=args.test_n,
              threads=args.threads, worker=args.worker)
    log = (lambda m: print(m, flush=True))
    run_study(s, log=log)
    return 0


COMMAND = Command(
    "tune", "search hyper-parameters with Optuna (TPE + pruning), scored by FID on a validation "
            "split", arguments, run, overrides=True,
    description="Each trial is a training run under --budget, scored by FID against the "
                "validation split carved from the training data. Writes study.db, trials.csv, "
                "best.yaml, history.png, importance.png and best-test.json to --out.")
