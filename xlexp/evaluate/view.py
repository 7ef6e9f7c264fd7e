"""A judged system as the view shows it (metrics, every judged prompt with both outputs and the
verdicts), and the sweep's paper tables and Fig. 2 from the report."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from xlexp.evaluate.metrics import column, declared_columns
from xlexp.report.plot import scaling_plot
from xlexp.report.tables import collect, group_tables, languages, with_rtt
from xlexp.store import Artifact, Store
from xlexp.view.read_common import (
    _artifact,
    _finished,
    _input_keys,
    _json,
    _meta,
    _recorded_inputs,
    _rows,
    clean,
)


def _load_outputs(art: Artifact | None, lang: str, notes: list[str]) -> list[dict]:
    if art is None:
        return []
    path = art.file(f"{lang}.json")
    try:
        rows = _json(path)
    except (OSError, ValueError) as e:
        notes.append(f"{path} could not be read: {e}")
        return []
    return rows if isinstance(rows, list) else []


def _by_id(rows: list[dict]) -> dict[str, dict]:
    return {str(r.get("id", i)): r for i, r in enumerate(rows)}


def _metrics(
    store: Store, judge: Artifact, notes: list[str], key: str | None = None
) -> tuple[dict, list | None]:
    """The judged system's metrics table and its stored columns: from the `metrics` artifact the
    run names, else the judge artifact's own metrics.json (stores written before metrics were
    their own artifact), else the newest `metrics` artifact whose DONE names the judge artifact
    among its inputs."""
    named = store.get("metrics", key) if key else None
    candidates = [named] if named else []
    candidates.append(judge)
    candidates += [a for a in reversed(_finished(store, "metrics")) if judge.key in _input_keys(a)]
    for art in candidates:
        if art.file("metrics.json").exists():
            try:
                table = clean(_json(art.file("metrics.json")))
                listed = art.file("columns.json")
                return table, (_json(listed) if listed.exists() else None)
            except (OSError, ValueError) as e:
                notes.append(f"{art.file('metrics.json')} could not be read: {e}")
    notes.append(
        f"no metrics for judge/{judge.key} "
        "(neither its metrics.json nor a metrics artifact made from it)"
    )
    return {}, None


def _agreement(
    store: Store, judge: Artifact, notes: list[str], key: str | None = None
) -> tuple[dict | None, Artifact | None]:
    """The agreement table (xlexp.evaluate.agreement) of a judged system and the extra judges'
    verdicts it was made from: the run's, else the newest agreement artifact made from this
    judgement."""
    from xlexp.evaluate.agreement import COLUMNS

    named = _artifact(store, "agreement", key, notes) if key else None
    found = named or next(
        (a for a in reversed(_finished(store, "agreement")) if judge.key in _input_keys(a)), None
    )
    if found is None:
        return None, None
    try:
        stored = clean(_json(found.file("agreement.json")))
    except (OSError, ValueError) as e:
        notes.append(f"{found.file('agreement.json')} could not be read: {e}")
        return None, None
    extra = next((store.get("judges", k) for k in _input_keys(found)
                  if (store.root / "judges" / k / "DONE").exists()), None)
    return {**stored, "key": found.key, "columns": [asdict(c) for c in COLUMNS]}, extra


def _judge_verdicts(main: str, verdict: dict, extra: dict[str, dict]) -> list[dict]:
    """Every judge's verdict on one prompt, the main judge first."""
    out = [{"judge": main, "main": True, "pref": verdict.get("preference"),
            "verdicts": verdict.get("verdicts") or [], "malformed": verdict.get("malformed") or []}]
    for name, row in extra.items():
        out.append({"judge": name, "main": False, "pref": row.get("preference"),
                    "verdicts": row.get("verdicts") or [], "malformed": row.get("malformed") or []})
    return out


def _columns(table: dict, stored: list | None) -> list[dict]:
    """The columns the page shows, as their metrics declare them (label, format, which way is
    better): the ones the metrics artifact lists, else every declared one its rows hold."""
    keys = {k for row in table.values() if isinstance(row, dict) for k in row}
    cols = declared_columns(stored) if stored else [c for c in declared_columns() if c.key in keys]
    return [asdict(c) for c in cols]


def _generator(labels: dict) -> tuple[str | None, str | None]:
    """The `generator` field the system's and the reference's outputs carry (see run_respond)."""
    rtt = labels.get("rtt")
    system = str(labels.get("model") or "") + (f"+rtt-{rtt}" if rtt else "")
    system += f"+{labels['adapter']}" if labels.get("adapter") else ""
    return (system or None), (labels.get("reference") or None)


def _match_respond(
    store: Store, generator: str | None, ids: dict[str, set[str]], before: str
) -> Artifact | None:
    """A respond artifact with this generator that answered exactly the judged prompts, the latest
    one finished before the judgement (for stores whose judge DONE records no inputs)."""
    if not generator:
        return None
    found = None
    for art in _finished(store, "respond"):
        meta = _meta(art)
        if (meta.get("counts") or {}).get("generator") != generator or (
            before and (meta.get("finished_at") or "") > before
        ):
            continue
        try:
            if all(
                {str(r.get("id")) for r in _json(art.file(f"{lang}.json"))} == want
                for lang, want in ids.items()
            ):
                found = art
        except (OSError, ValueError):
            continue
    return found


def read_evaluation(
    store: Store,
    judge_key: str,
    keys: dict[str, str | None] | None = None,
    runs: list[str] | None = None,
) -> dict:
    """One judged system: its metrics per language and every judged prompt with both outputs,
    the verdict of each order with its probability, malformed verdicts and failed outputs."""
    notes: list[str] = []
    keys = dict(keys or {})
    out: dict[str, Any] = {
        "key": judge_key,
        "keys": keys,
        "notes": notes,
        "rows": [],
        "metrics": {},
        "rubric": None,
        "labels": {},
        "langs": [],
        "runs": runs or [],
        "columns": [],
        "agreement": None,
    }
    judge = _artifact(store, "judge", judge_key, notes)
    if judge is None:
        return out
    meta = _meta(judge)
    labels = with_rtt(meta.get("system") or {})  # the RTT mode as a field, from old labels too
    out["labels"] = clean(labels)
    out["metrics"], stored = _metrics(store, judge, notes, keys.get("metrics"))
    out["columns"] = _columns(out["metrics"], stored)
    langs = list(labels.get("langs") or []) or sorted(p.stem for p in judge.path.glob("*.jsonl"))
    verdict_rows = {lang: _rows(judge, f"{lang}.jsonl", notes) or [] for lang in langs}
    if not (keys.get("respond") and keys.get("reference")):
        # The judge's DONE names both respond artifacts; the reference's outputs carry its name.
        for key in _recorded_inputs(store, judge, ("respond",)).get("respond", []):
            generator = (_meta(store.get("respond", key)).get("counts") or {}).get("generator")
            role = "reference" if generator and generator == labels.get("reference") else "respond"
            keys[role] = keys.get(role) or key
    system = _artifact(store, "respond", keys.get("respond"), notes)
    reference = _artifact(store, "respond", keys.get("reference"), notes)
    if system is None or reference is None:
        ids = {lang: {str(r.get("id")) for r in rows} for lang, rows in verdict_rows.items()}
        sys_gen, ref_gen = _generator(labels)
        before = meta.get("finished_at") or ""
        system = system or _match_respond(store, sys_gen, ids, before)
        reference = reference or _match_respond(store, ref_gen, ids, before)
        if system is not None or reference is not None:
            notes.append(
                "the judge artifact records no inputs (made_of): "
                "outputs were matched by generator name and prompt ids"
            )
        if system is None:
            notes.append(
                f"the judged system's outputs (generator {sys_gen!r}) were not found: "
                "outputs are not shown"
            )
        if reference is None:
            notes.append(
                f"the reference's outputs (generator {ref_gen!r}) were not found: "
                "reference outputs are not shown"
            )
    out["keys"].update(
        respond=system.key if system else None, reference=reference.key if reference else None
    )
    out["agreement"], extra_art = _agreement(store, judge, notes, keys.get("agreement"))
    extra_names = list((out["agreement"] or {}).get("judges") or [])
    extra_rows = {
        (name, lang): _by_id(_rows(extra_art, f"{name}/{lang}.jsonl", notes) or [])
        for name in (extra_names if extra_art is not None else [])
        for lang in langs
    }
    rubric_key = keys.get("rubric")
    if rubric_key:
        rubric = _artifact(store, "rubric", rubric_key, notes)
        if rubric is not None and rubric.file("metrics.json").exists():
            out["rubric"] = clean(_json(rubric.file("metrics.json")))
    rows = []
    for lang in langs:
        sys_rows = _by_id(_load_outputs(system, lang, notes))
        ref_rows = _by_id(_load_outputs(reference, lang, notes))
        for verdict in verdict_rows[lang]:
            rid = str(verdict.get("id"))
            s, r = sys_rows.get(rid, {}), ref_rows.get(rid, {})
            output = s.get("output")
            rows.append(
                {
                    "id": rid,
                    "lang": lang,
                    "pref": verdict.get("preference"),
                    "instruction": s.get("instruction") or r.get("instruction") or "",
                    "output": output,
                    "ref_output": r.get("output"),
                    # A failed call is written as an empty output (or flagged, where the row says
                    # so).
                    "failed": bool(s.get("error") or s.get("failed"))
                    or (system is not None and not (output or "").strip()),
                    "ref_failed": bool(r.get("error") or r.get("failed"))
                    or (reference is not None and not (r.get("output") or "").strip()),
                    "verdicts": verdict.get("verdicts") or [],
                    "malformed": verdict.get("malformed") or [],
                    # every judge's verdict, where extra judges judged this system
                    "judges": _judge_verdicts(
                        str(labels.get("judge") or "main judge"), verdict,
                        {n: extra_rows[n, lang].get(rid, {}) for n in extra_names
                         if (n, lang) in extra_rows},
                    ) if extra_rows else [],
                }
            )
    out["rows"] = rows
    out["langs"] = langs
    out["counts"] = {
        "rows": len(rows),
        "malformed": sum(1 for r in rows if r["malformed"]),
        "no_verdict": sum(1 for r in rows if r["pref"] is None),
        "failed": sum(1 for r in rows if r["failed"] or r["ref_failed"]),
    }
    return out



def read_sweep(path: Path, judge_runs: dict[str, list[str]]) -> dict:
    """The paper-layout tables (`report.tables.group_tables`) as data, each row linked to its
    judged system in the page and to the runs that produced it, with the declaration of the
    metric its cells hold (the page bolds the best by its direction), and Fig. 2 as a PNG."""
    import base64
    import tempfile

    out: dict[str, Any] = {"tables": [], "plots": [], "notes": []}
    try:
        tables = group_tables(collect(path))
    except FileNotFoundError as e:
        out["notes"].append(str(e))
        return out
    metric = column("win_rate")
    for title, rows in tables.items():
        cols = ["avg", *languages(rows)]
        show_exp = len({r.exp for r in rows}) > 1
        table_rows = [{
            "label": row.label(False, show_exp),
            "values": [row.value(c, metric.key) for c in cols],
            "judge": row.key or None,
            "runs": judge_runs.get(row.key, []),
        } for row in rows]
        out["tables"].append(
            {"title": title, "cols": cols, "column": asdict(metric), "rows": clean(table_rows)}
        )
        with tempfile.TemporaryDirectory() as tmp:
            png = Path(tmp) / "scaling.png"
            if scaling_plot(rows, png, title=title):
                out["plots"].append(
                    {"title": title, "png": base64.b64encode(png.read_bytes()).decode()}
                )
    if not out["plots"]:
        out["notes"].append(
            "no system was fine-tuned (no data size): the Fig. 2 plot needs SFT runs"
        )
    return out
