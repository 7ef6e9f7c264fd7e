// xlexp view: renders the data embedded in this page. Vanilla JS, nothing fetched.
// Lists hold a small index per row; a row's full record (sentences, candidates, outputs) is
// one line of an embedded JSON-lines chunk, inflated and parsed only when the row is opened,
// so a page of 32K rows loads as fast as one of 30. The index and the chunks are gzip in
// base64: the browser's DecompressionStream inflates them.
"use strict";
(async function () {
  const T0 = performance.now();
  async function inflate(el) {
    const bin = atob(el.textContent);
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
    return new Response(stream).text();
  }
  const DATA = JSON.parse(await inflate(document.getElementById("xlexp-data")));
  const T_PARSED = performance.now();
  // Row records come in chunks of JSON lines, one <script> element each. They are taken out
  // of the document at once (cheap: their text is not read) and a chunk is inflated and split
  // only when one of its rows is opened.
  const CHUNKS = Array.from(document.querySelectorAll("script[data-chunk]"));
  const CHUNK_ROWS = DATA.chunk_rows;
  const chunkLines = new Map();
  CHUNKS.forEach((el) => el.remove());
  document.getElementById("xlexp-data").remove();
  const PAGE_SIZE = 25;
  const OPENING = [];  // rows opened as the page is drawn: the page is rendered when they are

  async function record(i) {
    const c = Math.floor(i / CHUNK_ROWS);
    if (!chunkLines.has(c)) chunkLines.set(c, inflate(CHUNKS[c]).then((text) => text.split("\n")));
    return JSON.parse((await chunkLines.get(c))[i % CHUNK_ROWS]);
  }

  // h("td", {class: "num"}, "1.0", child): an element; strings become text nodes (never HTML).
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k.startsWith("on")) el.addEventListener(k.slice(2), v); else el.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      el.append(c instanceof Node ? c : String(c));
    }
    return el;
  }
  const fmt = (v, d = 3) => (v === null || v === undefined ? "–" : typeof v === "number" ? v.toFixed(d) : String(v));
  const notes = (list) => (list || []).map((n) => h("div", { class: "note" }, n));
  const stat = (label, value, key) => h("div", { class: "stat" }, h("b", { "data-count": key }, String(value)), label);
  const hashParams = new URLSearchParams(location.hash.replace(/^#/, ""));

  function table(head, rows, cls) {
    return h("table", { class: "grid " + (cls || "") },
      h("thead", {}, h("tr", {}, head.map((c) => h("th", {}, c)))),
      h("tbody", {}, rows.map((r) => h("tr", {}, r.map((c) => (c instanceof Node && c.tagName === "TD" ? c : h("td", { class: typeof c === "number" ? "num" : null }, c)))))));
  }

  // A paged list: `index` rows, `filters` (name -> predicate factory), `sorts`, `summary(row)`
  // and `open(row)` for the detail. Only the current page is in the DOM.
  function pagedList(opts) {
    const state = { page: 0, filter: {}, sort: opts.sorts[0][0], query: opts.query || "" };
    const box = h("div", { class: "list " + (opts.cls || ""), "data-list": opts.name });
    const body = h("div", {});
    const info = h("span", { class: "muted" });
    const pager = h("span", { class: "pager" });
    const search = h("input", { type: "search", placeholder: "search id or instruction", value: state.query,
      oninput: (e) => { state.query = e.target.value; state.page = 0; draw(); } });
    const controls = h("div", { class: "controls" });
    for (const [name, choices] of opts.filters) {
      state.filter[name] = choices[0][0];
      controls.append(h("label", {}, name + " ", h("select", { "data-filter": name,
        onchange: (e) => { state.filter[name] = e.target.value; state.page = 0; draw(); } },
        choices.map(([v, label]) => h("option", { value: v }, label)))));
    }
    controls.append(h("label", {}, "sort ", h("select", { onchange: (e) => { state.sort = e.target.value; state.page = 0; draw(); } },
      opts.sorts.map(([v, label]) => h("option", { value: v }, label)))));
    controls.append(search, pager, info);
    box.append(controls, body);
    let openFirst = opts.openFirst;

    function draw() {
      const q = state.query.toLowerCase();
      let rows = opts.index.filter((r) => opts.filters.every(([name]) => opts.keep(name, state.filter[name], r)) &&
        (!q || String(r.id).toLowerCase().includes(q) || (r.ins || "").toLowerCase().includes(q)));
      rows = opts.sort(rows, state.sort);
      const pages = Math.max(1, Math.ceil(rows.length / PAGE_SIZE));
      state.page = Math.min(state.page, pages - 1);
      const shown = rows.slice(state.page * PAGE_SIZE, (state.page + 1) * PAGE_SIZE);
      body.replaceChildren(...shown.map((r, i) => {
        const detail = h("div", { class: "detail", hidden: true });
        const row = h("div", { class: "row", "data-id": r.id },
          h("div", { class: "sum", onclick: () => toggle() }, opts.summary(r)), detail);
        let filled = null;
        async function toggle() {
          filled = filled || record(r.d).then((rec) => detail.append(opts.open(rec, r)));
          await filled;
          detail.hidden = !detail.hidden;
        }
        if (openFirst && i === 0) OPENING.push(toggle());
        return row;
      }));
      openFirst = false;
      info.textContent = rows.length
        ? `rows ${state.page * PAGE_SIZE + 1}–${state.page * PAGE_SIZE + shown.length} of ${rows.length}` : "no rows";
      info.setAttribute("data-matching", rows.length);
      pager.replaceChildren(
        h("button", { disabled: state.page === 0, onclick: () => { state.page--; draw(); } }, "‹"),
        ` page ${state.page + 1} / ${pages} `,
        h("button", { disabled: state.page >= pages - 1, onclick: () => { state.page++; draw(); } }, "›"));
    }
    draw();
    return box;
  }

  // A run dir relative to the page ("." is the page's own run), linked to its results.md.
  const runLink = (run) => h("a", { href: (run === "." ? "" : run + "/") + "results.md" }, (run === "." ? "this run" : run) + " ");
  const runLinks = (runs) => (runs && runs.length ? h("div", { class: "muted" }, "results: ", runs.map(runLink)) : null);

  const byNumber = (key, dir) => (rows) => rows.slice().sort((a, b) => {
    const x = a[key], y = b[key];
    if (x === null && y === null) return 0;
    if (x === null) return 1;  // rows without a score go last either way
    if (y === null) return -1;
    return dir * (x - y);
  });
  const byId = (rows) => rows.slice().sort((a, b) => String(a.id).localeCompare(String(b.id), undefined, { numeric: true }));

  // ------------------------------------------------------------ generation

  function histogram(scores, cut, lang) {
    const W = 300, H = 130, pad = 24, bins = 20;
    const lo = Math.min(...scores.map((s) => s.qe)), hi = Math.max(...scores.map((s) => s.qe));
    const span = hi - lo || 1;
    const kept = new Array(bins).fill(0), dropped = new Array(bins).fill(0);
    for (const s of scores) {
      const b = Math.min(bins - 1, Math.floor(((s.qe - lo) / span) * bins));
      (s.status === "kept" ? kept : dropped)[b]++;
    }
    const top = Math.max(1, ...kept.map((k, i) => k + dropped[i]));
    const NS = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(NS, "svg");
    svg.setAttribute("width", W); svg.setAttribute("height", H); svg.setAttribute("data-hist", lang);
    const add = (tag, attrs, text) => {
      const el = document.createElementNS(NS, tag);
      for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
      if (text !== undefined) el.textContent = text;
      svg.append(el);
      return el;
    };
    const bw = (W - 2 * pad) / bins, y0 = H - pad;
    for (let i = 0; i < bins; i++) {
      const hk = ((kept[i]) / top) * (H - 2 * pad), hd = (dropped[i] / top) * (H - 2 * pad);
      if (hd) add("rect", { x: pad + i * bw, y: y0 - hd, width: bw - 1, height: hd, fill: "#a9b1bb" }).append(tip(`${dropped[i]} dropped`));
      if (hk) add("rect", { x: pad + i * bw, y: y0 - hd - hk, width: bw - 1, height: hk, fill: "#2f6fb3" }).append(tip(`${kept[i]} kept`));
    }
    add("line", { x1: pad, x2: W - pad, y1: y0, y2: y0, stroke: "#555" });
    add("text", { x: pad, y: H - 8, "font-size": 10 }, lo.toFixed(2));
    add("text", { x: W - pad, y: H - 8, "font-size": 10, "text-anchor": "end" }, hi.toFixed(2));
    add("text", { x: W / 2, y: 12, "font-size": 11, "text-anchor": "middle" }, `${lang}: ${scores.length} passages`);
    if (cut !== null && cut !== undefined) {
      const x = pad + ((cut - lo) / span) * (W - 2 * pad);
      add("line", { x1: x, x2: x, y1: 16, y2: y0, stroke: "#b3392f", "stroke-dasharray": "4 3", "stroke-width": 1.5 });
      add("text", { x: x + 3, y: 26, "font-size": 10, fill: "#b3392f" }, `cut ${cut.toFixed(3)}`);
    }
    return svg;
    function tip(text) { const t = document.createElementNS(NS, "title"); t.textContent = text; return t; }
  }

  function generationDetail(rec, names) {
    const sentences = rec.sentences || [];
    const head = ["#", "source sentence", ...names];
    const rows = sentences.map((s, i) => [i + 1, s.src, ...names.map((_, j) => {
      const text = s.cands[j];
      const td = h("td", { class: s.chosen === j ? "chosen" : null, "data-chosen": s.chosen === j ? "true" : null },
        text === null || text === undefined ? h("span", { class: "badge bad" }, "no translation") : h("div", { class: "out" }, text),
        h("div", { class: "muted" }, "QE " + fmt(s.scores[j])));
      return td;
    })]);
    return h("div", {},
      rec.reason ? h("div", { class: "note" }, "rejected: " + rec.reason) : null,
      h("div", { class: "pair" },
        h("div", {}, h("h4", {}, "English instruction"), h("pre", { "data-field": "instruction" }, rec.instruction),
          h("h4", {}, "English response (source)"), h("pre", {}, rec.source || "")),
        h("div", {}, h("h4", {}, `final ${rec.lang} response` + (rec.status === "kept" ? "" : " (not in the dataset)")),
          h("pre", { "data-field": "final" }, rec.final === null ? "–" : rec.final),
          h("div", { class: "muted" }, `passage QE ${fmt(rec.qe)}` + (rec.rank !== null && rec.rank !== undefined ? ` · rank ${rec.rank + 1}` : "")))),
      h("h4", {}, "sentences: every translator's candidate, its QE score, the chosen one"),
      table(head, rows, "sentences"));
  }

  function generationSection(ds, n) {
    const counts = ds.counts || {};
    const el = h("div", { class: "block", id: "gen-" + ds.key, "data-dataset": ds.key || "" },
      h("h3", {}, `Dataset ${n + 1}: select/${ds.key}`),
      h("div", { class: "keys" }, Object.entries(ds.keys || {}).map(([s, k]) => `${s}: ${k || "–"}`).join(" · ")),
      runLinks(ds.runs),
      notes(ds.notes),
      h("div", { class: "stats" },
        stat("translated passages", ds.index.length, "gen-rows"), stat("kept (dataset)", counts.kept || 0, "gen-kept"),
        stat("dropped by the QE cut", counts.dropped || 0, "gen-dropped"), stat("rejected", counts.rejected || 0, "gen-rejected"),
        stat("selection", ds.strategy || "?", "gen-strategy"), stat("translators", (ds.translators || []).join(", ") || "–", "gen-translators")));
    el.append(h("h4", {}, "funnel: rows in and out of each stage"),
      table(["stage", "in", "out", "rejects", "reasons"], (ds.funnel || []).map((f) => [f.stage, f.in ?? "–", f.out ?? "–", f.rejects ?? 0,
        Object.entries(f.reject_reasons || {}).map(([r, c]) => `${r} ×${c}`).join("; ") +
        (f.dropped_by_qe_filter ? `${Object.keys(f.reject_reasons || {}).length ? "; " : ""}dropped by the QE cut ×${f.dropped_by_qe_filter}` : "")]), "funnel"));
    const scored = ds.index.filter((r) => r.qe !== null);
    el.append(h("h4", {}, "passage QE per language (blue: kept, grey: dropped; red: where the cut fell)"),
      scored.length ? h("div", { class: "hists" }, (ds.langs || []).map((lang) => {
        const s = scored.filter((r) => r.lang === lang);
        return s.length ? h("div", { class: "hist" }, histogram(s, ds.cut, lang)) : null;
      })) : h("div", { class: "note" }, "no passage has a QE score"));
    el.append(h("h4", {}, "rejects by stage and reason"),
      (ds.rejects || []).length ? table(["stage", "reason", "count", "examples"], ds.rejects.map((r) => [r.stage, r.reason, r.count,
        r.examples.length ? h("details", {}, h("summary", {}, `${r.examples.length} example(s)`),
          r.examples.map((e) => h("div", {}, h("b", {}, e.id + " "), h("span", { class: "out" }, e.text || "")))) : h("span", { class: "muted" }, "counted only")]), "rejects")
        : h("div", { class: "muted", "data-empty": "rejects" }, "no rejects at any stage"));
    el.append(h("h4", {}, "rows (worst QE first; click a row for its sentences)"), pagedList({
      name: "gen-" + ds.key, index: ds.index, query: hashParams.get("gen") || "", openFirst: true,
      filters: [["language", [["", "all"], ...(ds.langs || []).map((l) => [l, l])]],
        ["status", [["", "all"], ["kept", "kept"], ["dropped", "dropped by the QE cut"], ["rejected", "rejected"]]]],
      keep: (name, v, r) => !v || (name === "language" ? r.lang === v : r.status === v),
      sorts: [["qe-asc", "QE, worst first"], ["qe-desc", "QE, best first"], ["id", "id"]],
      sort: (rows, s) => (s === "id" ? byId(rows) : byNumber("qe", s === "qe-asc" ? 1 : -1)(rows)),
      summary: (r) => [h("span", { class: "txt", title: r.id }, r.id), h("span", {}, r.lang), h("span", {}, h("span", { class: "badge " + r.status }, r.status)),
        h("span", { class: "num" }, fmt(r.qe)), h("span", { class: "txt" }, r.ins)],
      open: (rec) => generationDetail(rec, ds.translators || []),
    }));
    return el;
  }

  // ------------------------------------------------------------ evaluation

  // Columns, formats and the best of each come from the metric declarations in the page data.
  const COLS = XLEXP_COLUMNS;

  function metricsTable(metrics, cols) {
    const langs = Object.keys(metrics || {});
    const best = COLS.bestByLang(metrics, cols);
    return table(["lang", ...cols.map((c) => c.label)], langs.map((lang) => {
      const m = metrics[lang] || {};
      return [lang, ...cols.map((c) => {
        const top = lang !== "avg" && COLS.isBest(m[c.key], best[c.key], c);
        const attrs = { class: "num" + (top ? " best" : ""), "data-metric": `${lang}:${c.key}` };
        const text = COLS.text(m[c.key] ?? null, c);
        return h("td", { ...attrs, "data-best": top ? "true" : null }, text);
      })];
    }), "metrics");
  }

  // How far to trust the judge: one row per language and judge (xlexp/evaluate/agreement.py).
  function agreementTable(agr) {
    const cols = agr.columns || [];
    const judges = new Set((agr.rows || []).filter((r) => r.role !== "panel").map((r) => r.judge)).size;
    const name = (r) => (r.role === "main" ? `${r.judge} (main)` : r.role === "panel" ? `panel (${judges} judges)` : r.judge);
    return table(["lang", "judge", ...cols.map((c) => c.label)], (agr.rows || []).map((r) => [r.lang, name(r),
      ...cols.map((c) => h("td", { class: "num", "data-agreement": `${r.lang}:${r.judge}:${c.key}` }, COLS.text(r[c.key] ?? null, c)))]), "agreement");
  }

  function prefBadge(p) {
    if (p === null || p === undefined) return h("span", { class: "badge bad" }, "no verdict");
    const cls = p > 0.5 ? "win" : p < 0.5 ? "loss" : "tie";
    return h("span", { class: "badge " + cls }, p.toFixed(3));
  }

  function evaluationDetail(rec) {
    const verdicts = (rec.verdicts || []).map((v) => [v.order === "sr" ? "system = A" : "reference = A", fmt(v.p_b), fmt(v.preference), v.source || "", h("span", { class: "out" }, v.text || "")]);
    const malformed = (rec.malformed || []).map((m) => [m.order === "sr" ? "system = A" : "reference = A", "–", "–", m.reason, h("span", { class: "out" }, m.text || "")]);
    return h("div", {},
      h("h4", {}, "prompt"), h("pre", { "data-field": "prompt" }, rec.instruction),
      h("div", { class: "pair" },
        h("div", {}, h("h4", {}, "system output", rec.failed ? h("span", { class: "badge bad" }, " failed or empty") : null), h("pre", { "data-field": "output" }, rec.output ?? "(not found)")),
        h("div", {}, h("h4", {}, "reference output", rec.ref_failed ? h("span", { class: "badge bad" }, " failed or empty") : null), h("pre", { "data-field": "ref_output" }, rec.ref_output ?? "(not found)"))),
      h("h4", {}, `verdicts: P(system better) = ${fmt(rec.pref)}`),
      table(["order", "P(B better)", "P(system better)", "parsed from / malformed", "judge said"], [...verdicts, ...malformed], "verdicts"),
      (rec.judges || []).length ? [h("h4", {}, "every judge's verdict on this prompt"), judgesTable(rec.judges)] : null);
  }

  function judgesTable(judges) {
    const order = (j, o) => {
      const v = (j.verdicts || []).find((x) => x.order === o);
      if (v) return fmt(v.preference);
      const m = (j.malformed || []).find((x) => x.order === o);
      return m ? "malformed: " + m.reason : "–";
    };
    return table(["judge", "P(system better)", "system = A", "reference = A"], judges.map((j) => [
      h("td", { "data-judge": j.judge }, j.judge + (j.main ? " (main)" : "")), h("td", {}, prefBadge(j.pref)), order(j, "sr"), order(j, "rs")]), "judges");
  }

  function systemTitle(labels) {
    const size = labels.data_size ? ` +${labels.data_size} instructions` + (labels.selection && labels.selection !== "best_of_k" ? ` (${labels.selection})` : "") : "";
    const rtt = labels.rtt ? ` (RTT ${labels.rtt})` : "";
    const system = `${labels.model || "?"}${rtt}${size}`;
    const judge = `judged by ${labels.judge || "?"} on ${labels.benchmark || "?"}`;
    return `${system} vs ${labels.reference || "?"}, ${judge}`;
  }

  function evaluationSection(sys) {
    const c = sys.counts || {};
    const el = h("div", { class: "block", id: "sys-" + sys.key, "data-system": sys.key },
      h("h3", {}, systemTitle(sys.labels || {})),
      h("div", { class: "keys" }, `judge: ${sys.key}` + Object.entries(sys.keys || {}).filter(([r]) => r !== "judge").map(([r, k]) => ` · ${r}: ${k || "–"}`).join("")),
      runLinks(sys.runs),
      notes(sys.notes),
      h("div", { class: "stats" }, stat("judged prompts", sys.index.length, "eval-rows"), stat("with a malformed verdict", c.malformed || 0, "eval-malformed"),
        stat("no verdict at all", c.no_verdict || 0, "eval-no-verdict"), stat("failed or empty outputs", c.failed || 0, "eval-failed")),
      h("h4", {}, "per language"), Object.keys(sys.metrics || {}).length
        ? metricsTable(sys.metrics, sys.columns || []) : h("div", { class: "note" }, "no metrics"));
    if (sys.agreement && (sys.agreement.rows || []).length) {
      el.append(h("h4", {}, "how far to trust the judge: each judge's win rate, the panel's, κ and r against the main judge, order flips, human labels"),
        agreementTable(sys.agreement));
    }
    if (sys.rubric) {
      const crit = Object.keys(Object.values(sys.rubric)[0] || {}).filter((k) => k !== "n");
      el.append(h("h4", {}, "fine-grained scores (1-5)"), table(["lang", ...crit], Object.entries(sys.rubric).map(([l, m]) => [l, ...crit.map((k) => h("td", { class: "num" }, fmt(m[k] ?? null, 2)))]), "rubric"));
    }
    el.append(h("h4", {}, "judged prompts (biggest losses first; click for both outputs and the verdicts)"), pagedList({
      name: "sys-" + sys.key, cls: "eval", index: sys.index, query: hashParams.get("eval") || "", openFirst: true,
      filters: [["language", [["", "all"], ...(sys.langs || []).map((l) => [l, l])]],
        ["show", [["", "all"], ["malformed", "malformed verdicts"], ["failed", "failed outputs"], ["none", "no verdict"]]]],
      keep: (name, v, r) => !v || (name === "language" ? r.lang === v : v === "malformed" ? r.mal : v === "failed" ? r.failed : r.pref === null),
      sorts: [["pref-asc", "preference, biggest losses first"], ["pref-desc", "preference, biggest wins first"], ["id", "id"]],
      sort: (rows, s) => (s === "id" ? byId(rows) : byNumber("pref", s === "pref-asc" ? 1 : -1)(rows)),
      summary: (r) => [h("span", {}, r.id), h("span", {}, r.lang), h("span", {}, prefBadge(r.pref)),
        h("span", {}, r.mal ? h("span", { class: "badge bad" }, "malformed") : null, r.failed ? h("span", { class: "badge bad" }, "failed") : null),
        h("span", { class: "txt" }, r.ins)],
      open: (rec) => evaluationDetail(rec),
    }));
    return el;
  }

  // ------------------------------------------------------------ sweep

  function sweepSection(sweep) {
    const el = h("div", { class: "block" }, notes(sweep.notes));
    const inPage = new Set(DATA.evaluation.map((s) => s.key));
    for (const t of sweep.tables || []) {
      const col = t.column;  // the declaration of the metric in the cells
      const best = t.cols.map((_, i) => COLS.best(t.rows.map((r) => r.values[i]), col));
      el.append(h("h3", {}, t.title), table(["Model", ...t.cols.map((c) => (c === "avg" ? "Avg" : c)), "runs"], t.rows.map((r) => [
        r.judge && inPage.has(r.judge) ? h("a", { href: "#sys-" + r.judge }, r.label) : r.label,
        ...r.values.map((v, i) =>
          h("td", { class: "num" + (COLS.isBest(v, best[i], col) ? " best" : "") },
            COLS.text(v, col))),
        h("td", {}, (r.runs || []).map(runLink)),
      ]), "paper"));
    }
    for (const p of sweep.plots || []) {
      el.append(h("h4", {}, "Fig. 2: " + p.title), h("img", { class: "plot", alt: "scaling plot: " + p.title, src: "data:image/png;base64," + p.png }));
    }
    return el;
  }

  // ------------------------------------------------------------ page

  const app = document.getElementById("app");
  const gen = h("section", { class: "top", id: "generation" }, h("h2", {}, "Generation"));
  if (DATA.generation.length) DATA.generation.forEach((ds, i) => gen.append(generationSection(ds, i)));
  else gen.append(h("div", { class: "note" }, "no generated dataset here (the run had no generate stage, or its artifacts are gone)"));
  const T_GEN = performance.now();
  const ev = h("section", { class: "top", id: "evaluation" }, h("h2", {}, "Evaluation"));
  if (DATA.evaluation.length) DATA.evaluation.forEach((s) => ev.append(evaluationSection(s)));
  else ev.append(h("div", { class: "note" }, "no judged system here (the run had no evaluate stage, or its artifacts are gone)"));
  const sw = h("section", { class: "top", id: "sweep" }, h("h2", {}, "Sweep: the paper's tables and Fig. 2"),
    DATA.sweep ? sweepSection(DATA.sweep) : h("div", { class: "note" }, "no report data"));
  // Every artifact of every run, whatever stage declared it (results.json's stages).
  const countText = (c) => Object.entries(c || {}).filter(([, v]) => v !== null && typeof v !== "object")
    .map(([k, v]) => `${k} ${v}`).join("; ");
  const st = h("section", { class: "top", id: "stages" }, h("h2", {}, "Stages"),
    (DATA.stages || []).length ? table(["run", "stage", "artifact", "key", "counts"], DATA.stages.map((r) => [
      r.run, r.stage, r.artifact, h("td", { class: "txt" }, r.key || ""), countText(r.counts)]), "stages")
      : h("div", { class: "note" }, "no run summary here (a bare store)"));
  app.replaceChildren(...notes(DATA.notes), gen, ev, sw, st);
  await Promise.all(OPENING);
  const T1 = performance.now();
  const perf = document.getElementById("xlexp-perf");
  perf.setAttribute("data-script-ms", (T1 - T0).toFixed(1));
  perf.setAttribute("data-since-start-ms", T1.toFixed(1));
  perf.setAttribute("data-parse-ms", (T_PARSED - T0).toFixed(1));
  perf.setAttribute("data-generation-ms", (T_GEN - T_PARSED).toFixed(1));
  perf.textContent = `rendered in ${(T1 - T0).toFixed(0)} ms of script time`;
})();
