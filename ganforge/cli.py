"""The `ganforge` command: thin argument parsing over the library.

Command and flag names here are a contract (README "CLI reference"); keep them stable.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path
from typing import List, NoReturn, Optional

from ganforge.core import distributed

from ganforge.use import evaluate

from ganforge import models
from ganforge.use.animate import add_interpolate_parser, add_progress_parser
from ganforge.core.argtypes import at_least, positive
from ganforge.core.checkpoint import CheckpointError, find_checkpoint, load_checkpoint
from ganforge.core.config import Config, ConfigError, help_config, load_yaml, merge, parse_pairs, preset_names
from ganforge.data import DATASETS
from ganforge.data.spec import absolute_spec
from ganforge.core.errors import GanforgeError, UserError
from ganforge.metrics.domain.train import add_evaluator_parser
from ganforge.use.export import add_export_parser
from ganforge.use.report import add_report_parser
from ganforge.training.callbacks.report import WriteReport
from ganforge.losses.adversarial import LOSSES
from ganforge.metrics import DEFAULT_METRICS, EXTRACTORS, METRICS
from ganforge.use.sample import sample_to_file
from ganforge.use.serve import add_serve_parser
from ganforge.metrics.scoring import MIN_EVAL_IMAGES, parse_metrics
from ganforge.training.tasks import TASKS, resolve_config
from ganforge.training.trainer import Trainer, default_run_dir
from ganforge.training import claim
from ganforge.use.translate import add_translate_parser
from ganforge.training.tune import add_tune_parser


# --------------------------------------------------------------------------- train
def _train_config(args: argparse.Namespace) -> Config:
    cfg = Config()
    run_dir = Path(args.out) if args.out else None
    if args.resume and run_dir is not None and (run_dir / "config.yaml").exists() and not args.config:
        # A resumed run starts from its own saved config; flags given now override it.
        cfg = merge(cfg, load_yaml(run_dir / "config.yaml"), where=f"{run_dir / 'config.yaml'}")
    if args.config:
        cfg = merge(cfg, load_yaml(args.config), where=f"--config {args.config}")
    flags = {"model.name": args.model, "data.name": args.data, "train.steps": args.steps,
             "train.epochs": args.epochs, "train.batch_size": args.batch_size, "out": args.out,
             "train.seed": args.seed, "data.data_dir": args.data_dir,
             "data.strict": True if args.strict else None, "train.task": args.task,
             "cyclegan.domain_a": args.domain_a, "cyclegan.domain_b": args.domain_b,
             "cond.balance": True if args.balance else None,
             "eval.every": args.eval_every, "train.init_from": args.init_from,
             "train.freeze_d": args.freeze_d}
    cfg = cfg.with_overrides({k: v for k, v in flags.items() if v is not None}, where="flag")
    if args.steps is not None and args.epochs is None:
        cfg = cfg.with_overrides({"train.epochs": 0})
    if args.epochs is not None and args.steps is None:
        cfg = cfg.with_overrides({"train.steps": 0})
    cfg = cfg.with_overrides(parse_pairs(args.overrides), where="override")
    data = absolute_spec(cfg.data.name) if cfg.data.name else ""
    if data != cfg.data.name:
        # a folder given relative to here: stored absolute, so the run can be resumed,
        # evaluated and sampled from any directory
        cfg = cfg.with_overrides({"data.name": data}, where="flag")
    return resolve_config(cfg)


def _trainer(cfg: Config, args: argparse.Namespace) -> Trainer:
    """The Trainer of ``train`` and ``distill``; a refused run leaves no empty run folder."""
    with claim.removed_if_unused(Path(cfg.out or default_run_dir(cfg))):
        return Trainer(cfg, resume=args.resume, overwrite=args.overwrite,
                       callbacks=[WriteReport()])


def cmd_train(args: argparse.Namespace) -> int:
    if args.help_config:
        print(help_config())
        return 0
    cfg = _train_config(args)
    if args.print_config:
        print(cfg.dump_yaml())
        return 0
    try:
        summary = _trainer(cfg, args).fit()
    finally:
        distributed.shutdown()
    return 130 if summary.get("interrupted") else 0


# --------------------------------------------------------------------------- distill
def _distill_config(args: argparse.Namespace) -> Config:
    """The student's config: the teacher's own (its run folder's config.yaml, else the one in
    its checkpoint), then --model/--steps/--out and key=value overrides, with
    distill.teacher set. Only what the user changes differs from the teacher."""
    teacher = Path(args.teacher)
    saved = teacher / "config.yaml" if teacher.is_dir() else None
    if saved is not None and saved.is_file():
        d = load_yaml(saved)
    else:
        try:
            d = load_checkpoint(find_checkpoint(teacher), map_location="cpu").get("config", {})
        except CheckpointError as e:
            raise UserError(f"ganforge distill {args.teacher}: {e}") from None
    cfg = merge(Config(), d, where=f"the teacher's config ({args.teacher})")
    flags = {"model.name": args.model, "train.steps": args.steps, "out": args.out,
             "distill.teacher": str(args.teacher), "train.init_from": "", "train.freeze_d": 0}
    if args.steps is not None:
        flags["train.epochs"] = 0
    cfg = cfg.with_overrides({k: v for k, v in flags.items() if v is not None}, where="flag")
    cfg = cfg.with_overrides(parse_pairs(args.overrides), where="override")
    return resolve_config(cfg)


def cmd_distill(args: argparse.Namespace) -> int:
    cfg = _distill_config(args)
    if args.print_config:
        print(cfg.dump_yaml())
        return 0
    try:
        summary = _trainer(cfg, args).fit()
    finally:
        distributed.shutdown()
    return 130 if summary.get("interrupted") else 0


# --------------------------------------------------------------------------- sample
def cmd_sample(args: argparse.Namespace) -> int:
    path = sample_to_file(args.run, n=args.n, out=args.out, seed=args.seed, which=args.checkpoint,
                          device=args.device, class_=args.class_, ema=not args.no_ema,
                          truncation=args.truncation)
    print(f"wrote {path}")
    return 0


# --------------------------------------------------------------------------- eval
def cmd_eval(args: argparse.Namespace) -> int:
    metrics = parse_metrics(args.metrics)
    common = dict(metrics=metrics, n=args.n, extractor=args.extractor, weights=args.weights,
                  seed=args.seed, device=args.device, data_dir=args.data_dir)
    if args.run and (args.real or args.fake):
        raise UserError("give either RUN_DIR_OR_CKPT or --real/--fake, not both")
    if args.run:
        result = evaluate.evaluate_run(args.run, split=args.split, which=args.checkpoint,
                                       ema=not args.no_ema, **common)
    elif args.real and args.fake:
        result = evaluate.evaluate_pair(args.real, args.fake, img_size=args.img_size, **common)
    else:
        raise UserError("nothing to evaluate: give a run folder/checkpoint, or both --real and --fake "
                        "(e.g. --real fashion-mnist:train --fake fashion-mnist:test)")
    print(evaluate.format_table(result))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


# --------------------------------------------------------------------------- list
def cmd_list(args: argparse.Namespace) -> int:

    def show(title: str, rows):
        print(f"{title}:")
        for name, help_ in rows:
            print(f"  {name:<24} {help_}")
        print()

    show("models", [(n, models.GENERATORS.help(n)) for n in models.family_names()])
    show("tasks", [(n, TASKS.help(n)) for n in TASKS.names()])
    show("losses", [(n, LOSSES.help(n)) for n in LOSSES.names()])
    show("datasets", [(n, DATASETS.help(n)) for n in DATASETS.names()]
         + [("PATH", "a folder of images (subfolders = classes), or a .npy/.npz array")])
    show("presets (--config NAME)", [(n, _preset_summary(n)) for n in preset_names()])
    show("feature extractors", [(n, EXTRACTORS.help(n)) for n in EXTRACTORS.names()])
    return 0


def _preset_summary(name: str) -> str:
    try:
        d = load_yaml(name)
    except ConfigError:
        return ""
    first = d.get("description") if isinstance(d, dict) else None
    model = d.get("model", {}).get("name", "") if isinstance(d.get("model"), dict) else ""
    data = d.get("data", {}).get("name", "") if isinstance(d.get("data"), dict) else ""
    return first or f"{model} on {data}"


# --------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="ganforge", description="Train, evaluate and use GANs.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    t = sub.add_parser("train", help="train a model; writes a run folder",
                       description="Train a GAN. Settings come from defaults, then --config, then "
                                   "the flags, then key=value overrides (e.g. train.lr_g=1e-4).")
    t.add_argument("--config", metavar="PRESET.yaml", help=f"a YAML file or preset name ({', '.join(preset_names())})")
    t.add_argument("--model", help="model family (see `ganforge list`)")
    t.add_argument("--task", help="what to train (see `ganforge list`; default: an unconditional GAN)")
    t.add_argument("--data", help="dataset name (fashion-mnist, mnist, emoji) or a path")
    t.add_argument("--data-dir", help="where named datasets are stored (beats $GANFORGE_DATA)")
    t.add_argument("--domain-a", metavar="DOMAIN", help="--task cyclegan: domain A, e.g. "
                   "fashion-mnist:sneaker or a folder (cyclegan.domain_a)")
    t.add_argument("--domain-b", metavar="DOMAIN", help="--task cyclegan: domain B, e.g. "
                   "fashion-mnist:ankle-boot or a folder (cyclegan.domain_b)")
    g = t.add_mutually_exclusive_group()
    g.add_argument("--steps", type=at_least(1), metavar="N", help="generator steps to train in total")
    g.add_argument("--epochs", type=positive(float), metavar="N", help="passes over the data")
    t.add_argument("--batch-size", type=at_least(1), metavar="N")
    t.add_argument("--out", metavar="RUN_DIR", help="run folder (default runs/<model>-<data>)")
    t.add_argument("--resume", action="store_true", help="continue from RUN_DIR/checkpoints/latest.pt")
    t.add_argument("--overwrite", action="store_true",
                   help="RUN_DIR holds a run: delete its checkpoints, samples and logs and start over")
    t.add_argument("--seed", type=int)
    t.add_argument("--strict", action="store_true", help="fail on unreadable images instead of skipping")
    t.add_argument("--balance", action="store_true",
                   help="--task conditional: draw real images class-balanced (inverse class "
                        "frequency) and G's labels uniformly")
    t.add_argument("--init-from", metavar="RUN_OR_CKPT",
                   help="transfer learning: start from the weights of a trained run or checkpoint "
                        "(same model settings); optimisers and step count start fresh")
    t.add_argument("--freeze-d", type=at_least(0, "off"), metavar="K",
                   help="FreezeD: keep D's first K blocks fixed (with --init-from)")
    t.add_argument("--eval-every", type=at_least(0, "off"), metavar="N", help="compute eval.metrics every N steps; keeps checkpoints/best.pt by FID")
    t.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    t.add_argument("--help-config", action="store_true", help="print every config key with its default")
    t.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    t.set_defaults(func=cmd_train)

    s = sub.add_parser("sample", help="generate images from a trained run")
    s.add_argument("run", metavar="RUN_DIR_OR_CKPT")
    s.add_argument("--n", type=at_least(1), default=64, help="number of images (default 64)")
    s.add_argument("--out", default="samples.png", help="grid .png/.jpg, or .npy (float32 NxCxHxW in [-1,1])")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--checkpoint", default="latest", help="latest (default) or best")
    s.add_argument("--device", default="cpu")
    s.add_argument("--class", dest="class_", metavar="CLASS",
                   help="conditional runs: a class name (sneaker, t-shirt-top; any case) or "
                        "index, or 'all' for one labelled row per class (ceil(n/K) images each)")
    s.add_argument("--no-ema", action="store_true",
                   help="use the raw generator, not its weight average (runs with ema.half_life)")
    s.add_argument("--truncation", type=positive(float), metavar="PSI", help="truncation trick: resample noise components until |z| <= PSI (less variety, cleaner images)")
    s.set_defaults(func=cmd_sample)

    e = sub.add_parser("eval", help="score a run (or two datasets) with FID, KID, precision/recall, ...",
                       description="Score a trained run against the real data it was trained on, or "
                                   "two datasets/folders against each other (--real/--fake).")
    e.add_argument("run", nargs="?", metavar="RUN_DIR_OR_CKPT")
    e.add_argument("--real", metavar="DATA", help="real side, e.g. fashion-mnist:train or a folder")
    e.add_argument("--fake", metavar="DATA", help="fake side, e.g. fashion-mnist:test or a folder")
    e.add_argument("--metrics", help=f"comma list of {','.join(METRICS)} (default "
                                      f"{','.join(DEFAULT_METRICS)})")
    e.add_argument("--n", type=at_least(MIN_EVAL_IMAGES), default=10000, help="images per side (default 10000)")
    e.add_argument("--extractor", default="domain", choices=["domain", "inception"],
                   help="domain: a classifier trained on the dataset (default); inception: the FID Inception-v3")
    e.add_argument("--weights", metavar="PATH", help="extractor weights file (evaluator .pt or Inception .pth)")
    e.add_argument("--split", default="test", help="real split a run is compared with (default test)")
    e.add_argument("--img-size", type=at_least(0, "the real side's own size"), default=0, help="with --real/--fake: resize both to this size")
    e.add_argument("--checkpoint", default="latest", help="latest (default) or best")
    e.add_argument("--json", metavar="OUT", help="also write the results as JSON")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--device", default="cpu")
    e.add_argument("--data-dir", help="where named datasets are stored")
    e.add_argument("--no-ema", action="store_true",
                   help="score the raw generator, not its weight average (runs with ema.half_life)")
    e.set_defaults(func=cmd_eval)

    add_evaluator_parser(sub)
    add_translate_parser(sub)
    add_export_parser(sub)
    add_interpolate_parser(sub)
    add_progress_parser(sub)
    add_report_parser(sub)
    add_serve_parser(sub)
    add_tune_parser(sub)
    di = sub.add_parser("distill", help="train a smaller generator to reproduce a trained one",
                        description="Knowledge distillation: a student run of the teacher's task "
                                    "learns the teacher's outputs (pixel L1 + teacher-D feature "
                                    "matching; distill.adversarial adds the GAN loss). The student "
                                    "starts from the teacher's config; change its size with "
                                    "key=value, e.g. model.g_width=8.")
    di.add_argument("teacher", metavar="TEACHER_RUN", help="a trained run folder or checkpoint")
    di.add_argument("--out", required=True, help="the student's run folder")
    di.add_argument("--model", help="the student's model family (default: the teacher's)")
    di.add_argument("--steps", type=at_least(1), metavar="N", help="training steps of the student")
    di.add_argument("--resume", action="store_true", help="continue the student run in --out")
    di.add_argument("--overwrite", action="store_true", help="replace a run in --out")
    di.add_argument("--print-config", action="store_true", help="print the student's config and exit")
    di.add_argument("overrides", nargs="*", help="key=value, e.g. model.g_width=8 distill.adversarial=0.1")
    di.set_defaults(func=cmd_distill)

    l = sub.add_parser("list", help="list models, tasks, losses, datasets and presets")
    l.set_defaults(func=cmd_list)
    return p


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``ganforge train: error: ...``, exit code 2) instead of a
    usage block; ``--help`` still shows the usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _split_overrides(args: argparse.Namespace, extra: List[str], parser: argparse.ArgumentParser) -> None:
    """``key=value`` overrides may stand anywhere on a ``train`` command line (between flags
    too): argparse leaves the ones after a flag's value unparsed, so they are collected here."""
    stray = [a for a in extra if a.startswith("-") or "=" not in a]
    if stray or (extra and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(stray or extra)}")
    if extra:
        args.overrides = list(args.overrides) + extra


def _internal_error(command: str, exc: BaseException) -> int:
    """An error ganforge did not expect (a bug): one line, the traceback in a file."""
    import tempfile
    import time
    import traceback
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    try:
        fd, path = tempfile.mkstemp(prefix=f"ganforge-{command}-{time.strftime('%Y%m%d-%H%M%S')}-",
                                    suffix=".log")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        where = f"full traceback in {path}"
    except OSError:
        where = "the traceback could not be written"
    first = str(exc).splitlines()[0] if str(exc) else ""
    print(f"ganforge {command}: internal error: {type(exc).__name__}: {first} ({where}; "
          f"please report it)", file=sys.stderr)
    return 1


_PACKAGE_DIR = str(Path(__file__).resolve().parent)
_python_format_warning = warnings.formatwarning


def _format_warning(message, category, filename, lineno, line=None) -> str:
    """Warnings ganforge itself gives (a skipped file, a setting that cannot help, ...) as
    one line, ``ganforge: warning: ...``; other libraries' in Python's usual format."""
    if str(filename).startswith(_PACKAGE_DIR):
        return f"ganforge: warning: {message}\n"
    return _python_format_warning(message, category, filename, lineno, line)


def main(argv: Optional[List[str]] = None) -> int:
    """The ``ganforge`` command. Returns the exit code: 0 done, 1 a failed run (or an internal
    error, with its traceback written to a file), 2 bad input, 130 interrupted."""
    saved, warnings.formatwarning = warnings.formatwarning, _format_warning
    try:
        return _main(argv)
    finally:
        warnings.formatwarning = saved


def _main(argv: Optional[List[str]]) -> int:
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        _split_overrides(args, extra, parser)
    except SystemExit as e:        # --help (0) or a bad command line (2, one line printed)
        return int(e.code or 0)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except GanforgeError as e:      # every error ganforge raises on purpose (ganforge/core/errors.py)
        print(f"ganforge {args.command}: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("\nganforge: interrupted", file=sys.stderr)
        return 130
    except Exception as e:          # a bug: one line here, the whole traceback in a file
        if os.environ.get("GANFORGE_TRACEBACK"):
            raise
        return _internal_error(args.command, e)


if __name__ == "__main__":
    raise SystemExit(main())
