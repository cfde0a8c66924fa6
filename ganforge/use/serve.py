"""``ganforge serve RUN``: a local web UI (Gradio) over :func:`ganforge.load`.

Noise runs: seed, batch size, a class picker (runs with classes), a truncation slider, a
download button for the grid (PNG) and a loop between two seeds (GIF + frame grid).
Image-to-image runs: an uploaded image translated in each of the run's directions (CycleGAN:
a2b and b2a; pix2pix: a2b).

It works with no internet: analytics off (``GRADIO_ANALYTICS_ENABLED=False`` is set before
gradio is imported, ``analytics_enabled=False``), a theme with system fonts only (no Google
Fonts), no share link; it binds 127.0.0.1 unless ``--host`` says otherwise. Bad input (an
unknown class, n above ``--max-n``, a file that is not an image, a huge image) is a message
in the page; the server keeps serving. gradio is the optional extra ``ganforge[serve]``:
this module imports it only inside :func:`build_app` / the command.
"""
from __future__ import annotations

import argparse
import atexit
import importlib.util
import math
import os
import shutil
import sys
import tempfile
import threading
import traceback
import warnings
from pathlib import Path
from typing import Any, Callable, List, Optional, Tuple

from PIL import Image

from ganforge.core import runfolder
from ganforge.core.argtypes import MAX_SEED, at_least
from ganforge.core.command import Command
from ganforge.core.errors import UserError
from ganforge.use.animate import write_animation
from ganforge.use.face import Generator
from ganforge.use.load import load

#: the class picker's "no class given" entry (classes drawn as the run's training labels were)
AS_TRAINED = "(as trained)"
#: an upload larger than this many bytes or pixels is refused with a message
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
MAX_UPLOAD_PIXELS = 4096 * 4096
MAX_FRAMES = 60
#: system fonts only: Gradio's default theme would name web fonts
SANS = ["ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "Helvetica", "Arial", "sans-serif"]
MONO = ["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace"]
INSTALL_HINT = 'ganforge serve needs gradio: pip install "ganforge[serve]"'


def gradio_installed() -> bool:
    return importlib.util.find_spec("gradio") is not None


def _gradio():
    """gradio, imported with its analytics switched off (set before the import, which reads it)."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ.setdefault("GRADIO_SHARE", "False")
    if not gradio_installed():
        raise UserError(INSTALL_HINT)
    import gradio as gr  # type: ignore[import-not-found]
    return gr


def offline_theme(gr: Any) -> Any:
    """Gradio's default theme with system fonts (no GoogleFont, so no font request leaves)."""
    return gr.themes.Default(font=SANS, font_mono=MONO)


# --------------------------------------------------------------------------- pure helpers
def _to_pil(x, min_side: int = 512) -> Image.Image:
    """A (N, C, H, W) batch in [-1, 1] as one grid image, scaled up (nearest) to >= min_side px."""
    from ganforge.render.images import grid_to_uint8, make_grid
    grid = make_grid(x, nrow=math.ceil(math.sqrt(x.shape[0]))) if x.dim() == 4 else x
    a = grid_to_uint8(grid)
    im = Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a)
    scale = max(1, math.ceil(min_side / max(im.size)))
    return im.resize((im.width * scale, im.height * scale), Image.NEAREST) if scale > 1 else im


def _whole(value: Any) -> int:
    """A whole number from a text box or slider (``"7"``, ``7.0``), read exactly (a 19-digit
    seed must not pass through a float); ValueError for anything else (``nan``, ``inf``,
    ``1.5``, text)."""
    if isinstance(value, bool) or value is None:
        raise ValueError(value)
    if isinstance(value, int):
        return value
    text = str(value).strip()
    try:
        return int(text)
    except ValueError:
        f = float(text)          # "7.0", "1e3"; ValueError for text
        if not math.isfinite(f) or f != int(f):
            raise ValueError(value) from None
        return int(f)


def parse_count(n: Any, max_n: int) -> int:
    try:
        k = _whole(n)
    except (TypeError, ValueError):
        raise UserError(f"batch size {n!r}: give a whole number from 1 to {max_n}") from None
    if k < 1:
        raise UserError(f"batch size {n}: give a whole number from 1 to {max_n}")
    if k > max_n:
        raise UserError(f"batch size {k}: at most {max_n} images per request (the server's --max-n)")
    return k


def parse_seed(seed: Any, what: str = "seed") -> int:
    try:
        s = _whole(seed)
    except (TypeError, ValueError):
        raise UserError(f"{what} {seed!r}: give a whole number from 0 to {MAX_SEED}") from None
    if s < 0 or s > MAX_SEED:
        raise UserError(f"{what} {s}: give a whole number from 0 to {MAX_SEED}")
    return s


def parse_class(choice: Any, classes: Optional[List[str]]) -> Any:
    """The picker's value as :meth:`Generator.sample` takes it: None, an index or a name."""
    if choice is None or str(choice).strip() in ("", AS_TRAINED):
        return None
    text = str(choice).strip()
    if not classes:
        raise UserError(f"class {text!r}: this run has no classes")
    return int(text) if text.lstrip("-").isdigit() else text


def parse_truncation(psi: Any) -> Optional[float]:
    if psi is None:
        return None
    psi = float(psi)
    return None if psi <= 0 else psi


def open_upload(path: Any) -> Image.Image:
    """An uploaded file as a PIL image, or a UserError naming why not (not an image, too big)."""
    if path is None:
        raise UserError("upload an image first")
    p = Path(path if isinstance(path, (str, Path)) else getattr(path, "name", path))
    try:
        size = p.stat().st_size
    except OSError:
        raise UserError("the upload could not be read; try again") from None
    if size > MAX_UPLOAD_BYTES:
        raise UserError(f"'{p.name}' is {size / 2**20:.1f} MiB; upload an image under "
                        f"{MAX_UPLOAD_BYTES // 2**20} MiB")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(p)
            w, h = im.size
            if w * h > MAX_UPLOAD_PIXELS:
                raise UserError(f"'{p.name}' is {w}x{h} px; upload an image of at most "
                                f"{MAX_UPLOAD_PIXELS} pixels (e.g. 4096x4096)")
            im.load()
    except UserError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise UserError(f"'{p.name}' is too large an image; upload a smaller one") from None
    except Exception:  # noqa: BLE001 - PIL raises many kinds for a file that is not an image
        raise UserError(f"'{p.name}' is not an image PIL can read (PNG, JPEG, ...)") from None
    return im


# --------------------------------------------------------------------------- the app
class _Session:
    """The handlers' state: the generator (one request at a time uses it) and a temp folder."""

    def __init__(self, g: Generator, max_n: int):
        self.g, self.max_n = g, int(max_n)
        self.lock = threading.Lock()
        self.tmp = Path(tempfile.mkdtemp(prefix="ganforge-serve-"))
        atexit.register(shutil.rmtree, self.tmp, ignore_errors=True)
        self.count = 0

    def path(self, stem: str, suffix: str) -> Path:
        with self.lock:
            self.count += 1
            return self.tmp / f"{stem}-{self.count:05d}{suffix}"

    def save(self, im: Image.Image, stem: str) -> str:
        p = self.path(stem, ".png")
        im.save(p, format="PNG")
        return str(p)

    # ---------------------------------------------------------------- handlers
    def generate(self, seed, n, cls, psi) -> Tuple[str, str]:
        k = parse_count(n, self.max_n)
        s = parse_seed(seed)
        c = parse_class(cls, self.g.info.classes)
        with self.lock:
            x = self.g.sample(k, seed=s, classes=c, truncation=parse_truncation(psi))
        path = self.save(_to_pil(x), f"grid-seed{s}")
        return path, path

    def interpolate(self, seed_a, seed_b, frames, cls, psi) -> Tuple[str, str]:
        a, b = parse_seed(seed_a, "seed A"), parse_seed(seed_b, "seed B")
        f = parse_count(frames, MAX_FRAMES)
        c = parse_class(cls, self.g.info.classes)
        with self.lock:
            x = self.g.interpolate([a, b], frames=f, classes=c, truncation=parse_truncation(psi))
        gif = write_animation(list(x), self.path(f"walk-{a}-{b}", ".gif"), fps=12)
        return str(gif), self.save(_to_pil(x), f"frames-{a}-{b}")

    def translate(self, upload) -> Tuple[str, ...]:
        """The uploaded image as the run sees it, then its translation in each of the run's
        directions (CycleGAN: a2b and b2a; pix2pix: a2b)."""
        im = open_upload(upload)
        with self.lock:
            outs = [self.g.translate(im, d) for d in self.g.directions]
            inp = self.g.prepare_images(im)
        return (self.save(_to_pil(inp), "input"),
                *(self.save(_to_pil(y), d) for d, y in zip(self.g.directions, outs)))


def _image(gr: Any, **kw) -> Any:
    """An output ``gr.Image`` without the share button (whatever this gradio calls it)."""
    import inspect
    params = inspect.signature(gr.Image.__init__).parameters
    if "buttons" in params:
        kw["buttons"] = ["download", "fullscreen"]
    elif "show_share_button" in params:
        kw["show_share_button"] = False
    kw = {k: v for k, v in kw.items() if k in params or k in ("label", "elem_id")}
    return gr.Image(type="filepath", interactive=False, **kw)


def run_name(g: Generator) -> str:
    """The run folder's name (the checkpoint's folder, above ``checkpoints/``), or "run"."""
    if not g.info.source:
        return "run"
    return runfolder.run_dir_of(g.info.source).name or "run"


def _guarded(gr: Any, fn: Callable) -> Callable:
    """``fn`` with every UserError (and any other failure) turned into a message in the page."""
    def run(*args):
        try:
            return fn(*args)
        except UserError as e:      # the user's input: a message in the page, no traceback in the log
            raise gr.Error(str(e), print_exception=False) from None
        except gr.Error:
            raise
        except Exception as e:  # noqa: BLE001 - keep serving; say what happened
            traceback.print_exc(file=sys.stderr)    # a bug: its traceback once, in the server log
            raise gr.Error(f"internal error: {type(e).__name__}: {e}", print_exception=False) from None
    run.__name__ = getattr(fn, "__name__", "run")
    return run


def _describe(g: Generator) -> str:
    i = g.info
    parts = [f"**{i.task}** / {i.model or 'model'}", f"{i.channels}x{i.img_size}x{i.img_size}",
             f"step {i.step}"]
    if i.classes:
        parts.append(f"{len(i.classes)} classes")
    if i.metrics:
        parts.append(", ".join(f"{k} {v:.4g}" for k, v in i.metrics.items() if k != "step"))
    return " · ".join(parts) + (f"  \n`{i.source}`" if i.source else "")


def build_app(generator: Generator, max_n: int = 64, title: str = "ganforge"):
    """A ``gr.Blocks`` UI over ``generator`` (see the module doc). Launch it with
    ``app.launch(server_name="127.0.0.1", server_port=PORT)``; nothing in it needs internet."""
    if int(max_n) < 1:
        raise UserError(f"max_n={max_n}: allow at least one image per request")
    gr = _gradio()
    g, st = generator, _Session(generator, max_n)
    classes = g.info.classes
    with warnings.catch_warnings():     # gradio 6 moved theme to launch(); Blocks still takes it
        warnings.simplefilter("ignore")
        app = gr.Blocks(title=title, analytics_enabled=False, theme=offline_theme(gr))
    with app:
        gr.Markdown(f"## ganforge · {run_name(g)}\n{_describe(g)}")
        if g.info.inputs == "noise":
            with gr.Row():                          # shared by both tabs
                cls = gr.Dropdown(choices=[AS_TRAINED] + list(classes or []), value=AS_TRAINED,
                                  allow_custom_value=True, label="class (a name or an index)",
                                  elem_id="cls", visible=bool(classes))
                psi = gr.Slider(0, 2, value=0, step=0.05, elem_id="psi",
                                label="truncation psi (0: off; smaller: less variety)")
            with gr.Tab("Generate"):
                with gr.Row():
                    with gr.Column(scale=1):
                        seed = gr.Number(value=0, precision=0, label="seed", elem_id="seed")
                        n = gr.Number(value=min(16, st.max_n), precision=0,
                                      label=f"batch size (1 to {st.max_n})", elem_id="n")
                        go = gr.Button("Generate", variant="primary", elem_id="generate")
                    with gr.Column(scale=2):
                        grid = _image(gr, label="samples", format="png", elem_id="grid")
                        dl = gr.DownloadButton("Download grid (PNG)", elem_id="download")
                go.click(_guarded(gr, st.generate), [seed, n, cls, psi], [grid, dl],
                         api_name="generate")
            with gr.Tab("Interpolate"):
                with gr.Row():
                    with gr.Column(scale=1):
                        sa = gr.Number(value=0, precision=0, label="seed A", elem_id="seed_a")
                        sb = gr.Number(value=1, precision=0, label="seed B", elem_id="seed_b")
                        frames = gr.Slider(2, MAX_FRAMES, value=16, step=1, elem_id="frames",
                                           label="frames (a loop A -> B -> A)")
                        go2 = gr.Button("Interpolate", variant="primary", elem_id="interpolate")
                    with gr.Column(scale=2):
                        gif = _image(gr, label="A -> B -> A (GIF)", elem_id="walk")
                        fgrid = _image(gr, label="frames", format="png", elem_id="frames_grid")
                go2.click(_guarded(gr, st.interpolate), [sa, sb, frames, cls, psi], [gif, fgrid],
                          api_name="interpolate")
        else:
            with gr.Tab("Translate"):
                with gr.Row():
                    with gr.Column(scale=1):
                        up = gr.File(label="an image (PNG, JPEG, ...)", file_types=["image"],
                                     type="filepath", elem_id="upload")
                        go3 = gr.Button("Translate", variant="primary", elem_id="translate")
                    with gr.Column(scale=2):
                        with gr.Row():
                            shown = _image(gr, label="input (as the run sees it)", format="png",
                                           elem_id="input")
                            outs = [_image(gr, label=f"{d[0].upper()} -> {d[-1].upper()}",
                                           format="png", elem_id=d) for d in g.directions]
                go3.click(_guarded(gr, st.translate), [up], [shown, *outs], api_name="translate")
                up.upload(_guarded(gr, st.translate), [up], [shown, *outs])
    app.ganforge_session = st  # type: ignore[attr-defined]
    return app


# --------------------------------------------------------------------------- CLI
def bind_note(host: str) -> str:
    if host in ("127.0.0.1", "localhost", "::1"):
        return f"bound to {host} (loopback: this machine only; --host 0.0.0.0 to serve others)"
    if host in ("0.0.0.0", "::", ""):
        return (f"bound to {host or '0.0.0.0'} (every interface: other machines can reach it; "
                f"there is no login)")
    return f"bound to {host} (that interface only)"


def run(args: argparse.Namespace) -> int:
    if not gradio_installed():
        raise UserError(INSTALL_HINT)
    if args.port > 65535:
        raise UserError(f"--port {args.port}: use a port from 1 to 65535")
    g = load(args.run, args.checkpoint, ema=not args.no_ema, device=args.device)
    app = build_app(g, max_n=args.max_n)
    try:
        app.launch(server_name=args.host, server_port=args.port, share=False, quiet=True,
                   prevent_thread_lock=True, show_error=True, inbrowser=False)
    except OSError:
        raise UserError(f"--host {args.host} --port {args.port}: cannot listen there (the port "
                        f"is taken, or the address is not this machine's); choose another "
                        f"--port or --host") from None
    host = "127.0.0.1" if args.host in ("0.0.0.0", "") else args.host
    url = f"http://{'[' + host + ']' if ':' in host else host}:{app.server_port}/"
    print(f"ganforge serve: {g!r}", flush=True)
    print(f"ganforge serve: open {url}; {bind_note(args.host)}; Ctrl+C stops it", flush=True)
    try:
        app.block_thread()
    except KeyboardInterrupt:
        pass
    finally:
        app.close()
    return 0


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", metavar="RUN_DIR_OR_CKPT")
    p.add_argument("--host", default="127.0.0.1",
                   help="interface to bind (default 127.0.0.1: this machine only; 0.0.0.0: all)")
    p.add_argument("--port", type=at_least(1, most=65535, why="a TCP port"), default=7860, help="port (default 7860)")
    p.add_argument("--max-n", type=at_least(1, most=1024), default=64,
                   help="most images one request may ask for (default 64)")
    p.add_argument("--checkpoint", default="latest", choices=["latest", "best"])
    p.add_argument("--no-ema", action="store_true", help="use the raw generator, not its EMA")
    p.add_argument("--device", default="cpu")


COMMAND = Command(
    "serve", "a local web UI (Gradio) to sample, interpolate or translate", arguments, run,
    description="Serve a web page over a trained run: seed, batch size, class, truncation, "
                "interpolation, PNG download; CycleGAN runs translate an uploaded image. Works "
                "offline. Needs the extra ganforge[serve] (gradio).")
