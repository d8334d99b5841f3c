"""``nerbatch evaluate --html``: one self-contained page explaining a result.

The page holds the summary (conlleval's lines, the bootstrap interval), the per-type table, the
error classes and the type confusion matrix as inline SVG figures, the entity scores against correctness
(a reliability diagram and the precision/recall curve over score thresholds, where the predictions carry
scores), the worst documents, and the
error sentences kept by the analysis (gold entities above the words, predicted ones below, the
errors coloured by class), filterable by error class and type with a little inline JavaScript
(the filter can also be set from the address: ``report.html#class=missed&type=PER``).

Nothing is loaded from anywhere (a Content-Security-Policy forbids it): no external script, style
sheet, font or image. Every piece of text from the data is escaped.
"""

from __future__ import annotations

import os
from html import escape
from typing import Any

from .analysis import CLASSES, ERROR_CLASSES, GOLD_CLASSES, LABELS, NONE, doc_name, format_ci

SHORT = {"correct": "correct", "type": "wrong type", "boundary": "wrong boundary", "type_boundary": "type + boundary",
         "missed": "missed", "spurious": "spurious"}

__all__ = ["render"]

COLORS = {
    "correct": "#4c9a52",
    "type": "#d6336c",
    "boundary": "#f08c00",
    "type_boundary": "#7048e8",
    "missed": "#c92a2a",
    "spurious": "#1c7ed6",
}
WORST_DOCUMENTS = 20

_CSS = """
:root { --fg: #212529; --muted: #6c757d; --line: #dee2e6; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
       color: var(--fg); margin: 0 auto; padding: 16px 24px 48px; max-width: 1240px; }
h1 { font-size: 22px; margin: 4px 0 2px; } h2 { font-size: 17px; margin: 26px 0 8px; border-bottom: 1px solid var(--line); }
.meta { color: var(--muted); margin: 0 0 10px; }
pre.conlleval { background: #f8f9fa; border: 1px solid var(--line); padding: 8px 10px; margin: 8px 0; overflow-x: auto; }
table { border-collapse: collapse; margin: 6px 0; }
th, td { padding: 3px 9px; border-bottom: 1px solid var(--line); text-align: right; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
th { background: #f1f3f5; font-weight: 600; }
.figs { display: flex; flex-wrap: wrap; gap: 18px; align-items: flex-start; }
.figs .col { display: flex; flex-direction: column; gap: 18px; }
.nav a { color: #1c7ed6; text-decoration: none; margin: 0 2px; }
figure { margin: 0; border: 1px solid var(--line); padding: 8px; border-radius: 4px; width: min-content; }
figcaption { color: var(--muted); font-size: 12px; }
svg text { font: 12px system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; fill: #212529; }
.controls { position: sticky; top: 0; background: #fff; padding: 8px 0; border-bottom: 1px solid var(--line); z-index: 1; }
.controls select { margin-right: 14px; font-size: 14px; }
.more { color: var(--muted); font-size: 13px; margin: 4px 0 10px; }
.sent { border: 1px solid var(--line); border-radius: 4px; padding: 6px 8px; margin: 8px 0; }
.sent[hidden] { display: none; }
.where { color: var(--muted); font-size: 12px; margin-bottom: 4px; }
.badge { display: inline-block; color: #fff; border-radius: 3px; padding: 0 5px; margin-left: 4px; font-size: 11px; }
.toks { display: flex; flex-wrap: wrap; row-gap: 6px; }
.tok { display: inline-flex; flex-direction: column; min-width: 0; }
.tok > * { padding: 0 3px; white-space: pre; display: block; font-style: normal; }
.tok > i, .tok > b { height: 17px; font-size: 10px; line-height: 17px; font-weight: 600; color: #fff; }
.w { font-size: 15px; line-height: 22px; }
.tok.side > b { color: var(--muted); }
.tok > b.s { border-top-left-radius: 4px; border-bottom-left-radius: 4px; margin-left: 2px; }
.tok > b.e { border-top-right-radius: 4px; border-bottom-right-radius: 4px; margin-right: 2px; }
.tok > b.c-correct { background: #b2d8b5; color: #1b4d20; }
.scroll { overflow-x: auto; }
""" + "".join(f".tok > b.c-{c} {{ background: {COLORS[c]}; }}\n" for c in ERROR_CLASSES)

_JS = """
(function () {
  var root = document.documentElement;
  window.addEventListener('error', function (e) { root.setAttribute('data-js-error', String(e.message)); });
  var sents = document.querySelectorAll('.sent');
  var fc = document.getElementById('f-class'), ft = document.getElementById('f-type');
  var shown = document.getElementById('shown');
  function has(list, v) { return (' ' + (list || '') + ' ').indexOf(' ' + v + ' ') >= 0; }
  function apply() {
    var c = fc.value, t = ft.value, n = 0;
    for (var i = 0; i < sents.length; i++) {
      var s = sents[i];
      var ok = (!c || has(s.getAttribute('data-classes'), c)) && (!t || has(s.getAttribute('data-types'), t));
      s.hidden = !ok;
      if (ok) { n++; }
    }
    shown.textContent = String(n);
    root.setAttribute('data-shown', String(n));
  }
  function pick(select, value) {
    for (var i = 0; i < select.options.length; i++) {
      if (select.options[i].getAttribute('data-name') === value) { select.selectedIndex = i; return; }
    }
  }
  function fromHash() {
    var parts = (window.location.hash || '').replace(/^#/, '').split('&');
    for (var i = 0; i < parts.length; i++) {
      var kv = parts[i].split('=');
      if (kv.length !== 2) { continue; }
      var value = decodeURIComponent(kv[1]);
      if (kv[0] === 'class') { pick(fc, value); }
      if (kv[0] === 'type') { pick(ft, value); }
    }
  }
  function toHash() {
    var c = fc.options[fc.selectedIndex].getAttribute('data-name');
    var t = ft.options[ft.selectedIndex].getAttribute('data-name');
    var h = [];
    if (c) { h.push('class=' + encodeURIComponent(c)); }
    if (t) { h.push('type=' + encodeURIComponent(t)); }
    try { history.replaceState(null, '', h.length ? '#' + h.join('&') : '#'); } catch (err) { /* file:// in some browsers */ }
  }
  fc.addEventListener('change', function () { apply(); toHash(); });
  ft.addEventListener('change', function () { apply(); toHash(); });
  window.addEventListener('hashchange', function () { fromHash(); apply(); });
  fromHash();
  apply();
  root.setAttribute('data-ready', '1');
})();
"""


def _e(value: Any) -> str:
    return escape(str(value), quote=True)


def _type_name(t: str) -> str:
    return t if t else "(no type)"


def _pct(v: float) -> str:
    return f"{100 * v:.2f}"


# --------------------------------------------------------------------------- #
# figures
# --------------------------------------------------------------------------- #


def _class_bars(analysis: dict) -> str:
    """Horizontal bars: gold and predicted entities per error class."""
    g, p = analysis["classes"]["gold"], analysis["classes"]["pred"]
    top = max([1, *g.values(), *p.values()])
    label_w, bar_w, row_h = 190, 330, 34
    width, height = label_w + bar_w + 70, 24 + row_h * len(CLASSES)
    out = [f'<svg role="img" aria-label="error classes" width="{width}" height="{height}" viewBox="0 0 {width} {height}">']
    out.append(f'<text x="{label_w}" y="13">gold</text><rect x="{label_w + 32}" y="4" width="12" height="10" fill="#868e96"/>')
    out.append(f'<text x="{label_w + 56}" y="13">predicted</text>'
               f'<rect x="{label_w + 116}" y="4" width="12" height="10" fill="#868e96" fill-opacity="0.45"/>')
    for i, cls in enumerate(CLASSES):
        y = 24 + i * row_h
        out.append(f'<text x="{label_w - 8}" y="{y + 17}" text-anchor="end">{_e(LABELS[cls])}</text>')
        for j, (side, counts, alpha) in enumerate((("gold", g, 1.0), ("predicted", p, 0.45))):
            if cls not in counts:
                continue
            n = counts[cls]
            w = bar_w * n / top
            yy = y + 3 + j * 14
            out.append(
                f'<rect x="{label_w}" y="{yy}" width="{w:.1f}" height="12" fill="{COLORS[cls]}" fill-opacity="{alpha}">'
                f'<title>{_e(LABELS[cls])}: {n} {side}</title></rect>'
                f'<text x="{label_w + w + 4:.1f}" y="{yy + 10}">{n}</text>'
            )
    out.append("</svg>")
    return "".join(out)


def _type_bars(analysis: dict) -> str:
    """Stacked bars per type: its gold entities by class, then its spurious predictions."""
    rows = [(_type_name(t), v) for t, v in analysis["per_type"].items()]
    rows.append(("all", {"gold": analysis["classes"]["gold"], "pred": analysis["classes"]["pred"]}))
    top = max([1, *(sum(v["gold"].values()) + v["pred"]["spurious"] for _, v in rows)])
    label_w, bar_w, row_h = 110, 420, 26
    legend_h = 40
    width, height = max(label_w + bar_w + 170, 580), legend_h + row_h * len(rows)
    out = [f'<svg role="img" aria-label="error classes per type" width="{width}" height="{height}" viewBox="0 0 {width} {height}">']
    x = 0
    for k, cls in enumerate(CLASSES):
        lx, ly = (k % 3) * 190, 4 + (k // 3) * 17
        out.append(f'<rect x="{lx}" y="{ly}" width="12" height="11" fill="{COLORS[cls]}"/>'
                   f'<text x="{lx + 16}" y="{ly + 10}">{_e(LABELS[cls])}</text>')
    for i, (name, v) in enumerate(rows):
        y = legend_h + i * row_h
        out.append(f'<text x="{label_w - 8}" y="{y + 15}" text-anchor="end">{_e(name)}</text>')
        x = float(label_w)
        segments = [(cls, v["gold"][cls]) for cls in GOLD_CLASSES] + [("spurious", v["pred"]["spurious"])]
        for cls, n in segments:
            if not n:
                continue
            w = bar_w * n / top
            gap = 3 if cls == "spurious" else 0
            out.append(f'<rect x="{x + gap:.1f}" y="{y + 3}" width="{w:.1f}" height="16" fill="{COLORS[cls]}">'
                       f'<title>{_e(name)}: {n} {_e(LABELS[cls])}</title></rect>')
            x += w + gap
        total = sum(v["gold"].values())
        out.append(f'<text x="{x + 4:.1f}" y="{y + 15}">{total} gold, {v["pred"]["spurious"]} spurious</text>')
    out.append("</svg>")
    return "".join(out)


def _confusion(analysis: dict) -> str:
    conf = analysis["confusion"]
    names = [*(_type_name(t) for t in conf["labels"][:-1]), NONE]
    matrix = conf["matrix"]
    n = len(names)
    cell, label_w, head_h = 54, 100, 44
    width, height = label_w + cell * n + 10, head_h + cell * n + 24
    off = [matrix[i][j] for i in range(n) for j in range(n) if i != j]
    top_off = max([1, *off])
    out = [f'<svg role="img" aria-label="confusion matrix" width="{width}" height="{height}" viewBox="0 0 {width} {height}">']
    out.append(f'<text x="{label_w + cell * n / 2:.0f}" y="12" text-anchor="middle" font-weight="600">predicted</text>')
    for j, name in enumerate(names):
        out.append(f'<text x="{label_w + cell * j + cell / 2:.0f}" y="{head_h - 8}" text-anchor="middle">{_e(name)}</text>')
    for i, name in enumerate(names):
        y = head_h + cell * i
        out.append(f'<text x="{label_w - 8}" y="{y + cell / 2 + 4:.0f}" text-anchor="end">{_e(name)}</text>')
        row_total = max(1, sum(matrix[i]))
        for j in range(n):
            v = matrix[i][j]
            x = label_w + cell * j
            if i == j and i == n - 1:
                fill, alpha, text = "#f1f3f5", 1.0, "-"
            elif i == j:
                fill, alpha, text = COLORS["correct"], (0.15 + 0.7 * v / row_total) if v else 0.0, str(v)
            else:
                fill, alpha, text = COLORS["missed"], (0.08 + 0.8 * v / top_off) if v else 0.0, str(v)
            out.append(
                f'<rect x="{x}" y="{y}" width="{cell - 2}" height="{cell - 2}" fill="{fill}" fill-opacity="{alpha:.2f}" '
                f'stroke="#dee2e6"><title>gold {_e(name)}, predicted {_e(names[j])}: {v}</title></rect>'
                f'<text x="{x + cell / 2 - 1:.0f}" y="{y + cell / 2 + 4:.0f}" text-anchor="middle">{_e(text)}</text>'
            )
    out.append(f'<text x="4" y="{head_h + cell * n + 16}">rows: gold type</text>')
    out.append("</svg>")
    return "".join(out)


def _axes(out: list[str], x0: int, y0: int, size: int, xlabel: str, ylabel: str) -> None:
    """A unit square's axes at (x0, y0) (top left), ``size`` pixels a side, ticks every 0.2."""
    out.append(f'<rect x="{x0}" y="{y0}" width="{size}" height="{size}" fill="none" stroke="#adb5bd"/>')
    for k in range(6):
        v = k / 5
        x, y = x0 + size * v, y0 + size * (1 - v)
        out.append(f'<line x1="{x:.1f}" y1="{y0 + size}" x2="{x:.1f}" y2="{y0 + size + 4}" stroke="#adb5bd"/>'
                   f'<text x="{x:.1f}" y="{y0 + size + 16}" text-anchor="middle">{v:.1f}</text>'
                   f'<line x1="{x0 - 4}" y1="{y:.1f}" x2="{x0}" y2="{y:.1f}" stroke="#adb5bd"/>'
                   f'<text x="{x0 - 6}" y="{y + 4:.1f}" text-anchor="end">{v:.1f}</text>')
    out.append(f'<text x="{x0 + size / 2:.0f}" y="{y0 + size + 32}" text-anchor="middle">{_e(xlabel)}</text>'
               f'<text x="12" y="{y0 + size / 2:.0f}" text-anchor="middle" transform="rotate(-90 12 {y0 + size / 2:.0f})">'
               f'{_e(ylabel)}</text>')


def _reliability(cal: dict) -> str:
    """Reliability diagram: each score bin's accuracy as a bar over the bin, its mean score as a dot, the diagonal."""
    x0, y0, size = 48, 10, 260
    width, height = x0 + size + 20, y0 + size + 44
    out = [f'<svg role="img" aria-label="reliability diagram" width="{width}" height="{height}" viewBox="0 0 {width} {height}">']
    _axes(out, x0, y0, size, "entity score", "share correct")
    for b in cal["bins"]:
        if not b["count"]:
            continue
        x, w = x0 + size * b["low"], size * (b["high"] - b["low"])
        h = size * b["accuracy"]
        tip = (f"scores {b['low']:.1f}-{b['high']:.1f}: {b['count']} entities, mean score {b['mean_score']:.4f}, "
               f"{100 * b['accuracy']:.2f}% correct")
        out.append(f'<rect class="bin" x="{x + 1:.1f}" y="{y0 + size - h:.1f}" width="{w - 2:.1f}" height="{h:.1f}" '
                   f'fill="{COLORS["correct"]}" fill-opacity="0.55"><title>{_e(tip)}</title></rect>'
                   f'<circle cx="{x0 + size * b["mean_score"]:.1f}" cy="{y0 + size * (1 - b["accuracy"]):.1f}" r="3" '
                   f'fill="#212529"><title>{_e(tip)}</title></circle>')
    out.append(f'<line x1="{x0}" y1="{y0 + size}" x2="{x0 + size}" y2="{y0}" stroke="{COLORS["missed"]}" '
               'stroke-dasharray="4 3"><title>perfect calibration</title></line>')
    out.append("</svg>")
    return "".join(out)


def _pr_curve(cal: dict) -> str:
    """Precision against recall as the score threshold rises; the threshold of --target-precision marked."""
    x0, y0, size = 48, 10, 260
    width, height = x0 + size + 20, y0 + size + 44
    out = [f'<svg role="img" aria-label="precision and recall by threshold" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}">']
    _axes(out, x0, y0, size, "recall", "precision")
    points = [p for p in cal["curve"] if p["precision"] is not None]
    xy = " ".join(f"{x0 + size * p['recall']:.1f},{y0 + size * (1 - p['precision']):.1f}" for p in points)
    out.append(f'<polyline class="curve" points="{xy}" fill="none" stroke="{COLORS["spurious"]}" stroke-width="2"/>')
    for p in cal["thresholds"]:
        if p["precision"] is None:
            continue
        tip = f"threshold {p['threshold']:.2f}: {p['kept']} kept, precision {_pct(p['precision'])}%, recall {_pct(p['recall'])}%"
        out.append(f'<circle cx="{x0 + size * p["recall"]:.1f}" cy="{y0 + size * (1 - p["precision"]):.1f}" r="2.5" '
                   f'fill="{COLORS["spurious"]}"><title>{_e(tip)}</title></circle>')
    target = cal.get("target")
    if target and target["reached"]:
        x, y = x0 + size * target["recall"], y0 + size * (1 - target["precision"])
        tip = (f"--target-precision {target['precision_asked']:g}: threshold {target['threshold']:.4f}, "
               f"precision {_pct(target['precision'])}%, recall {_pct(target['recall'])}%")
        out.append(f'<circle class="target" cx="{x:.1f}" cy="{y:.1f}" r="6" fill="none" stroke="{COLORS["type"]}" '
                   f'stroke-width="2"><title>{_e(tip)}</title></circle>')
    out.append("</svg>")
    return "".join(out)


def _calibration(cal: dict | None) -> str:
    """The section on entity scores against correctness (one line when there is none)."""
    if cal is None:
        return ""
    head = "<h2 id='scores'>Entity scores</h2>"
    if "omitted" in cal:
        return head + f"<p class='meta'>Entity score calibration: omitted: {_e(cal['omitted'])}</p>"
    from .calibration import format_calibration

    text = format_calibration(cal)
    summary = text[1:3]
    bins = [[f"{b['low']:.1f}-{b['high']:.1f}", b["count"], "-" if b["mean_score"] is None else f"{b['mean_score']:.4f}",
             "-" if b["accuracy"] is None else f"{b['accuracy']:.4f}"] for b in cal["bins"]]
    rows = [[f"{t['threshold']:.2f}", t["kept"], "-" if t["precision"] is None else _pct(t["precision"]),
             _pct(t["recall"]), _pct(t["f1"])] for t in cal["thresholds"]]
    target = [line for line in text if line.startswith("--target-precision")]
    return "".join([
        head,
        *(f"<p>{_e(line)}</p>" for line in summary + target),
        '<div class="figs">',
        f"<figure>{_reliability(cal)}<figcaption>Reliability: bars are the share of correct entities in each score "
        "bin, dots sit at the bin's mean score; on the dashed diagonal a score is the chance of being right.</figcaption></figure>",
        f"<figure>{_pr_curve(cal)}<figcaption>Precision and recall as the score threshold rises (dots: thresholds "
        "0.00, 0.05, ..., 0.95; ring: --target-precision).</figcaption></figure>",
        '<div class="col">',
        _html_table(["score", "entities", "mean score", "accuracy"], bins),
        "</div>",
        _html_table(["threshold", "kept", "precision", "recall", "F1"], rows),
        "</div>",
    ])


# --------------------------------------------------------------------------- #
# sentences
# --------------------------------------------------------------------------- #


def _lane(entities: list, length: int, side: str) -> list[str]:
    """One lane (gold or predicted) of a sentence: a cell per token."""
    cells = ["<i></i>"] * length
    for type_, start, end, cls in entities:
        for i in range(max(0, start), min(end, length)):
            kind = [f"c-{cls}"]
            if i == start:
                kind.append("s")
            if i == end - 1:
                kind.append("e")
            if i == start:
                title = f"{'gold' if side == 'g' else 'predicted'} {_type_name(type_)}: {LABELS[cls]}"
                cells[i] = f'<b class="{" ".join(kind)}" title="{_e(title)}">{_e(_type_name(type_))}</b>'
            else:
                cells[i] = f'<b class="{" ".join(kind)}">&#160;</b>'
    return cells


def _sentence(ex: dict, type_index: dict[str, int], several_files: bool) -> str:
    tokens = ex["tokens"]
    gold, pred = _lane(ex["gold"], len(tokens), "g"), _lane(ex["pred"], len(tokens), "p")
    types = sorted({type_index[e[0]] for e in ex["gold"] + ex["pred"] if e[3] != "correct"})
    where = []
    if ex.get("path"):
        where.append(_e(f"{os.path.basename(str(ex['path'])) if not several_files else ex['path']}:{ex.get('line') or '?'}"))
    if ex.get("doc") is not None:
        where.append(_e(f"doc {ex['doc']}"))
    badges = "".join(f'<span class="badge" style="background:{COLORS[c]}">{_e(LABELS[c])}</span>' for c in ex["classes"])
    cols = ['<span class="tok side"><b>gold</b><span class="w">&#160;</span><b>pred</b></span>']
    for tok, g, p in zip(tokens, gold, pred):
        cols.append(f'<span class="tok">{g}<span class="w">{_e(tok)}</span>{p}</span>')
    return (
        f'<div class="sent" data-classes="{" ".join(ex["classes"])}" data-types="{" ".join(map(str, types))}">'
        f'<div class="where">{" · ".join(where)}{badges}</div>'
        f'<div class="toks">{"".join(cols)}</div></div>'
    )


# --------------------------------------------------------------------------- #
# the page
# --------------------------------------------------------------------------- #


def _summary(result: dict) -> str:
    from .scoring import format_report

    head = format_report({k: v for k, v in result.items() if k not in ("analysis", "notes")}).splitlines()[:2]
    parts = [f'<pre class="conlleval">{_e(chr(10).join(head))}</pre>']
    ci = (result.get("analysis") or {}).get("bootstrap")
    if ci:
        parts.append(f"<p>{_e(format_ci(ci))}</p>")
    for note in result.get("notes") or []:
        parts.append(f'<p class="meta">note: {_e(note)}</p>')
    return "".join(parts)


def _per_type_table(result: dict) -> str:
    analysis = result.get("analysis") or {}
    per_type = analysis.get("per_type", {})
    head = ["type", "precision", "recall", "F1", "support", "predicted", "correct"]
    if per_type:
        head += [SHORT[c] for c in GOLD_CLASSES[1:]] + [SHORT["spurious"]]
    rows = []
    for t, r in [*result["per_type"].items(), ("all", result["overall"])]:
        cells = [_type_name(t), _pct(r["precision"]), _pct(r["recall"]), _pct(r["f1"]), r["support"], r["predicted"], r["correct"]]
        if per_type:
            v = per_type.get(t) if t != "all" else {"gold": analysis["classes"]["gold"], "pred": analysis["classes"]["pred"]}
            if v is None:
                cells += ["-"] * 5
            else:
                cells += [v["gold"][c] for c in GOLD_CLASSES[1:]] + [v["pred"]["spurious"]]
        rows.append(cells)
    return _html_table(head, rows)


def _html_table(head: list, rows: list[list]) -> str:
    out = ['<div class="scroll"><table><thead><tr>', *(f"<th>{_e(h)}</th>" for h in head), "</tr></thead><tbody>"]
    for r in rows:
        out.append("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in r) + "</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def _documents(analysis: dict) -> str:
    docs = [d for d in analysis["documents"] if sum(d["errors"].values())]
    if not analysis["documents"]:
        return ""
    several = len({d.get("path") for d in analysis["documents"]}) > 1
    rows = [
        [doc_name(d, several), d["line"] if d["line"] is not None else "", d["sentences"], d["tokens"], d["support"],
         d["predicted"], d["correct"], _pct(d["f1"]), *(d["errors"][c] for c in ERROR_CLASSES)]
        for d in docs[:WORST_DOCUMENTS]
    ]
    head = ["document", "line", "sentences", "tokens", "gold", "predicted", "correct", "F1", *(SHORT[c] for c in ERROR_CLASSES)]
    shown = len(rows)
    text = (f"<h2 id='documents'>Worst documents</h2><p class='meta'>{shown} of {len(analysis['documents'])} documents "
            f"({len(docs)} with errors), lowest F1 first.</p>")
    return text + (_html_table(head, rows) if rows else "<p>No document has an error.</p>")


def _errors(analysis: dict, several_files: bool) -> str:
    examples = analysis["examples"]
    types = sorted({e[0] for ex in examples for e in ex["gold"] + ex["pred"] if e[3] != "correct"})
    type_index = {t: i for i, t in enumerate(types)}
    counts = analysis["error_sentences"]
    shown = analysis.get("examples_shown", {})
    limit = analysis.get("examples_limit", 0)
    total = len(examples)
    opts_c = ['<option value="" data-name="">all error classes</option>'] + [
        f'<option value="{c}" data-name="{c}">{_e(LABELS[c])} ({counts.get(c, 0)})</option>' for c in ERROR_CLASSES
    ]
    opts_t = ['<option value="" data-name="">all types</option>'] + [
        f'<option value="{i}" data-name="{_e(t)}">{_e(_type_name(t))}</option>' for t, i in type_index.items()
    ]
    more = []
    for c in ERROR_CLASSES:
        n, s = counts.get(c, 0), shown.get(c, 0)
        if n:
            extra = f"; {n - s} more not shown" if n > s else ""
            more.append(f"{_e(LABELS[c])}: {n} sentence{'s' if n != 1 else ''}, {s} shown{extra}")
    note = (f"Sentences are kept until each error class has {limit} (<code>--examples</code>). " if limit else "") + " · ".join(more)
    out = [
        "<h2 id='errors'>Sentences with errors</h2>",
        '<div class="controls"><label>error class <select id="f-class">', *opts_c, "</select></label>",
        '<label>type <select id="f-type">', *opts_t, "</select></label>",
        f'<span>showing <b id="shown">{total}</b> of {total} sentences</span></div>',
        f'<p class="more">{note}</p>',
        '<div id="sentences">',
        *(_sentence(ex, type_index, several_files) for ex in examples),
        "</div>",
    ]
    if not examples:
        out.append("<p>No sentence holds an error.</p>")
    return "".join(out)


def render(result: dict, *, title: str | None = None) -> str:
    """The HTML page of an ``evaluate`` result (a dict from :class:`nerbatch.evaluation.scoring.Scorer`)."""
    files = result.get("files") or []
    several = len(files) > 1
    if title is None:
        title = "nerbatch evaluate" + (": " + ", ".join(os.path.basename(str(f)) for f in files) if files else "")
    meta = [f"mode: {result.get('mode', 'conlleval')}", f"{result['sentences']} sentences", f"{result['tokens']} tokens"]
    if result.get("model"):
        meta.append(f"model: {result['model']}")
    if files:
        meta.append("files: " + ", ".join(map(str, files)))
    analysis = result.get("analysis")
    body = [
        f"<h1>{_e(title)}</h1>",
        f'<p class="meta">{_e(" · ".join(meta))}</p>',
        _summary(result),
        "<h2 id='types'>Scores per type</h2>",
        _per_type_table(result),
    ]
    if analysis:
        body[2:2] = ['<p class="nav"><a href="#types">scores per type</a> · <a href="#classes">error classes</a> · '
                     + ('<a href="#scores">entity scores</a> · ' if result.get("calibration") else "")
                     + '<a href="#errors">sentences with errors</a> · <a href="#documents">worst documents</a></p>']
        body += [
            "<h2 id='classes'>Error classes</h2>",
            f"<p class='meta'>Every gold and every predicted entity ({_e(analysis['entities'])}) is classed by its "
            "best-overlapping counterpart: the same span first, then the same type, then the largest overlap.</p>",
            '<div class="figs"><div class="col">',
            f"<figure>{_class_bars(analysis)}<figcaption>Gold and predicted entities per class: the gold bars sum "
            "to the gold phrases, the predicted bars to the found ones; correct is conlleval's correct count.</figcaption></figure>",
            f"<figure>{_type_bars(analysis)}<figcaption>Per type: its gold entities by class, then its spurious "
            "predictions.</figcaption></figure>",
            "</div>",
            f"<figure>{_confusion(analysis)}<figcaption>Type confusion: each gold entity once, under the type of its "
            "best-overlapping prediction (none: missed); row none: spurious predictions.</figcaption></figure>",
            "</div>",
            _calibration(result.get("calibration")),
            _errors(analysis, several),
            _documents(analysis),
        ]
    else:
        body.append(_calibration(result.get("calibration")))
        body.append("<p>This result has no analysis.</p>"
                    '<select id="f-class" hidden><option value=""></option></select>'
                    '<select id="f-type" hidden><option value=""></option></select><b id="shown" hidden>0</b>')
    csp = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:"
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>\n"
        + "\n".join(body)
        + f"\n<script>{_JS}</script>\n</body></html>\n"
    )
