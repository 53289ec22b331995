"""The labelling page's HTML and script: the round's images to answer (a grid, or one by one), and the
labelled-set view (`/labelled`: every labelled image, filtered by class, each one's label correctable).

Both views are the same page and script: a card is an image with one button per class; a labelled-set card
names round 0 (`store.CORRECTION`), which the server takes as a correction of an image that has a label.
"""

from __future__ import annotations

import html
import json
from urllib.parse import urlencode

from dalkit.project.project import Project
from dalkit.project.store import CORRECTION

KEYS = "1234567890abcdefghijklmnopqrstuvwxyz"  # the page's key for each class, in order (up to 36 classes)
LABELLED_PER_PAGE = 200  # cards of the labelled-set view per page

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>dalkit: {title}</title>
<meta name="csrf-token" content="{csrf}">
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5rem; background: #fafafa; color: #222; }}
header {{ display: flex; gap: 1.5rem; align-items: baseline; flex-wrap: wrap; }}
.cards {{ display: flex; flex-wrap: wrap; gap: 1rem; margin-top: 1rem; }}
.card {{ background: white; border: 2px solid #ddd; border-radius: 8px; padding: .5rem; width: 180px; }}
.card.current {{ border-color: #2563eb; }}
.card.done {{ opacity: .55; }}
.card img {{ width: 164px; height: 164px; object-fit: contain; image-rendering: pixelated; background: #eee; }}
.card .path {{ font-size: .75rem; overflow-wrap: anywhere; }}
.card .guess {{ font-size: .8rem; color: #555; }}
button {{ margin: .15rem; padding: .25rem .5rem; border-radius: 4px; border: 1px solid #999; background: #f3f3f3; }}
button.chosen {{ background: #2563eb; color: white; border-color: #2563eb; }}
button.aside {{ font-size: .75rem; color: #555; }}
kbd {{ font-size: .7rem; border: 1px solid #bbb; border-radius: 3px; padding: 0 .2rem; background: #fff; color: #333; }}
#message {{ color: #b91c1c; }}
#job {{ color: #555; }}
nav {{ margin-top: .75rem; display: flex; gap: 1rem; flex-wrap: wrap; }}
nav a.chosen {{ font-weight: bold; color: #222; text-decoration: none; }}
#finished {{ display: none; }}
[data-view="labelled"] .card.done {{ opacity: 1; }}
[data-view="labelled"] #mode, [data-view="labelled"] .progress {{ display: none; }}  /* no batch to go through */
/* one by one: the highlighted image alone, large */
[data-view="queue"].single .card:not(.current) {{ display: none; }}
[data-view="queue"].single .card.current {{ width: 420px; }}
[data-view="queue"].single .card.current img {{ width: 404px; height: 404px; }}
[data-view="queue"].single.finished #finished {{ display: block; }}
</style></head>
<body data-view="{view}">
<header><h2>{title}</h2><span id="counts">{counts}</span>
<span>round {round}<span class="progress"> &middot; <b id="progress"></b></span></span>
<span>keys: {keys} label the highlighted image, <kbd>space</kbd> skip, <kbd>?</kbd> unsure,
<kbd>Backspace</kbd> undo</span>
<button id="undo"><kbd>Backspace</kbd> undo</button>
<button id="mode">one by one</button>
<button id="ask">ask for {budget} more</button>
<span>labeller: <a href="#" id="who"></a></span><span id="job"></span><span id="message"></span></header>
<nav>{nav}</nav>
<p id="finished">Every image of this round is answered: ask for more, or show the grid to review them.</p>
<div class="cards">{cards}</div>
<script>
"use strict";
const classes = {classes};
const KEYS = '1234567890abcdefghijklmnopqrstuvwxyz';  // one key per class, for up to 36 classes
const csrf = document.querySelector('meta[name="csrf-token"]').content;
const labeller = {labeller};
const view = document.body.dataset.view;  // 'queue': the round's images; 'labelled': correct any label
let labellerName = localStorage.getItem('dalkit-labeller-name') || '';
let seq = 0;              // this page's request numbers: a retried request keeps its number
const queue = [];         // answers not yet acknowledged, sent one at a time, in the order given
const undoable = [];      // what each answer replaced, last first out: undo sends it back as a new request
let sending = false, reloadWhenSent = false;
const message = text => {{ document.getElementById('message').textContent = text; }};
const sleep = ms => new Promise(resolve => setTimeout(resolve, ms));
function askName() {{  // once per browser: kept in localStorage and sent with every answer
  const given = prompt('Your name, recorded with each label you give:', labellerName);
  if (given !== null) {{
    labellerName = given.trim().slice(0, 64);
    localStorage.setItem('dalkit-labeller-name', labellerName);
  }}
  document.getElementById('who').textContent = labellerName || '(anonymous)';
}}
function cards() {{ return [...document.querySelectorAll('.card')]; }}
function highlight() {{
  cards().forEach(c => c.classList.remove('current'));
  const next = cards().find(c => !c.classList.contains('done'));
  if (next) next.classList.add('current');
  document.body.classList.toggle('finished', !next);
  const all = cards(), done = all.filter(c => c.classList.contains('done')).length;
  if (view === 'queue')
    document.getElementById('progress').textContent = all.length ? `${{done}} of ${{all.length}} answered` : '';
}}
function setMode(single) {{  // grid, or one by one (the highlighted image alone); kept in localStorage
  document.body.classList.toggle('single', single);
  document.getElementById('mode').textContent = single ? 'show the grid' : 'one by one';
}}
async function post(url, body) {{
  const response = await fetch(url, {{method: 'POST', headers: {{'Content-Type': 'application/json',
                                      'X-CSRF-Token': csrf}}, body: JSON.stringify(body)}});
  let answer;
  try {{ answer = await response.json(); }} catch (error) {{ answer = {{error: response.statusText}}; }}
  if (!response.ok) {{ const error = new Error(answer.error); error.status = response.status; throw error; }}
  return answer;
}}
function stateOf(card) {{ return {{answer: card.dataset.answer, label: card.dataset.label}}; }}
function show(card, state) {{
  card.dataset.answer = state.answer;
  card.dataset.label = state.label;
  card.querySelectorAll('button[data-label]').forEach(b =>
    b.classList.toggle('chosen', state.answer === 'label' && b.dataset.label === state.label));
  card.querySelectorAll('button[data-answer]').forEach(b =>
    b.classList.toggle('chosen', b.dataset.answer === state.answer));
  card.classList.toggle('done', state.answer !== 'none');
  highlight();
}}
function answer(card, state, remember = true) {{  // optimistic: the page moves on now; the request follows in order
  if (remember) undoable.push({{card, before: stateOf(card)}});
  show(card, state);
  queue.push({{card, body: {{image: card.dataset.image, round: Number(card.dataset.round), label: state.label,
                            answer: state.answer, labeller, name: labellerName, seq: ++seq}}}});
  send();
}}
function showCounts(reply) {{  // the header's counts and the labelled-set links' (nav a[data-tally])
  document.getElementById('counts').textContent = reply.counts;
  for (const link of document.querySelectorAll('nav a[data-tally]')) {{
    const name = link.dataset.tally;
    const n = name ? reply.labelled[name] || 0 : Object.values(reply.labelled).reduce((a, b) => a + b, 0);
    link.textContent = `${{name || 'labelled'}} (${{n}})`;
  }}
}}
function undo() {{
  const last = undoable.pop();
  if (!last) {{ message('nothing to undo on this page'); return; }}
  answer(last.card, last.before, false);
}}
async function send() {{
  if (sending) return;
  sending = true;
  while (queue.length) {{
    const {{card, body}} = queue[0];
    try {{
      const reply = await post('/label', body);
      showCounts(reply);
      message('');
      queue.shift();
    }} catch (error) {{
      if (error.status === undefined) {{  // no answer (the server restarts, the network drops): same request again
        message('the server does not answer; retrying...');
        await sleep(1000);
        continue;
      }}
      queue.shift();  // the server refused this answer: show why, and give the image back
      message(error.message);
      if (!queue.some(item => item.card === card)) show(card, {{answer: 'none', label: ''}});
    }}
  }}
  sending = false;
  if (reloadWhenSent) location.reload();
}}
document.querySelectorAll('.card button[data-label]').forEach(b =>
  b.addEventListener('click', () => answer(b.closest('.card'), {{answer: 'label', label: b.dataset.label}})));
document.querySelectorAll('.card button[data-answer]').forEach(b =>
  b.addEventListener('click', () => answer(b.closest('.card'), {{answer: b.dataset.answer, label: ''}})));
document.getElementById('undo').addEventListener('click', undo);
document.getElementById('mode').addEventListener('click', () => {{
  const single = !document.body.classList.contains('single');
  localStorage.setItem('dalkit-mode', single ? 'single' : 'grid');
  setMode(single);
}});
document.getElementById('who').addEventListener('click', event => {{ event.preventDefault(); askName(); }});
document.addEventListener('keydown', event => {{
  if (event.repeat || event.altKey) return;
  if (event.key === 'Backspace' || ((event.ctrlKey || event.metaKey) && event.key === 'z')) {{
    event.preventDefault();
    undo();
    return;
  }}
  if (event.ctrlKey || event.metaKey) return;
  const card = document.querySelector('.card.current');
  if (!card) return;
  if (event.key === ' ') {{ event.preventDefault(); answer(card, {{answer: 'skip', label: ''}}); return; }}
  if (event.key === '?') {{ answer(card, {{answer: 'unsure', label: ''}}); return; }}
  const k = KEYS.indexOf(event.key.toLowerCase());
  if (k >= 0 && k < classes.length) answer(card, {{answer: 'label', label: classes[k]}});
}});
async function watch() {{  // the background ask: its progress, then a reload once every answer is sent
  const line = document.getElementById('job');
  for (;;) {{
    let job;
    try {{ job = (await (await fetch('/status.json')).json()).job; }} catch (error) {{ await sleep(2000); continue; }}
    if (job.state === 'running') {{
      const last = job.log.length ? job.log[job.log.length - 1] : 'starting';
      line.textContent = `asking (${{Math.round(job.seconds)}} s): ${{last}}`;
      await sleep(1000);
      continue;
    }}
    line.textContent = '';
    if (job.state === 'failed') message(job.error);
    if (job.state === 'done' && job.round > {round}) {{ reloadWhenSent = true; if (!sending) location.reload(); }}
    return;
  }}
}}
document.getElementById('ask').addEventListener('click', async () => {{
  message('');
  try {{ await post('/ask', {{}}); }} catch (error) {{
    if (error.status !== 409) {{ message(error.message); return; }}  // 409: one is running already; watch it
  }}
  watch();
}});
if (labellerName) document.getElementById('who').textContent = labellerName; else askName();
setMode(localStorage.getItem('dalkit-mode') === 'single');
highlight();
watch();
</script></body></html>
"""


def counts_line(counts: dict[str, int]) -> str:
    return f"{sum(counts.values())} labelled: " + ", ".join(f"{name} {n}" for name, n in counts.items())


def queue_page(project: Project, csrf_token: str, labeller: str) -> str:
    """The latest round's images, unanswered first, each with its class buttons (key hints; the current label
    marked) and skip / unsure buttons (marked when the image was set aside in this round)."""
    store = project.store
    paths, current = dict(store.images()), store.current_labels()
    round_number = store.last_round()
    aside = store.set_aside(round_number)
    asked = sorted(store.questions(round_number), key=lambda row: row[0] in current or row[0] in aside)
    cards = [
        card(
            project,
            image_id,
            paths[image_id],
            round_number,
            current.get(image_id),
            aside.get(image_id, "none"),
            f"model guess: {guess or 'none yet'}",
        )
        for image_id, _, guess in asked
    ]
    if not cards:
        cards.append("<p>Nothing asked yet: press <b>ask</b> to get the first images.</p>")
    return render(project, csrf_token, labeller, "queue", nav(project, None), "".join(cards))


def labelled_page(project: Project, csrf_token: str, labeller: str, label: str | None, start: int) -> str:
    """Every labelled image (of class `label` only, if given), the latest labelled first, `LABELLED_PER_PAGE`
    from `start`, each with its class buttons: a click corrects its label."""
    store = project.store
    paths, rows = dict(store.images()), store.labelled(label)
    shown = rows[start : start + LABELLED_PER_PAGE]
    cards = [
        card(project, i, paths[i], CORRECTION, given, "label", f"{given} by {who(source)}, {at[:16].replace('T', ' ')}")
        for i, given, source, at in shown
    ]
    if not rows:
        cards.append(f"<p>No image is labelled {html.escape(label)} yet.</p>" if label else "<p>None yet.</p>")
    elif start + LABELLED_PER_PAGE < len(rows):
        query = urlencode({**({"class": label} if label else {}), "start": start + LABELLED_PER_PAGE})
        cards.append(f'<p><a href="/labelled?{html.escape(query)}">the next {LABELLED_PER_PAGE}</a></p>')
    pages = f"<span>{start + 1 if shown else 0}-{start + len(shown)} of {len(rows)}</span>"
    return render(project, csrf_token, labeller, "labelled", nav(project, label or "") + pages, "".join(cards))


def who(source: str) -> str:
    """A label's source as the page shows it: the labeller's name for the page's labels."""
    return source.removeprefix("web:") if source.startswith("web:") else source


def card(
    project: Project, image_id: int, path: str, round_number: int, label: str | None, aside: str, note: str
) -> str:
    """One image with a button per class (its label chosen) and, in a round, the skip and unsure buttons."""
    state = "label" if label else aside
    buttons = "".join(
        f'<button data-label="{html.escape(name)}" class="{"chosen" if name == label else ""}">'
        + (f"<kbd>{KEYS[k]}</kbd> " if k < len(KEYS) else "")
        + f"{html.escape(name)}</button>"
        for k, name in enumerate(project.settings.classes)
    )
    if round_number != CORRECTION:
        buttons += "".join(
            f'<button data-answer="{kind}" class="aside{" chosen" if state == kind else ""}"><kbd>{key}</kbd> '
            f"{kind}</button>"
            for kind, key in (("skip", "space"), ("unsure", "?"))
        )
    return (
        f'<div class="card{"" if state == "none" else " done"}" data-image="{html.escape(path)}" '
        f'data-round="{round_number}" data-answer="{state}" data-label="{html.escape(label or "")}">'
        f'<img src="/image/{image_id}" alt=""><div class="path">{html.escape(path)}</div>'
        f'<div class="guess">{html.escape(note)}</div>{buttons}</div>'
    )


def nav(project: Project, chosen: str | None) -> str:
    """Links to the round's images and to the labelled set, all of it or of one class (`chosen`: the class
    shown, "" for all of it, None on the round's page)."""
    counts = project.class_counts()
    links = [("/", "to label", chosen is None, None)]
    links += [("/labelled", f"labelled ({sum(counts.values())})", chosen == "", "")]
    links += [(f"/labelled?{urlencode({'class': c})}", f"{c} ({n})", chosen == c, c) for c, n in counts.items()]
    return "".join(
        f'<a href="{html.escape(href)}" class="{"chosen" if on else ""}"'
        + ("" if tally is None else f' data-tally="{html.escape(tally)}"')  # the script keeps its count current
        + f">{html.escape(text)}</a>"
        for href, text, on, tally in links
    )


def render(project: Project, csrf_token: str, labeller: str, view: str, links: str, cards: str) -> str:
    classes = project.settings.classes
    shown = min(len(classes), len(KEYS))
    return PAGE.format(
        title=html.escape(project.directory.resolve().name),
        counts=html.escape(counts_line(project.class_counts())),
        round=project.store.last_round(),
        budget=project.settings.budget,
        view=view,
        nav=links,
        cards=cards,
        classes=script_json(classes),
        keys=f"<kbd>{KEYS[0]}</kbd>-<kbd>{KEYS[shown - 1]}</kbd>",
        labeller=script_json(labeller),
        csrf=html.escape(csrf_token),
    )


def script_json(value: object) -> str:
    """JSON safe inside a <script> element."""
    return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
