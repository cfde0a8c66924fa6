"""`ganforge report RUN`: one self-contained HTML page per run, written at the end of every
training run and on demand, for every registered task; checked as text (no URLs, only data:
images) and in headless Chromium (no console errors, no requests, every image decodes)."""
from __future__ import annotations

import os
import re
import shutil

import pytest

from ganforge.cli import main
from ganforge.core.errors import UserError
from ganforge.render.html import data_uri, eval_history, render_report
from ganforge.training.callbacks.report import WriteReport
from ganforge.training.tasks import TASKS
from ganforge.training.trainer import Trainer
from ganforge.use.report import write_report
from tests.helpers import CHROMIUM, TASK_KITS, need_browser


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One tiny trained run per registered task (trained on its kit's data on disk, so a
    CycleGAN run can load its source images for the translation examples)."""
    out = {}
    for task in sorted(TASKS.names()):
        kit = TASK_KITS[task]
        root = tmp_path_factory.mktemp(task)
        over, _ = kit.on_disk(root)
        cfg = kit.cfg(root / "run", **over)
        Trainer(cfg, quiet=True, callbacks=[WriteReport()]).fit()    # as ganforge train does
        out[task] = root / "run"
    return out


def check_self_contained(text: str) -> None:
    assert "http://" not in text and "https://" not in text
    srcs = re.findall(r"""\b(?:src|href)\s*=\s*["']?([^"'\s>]*)""", text, flags=re.I)
    assert srcs, "the report shows no image"
    assert all(s.startswith("data:") for s in srcs), [s[:40] for s in srcs if not s.startswith("data:")]
    assert "<script" not in text.lower()
    assert "url(" not in text          # no CSS resources either


@pytest.mark.parametrize("task", sorted(TASK_KITS))
def test_report_written_at_end_of_training_and_by_command(runs, task, tmp_path):
    run = runs[task]
    at_end = run / "report.html"
    assert at_end.is_file(), "training did not write report.html"
    text = at_end.read_text()
    check_self_contained(text)
    for heading in ("Run", "Training curves", "Samples", "Checkpoints kept", "Resolved config",
                    "Environment"):
        assert f"<h2>{heading}</h2>" in text, heading
    assert "<details>" in text and "latest.pt" in text
    model_inputs = TASKS.get(task).trained_class.inputs
    if model_inputs == "image":
        assert "<h2>Translations</h2>" in text
        # names its own networks and data, not the unused model.* / data.* defaults
        assert "<b>model</b><span>dcgan" not in text
        assert "<b>data</b><span>fashion-mnist" not in text
    assert "<b>precision</b><span>float32</span>" in text     # what it ran with, not "auto"
    out = tmp_path / "r.html"
    assert main(["report", str(run), "--out", str(out)]) == 0
    again = out.read_text()
    check_self_contained(again)
    if "conditional" in task:
        assert "<h2>Classes</h2>" in again


def test_report_regenerates_missing_curves_and_default_out(runs, tmp_path):
    run = tmp_path / "copy"
    shutil.copytree(runs["gan"], run)
    (run / "curves.png").unlink()
    (run / "report.html").unlink()
    assert main(["report", str(run)]) == 0
    text = (run / "report.html").read_text()
    assert text.count("data:image/png;base64,") >= 2      # curves (re-plotted) and samples
    assert not (run / "curves.png").exists()               # plotted into a temp file only


def test_report_errors_are_one_line(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not a run folder" in err
    with pytest.raises(UserError):
        write_report(tmp_path)                              # a folder without a checkpoint


def test_report_failure_never_fails_training(tmp_path, capsys, monkeypatch):
    import ganforge.training.callbacks.report as report_callback

    def broken(run_dir, out=None):
        raise RuntimeError("disk says no\nsecond line")
    monkeypatch.setattr(report_callback, "write_report", broken)
    kit = TASK_KITS["gan"]
    Trainer(kit.cfg(tmp_path / "run", **{"train.steps": 2}), dataset=kit.data(),
            callbacks=[WriteReport()]).fit()
    err = [ln for ln in capsys.readouterr().err.splitlines() if "report.html" in ln]
    assert err == ["[ganforge] warning: report.html not written: disk says no second line"]


def test_render_is_pure_and_escapes():
    png = bytes.fromhex("89504e470d0a1a0a") + b"rest"
    text = render_report(title="<x>", summary=[("task", "gan & co")], config={"a": {"b": 1}},
                         rows=[{"step": 5, "fid": 12.5, "kid_mean": 0.1}, {"step": 6, "loss_D": 1}],
                         curves_png=png, classes=[{"name": "<cat>", "accuracy": 0.5}])
    assert "&lt;x&gt;" in text and "gan &amp; co" in text and "&lt;cat&gt;" in text
    assert "50.0 %" in text and "<h2>FID / KID history</h2>" in text and "12.5" in text
    assert data_uri(png).startswith("data:image/png;base64,")
    assert eval_history([{"step": 1, "fid": 3.0}, {"step": 2}]) == (["step", "fid"], [[1, 3.0]])
    with pytest.raises(ValueError):
        data_uri(b"not an image")


def test_report_in_headless_chromium(runs, tmp_path):
    sync_playwright = need_browser()
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=args)
        try:
            for task, run in sorted(runs.items()):
                page = browser.new_page(viewport={"width": 1100, "height": 900})
                errors, requests = [], []
                page.on("console", lambda m, errors=errors: errors.append(m.text)
                        if m.type == "error" else None)
                page.on("pageerror", lambda e, errors=errors: errors.append(str(e)))
                page.on("request", lambda r, requests=requests: requests.append(r.url))
                url = (run / "report.html").resolve().as_uri()
                page.goto(url, wait_until="load")
                assert errors == [], f"{task}: {errors}"
                outside = [u[:60] for u in requests if u != url and not u.startswith("data:")]
                assert outside == [], f"{task}: requests {outside}"
                sizes = page.eval_on_selector_all(
                    "img", "imgs => imgs.map(i => [i.complete, i.naturalWidth, i.alt])")
                assert sizes, task
                assert all(done and w > 0 for done, w, _ in sizes), f"{task}: {sizes}"
                page.screenshot(path=str(tmp_path / f"report-{task}.png"), full_page=True)
                page.close()
        finally:
            browser.close()
    assert len(list(tmp_path.glob("report-*.png"))) == len(runs)
