// A stand-in for the browser, enough to run the labelling page's script under node: the cards and buttons of the
// page (read from its HTML), keys, clicks, localStorage, prompt and fetch. It prints what the script sent.
"use strict";
const fs = require("fs");
const vm = require("vm");
const [html, steps] = [fs.readFileSync(process.argv[2], "utf8"), JSON.parse(process.argv[3])];

class ClassList {
  constructor(names) { this.names = new Set(names); }
  add(n) { this.names.add(n); }
  remove(n) { this.names.delete(n); }
  contains(n) { return this.names.has(n); }
  toggle(n, on) { if (on === undefined) on = !this.names.has(n); if (on) this.names.add(n); else this.names.delete(n); }
}
class Element {
  constructor(attrs, parent) {
    this.attrs = attrs; this.parent = parent; this.children = []; this.listeners = {}; this.textContent = "";
    this.classList = new ClassList((attrs.class || "").split(/\s+/).filter(Boolean));
    this.dataset = {};
    for (const [k, v] of Object.entries(attrs)) if (k.startsWith("data-")) this.dataset[k.slice(5)] = v;
  }
  addEventListener(type, f) { this.listeners[type] = f; }
  closest(selector) { let e = this; while (e && !e.classList.contains(selector.slice(1))) e = e.parent; return e; }
  querySelectorAll(selector) { const kind = selector.match(/\[data-(\w+)\]/)[1]; return this.children.filter(b => kind in b.dataset); }
  click() { this.listeners.click({preventDefault() {}}); }
}
const unescape = t => t.replace(/&quot;/g, '"').replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&");
const attrsOf = tag => Object.fromEntries([...tag.matchAll(/([\w-]+)="([^"]*)"/g)].map(m => [m[1], unescape(m[2])]));
const cards = [];
for (const part of html.split('<div class="card').slice(1).filter(part => !part.startsWith('s"'))) {
  const card = new Element(attrsOf('class="card' + part.slice(0, part.indexOf(">"))), null);
  for (const b of part.matchAll(/<button ([^>]*)>/g)) card.children.push(new Element(attrsOf(b[1]), card));
  cards.push(card);
}
const ids = {};
for (const id of ["message", "counts", "progress", "job", "who", "undo", "ask", "mode"]) ids[id] = new Element({id}, null);
const documentListeners = {};
const document = {
  body: new Element({"data-view": html.match(/<body data-view="(\w+)"/)[1]}, null),
  querySelector(selector) {
    if (selector.startsWith("meta")) return {content: html.match(/name="csrf-token" content="([^"]+)"/)[1]};
    if (selector === ".card.current") return cards.find(c => c.classList.contains("current")) || null;
  },
  querySelectorAll(selector) {
    if (selector === ".card") return cards;
    const kind = selector.match(/\[data-(\w+)\]/)[1];
    return cards.flatMap(c => c.children.filter(b => kind in b.dataset));
  },
  getElementById: id => ids[id],
  addEventListener(type, f) { documentListeners[type] = f; },
};
const sent = [], storage = {...(steps.storage || {})};
let prompts = 0;
const context = {
  document, console, JSON, Promise, Number, Math, setTimeout,
  localStorage: {getItem: k => (k in storage ? storage[k] : null), setItem: (k, v) => { storage[k] = String(v); }},
  prompt: () => { prompts += 1; return steps.name; },
  location: {reload() {}},
  fetch: async (url, options) => {
    if (options && options.method === "POST") sent.push(JSON.parse(options.body));
    return {ok: true, status: 200, json: async () => ({counts: "counts", job: {state: "idle"}})};
  },
};
vm.createContext(context);
const script = html.slice(html.indexOf("<script>") + 8, html.indexOf("</script>"));
vm.runInContext(script, context);
(async () => {
  for (const step of steps.do) {
    if (step.key) documentListeners.keydown({key: step.key, repeat: false, ctrlKey: false, metaKey: false,
                                             altKey: false, preventDefault() {}});
    if (step.click) cards[step.card].children.find(b => (b.dataset.label || b.dataset.answer) === step.click).click();
    if (step.undo) ids.undo.click();
    await new Promise(resolve => setTimeout(resolve, 5));
  }
  const state = cards.map(c => ({image: c.dataset.image, answer: c.dataset.answer, label: c.dataset.label,
                                 done: c.classList.contains("done")}));
  console.log(JSON.stringify({sent, progress: ids.progress.textContent, who: ids.who.textContent, prompts,
                              storage, state}));
})();
