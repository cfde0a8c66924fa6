"""The `ganforge` command: thin argument parsing over the library.

Command and flag names here are a contract (README "CLI reference"); keep them stable.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional

from ganforge.config import Config, ConfigError, load_yaml, merge, parse_pairs, preset_names


class UserError(Exception):
    """An error caused by the user's input; printed without a traceback."""


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
             "data.strict": True if args.strict else None, "train.task": args.task}
    cfg = cfg.with_overrides({k: v for k, v in flags.items() if v is not None}, where="flag")
    if args.steps is not None and args.epochs is None:
        cfg = cfg.with_overrides({"train.epochs": 0})
    if args.epochs is not None and args.steps is None:
        cfg = cfg.with_overrides({"train.steps": 0})
    cfg = cfg.with_overrides(parse_pairs(args.overrides), where="override")
    return cfg


def cmd_train(args: argparse.Namespace) -> int:
    from ganforge.trainer import Trainer
    if args.help_config:
        print(Config().dump_yaml())
        return 0
    cfg = _train_config(args)
    if args.print_config:
        print(cfg.dump_yaml())
        return 0
    trainer = Trainer(cfg, resume=args.resume)
    summary = trainer.fit()
    return 130 if summary.get("interrupted") else 0


# --------------------------------------------------------------------------- sample
def cmd_sample(args: argparse.Namespace) -> int:
    from ganforge.sampling import sample_to_file
    path = sample_to_file(args.run, n=args.n, out=args.out, seed=args.seed, which=args.checkpoint,
                          device=args.device)
    print(f"wrote {path}")
    return 0


# --------------------------------------------------------------------------- list
def cmd_list(args: argparse.Namespace) -> int:
    from ganforge import models
    from ganforge.data import DATASETS
    from ganforge.losses import LOSSES
    from ganforge.tasks import TASKS

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
    try:
        from ganforge.metrics import EXTRACTORS
        show("feature extractors", [(n, EXTRACTORS.help(n)) for n in EXTRACTORS.names()])
    except ImportError:
        pass
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
    p = argparse.ArgumentParser(prog="ganforge", description="Train, evaluate and use GANs.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    t = sub.add_parser("train", help="train a model; writes a run folder",
                       description="Train a GAN. Settings come from defaults, then --config, then "
                                   "the flags, then key=value overrides (e.g. train.lr_g=1e-4).")
    t.add_argument("--config", metavar="PRESET.yaml", help=f"a YAML file or preset name ({', '.join(preset_names())})")
    t.add_argument("--model", help="model family (see `ganforge list`)")
    t.add_argument("--task", help="task: gan (default)")
    t.add_argument("--data", help="dataset name (fashion-mnist, mnist, emoji) or a path")
    t.add_argument("--data-dir", help="where named datasets are stored (beats $GANFORGE_DATA)")
    g = t.add_mutually_exclusive_group()
    g.add_argument("--steps", type=int, metavar="N", help="generator steps to train in total")
    g.add_argument("--epochs", type=float, metavar="N", help="passes over the data")
    t.add_argument("--batch-size", type=int, metavar="N")
    t.add_argument("--out", metavar="RUN_DIR", help="run folder (default runs/<model>-<data>)")
    t.add_argument("--resume", action="store_true", help="continue from RUN_DIR/checkpoints/latest.pt")
    t.add_argument("--seed", type=int)
    t.add_argument("--strict", action="store_true", help="fail on unreadable images instead of skipping")
    t.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    t.add_argument("--help-config", action="store_true", help="print every config key with its default")
    t.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    t.set_defaults(func=cmd_train)

    s = sub.add_parser("sample", help="generate images from a trained run")
    s.add_argument("run", metavar="RUN_DIR_OR_CKPT")
    s.add_argument("--n", type=int, default=64, help="number of images (default 64)")
    s.add_argument("--out", default="samples.png", help="grid .png/.jpg, or .npy (float32 NxCxHxW in [-1,1])")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--checkpoint", default="latest", help="latest (default) or best")
    s.add_argument("--device", default="cpu")
    s.set_defaults(func=cmd_sample)

    l = sub.add_parser("list", help="list models, tasks, losses, datasets and presets")
    l.set_defaults(func=cmd_list)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from ganforge.checkpoint import CheckpointError
    user_errors: tuple = (ConfigError, UserError, CheckpointError)
    try:
        from ganforge.data import DataError
        user_errors += (DataError,)
    except ImportError:
        pass
    from ganforge.registry import RegistryError
    user_errors += (RegistryError,)
    try:
        return args.func(args)
    except user_errors as e:
        print(f"ganforge {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nganforge: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
