"""``ganforge serve``: the Gradio app over ``ganforge.load`` (ganforge/use/serve.py), its handlers
and the CLI, and the page end to end in headless Chromium on 127.0.0.1 (tiny runs trained
here: width 4, 16 px, a few steps). The browser tests skip without chromium, playwright or
gradio, and fail instead when GANFORGE_REQUIRE_BROWSER=1."""
from __future__ import annotations

import importlib.util
import os
import socket
from urllib.parse import urlparse

import pytest
from PIL import Image

import ganforge
from ganforge.cli import main
from ganforge.core.errors import UserError
from ganforge.training.trainer import Trainer
from ganforge.use import serve
from tests.helpers import CHROMIUM, REQUIRE_BROWSER, TASK_KITS
from tests.helpers import need_browser as need_browser_installed

HAVE_GRADIO = importlib.util.find_spec("gradio") is not None


def _train(tmp_path_factory, task, **over):
    kit = TASK_KITS[task]
    run = tmp_path_factory.mktemp(f"serve-{task}") / "run"
    Trainer(kit.cfg(run, **{"log.gif": False, **over}), dataset=kit.data(), quiet=True).fit()
    return run


@pytest.fixture(scope="module")
def cond_run(tmp_path_factory):
    return _train(tmp_path_factory, "conditional", **{"train.steps": 3})


@pytest.fixture(scope="module")
def cycle_run(tmp_path_factory):
    return _train(tmp_path_factory, "cyclegan", **{"train.steps": 2})


def need_gradio():
    if not HAVE_GRADIO:
        if REQUIRE_BROWSER:
            pytest.fail('gradio is not installed (pip install -e ".[dev]"); GANFORGE_REQUIRE_BROWSER=1')
        pytest.skip("gradio is not installed")


def need_browser():
    need_gradio()
    return need_browser_installed()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- no browser
def test_parsers_say_what_is_wrong():
    assert serve.parse_count("8", 64) == 8
    for bad in ("0", "65", "2.5", "x", None):
        with pytest.raises(UserError):
            serve.parse_count(bad, 64)
    assert serve.parse_class(serve.AS_TRAINED, ["a"]) is None and serve.parse_class("2", ["a"]) == 2
    with pytest.raises(UserError):
        serve.parse_class("a", None)
    assert serve.parse_truncation(0) is None and serve.parse_truncation(0.7) == 0.7
    assert "loopback" in serve.bind_note("127.0.0.1") and "every interface" in serve.bind_note("0.0.0.0")


def test_uploads_that_are_not_images_or_too_big(tmp_path, monkeypatch):
    txt = tmp_path / "notes.png"
    txt.write_text("not an image")
    with pytest.raises(UserError, match="not an image"):
        serve.open_upload(txt)
    big = tmp_path / "big.png"
    Image.new("L", (300, 300)).save(big)
    monkeypatch.setattr(serve, "MAX_UPLOAD_PIXELS", 200 * 200)
    with pytest.raises(UserError, match="300x300"):
        serve.open_upload(big)
    with pytest.raises(UserError):
        serve.open_upload(None)


def test_cli_without_gradio_is_one_line_exit_2(cond_run, monkeypatch, capsys):
    monkeypatch.setattr(serve, "gradio_installed", lambda: False)
    assert main(["serve", str(cond_run)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and 'pip install "ganforge[serve]"' in err and "serve" in err


def test_handlers(cond_run, cycle_run, tmp_path):
    need_gradio()
    import gradio as gr
    g = ganforge.load(cond_run)
    app = serve.build_app(g, max_n=8)
    assert isinstance(app, gr.Blocks) and os.environ["GRADIO_ANALYTICS_ENABLED"] == "False"
    st = app.ganforge_session
    png, dl = st.generate(3, 4, g.info.classes[1], 0.7)
    assert png == dl and Image.open(png).format == "PNG" and Image.open(png).width >= 256
    gif, frames = st.interpolate(1, 2, 4, serve.AS_TRAINED, 0)
    assert Image.open(gif).format == "GIF" and Image.open(gif).n_frames >= 4
    for bad in [(3, 9, serve.AS_TRAINED, 0), (3, 2, "no such class", 0)]:
        with pytest.raises(UserError):
            st.generate(*bad)
    st2 = serve.build_app(ganforge.load(cycle_run)).ganforge_session
    src = tmp_path / "in.png"
    Image.new("RGB", (40, 30), (200, 10, 10)).save(src)
    outs = st2.translate(str(src))
    assert len(outs) == 3 and all(Image.open(p).width >= 256 for p in outs)


# --------------------------------------------------------------------------- browser
def _local(url: str) -> bool:
    if url.startswith(("data:", "blob:")):
        return True
    return urlparse(url).hostname in ("127.0.0.1", "localhost")


def _launch(run, **kw):
    app = serve.build_app(ganforge.load(run), **kw)
    port = free_port()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    return app, f"http://127.0.0.1:{port}/"


def _img_width(page, elem_id: str, timeout: float = 20000) -> int:
    sel = f"#{elem_id} img"
    page.wait_for_function(
        f"() => {{ const i = document.querySelector('{sel}'); return i && i.complete && i.naturalWidth > 0; }}",
        timeout=timeout)
    return page.eval_on_selector(sel, "i => i.naturalWidth")


def test_serve_in_headless_chromium(cond_run, cycle_run, tmp_path):
    sync_playwright = need_browser()
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    apps, requests = [], []
    try:
        noise_app, noise_url = _launch(cond_run, max_n=8)
        apps.append(noise_app)
        cycle_app, cycle_url = _launch(cycle_run)
        apps.append(cycle_app)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=args)
            try:
                page = browser.new_page(viewport={"width": 1200, "height": 900})
                page.on("request", lambda r: requests.append(r.url))
                # noise run: generate, an image appears
                page.goto(noise_url, wait_until="load")
                page.click("#generate")
                assert _img_width(page, "grid") > 0
                # n beyond --max-n: a message, then a good request still works
                page.fill("#n input", "9")
                page.click("#generate")
                page.get_by_text("at most 8 images").first.wait_for(timeout=15000)
                page.fill("#n input", "4")
                # unknown class: a message
                page.fill("#cls input", "no such class")
                page.keyboard.press("Enter")
                page.click("#generate")
                page.locator(".toast-body").filter(has_text="no such class").first.wait_for(timeout=15000)
                # ... and the next good request works: a fresh image (another seed)
                page.fill("#cls input", "")
                page.keyboard.press("Enter")
                old = page.eval_on_selector("#grid img", "i => i.src")
                page.fill("#seed input", "5")
                page.click("#generate")
                page.wait_for_function(
                    "old => { const i = document.querySelector('#grid img'); "
                    "return i && i.src !== old && i.complete && i.naturalWidth > 0; }",
                    arg=old, timeout=20000)
                # the grid downloads as a PNG
                with page.expect_download(timeout=15000) as dl:
                    page.click("#download")
                saved = tmp_path / "grid.png"
                dl.value.save_as(saved)
                assert Image.open(saved).format == "PNG"
                # interpolation: the GIF appears
                page.get_by_role("tab", name="Interpolate").click()
                page.click("#interpolate")
                assert _img_width(page, "walk") > 0 and _img_width(page, "frames_grid") > 0
                # CycleGAN run: a file that is not an image is a message; then an image translates
                page.goto(cycle_url, wait_until="load")
                bad = tmp_path / "notes.png"
                bad.write_text("not an image")
                page.set_input_files("#upload input[type=file]", str(bad))
                page.locator(".toast-body").filter(has_text="not an image").first.wait_for(timeout=15000)
                clear = page.locator("#upload button[aria-label='Clear']")
                if clear.count():
                    clear.first.click()
                src = tmp_path / "upload.png"
                Image.new("RGB", (48, 40), (250, 250, 250)).save(src)
                page.set_input_files("#upload input[type=file]", str(src))
                assert _img_width(page, "a2b") > 0 and _img_width(page, "b2a") > 0
                page.close()
            finally:
                browser.close()
    finally:
        for app in apps:
            app.close()
    assert requests, "the page made no request"
    outside = sorted({u[:80] for u in requests if not _local(u)})
    assert outside == [], f"requests outside 127.0.0.1: {outside}"
