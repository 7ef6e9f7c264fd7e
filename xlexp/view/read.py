"""What the view shows, read from a run dir, a sweep dir or a store: the one place that knows
where the stages put their files and which fields their rows carry.

Everything here is read defensively: a missing artifact, file or field becomes a note in the
section that needed it (the page says what it could not show), never an exception that loses
the rest of the page. The result is plain JSON-able data; `page.py` turns it into HTML.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

from xlexp.generate import select
from xlexp.generate import stats as gen_stats
from xlexp.generate.qe import triple_key
from xlexp.store import Artifact, Store, read_jsonl

GENERATE_STAGES = ("seed", "reverse", "refine", "translate", "qe", "select")
EXAMPLES_PER_REASON = 5
# An evaluate summary names its artifacts by role; the reference's outputs live in `respond`.
EVAL_ROLE_STAGE = {"reference": "respond", "respond": "respond", "judge": "judge", "rubric": "rubric", "benchmark": "benchmark",
                   "metrics": "metrics"}


def clean(value: Any) -> Any:
    """NaN and infinities as None (JSON has no NaN; a table cell shows them as absent)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    return value


def _json(path: Path) -> Any:
    return json.loads(path.read_text())


def _artifact(store: Store, stage: str, key: str | None, notes: list[str]) -> Artifact | None:
    if not key:
        return None
    art = store.get(stage, key)
    if art is None:
        notes.append(f"{stage} artifact {key} is not in the store {store.root} (no {stage}/{key}/DONE)")
    return art


def _meta(art: Artifact | None) -> dict:
    if art is None:
        return {}
    try:
        return art.meta
    except (OSError, ValueError):
        return {}


_JSONL_CACHE: dict[Path, list[dict]] = {}


def _jsonl(path: Path) -> list[dict]:
    """read_jsonl, once per file while a page is read (the store-only search for a dataset's
    inputs and the dataset itself read the same big files); rows are never modified."""
    if path not in _JSONL_CACHE:
        _JSONL_CACHE[path] = read_jsonl(path)
    return _JSONL_CACHE[path]


def _rows(art: Artifact | None, name: str, notes: list[str]) -> list[dict] | None:
    """An artifact's JSONL rows, or None with a note naming the file that could not be read."""
    if art is None:
        return None
    path = art.file(name)
    if not path.exists():
        notes.append(f"{art.stage}/{art.key} has no {name}")
        return None
    try:
        return _jsonl(path)
    except (OSError, ValueError) as e:
        notes.append(f"{path} could not be read: {e}")
        return None


def _input_keys(art: Artifact) -> list[str]:
    """The input keys an artifact's DONE records (`made_of.inputs`, as the store writes it)."""
    inputs = (_meta(art).get("made_of") or {}).get("inputs") or []
    return [str(k) for k in inputs if isinstance(k, str)]


def _recorded_inputs(store: Store, art: Artifact, stages: tuple[str, ...]) -> dict[str, list[str]]:
    """The recorded input keys by the stage whose store dir holds them (a judge artifact's two
    inputs are both `respond` artifacts, so each stage maps to a list)."""
    found: dict[str, list[str]] = {}
    for key in _input_keys(art):
        for stage in stages:
            if (store.root / stage / key / "DONE").exists():
                found.setdefault(stage, []).append(key)
    return found


def _finished(store: Store, stage: str) -> list[Artifact]:
    root = store.root / stage
    if not root.is_dir():
        return []
    found = [Artifact(stage, p.parent.name, p.parent) for p in root.glob("*/DONE")]
    return sorted(found, key=lambda a: (_meta(a).get("finished_at") or "", a.key))


# ---------------------------------------------------------------- generation


def _translator_names(stats: dict, k: int) -> list[str]:
    # stats.json lists the translators in their config order (the order of `candidates`).
    for field in ("translator_wins", "mean_qe_by_translator"):
        names = list((stats.get(field) or {}).keys())
        if len(names) == k:
            return names
    return [f"translator {i + 1}" for i in range(k)]


def _reproduces(strategy: str, kept: list[dict], items: dict[str, dict], scores: dict, names: list[str]) -> bool:
    for row in kept[:50]:
        item = items.get(row.get("id"))
        if item is None:
            return False
        got = select.choose(item, scores, names, strategy)
        if "reject" in got or got["translators"] != row.get("translators"):
            return False
        if not math.isclose(got["qe_score"], row.get("qe_score", math.nan), rel_tol=1e-9, abs_tol=1e-12):
            return False
    return True


def _strategy(meta: dict, kept: list[dict], items: dict[str, dict], scores: dict, names: list[str]) -> str | None:
    """The selection that made the dataset: as recorded, else the one whose choices reproduce the
    stored rows (`random` picks like best_of_k; only its kept subset differs)."""
    if meta.get("selection"):
        return str(meta["selection"])
    for strategy in ("best_of_k", "naive"):
        if _reproduces(strategy, kept, items, scores, names):
            return strategy
    return None


def _sentences(item: dict, score_of: Any, names: list[str], winners: list[str] | None) -> list[dict]:
    out = []
    for i, (src, cands) in enumerate(zip(item.get("sentences") or [], item.get("candidates") or [], strict=False)):
        chosen = None
        if winners and i < len(winners) and winners[i] in names:
            chosen = names.index(winners[i])
        out.append({
            "src": src,
            "cands": list(cands),
            "scores": [score_of(src, mt, item["lang"]) if mt is not None else None for mt in cands],
            "chosen": chosen,
        })
    return out


def _reject_examples(stage: str, rows: list[dict], text_of: Any) -> list[dict]:
    by_reason: dict[str, list[dict]] = {}
    for row in rows:
        reason = gen_stats._reason(str(row.get("reject") or row.get("reason") or "?"))
        by_reason.setdefault(reason, []).append(row)
    return [
        {"stage": stage, "reason": reason, "count": len(group),
         "examples": [{"id": str(r.get("id", "")), "text": text_of(r)} for r in group[:EXAMPLES_PER_REASON]]}
        for reason, group in sorted(by_reason.items(), key=lambda kv: -len(kv[1]))
    ]


def read_generation(store: Store, keys: dict[str, str | None]) -> dict:
    """One generated dataset: every translated item with its sentences, candidates, QE scores
    and the chosen translations, its status (kept, dropped by the QE cut, rejected), the funnel
    and the rejects of each stage with examples."""
    notes: list[str] = []
    arts = {stage: _artifact(store, stage, keys.get(stage), notes) for stage in GENERATE_STAGES}
    lost = [stage for stage in GENERATE_STAGES if not keys.get(stage)]
    if lost:
        notes.append(f"not found: the {', '.join(lost)} artifact(s) this dataset was made from; what they hold is not shown")
    sel = arts["select"]
    out: dict[str, Any] = {"key": keys.get("select"), "keys": dict(keys), "notes": notes, "rows": [], "rejects": [],
                           "funnel": [], "translators": [], "strategy": None, "cut": None, "langs": []}
    stats: dict = {}
    if sel is not None and sel.file("stats.json").exists():
        try:
            stats = _json(sel.file("stats.json"))
        except (OSError, ValueError) as e:
            notes.append(f"{sel.file('stats.json')} could not be read: {e}")
    elif sel is not None:
        notes.append(f"select/{sel.key} has no stats.json: the funnel comes from the stages' DONE counts")
    funnel = stats.get("stages") or gen_stats.stage_funnel({s: _meta(a).get("counts", {}) for s, a in arts.items() if a and s != "select"})
    out["funnel"] = [{"stage": stage, **clean(row)} for stage, row in funnel.items()]

    kept = _rows(sel, "dataset.jsonl", notes) or []
    select_rejects = _rows(sel, "rejects.jsonl", notes) or []
    translations = _rows(arts["translate"], "rows.jsonl", notes) or []
    qe_rows = _rows(arts["qe"], "rows.jsonl", notes) or []
    scores = {r["key"]: r.get("score") for r in qe_rows if "key" in r}
    # The same scores by (source, translation, lang), the fields a QE row stores beside its key:
    # one dict lookup per candidate instead of a hash of each.
    by_triple = {(r.get("source"), r.get("translation"), r.get("lang")): r.get("score") for r in qe_rows}

    def score_of(src: str, mt: str, lang: str) -> float | None:
        found = by_triple.get((src, mt, lang), by_triple)  # by_triple itself: not there
        return scores.get(triple_key(src, mt, lang)) if found is by_triple else found

    k = max((len(c) for t in translations for c in (t.get("candidates") or [])), default=0)
    names = _translator_names(stats, k)
    items = {t["id"]: t for t in translations if "id" in t}
    strategy = _strategy(_meta(sel), kept, items, scores, names) if kept and items else None
    if kept and items and strategy is None:
        notes.append("the translate and QE rows do not reproduce the dataset's choices: chosen translations of dropped rows are not marked")
    out.update(translators=names, strategy=strategy)

    kept_by_id = {r["id"]: r for r in kept if "id" in r}
    rejected_by_id = {r["id"]: r for r in select_rejects if "id" in r}
    if strategy not in (None, "random") and kept:
        out["cut"] = min(r["qe_score"] for r in kept if r.get("qe_score") is not None)
    rows = []
    for item_id, item in items.items():
        row: dict[str, Any] = {"id": item_id, "lang": item.get("lang"), "instruction": item.get("instruction", ""),
                               "question": item.get("question"), "source": item.get("response"), "qe": None,
                               "status": "dropped", "final": None, "reason": None, "rank": None}
        winners: list[str] | None = None
        if item_id in kept_by_id:
            ds = kept_by_id[item_id]
            messages = ds.get("messages") or []
            row.update(status="kept", qe=ds.get("qe_score"), rank=ds.get("rank"),
                       final=messages[-1].get("content") if messages else None)
            winners = ds.get("translators")
        elif item_id in rejected_by_id:
            row.update(status="rejected", reason=rejected_by_id[item_id].get("reject"))
        elif strategy is not None:
            got = select.choose(item, scores, names, strategy)
            if "reject" in got:  # select recorded no such reject: say so rather than guess
                row.update(status="rejected", reason=got["reject"])
            else:
                row.update(qe=got["qe_score"], final=got["messages"][-1]["content"])
                winners = got["translators"]
        row["sentences"] = _sentences(item, score_of, names, winners)
        rows.append(row)
    if translations and not kept and sel is not None:
        notes.append(f"select/{sel.key} kept no rows")
    out["rows"] = rows
    out["langs"] = sorted({r["lang"] for r in rows if r["lang"]})

    rejects: list[dict] = []
    seed_counts = (funnel.get("seed") or {}).get("reject_reasons") or {}
    rejects += [{"stage": "seed", "reason": reason, "count": n, "examples": []} for reason, n in seed_counts.items() if n]
    for stage in ("reverse", "refine"):
        stage_rejects = _rows(arts[stage], "rejects.jsonl", notes) if arts[stage] else []
        rejects += _reject_examples(stage, stage_rejects or [], lambda r: str(r.get("raw") or ""))
    missing = [{"id": t["id"], "reject": f"{names[j] if j < len(names) else j}: no translation",
                "text": src} for t in translations for src, cands in zip(t.get("sentences") or [], t.get("candidates") or [], strict=False)
               for j, c in enumerate(cands) if c is None]
    if missing:
        rejects += _reject_examples("translate", missing, lambda r: r["text"])
    elif (funnel.get("translate") or {}).get("rejects"):
        rejects += [{"stage": "translate", "reason": r, "count": n, "examples": []}
                    for r, n in ((funnel["translate"] or {}).get("reject_reasons") or {}).items()]
    failed_qe = [r for r in qe_rows if r.get("score") is None]
    rejects += _reject_examples("qe", failed_qe, lambda r: f"{r.get('source', '')} → {r.get('translation', '')}")
    rejects += _reject_examples("select", select_rejects, lambda r: "")
    out["rejects"] = rejects
    out["counts"] = dict(Counter(r["status"] for r in rows))
    return out


# ---------------------------------------------------------------- evaluation


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


def _metrics(store: Store, judge: Artifact, notes: list[str], key: str | None = None) -> dict:
    """The judged system's metrics table: from the `metrics` artifact the run names, else the
    judge artifact's own metrics.json (stores written before metrics were their own artifact),
    else the newest `metrics` artifact whose DONE names the judge artifact among its inputs."""
    named = store.get("metrics", key) if key else None
    candidates = [named] if named else []
    candidates.append(judge)
    candidates += [a for a in reversed(_finished(store, "metrics")) if judge.key in _input_keys(a)]
    for art in candidates:
        if art.file("metrics.json").exists():
            try:
                return clean(_json(art.file("metrics.json")))
            except (OSError, ValueError) as e:
                notes.append(f"{art.file('metrics.json')} could not be read: {e}")
    notes.append(f"no metrics for judge/{judge.key} (neither its metrics.json nor a metrics artifact made from it)")
    return {}


def _generator(labels: dict) -> tuple[str | None, str | None]:
    """The `generator` field the system's and the reference's outputs carry (see run_respond)."""
    model = str(labels.get("model") or "")
    rtt = None
    if " (RTT " in model:
        model, rtt = model.split(" (RTT ", 1)
        rtt = rtt.rstrip(")")
    system = model + (f"+rtt-{rtt}" if rtt else "") + (f"+{labels['adapter']}" if labels.get("adapter") else "")
    return (system or None), (labels.get("reference") or None)


def _match_respond(store: Store, generator: str | None, ids: dict[str, set[str]], before: str) -> Artifact | None:
    """A respond artifact with this generator that answered exactly the judged prompts, the latest
    one finished before the judgement (for stores whose judge DONE records no inputs)."""
    if not generator:
        return None
    found = None
    for art in _finished(store, "respond"):
        meta = _meta(art)
        if (meta.get("counts") or {}).get("generator") != generator or (before and (meta.get("finished_at") or "") > before):
            continue
        try:
            if all({str(r.get("id")) for r in _json(art.file(f"{lang}.json"))} == want for lang, want in ids.items()):
                found = art
        except (OSError, ValueError):
            continue
    return found


def read_evaluation(store: Store, judge_key: str, keys: dict[str, str | None] | None = None, runs: list[str] | None = None) -> dict:
    """One judged system: its metrics per language and every judged prompt with both outputs,
    the verdict of each order with its probability, malformed verdicts and failed outputs."""
    notes: list[str] = []
    keys = dict(keys or {})
    out: dict[str, Any] = {"key": judge_key, "keys": keys, "notes": notes, "rows": [], "metrics": {}, "rubric": None,
                           "labels": {}, "langs": [], "runs": runs or []}
    judge = _artifact(store, "judge", judge_key, notes)
    if judge is None:
        return out
    meta = _meta(judge)
    labels = meta.get("system") or {}
    out["labels"] = clean(labels)
    out["metrics"] = _metrics(store, judge, notes, keys.get("metrics"))
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
            notes.append("the judge artifact records no inputs (made_of): outputs were matched by generator name and prompt ids")
        if system is None:
            notes.append(f"the judged system's outputs (generator {sys_gen!r}) were not found: outputs are not shown")
        if reference is None:
            notes.append(f"the reference's outputs (generator {ref_gen!r}) were not found: reference outputs are not shown")
    out["keys"].update(respond=system.key if system else None, reference=reference.key if reference else None)
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
            rows.append({
                "id": rid,
                "lang": lang,
                "pref": verdict.get("preference"),
                "instruction": s.get("instruction") or r.get("instruction") or "",
                "output": output,
                "ref_output": r.get("output"),
                # A failed call is written as an empty output (or flagged, where the row says so).
                "failed": bool(s.get("error") or s.get("failed")) or (system is not None and not (output or "").strip()),
                "ref_failed": bool(r.get("error") or r.get("failed")) or (reference is not None and not (r.get("output") or "").strip()),
                "verdicts": verdict.get("verdicts") or [],
                "malformed": verdict.get("malformed") or [],
            })
    out["rows"] = rows
    out["langs"] = langs
    out["counts"] = {
        "rows": len(rows),
        "malformed": sum(1 for r in rows if r["malformed"]),
        "no_verdict": sum(1 for r in rows if r["pref"] is None),
        "failed": sum(1 for r in rows if r["failed"] or r["ref_failed"]),
    }
    return out


# ---------------------------------------------------------------- sweep: the report's tables and Fig. 2


def read_sweep(path: Path, judge_runs: dict[str, list[str]]) -> dict:
    """The paper-layout tables (`report.group_tables`) as data, each row linked to its judged
    system in the page and to the runs that produced it, and the Fig. 2 plot as a PNG."""
    import base64
    import tempfile

    from xlexp import report

    out: dict[str, Any] = {"tables": [], "plots": [], "notes": []}
    try:
        tables = report.group_tables(report.collect(path))
    except FileNotFoundError as e:
        out["notes"].append(str(e))
        return out
    for title, rows in tables.items():
        cols = ["avg", *report.languages(rows)]
        best = {c: report._best(rows, c, "win_rate") for c in cols}
        show_exp = len({r.exp for r in rows}) > 1
        table_rows = []
        for row in rows:
            values = [row.value(c) for c in cols]
            table_rows.append({
                "label": row.label(False, show_exp),
                "values": values,
                "best": [v is not None and best[c] is not None and round(v, 2) == round(best[c], 2) for v, c in zip(values, cols, strict=True)],
                "judge": row.key or None,
                "runs": judge_runs.get(row.key, []),
            })
        out["tables"].append({"title": title, "cols": cols, "rows": clean(table_rows)})
        with tempfile.TemporaryDirectory() as tmp:
            png = Path(tmp) / "scaling.png"
            if report.scaling_plot(rows, png, title=title):
                out["plots"].append({"title": title, "png": base64.b64encode(png.read_bytes()).decode()})
    if not out["plots"]:
        out["notes"].append("no system was fine-tuned (no data size): the Fig. 2 plot needs SFT runs")
    return out


# ---------------------------------------------------------------- what a path holds


def _summary_keys(summary: dict) -> tuple[dict[str, str | None] | None, str | None, dict[str, str | None]]:
    """(generation keys, judge key, evaluation keys) of one run's results.json."""
    stages = summary.get("stages") or {}
    gen = stages.get("generate") or {}
    gen_keys = {s: (gen.get(s) or {}).get("key") for s in GENERATE_STAGES} if isinstance(gen.get("select"), dict) else None
    ev = stages.get("evaluate") or {}
    ev_keys = {role: ev.get(role) for role in EVAL_ROLE_STAGE if isinstance(ev.get(role), str)}
    return gen_keys, ev_keys.get("judge") or (summary.get("system") or {}).get("judge_key"), ev_keys


def _store_of(summary: dict, results: Path) -> Store | None:
    root = summary.get("store")
    if root and Path(root).is_dir():
        return Store(root)
    return None


def read_path(path: Path) -> dict:
    try:
        return _read_path(path)
    finally:
        _JSONL_CACHE.clear()


def _read_path(path: Path) -> dict:
    """The page's data for a run dir (results.json), a sweep dir (results.json below it) or a
    store dir (every finished select and judge artifact)."""
    path = Path(path).resolve()
    if not path.is_dir():
        raise FileNotFoundError(f"xlexp.view: {path} is not a directory (give a run dir, a sweep dir or a store dir)")
    page: dict[str, Any] = {"source": {"path": str(path)}, "notes": [], "generation": [], "evaluation": [], "sweep": None}
    results = sorted(path.rglob("results.json"))
    if results:
        page["source"]["kind"] = "run" if (path / "results.json").exists() and len(results) == 1 else "sweep"
        datasets: dict[tuple[str, str], dict] = {}
        systems: dict[tuple[str, str], dict] = {}
        for res in results:
            try:
                summary = _json(res)
            except (OSError, ValueError) as e:
                page["notes"].append(f"{res} could not be read: {e}")
                continue
            store = _store_of(summary, res)
            run = str(res.parent.relative_to(path)) if res.parent != path else "."
            if store is None:
                page["notes"].append(f"{res}: its store ({summary.get('store')}) is not there")
                continue
            gen_keys, judge_key, ev_keys = _summary_keys(summary)
            if gen_keys and gen_keys.get("select"):
                datasets.setdefault((str(store.root), gen_keys["select"]), {"store": store, "keys": gen_keys, "runs": []})["runs"].append(run)
            if judge_key:
                entry = systems.setdefault((str(store.root), judge_key), {"store": store, "keys": ev_keys, "runs": []})
                entry["runs"].append(run)
        for entry in datasets.values():
            page["generation"].append({**read_generation(entry["store"], entry["keys"]), "runs": entry["runs"]})
        judge_runs: dict[str, list[str]] = {}
        for (_, key), entry in systems.items():
            page["evaluation"].append(read_evaluation(entry["store"], key, entry["keys"], entry["runs"]))
            judge_runs.setdefault(key, []).extend(entry["runs"])
        page["sweep"] = read_sweep(path, judge_runs)
        return page
    if (path / "select").is_dir() or (path / "judge").is_dir():
        page["source"]["kind"] = "store"
        store = Store(path)
        for sel in _finished(store, "select"):
            page["generation"].append(read_generation(store, _generation_inputs(store, sel)))
        for judge in _finished(store, "judge"):
            page["evaluation"].append(read_evaluation(store, judge.key))
        page["sweep"] = read_sweep(path, {})
        return page
    raise FileNotFoundError(
        f"xlexp.view: nothing to show in {path}: no results.json under it (a run or sweep dir written with "
        "the report stage) and no select/ or judge/ artifacts (a store dir)"
    )


def _ids(art: Artifact, name: str) -> set[str]:
    try:
        return {str(r.get("id")) for r in _jsonl(art.file(name))} if art.file(name).exists() else set()
    except (OSError, ValueError):
        return set()


def _generation_inputs(store: Store, sel: Artifact) -> dict[str, str | None]:
    """The keys of the stages that made a select artifact: as its DONE records them, else the
    artifacts whose rows it was made of (ids of each stage's rows and rejects chain up)."""
    keys: dict[str, str | None] = {s: None for s in GENERATE_STAGES}
    keys["select"] = sel.key
    # Each DONE names its inputs (made_of): select <- translate, qe; translate <- refine <- reverse <- seed.
    for stage, upstream in (("select", ("translate", "qe")), ("translate", ("refine",)), ("refine", ("reverse",)), ("reverse", ("seed",))):
        art = store.get(stage, keys[stage]) if keys[stage] else None
        if art is not None:
            for up, found in _recorded_inputs(store, art, upstream).items():
                keys[up] = keys[up] or found[0]
    if keys["translate"] is None:
        want = _ids(sel, "dataset.jsonl") | _ids(sel, "rejects.jsonl")
        for art in reversed(_finished(store, "translate")):
            if want and want <= _ids(art, "rows.jsonl"):
                keys["translate"] = art.key
                break
    translate = store.get("translate", keys["translate"]) if keys["translate"] else None
    if translate is not None and keys["qe"] is None:
        keys["qe"] = _match_qe(store, sel, translate)
    if translate is not None and keys["refine"] is None:
        seed_ids = {str(r.get("seed_id")) for r in _jsonl(translate.file("rows.jsonl"))}
        keys["refine"] = next((a.key for a in reversed(_finished(store, "refine")) if seed_ids <= _ids(a, "rows.jsonl")), None)
    for stage, upstream in (("reverse", "refine"), ("seed", "reverse")):
        up = store.get(upstream, keys[upstream]) if keys[upstream] else None
        if up is not None and keys[stage] is None:
            want = _ids(up, "rows.jsonl") | _ids(up, "rejects.jsonl")
            keys[stage] = next((a.key for a in reversed(_finished(store, stage)) if want and want <= _ids(a, "rows.jsonl")), None)
    return keys


def _match_qe(store: Store, sel: Artifact, translate: Artifact) -> str | None:
    """The QE artifact whose scores reproduce the select artifact's kept rows."""
    kept = _jsonl(sel.file("dataset.jsonl")) if sel.file("dataset.jsonl").exists() else []
    items = {t["id"]: t for t in _jsonl(translate.file("rows.jsonl"))}
    stats = _json(sel.file("stats.json")) if sel.file("stats.json").exists() else {}
    k = max((len(c) for t in items.values() for c in (t.get("candidates") or [])), default=0)
    names = _translator_names(stats, k)
    for art in reversed(_finished(store, "qe")):
        try:
            scores = {r["key"]: r.get("score") for r in _jsonl(art.file("rows.jsonl")) if "key" in r}
        except (OSError, ValueError):
            continue
        if any(_reproduces(s, kept, items, scores, names) for s in ("best_of_k", "naive")):
            return art.key
    return None
