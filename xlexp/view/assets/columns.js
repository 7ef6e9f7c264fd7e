// xlexp view: metric columns as their declarations say (xlexp/evaluate/metrics.py: Column):
// a value written with the column's format (".2f": that many decimals, "d": an integer) and
// the best value by its direction (higher_is_better true or false; null: no best, as for
// counts and CI bounds), compared as shown, so ties as shown are all best, as in results.md.
// Pure functions, no DOM: tests run them under node.
"use strict";
var XLEXP_COLUMNS = (function () {
  const decimals = (col) => (col.format === "d" ? 0 : Number(String(col.format).slice(1, -1)));
  const isNumber = (v) => typeof v === "number" && Number.isFinite(v);
  const shown = (v, col) => Number(v.toFixed(decimals(col)));
  const text = (v, col) => (v === null || v === undefined ? "–"
    : isNumber(v) ? v.toFixed(decimals(col)) : String(v));

  function best(values, col) {
    if (col.higher_is_better === null || col.higher_is_better === undefined) return null;
    const xs = values.filter(isNumber).map((v) => shown(v, col));
    if (!xs.length) return null;
    return col.higher_is_better ? Math.max(...xs) : Math.min(...xs);
  }

  const isBest = (v, bestValue, col) =>
    bestValue !== null && isNumber(v) && shown(v, col) === bestValue;

  // The best of each column among a system's languages (its "avg" row is not a language).
  function bestByLang(metrics, cols) {
    const langs = Object.keys(metrics || {}).filter((l) => l !== "avg");
    const values = (key) => langs.map((l) => (metrics[l] || {})[key]);
    return Object.fromEntries(cols.map((c) => [c.key, best(values(c.key), c)]));
  }

  return { decimals, text, best, isBest, bestByLang };
})();
