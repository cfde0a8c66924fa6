"""The run report as one self-contained HTML page (``ganforge report RUN``).

Pure rendering: plain data in (summary pairs, the config dict, metrics rows, image bytes),
HTML text out. Images are inlined as ``data:`` URIs and the CSS is inline, so the file opens
anywhere, offline, and makes no network request (no scripts at all). Reading a run folder is
the use-time layer's job (``ganforge/use/report.py``).
"""
from __future__ import annotations

import base64
import html
import json
from typing import Any, List, Mapping, Optional, Sequence, Tuple

#: the eval keys shown in the FID/KID history table, in this order, when any row has them
EVAL_KEYS = ("fid", "kid_mean", "kid_std", "precision", "recall", "density", "coverage", "is_mean")

CSS = """
:root { --fg:#1d2330; --muted:#667085; --line:#e4e7ec; --card:#fff; --bg:#f5f6f8; --acc:#3b5bdb; }
* { box-sizing:border-box; }
body { margin:0; background:var(--bg); color:var(--fg);
       font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif; }
header { background:#1d2330; color:#fff; padding:22px 32px; }
header h1 { margin:0; font-size:22px; font-weight:600; }
header p { margin:4px 0 0; color:#c5cad3; font-size:14px; }
main { max-width:1100px; margin:0 auto; padding:20px 24px 40px; }
section { background:var(--card); border:1px solid var(--line); border-radius:10px;
          padding:16px 20px; margin:0 0 18px; }
h2 { font-size:16px; margin:0 0 12px; color:var(--acc); letter-spacing:.02em; }
.kv { display:grid; grid-template-columns:repeat(auto-fill,minmax(190px,1fr)); gap:10px; }
.kv div { background:var(--bg); border-radius:8px; padding:8px 12px; }
.kv b { display:block; font-size:12px; color:var(--muted); font-weight:500; text-transform:uppercase;
        letter-spacing:.04em; }
.kv span { font-size:15px; word-break:break-word; }
.row { display:flex; flex-wrap:wrap; gap:18px; align-items:flex-start; }
figure { margin:0; }
figcaption { font-size:13px; color:var(--muted); margin-top:4px; }
img { max-width:100%; border:1px solid var(--line); border-radius:4px; background:#fff; }
img.px { image-rendering:pixelated; min-width:220px; }
table { border-collapse:collapse; font-size:14px; }
th, td { text-align:left; padding:5px 12px; border-bottom:1px solid var(--line); vertical-align:middle; }
th { color:var(--muted); font-weight:500; font-size:12px; text-transform:uppercase; }
td.num { text-align:right; font-variant-numeric:tabular-nums; }
details summary { cursor:pointer; color:var(--acc); }
pre { background:var(--bg); padding:12px; border-radius:8px; overflow:auto; font-size:13px; }
.note { color:var(--muted); font-size:13px; }
footer { text-align:center; color:var(--muted); font-size:12px; padding-bottom:24px; }
"""


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _mime(data: bytes) -> str:
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "image/png"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    raise ValueError("report images must be PNG, GIF or JPEG bytes")


def data_uri(data: bytes) -> str:
    """``data:`` URI of PNG/GIF/JPEG bytes."""
    return f"data:{_mime(data)};base64,{base64.b64encode(data).decode('ascii')}"


def _img(data: Optional[bytes], alt: str, caption: str = "", pixelated: bool = True) -> str:
    if not data:
        return ""
    cls = ' class="px"' if pixelated else ""
    cap = f"<figcaption>{_e(caption)}</figcaption>" if caption else ""
    return f'<figure><img{cls} src="{data_uri(data)}" alt="{_e(alt)}">{cap}</figure>'


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _table(head: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    th = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = []
    for r in rows:
        cells = []
        for v in r:
            if isinstance(v, tuple) and len(v) == 2 and v[0] == "html":   # trusted inner HTML
                cells.append(f"<td>{v[1]}</td>")
            else:
                num = isinstance(v, (int, float)) and not isinstance(v, bool)
                cells.append(f'<td{" class=num" if num else ""}>{_e(_fmt(v))}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{th}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _section(title: str, body: str) -> str:
    return f"<section><h2>{_e(title)}</h2>{body}</section>" if body else ""


def _kv(pairs: Sequence[Tuple[str, Any]]) -> str:
    return '<div class="kv">' + "".join(
        f"<div><b>{_e(k)}</b><span>{_e(_fmt(v))}</span></div>" for k, v in pairs) + "</div>"


def _config_text(config: Mapping[str, Any]) -> str:
    try:
        import yaml
        return yaml.safe_dump(dict(config), sort_keys=False, default_flow_style=False)
    except Exception:       # a value YAML cannot represent: JSON always can (with str)
        return json.dumps(config, indent=2, default=str)


def eval_history(rows: Sequence[Mapping[str, Any]]) -> Tuple[List[str], List[List[Any]]]:
    """(columns, rows) of the evaluation rows of a metrics log (rows with any of
    :data:`EVAL_KEYS`), in step order."""
    ev = [r for r in rows if "step" in r and any(k in r for k in EVAL_KEYS)]
    keys = [k for k in EVAL_KEYS if any(k in r for r in ev)]
    return ["step"] + keys, [[r["step"]] + [r.get(k, "") for k in keys] for r in ev]


def render_report(*, title: str, summary: Sequence[Tuple[str, Any]], config: Mapping[str, Any],
                  rows: Sequence[Mapping[str, Any]] = (), curves_png: Optional[bytes] = None,
                  samples_png: Optional[bytes] = None, samples_caption: str = "",
                  gif: Optional[bytes] = None,
                  progression: Sequence[Tuple[str, bytes]] = (),
                  classes: Optional[Sequence[Mapping[str, Any]]] = None,
                  translations: Optional[Sequence[Tuple[str, bytes]]] = None,
                  checkpoints: Sequence[Mapping[str, Any]] = (),
                  environment: Sequence[Tuple[str, Any]] = (),
                  notes: Sequence[str] = (), generated: str = "") -> str:
    """The report page as HTML text.

    ``summary``/``environment``: (label, value) pairs; ``config``: the resolved config;
    ``rows``: the metrics log (its eval rows become the FID/KID table); image arguments are
    PNG/GIF bytes; ``progression``: (caption, PNG) grids at a few steps, first to last; ``classes``: one dict per class with ``name`` and optionally ``accuracy``
    (a float) and ``png`` (a grid row of that class); ``translations``: (caption, PNG) pairs;
    ``checkpoints``: dicts with ``name``, ``step``, ``size`` (bytes); ``notes``: sections that
    could not be made, one line each."""
    parts: List[str] = []
    parts.append(_section("Run", _kv(summary)))

    curves = _img(curves_png, "training curves", pixelated=False)
    cols, hist = eval_history(rows)
    ev = _table(cols, hist[-20:]) if hist else ""
    if ev and len(hist) > 20:
        ev = f'<p class="note">last 20 of {len(hist)} evaluations</p>' + ev
    parts.append(_section("Training curves", curves))
    parts.append(_section("FID / KID history", ev))

    pics = _img(samples_png, "last sample grid", samples_caption or "last sample grid") + \
        _img(gif, "training animation", "training, from the first grid to the last")
    strip = "".join(_img(png, cap, cap) for cap, png in progression)
    pics = (f'<div class="row">{pics}</div>' if pics else "") + \
        (f'<h3>Progression</h3><div class="row">{strip}</div>' if strip else "")
    parts.append(_section("Samples", pics))

    if classes:
        has_acc = any(c.get("accuracy") is not None for c in classes)
        has_png = any(c.get("png") for c in classes)
        head = ["#", "class"] + (["accuracy"] if has_acc else []) + (["samples"] if has_png else [])
        trs = []
        for i, c in enumerate(classes):
            r: List[Any] = [i, c.get("name", i)]
            if has_acc:
                a = c.get("accuracy")
                r.append(f"{100 * a:.1f} %" if isinstance(a, (int, float)) else "")
            if has_png:
                r.append(("html", _img(c.get("png"), f"class {c.get('name', i)}")))
            trs.append(r)
        parts.append(_section("Classes", _table(head, trs)))

    if translations:
        figs = "".join(_img(png, cap, cap + " (rows: input, translated, reconstructed)")
                       for cap, png in translations)
        parts.append(_section("Translations", f'<div class="row">{figs}</div>'))

    if checkpoints:
        parts.append(_section("Checkpoints kept", _table(
            ["file", "step", "size"],
            [[c["name"], c.get("step", ""), _size(c.get("size", 0))] for c in checkpoints])))

    parts.append(_section("Resolved config", "<details><summary>show config.yaml</summary>"
                          f"<pre>{_e(_config_text(config))}</pre></details>"))
    parts.append(_section("Environment", _kv(environment)))
    if notes:
        parts.append(_section("Not shown", "<ul>" + "".join(f"<li>{_e(n)}</li>" for n in notes) + "</ul>"))

    sub = " · ".join(_e(_fmt(v)) for k, v in summary[:3])
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            # no network, no scripts: a browser enforces what the page promises
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
            "img-src data:; style-src 'unsafe-inline'\">"
            f"<title>{_e(title)}</title><style>{CSS}</style></head><body>"
            f"<header><h1>{_e(title)}</h1><p>{sub}</p></header><main>{''.join(parts)}</main>"
            f"<footer>{_e(generated)}</footer></body></html>\n")


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)
