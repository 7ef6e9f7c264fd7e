// The view's script under node, without a browser: a minimal DOM (elements, attributes, text,
// listeners), the page's embedded data and chunks handed in as JSON on stdin
// ({data, chunks, js}). Prints the rendered tree's cells that carry a data-* attribute named
// in argv[2..], as {attribute: [[value, text], ...]}. Enough for view.js, which builds its page
// with createElement, setAttribute, append and replaceChildren only; no layout, no CSS.
"use strict";
class Node {
  constructor(tag) {
    this.tagName = tag.toUpperCase();
    this.children = [];
    this.attrs = {};
    this.listeners = {};
    this.parent = null;
    this.hidden = false;
  }
  setAttribute(k, v) { this.attrs[k] = String(v); if (k === "hidden") this.hidden = true; }
  getAttribute(k) { return k in this.attrs ? this.attrs[k] : null; }
  addEventListener(type, f) { (this.listeners[type] = this.listeners[type] || []).push(f); }
  append(...children) {
    for (const c of children) {
      const node = c instanceof Node ? c : new Text(String(c));
      node.parent = this;
      this.children.push(node);
    }
  }
  replaceChildren(...children) { this.children = []; this.append(...children); }
  remove() { if (this.parent) this.parent.children = this.parent.children.filter((x) => x !== this); }
  set textContent(v) { this.children = []; this.append(String(v)); }
  get textContent() { return this.children.map((c) => c.textContent).join(""); }
  *walk() { yield this; for (const c of this.children) yield* c.walk(); }
}
class Text extends Node {
  constructor(t) { super("#text"); this.t = t; }
  get textContent() { return this.t; }
}

let input = "";
process.stdin.on("data", (d) => { input += d; });
process.stdin.on("end", async () => {
  const page = JSON.parse(input);
  const byId = { app: new Node("main"), "xlexp-perf": new Node("footer"), "xlexp-data": new Node("script") };
  byId["xlexp-data"].textContent = page.data;
  const chunks = page.chunks.map((text) => { const n = new Node("script"); n.textContent = text; return n; });
  globalThis.Node = Node;
  globalThis.location = { hash: "" };
  globalThis.document = {
    createElement: (tag) => new Node(tag),
    createElementNS: (ns, tag) => new Node(tag),
    getElementById: (id) => byId[id] || null,
    querySelectorAll: () => chunks,
  };
  new Function(page.js)();
  for (let i = 0; i < 600 && byId["xlexp-perf"].getAttribute("data-script-ms") === null; i++) {
    await new Promise((r) => setTimeout(r, 50));
  }
  const out = { "data-script-ms": byId["xlexp-perf"].getAttribute("data-script-ms") };
  for (const name of process.argv.slice(2)) {
    out[name] = [...byId.app.walk()].filter((n) => n.getAttribute(name) !== null)
      .map((n) => [n.getAttribute(name), n.textContent]);
  }
  process.stdout.write(JSON.stringify(out));
});
