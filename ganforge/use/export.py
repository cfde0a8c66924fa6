"""``ganforge export RUN --out DIR``: a trained run as a self-contained folder to share.

The folder has the Hugging Face layout and needs no training checkpoint::

    DIR/
      config.json          what rebuilds the generator(s): task, each generator's spec (family +
                           constructor kwargs) and which weights it holds (EMA or raw), image
                           size, channels, class names, z_dim, steps, data spec, the resolved
                           training config, ganforge version, last measured metrics, and the
                           task state the use-time face needs (e.g. label_probs) as plain lists
      model.safetensors    generator weights only, keys ``<generator>.<parameter>`` (G.…,
                           G_AB.…, G_BA.…), metadata ``format`` = ganforge-export-1
      README.md            a model card: data, steps, metrics, the grid, how to load it
      samples.png          the grid the card shows (the task's use-time face)
      generator.onnx       with --onnx (one generator), or <generator>.onnx each (several)

This module is the export folder's one owner: it writes it (:func:`export_run`) and reads it
(:func:`read_export_config`, :func:`load_export`). ``ganforge.load(DIR)`` (and so ``ganforge
sample DIR`` & co.) rebuilds the same face (:class:`ganforge.use.face.Generator`) from JSON and
safetensors alone: nothing in the folder is executed. Every file is written atomically
(:mod:`ganforge.core.files`); ``config.json`` last.

Format versions: ``config.json["format"]`` and the weights' metadata say
:data:`EXPORT_FORMAT`; ``ganforge_version`` says which ganforge wrote it. A folder of another
ganforge export format (a newer one) is refused with both named and what to do
(:class:`ExportFormatError`); a folder without a ganforge ``config.json`` is not an export.
"""
from __future__ import annotations

import argparse
import copy
import io
import json
import math
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch
import torch.nn as nn

from ganforge.core import runfolder
from ganforge.core.checkpoint import CheckpointError, find_checkpoint, load_checkpoint
from ganforge.core.command import Command
from ganforge.core.devices import resolve_device
from ganforge.core.errors import UserError
from ganforge.core.files import atomic_write_bytes, atomic_write_text, probe_writable
from ganforge.core.version import __version__
from ganforge.render.images import save_image
from ganforge.use.face import Generator
from ganforge.use.faces import face_for, face_from_checkpoint

#: ``config.json["format"]`` of an export folder (and the weights' metadata ``format``)
EXPORT_FORMAT = "ganforge-export-1"
#: the files of an export folder (Hugging Face layout)
EXPORT_CONFIG = "config.json"
EXPORT_WEIGHTS = "model.safetensors"



class ExportFormatError(CheckpointError):
    """An export folder of a ganforge export format this version cannot read."""


def read_export_config(folder: str | Path) -> Optional[Dict[str, Any]]:
    """The ``config.json`` of export folder ``folder``, or None when ``folder`` is not one (no
    such file, not JSON, not a ganforge export). Raises :class:`ExportFormatError` for a
    ganforge export of another format, naming the version that wrote it."""
    p = Path(folder) / EXPORT_CONFIG
    if not p.is_file():
        return None
    try:
        cfg = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(cfg, dict):
        return None
    fmt = cfg.get("format")
    if fmt == EXPORT_FORMAT:
        return cfg
    if isinstance(fmt, str) and fmt.startswith("ganforge-export-"):
        raise ExportFormatError(f"'{folder}' is a ganforge export in format {fmt}, written by "
                                f"ganforge {cfg.get('ganforge_version', '?')}; this ganforge "
                                f"{__version__} reads {EXPORT_FORMAT}: install a ganforge that "
                                f"reads it (pip install -U ganforge), or export the run again "
                                f"with this one")
    return None


def is_export(path: str | Path) -> bool:
    """Whether ``path`` is an export folder written by ``ganforge export`` (one of another
    format raises :class:`ExportFormatError`)."""
    return Path(path).is_dir() and read_export_config(path) is not None


def load_export(folder: str | Path, *, ema: bool = True,
                device: str | torch.device = "cpu") -> Generator:
    """The face of export folder ``folder``: JSON and safetensors only, no checkpoint.
    ``ema=False`` is refused when the export holds only weight averages. Raises
    :class:`CheckpointError` (a UserError) for a folder that is not a readable export."""
    from safetensors import SafetensorError, safe_open

    folder = Path(folder)
    device = resolve_device(device)
    cfg = read_export_config(folder)
    if cfg is None:
        raise CheckpointError(f"'{folder}' is not a ganforge export folder (no {EXPORT_CONFIG} "
                              f"of format {EXPORT_FORMAT})")
    if not ema and cfg.get("ema"):
        raise UserError(f"--no-ema: '{folder}' holds only the generators' weight averages; "
                        f"export the run again with --no-ema for the raw ones")
    wpath = folder / EXPORT_WEIGHTS
    weights: Dict[str, Dict[str, torch.Tensor]] = {}
    try:
        with safe_open(str(wpath), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            if meta.get("format") != EXPORT_FORMAT:
                raise CheckpointError(f"'{wpath}' is not ganforge export weights (metadata "
                                      f"format {meta.get('format')!r}, expected {EXPORT_FORMAT})")
            for key in f.keys():
                name, _, sub = key.partition(".")
                weights.setdefault(name, {})[sub] = f.get_tensor(key)
    except (OSError, SafetensorError) as e:
        raise CheckpointError(f"'{wpath}' cannot be read: {e}") from None
    return face_for(str(cfg.get("task") or "")).from_export(cfg, weights, device=device,
                                                            source=str(folder))


# --------------------------------------------------------------------------- writing
CARD = "README.md"
GRID = "samples.png"
#: the ONNX opset: 17 is the newest the TorchScript exporter maps every layer used here to
ONNX_OPSET = 17


def onnx_names(generators: List[str]) -> Dict[str, str]:
    """ONNX file per generator: ``generator.onnx`` for one, ``<name>.onnx`` for several."""
    if len(generators) == 1:
        return {generators[0]: "generator.onnx"}
    return {g: f"{g}.onnx" for g in generators}


def _ours(name: str) -> bool:
    """Whether ``name`` is a file an export writes (or its temporary): an export interrupted
    before its ``config.json`` may be overwritten too."""
    if name.startswith(".") and name.endswith(".tmp"):
        name = name[1:].rsplit(".", 2)[0]
    return name in (EXPORT_CONFIG, EXPORT_WEIGHTS, CARD, GRID) or name.endswith(".onnx")


def _check_out(out: Path, run: Path) -> None:
    """Refuse an ``out`` that is not empty and not an earlier export, or not writable."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out '{out}' is a file; give a folder")
    if out.is_dir() and not is_export(out) and not all(_ours(p.name) for p in out.iterdir()):
        raise UserError(f"--out '{out}' is not empty and holds no earlier export; give a new or "
                        f"empty folder (an earlier export is overwritten)")
    if out.resolve() == run.resolve():
        raise UserError(f"--out '{out}' is the run folder; give another folder")
    why = probe_writable(out)
    if why:
        raise UserError(f"--out '{out}' is not writable: {why}")


def _plain_copy(net: nn.Module) -> nn.Module:
    """A copy of ``net`` that the ONNX exporter maps: parametrisations (spectral norm) baked
    into the weights, ganforge's fast conv/linear variants as their torch base class (the same
    function)."""
    from torch.nn.utils import parametrize
    net = copy.deepcopy(net).cpu().eval()
    for m in net.modules():
        if parametrize.is_parametrized(m):
            for pname in list(m.parametrizations.keys()):
                parametrize.remove_parametrizations(m, pname, leave_parametrized=True)
    for m in net.modules():
        for base in (nn.ConvTranspose2d, nn.Conv2d, nn.Linear, nn.Embedding):
            if isinstance(m, base) and type(m) is not base and type(m).__module__.startswith("ganforge"):
                m.__class__ = base
                break
    return net


def onnx_bytes(model: Generator, name: str) -> bytes:
    """Generator ``name`` of ``model`` as an ONNX model (batch size dynamic). Its inputs are
    :meth:`Generator.example_inputs`' names; its output is ``output`` (not clamped)."""
    args, names = model.example_inputs(name)
    net = _plain_copy(model.modules[name])
    buf = io.BytesIO()
    axes = {n: {0: "batch"} for n in (*names, "output")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            import onnx  # noqa: F401  (the exporter's own dependency)
        except ImportError:
            raise UserError('--onnx needs the onnx package: pip install "ganforge[onnx]"') from None
        torch.onnx.export(net, args, buf, dynamo=False, input_names=list(names),
                          output_names=["output"], dynamic_axes=axes, opset_version=ONNX_OPSET)
    return buf.getvalue()


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, torch.Tensor):
        return x.tolist()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if x is None or isinstance(x, (str, int, float, bool)):
        return x
    return str(x)


def _card(cfg: Dict[str, Any], out: Path, files: List[str], run: str) -> str:
    gens = cfg["generators"]
    names = cfg.get("class_names")
    metrics = cfg.get("metrics") or {}
    lines = [f"# ganforge {cfg['task']} model", "",
             f"A {cfg['task']} generator exported with ganforge {cfg['ganforge_version']} from "
             f"`{run}` ({cfg['checkpoint']}).", ""]
    if GRID in files:
        lines += [f"![samples]({GRID})", ""]
    lines += ["| | |", "|---|---|",
              f"| task | `{cfg['task']}` |",
              f"| data | `{cfg['data'].get('name', '')}` |",
              f"| image size | {cfg['img_size']}×{cfg['img_size']}, {cfg['channels']} channel(s) |",
              f"| training steps | {cfg['step']} |"]
    for g, d in gens.items():
        spec = d["spec"]
        lines.append(f"| {g} | `{spec.get('name')}` ({d['weights']} weights; {d['parameters']:,} "
                     f"parameters) |")
    if cfg.get("z_dim"):
        lines.append(f"| z_dim | {cfg['z_dim']} |")
    if names:
        lines.append(f"| classes | {', '.join(map(str, names))} |")
    lines.append("")
    # the folder by its own name: the card travels with the folder, the exporting machine's
    # paths do not
    here = Path(out).name
    lines += ["## Measured metrics", ""]
    if metrics:
        lines += [f"At step {metrics.get('step', cfg['step'])} (last evaluation of the run):", "",
                  "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {v:.4g} |" for k, v in metrics.items() if k not in ("step", "time")]
    else:
        lines.append(f"None recorded while training; score it with `ganforge eval {here}`.")
    lines += ["", "## Use", "", "```python", "import ganforge",
              f"model = ganforge.load({here!r})   # this folder (its path where you keep it)"]
    if cfg["inputs"] == "noise":
        lines.append("images = model.sample(16, seed=0)" + ("   # classes=... picks classes" if names else "")
                     + "   # float32 (N, C, H, W) in [-1, 1]")
    else:
        lines.append("out = model.translate(images, 'a2b')   # images: float32 (N, C, H, W) in [-1, 1], "
                     "PIL images or paths")
    lines += ["```", "", "```bash"]
    if cfg["inputs"] == "noise":
        lines.append(f"ganforge sample {here} --n 64 --out grid.png")
    else:
        lines.append(f"ganforge translate {here} INPUT --direction a2b --out translated/")
    lines += ["```", "",
              "Loading reads `config.json` and `model.safetensors` only: no code in this folder "
              "is executed."]
    onnx = [f for f in files if f.endswith(".onnx")]
    if onnx:
        lines += ["", "## ONNX", "",
                  f"{', '.join(f'`{f}`' for f in onnx)}: inputs "
                  + "; ".join(f"`{g}`: {', '.join(d['onnx_inputs'])}" for g, d in gens.items()
                              if d.get("onnx_inputs"))
                  + "; output `output` (not clamped to [-1, 1]). Batch size is dynamic."]
    lines += ["", "## Files", "", f"- `{EXPORT_CONFIG}`: everything that rebuilds the generator(s)",
              f"- `{EXPORT_WEIGHTS}`: generator weights (keys `<generator>.<parameter>`)"]
    lines += [f"- `{f}`" for f in files if f not in (EXPORT_CONFIG, EXPORT_WEIGHTS, CARD)]
    return "\n".join(lines) + "\n"


def export_run(run: str | Path, out: str | Path, *, which: str = "latest", ema: bool = True,
               onnx: bool = False) -> Path:
    """Write the export folder ``out`` of run (folder or checkpoint) ``run``; returns ``out``.

    ``which``: ``latest`` or ``best``; ``ema``: the generators' weight averages when the run
    kept them (else the raw ones); ``onnx``: also an ONNX file per generator. Raises
    :class:`UserError` for an ``out`` that is not empty and not an earlier export, or not
    writable, and :class:`ganforge.core.checkpoint.CheckpointError` for a missing checkpoint."""
    from safetensors.torch import save as st_save

    out = Path(out)
    path = find_checkpoint(run, which)
    run_dir = runfolder.run_dir_of(path)
    _check_out(out, run_dir)
    st = load_checkpoint(path, map_location="cpu")
    model = face_from_checkpoint(st, path, ema=ema, device="cpu")
    info = model.info

    tensors: Dict[str, torch.Tensor] = {}
    gens: Dict[str, Any] = {}
    specs = st.get("specs", {})
    for name, net in model.modules.items():
        for k, v in net.state_dict().items():
            tensors[f"{name}.{k}"] = v.detach().cpu().contiguous().clone()
        gens[name] = {"spec": _jsonable(specs[name]), "weights": info.modules.get(name, name),
                      "parameters": sum(p.numel() for p in net.parameters())}
    z_dims = {getattr(net, "z_dim", None) for net in model.modules.values()} - {None}
    files = [EXPORT_WEIGHTS]

    earlier = read_export_config(out) if out.is_dir() else None
    onnx_files = onnx_names(list(model.modules)) if onnx else {}
    for name, fname in onnx_files.items():
        gens[name]["onnx"] = fname
        gens[name]["onnx_inputs"] = list(model.example_inputs(name)[1])

    cfg: Dict[str, Any] = {
        "format": EXPORT_FORMAT,
        "ganforge_version": __version__,
        "task": info.task,
        "inputs": model.inputs,
        "generators": gens,
        "ema": any(gens[n]["weights"] != n for n in gens),
        "img_size": info.img_size,
        "channels": info.channels,
        "class_names": info.classes,
        "z_dim": int(next(iter(z_dims))) if len(z_dims) == 1 else None,
        "step": info.step,
        "data": _jsonable(st.get("data", {})),
        "metrics": runfolder.last_eval_row(run_dir),
        "task_state": _jsonable(model.export_state()),
        "checkpoint": path.name,
        "trained_with": st.get("version"),
        "config": _jsonable(info.config),
    }

    atomic_write_bytes(out / EXPORT_WEIGHTS, st_save(tensors, metadata={
        "format": EXPORT_FORMAT, "task": info.task, "generators": ",".join(gens)}))
    for name, fname in onnx_files.items():
        atomic_write_bytes(out / fname, onnx_bytes(model, name))
        files.append(fname)
    try:
        save_image(model.preview(st.get("fixed")), out / GRID)
        files.append(GRID)
    except (UserError, OSError) as e:            # e.g. a domain whose images are gone
        warnings.warn(f"export: no {GRID} ({e})", stacklevel=2)
    files += [CARD, EXPORT_CONFIG]
    cfg["files"] = files
    atomic_write_text(out / CARD, _card(cfg, out, files, str(run)))
    atomic_write_text(out / EXPORT_CONFIG, json.dumps(cfg, indent=2, allow_nan=False) + "\n")
    if earlier:                              # files of the earlier export this one has not
        for f in earlier.get("files", []):
            p = out / str(f)
            if str(f) not in files and p.parent == out and p.is_file():
                p.unlink()
    return out


# --------------------------------------------------------------------------- CLI
def run(args: argparse.Namespace) -> int:
    out = export_run(args.run, args.out, which=args.checkpoint, ema=not args.no_ema, onnx=args.onnx)
    print(f"exported {args.run} -> {out} (load it with ganforge.load('{out}'))")
    return 0


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", metavar="RUN_DIR_OR_CKPT")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="a new or empty folder, or an earlier export (overwritten)")
    p.add_argument("--checkpoint", default="latest", help="latest (default) or best")
    p.add_argument("--no-ema", action="store_true",
                   help="export the raw generators, not their weight averages (runs with ema.half_life)")
    p.add_argument("--onnx", action="store_true",
                   help="also write generator.onnx (one file per generator: G_AB.onnx, G_BA.onnx)")


COMMAND = Command(
    "export", "write a trained run as a folder to share (safetensors + config.json)", arguments, run,
    description="Write RUN's generator(s) as a folder in the Hugging Face layout: config.json, "
                "model.safetensors, a model card README.md with samples.png (and ONNX files with "
                "--onnx). ganforge.load(DIR) and `ganforge sample DIR` load it without the "
                "training checkpoint.")
