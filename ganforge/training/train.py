"""The commands that train a run: ``ganforge train`` (flags and ``key=value`` overrides -> a
checked :class:`Config` -> the :class:`~ganforge.training.trainer.Trainer`, which writes a run
folder) and ``ganforge distill`` (a student run of a trained teacher's task,
:mod:`ganforge.training.distill`).

Settings come from the defaults, then ``--config`` (a preset or a YAML file), then the flags,
then the overrides (``train.lr_g=1e-4``). A flag that sets a config key is a
:class:`~ganforge.core.command.Flag`, with the key's own type and range: the shared ones here
(:data:`FLAGS`) and each task's own beside its code (``Task.flags``: ``--balance``,
``--domain-a``, ...). ``--steps``/``--epochs`` are stricter than their keys (a length of 0 would
mean "the default length"), so they have their own types.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Tuple

from ganforge.core import distributed, runfolder
from ganforge.core.argtypes import at_least, positive
from ganforge.core.checkpoint import CheckpointError, find_checkpoint, load_checkpoint
from ganforge.core.command import Command, Flag, flag_values
from ganforge.core.config import (
    Config,
    help_config,
    load_yaml,
    merge,
    parse_pairs,
    preset_names,
)
from ganforge.core.errors import UserError
from ganforge.data.spec import absolute_spec
from ganforge.training import claim
from ganforge.training.callbacks.report import WriteReport
from ganforge.training.tasks import TASKS, resolve_config
from ganforge.training.trainer import Trainer, default_run_dir

#: ``ganforge train`` flags that set a shared key (each task adds its own: ``Task.flags``)
FLAGS: Tuple[Flag, ...] = (
    Flag("--model", "model.name", "model family (see `ganforge list`)"),
    Flag("--task", "train.task", "what to train (see `ganforge list`; default: an unconditional GAN)"),
    Flag("--data", "data.name", "dataset name (fashion-mnist, mnist, emoji) or a path"),
    Flag("--data-dir", "data.data_dir", "where named datasets are stored (beats $GANFORGE_DATA)"),
    Flag("--batch-size", "train.batch_size", "images per step", metavar="N"),
    Flag("--out", "out", "run folder (default runs/<model>-<data>)", metavar="RUN_DIR"),
    Flag("--seed", "train.seed"),
    Flag("--strict", "data.strict", "fail on unreadable images instead of skipping"),
    Flag("--init-from", "train.init_from", "transfer learning: start from the weights of a trained "
         "run or checkpoint (same model settings); optimisers and step count start fresh",
         metavar="RUN_OR_CKPT"),
    Flag("--freeze-d", "train.freeze_d", "FreezeD: keep D's first K blocks fixed (with --init-from)",
         metavar="K"),
    Flag("--device", "train.device", "where to train: auto (a GPU when there is one), cpu, cuda "
         "or cuda:N (as sample, eval and serve take it)", metavar="DEVICE"),
    Flag("--eval-every", "eval.every", "compute eval.metrics every N steps; keeps "
         "checkpoints/best.pt by FID", metavar="N"),
)


#: config keys that may name a local folder (stored absolute: see train_config). CycleGAN's
#: domains are not among them: its runs stored them as given since 0.1, and a resume compares
#: them with the saved ones.
PATH_KEYS = ("data.name", "pix2pix.data_a", "pix2pix.data_b", "pix2pix.aligned")


def all_flags() -> Tuple[Flag, ...]:
    """The shared flags and every registered task's own."""
    return FLAGS + tuple(f for _, task in TASKS.items() for f in task.flags)


def train_config(args: argparse.Namespace) -> Config:
    """The run's config from the parsed command line: defaults, the run's own saved config when
    resuming, ``--config``, the flags, the overrides; every key checked."""
    cfg = Config()
    run_dir = Path(args.out) if args.out else None
    saved = runfolder.config_path(run_dir) if args.resume and run_dir is not None else None
    if saved is not None and not args.config:
        # A resumed run starts from its own saved config; flags given now override it.
        cfg = merge(cfg, load_yaml(saved), where=f"{saved}")
    if args.config:
        cfg = merge(cfg, load_yaml(args.config), where=f"--config {args.config}")
    flags = flag_values(args, all_flags())
    flags.update({k: v for k, v in (("train.steps", args.steps), ("train.epochs", args.epochs))
                  if v is not None})
    cfg = cfg.with_overrides(flags, where="flag")
    if args.steps is not None and args.epochs is None:
        cfg = cfg.with_overrides({"train.epochs": 0})
    if args.epochs is not None and args.steps is None:
        cfg = cfg.with_overrides({"train.steps": 0})
    cfg = cfg.with_overrides(parse_pairs(args.overrides), where="override")
    # a folder given relative to here: stored absolute, so the run can be resumed, evaluated
    # and sampled from any directory (the data, pix2pix's two folders)
    paths = {k: getattr(getattr(cfg, k.split(".")[0]), k.split(".")[1]) for k in PATH_KEYS}
    absolute = {k: absolute_spec(v) for k, v in paths.items() if v and absolute_spec(v) != v}
    if absolute:
        cfg = cfg.with_overrides(absolute, where="flag")
    return resolve_config(cfg)


def trainer_for(cfg: Config, args: argparse.Namespace) -> Trainer:
    """The Trainer of ``train`` and ``distill`` (with the report written at the end of each
    session); a refused run leaves no empty run folder."""
    with claim.removed_if_unused(Path(cfg.out or default_run_dir(cfg))):
        return Trainer(cfg, resume=args.resume, overwrite=args.overwrite,
                       callbacks=[WriteReport()])


def free_run_dir(cfg: Config, args: argparse.Namespace) -> Config:
    """A new run whose folder was not given (``--out``: the default, or the preset's ``out``)
    and is taken by another run goes to the first free ``<folder>-2``, ``-3``, ... (said in a
    note), so the commands a newcomer types first (``make train``, then ``ganforge train``)
    do not collide; ``--resume``/``--overwrite`` and a given ``--out`` mean that folder.
    Under torchrun the processes must agree on the folder, so there the folder is as given."""
    if getattr(args, "out", None) or args.resume or args.overwrite or distributed.env_info().enabled:
        return cfg
    base = Path(cfg.out or default_run_dir(cfg))
    if not runfolder.holds_run(base):
        return cfg
    n = 2
    while runfolder.holds_run(base.with_name(f"{base.name}-{n}")) or \
            runfolder.started_without_checkpoint(base.with_name(f"{base.name}-{n}")):
        n += 1
    new = base.with_name(f"{base.name}-{n}")
    print(f"[ganforge] {base} holds another run; this one goes to {new} (continue that one with "
          f"`ganforge train --out {base} --resume`, or choose a folder with --out)",
          file=sys.stderr, flush=True)
    return cfg.with_overrides({"out": str(new)}, where="flag")


def fit(cfg: Config, args: argparse.Namespace) -> int:
    """Train ``cfg`` (train, distill): 0 when done, 130 when interrupted; with
    ``--print-config`` only print the resolved config."""
    if args.print_config:
        print(cfg.dump_yaml())
        return 0
    cfg = free_run_dir(cfg, args)
    try:
        summary = trainer_for(cfg, args).fit()
    finally:
        distributed.shutdown()
    return 130 if summary.get("interrupted") else 0


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="PRESET.yaml",
                   help=f"a YAML file or preset name ({', '.join(preset_names())})")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--steps", type=at_least(1, most=10**9), metavar="N", help="generator steps to train in total")
    g.add_argument("--epochs", type=positive(float, most=10**6), metavar="N", help="passes over the data")
    for flag in all_flags():
        flag.add_to(p)
    p.add_argument("--resume", action="store_true", help="continue from RUN_DIR/checkpoints/latest.pt")
    p.add_argument("--overwrite", action="store_true",
                   help="RUN_DIR holds a run: delete its checkpoints, samples and logs and start over")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.add_argument("--help-config", action="store_true", help="print every config key with its default")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")


def run(args: argparse.Namespace) -> int:
    if args.help_config:
        print(help_config())
        return 0
    return fit(train_config(args), args)


COMMAND = Command(
    "train", "train a model; writes a run folder", arguments, run, overrides=True,
    description="Train a GAN. Settings come from defaults, then --config, then the flags, then "
                "key=value overrides (e.g. train.lr_g=1e-4).")


# --------------------------------------------------------------------------- distill
def distill_config(args: argparse.Namespace) -> Config:
    """The student's config: the teacher's own (its run folder's config.yaml, else the one in
    its checkpoint), then --model/--steps/--out and key=value overrides, with
    distill.teacher set. Only what the user changes differs from the teacher."""
    teacher = Path(args.teacher)
    saved = runfolder.config_path(teacher) if teacher.is_dir() else None
    if saved is not None:
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


def distill_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("teacher", metavar="TEACHER_RUN", help="a trained run folder or checkpoint")
    p.add_argument("--out", required=True, help="the student's run folder")
    p.add_argument("--model", help="the student's model family (default: the teacher's)")
    p.add_argument("--steps", type=at_least(1, most=10**9), metavar="N", help="training steps of the student")
    p.add_argument("--resume", action="store_true", help="continue the student run in --out")
    p.add_argument("--overwrite", action="store_true", help="replace a run in --out")
    p.add_argument("--print-config", action="store_true", help="print the student's config and exit")
    p.add_argument("overrides", nargs="*", help="key=value, e.g. model.g_width=8 distill.adversarial=0.1")


def run_distill(args: argparse.Namespace) -> int:
    return fit(distill_config(args), args)


DISTILL = Command(
    "distill", "train a smaller generator to reproduce a trained one", distill_arguments,
    run_distill, overrides=True,
    description="Knowledge distillation: a student run of the teacher's task learns the "
                "teacher's outputs (pixel L1 + teacher-D feature matching; distill.adversarial "
                "adds the GAN loss). The student starts from the teacher's config; change its "
                "size with key=value, e.g. model.g_width=8.")
