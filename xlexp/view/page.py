"""One HTML file from the view's data: CSS and JS inlined, the data embedded gzipped.

Lists carry a small index per row (id, language, status, score, the start of the
instruction) in the page's JSON; each row's full record is one line of a JSON-lines chunk
that the script inflates and parses only when one of its rows is opened, so a 32K-row
dataset costs one inflate and `JSON.parse` of its index at load, not of every sentence and
candidate. The index and each chunk are gzip, base64 in the page (the browser's
`DecompressionStream` reads them): a paper-scale page is a tenth of its JSON's size.
"""

from __future__ import annotations

import base64
import gzip
import html
import json
import time
from pathlib import Path
from typing import Any

from xlexp.view.read import clean

ASSETS = Path(__file__).resolve().parent / "assets"
SNIPPET = 200  # characters of the instruction a list row shows and its search looks at
CHUNK_ROWS = 500  # row records per <script> chunk: opening a row reads one chunk, not all


def _script_json(obj: Any) -> str:
    """JSON safe inside a <script> element: `<` escaped (no `</script>` or `<!--` in the data)."""
    try:
        text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except ValueError:  # a NaN or infinity somewhere (JSON has none): as null, the page shows "–"
        text = json.dumps(clean(obj), ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c")


def _packed(text: str) -> str:
    """gzip (mtime 0: the same data, the same bytes) as base64, safe inside a <script>."""
    data = text.encode("utf-8", errors="backslashreplace")
    return base64.b64encode(gzip.compress(data, compresslevel=6, mtime=0)).decode("ascii")


def _split(page: dict) -> tuple[dict, list[str]]:
    """The page without row records (an index per list instead) and the records as JSON lines."""
    lines: list[str] = []

    def keep(record: dict) -> int:
        lines.append(_script_json(record))
        return len(lines) - 1

    data = {k: v for k, v in page.items() if k not in ("generation", "evaluation")}
    data["generation"] = []
    for ds in page.get("generation", []):
        index = [
            {"id": r["id"], "lang": r["lang"], "status": r["status"], "qe": r["qe"],
             "ins": (r.get("instruction") or "")[:SNIPPET], "d": keep(r)}
            for r in ds.get("rows", [])
        ]
        data["generation"].append({**{k: v for k, v in ds.items() if k != "rows"}, "index": index})
    data["evaluation"] = []
    for system in page.get("evaluation", []):
        index = [
            {
                "id": r["id"],
                "lang": r["lang"],
                "pref": r["pref"],
                "mal": bool(r["malformed"]),
                "failed": bool(r["failed"] or r["ref_failed"]),
                "ins": (r.get("instruction") or "")[:SNIPPET],
                "d": keep(r),
            }
            for r in system.get("rows", [])
        ]
        data["evaluation"].append(
            {**{k: v for k, v in system.items() if k != "rows"}, "index": index}
        )
    return data, lines


def render(page: dict) -> str:
    """The whole HTML document for the data `read.read_path` returns."""
    data, lines = _split(page)
    source = page.get("source", {})
    title = f"xlexp view · {source.get('kind', '?')} {Path(source.get('path', '')).name}"
    built = time.strftime("%Y-%m-%d %H:%M:%S")
    data["built"] = built
    data["chunk_rows"] = CHUNK_ROWS
    chunks = [
        f'<script type="application/gzip" data-chunk="{i}">'
        f"{_packed(chr(10).join(lines[start : start + CHUNK_ROWS]))}</script>"
        for i, start in enumerate(range(0, len(lines), CHUNK_ROWS))
    ]
    css = (ASSETS / "view.css").read_text()
    # columns.js first: view.js draws the metric columns with its helpers.
    js = (ASSETS / "columns.js").read_text() + "\n" + (ASSETS / "view.js").read_text()
    return "".join(
        [
            '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{html.escape(title)}</title><style>{css}</style></head><body>",
            f'<header><h1>{html.escape(title)}</h1><nav><a href="#generation">Generation</a>',
            '<a href="#evaluation">Evaluation</a><a href="#sweep">Sweep</a></nav>',
            f'<span class="src">{html.escape(str(source.get("path", "")))} · built {built}'
            "</span></header>",
            '<main id="app"><noscript>This page renders its data with JavaScript.</noscript>'
            "</main>",
            '<footer id="xlexp-perf"></footer>',
            f'<script type="application/gzip" id="xlexp-data">{_packed(_script_json(data))}'
            "</script>",
            *chunks,
            f"<script>{js}</script></body></html>\n",
        ]
    )


def write_view(path: str | Path, out: str | Path | None = None) -> Path:
    """Read a run dir, sweep dir or store and write its view (default `<path>/view.html`)."""
    from xlexp.view.read import read_path

    page = read_path(Path(path))
    target = Path(out) if out else Path(path) / "view.html"
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    # Lone surrogates (undecodable bytes a model emitted) as \\uXXXX escapes: valid JSON, valid
    # UTF-8.
    tmp.write_text(render(page), encoding="utf-8", errors="backslashreplace")
    tmp.replace(target)
    return target
