// chorus's page: the group, its history, its conflicts and the actions of `chorus`, from the
// daemon's own API (`/v1/...`), kept live by its event stream (`/v1/events`). Plain DOM: every
// text from the share (file names, file contents, peer ids) goes in as text, never as HTML.
'use strict';

const TOKEN = document.querySelector('meta[name="chorus-token"]').content;
const EVENTS = ['scanned', 'accepted', 'materialized', 'held', 'write-failed', 'unavailable',
  'paused', 'resumed', 'undone', 'redone', 'restored', 'leader', 'peer', 'conflict',
  'displaced', 'lagged'];
const VIEWS = ['group', 'history', 'conflicts', 'actions'];
const MAX_CHANGES_SHOWN = 500;
const state = { status: null, peers: [], versions: [], conflicts: [], open: new Set() };

// ---- talking to the daemon ----

async function api(path, body) {
  const init = { credentials: 'same-origin', headers: { 'X-Chorus-Token': TOKEN } };
  if (body !== undefined) {
    init.method = 'POST';
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const resp = await fetch(path, init);
  const value = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new Error(value.error || `${resp.status} ${resp.statusText}`);
  return value;
}

/** Runs a POST for a button, says how it went, and refreshes. */
async function act(button, path, body, said) {
  if (button) button.disabled = true;
  try {
    const answer = await api(path, body);
    toast(said(answer));
    await refresh();
    return answer;
  } catch (e) {
    toast(e.message, true);
    return null;
  } finally {
    if (button) button.disabled = false;
  }
}

// ---- small helpers ----

/** An element with attributes and children (strings become text nodes). */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else if (k === 'class') node.className = v;
    else node.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c !== undefined && c !== null) node.append(c instanceof Node ? c : String(c));
  }
  return node;
}

const $ = (id) => document.getElementById(id);
const short = (id) => (id ? id.slice(-8) : '-');
function bytes(n) {
  if (!n) return '0 B';
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  const i = Math.min(Math.floor(Math.log10(n) / 3), units.length - 1);
  return `${(n / 10 ** (3 * i)).toFixed(i ? 1 : 0)} ${units[i]}`;
}
function when(ms) {
  const d = new Date(ms);
  const today = new Date().toDateString() === d.toDateString();
  return today ? d.toLocaleTimeString() : d.toLocaleString();
}
function ago(ms) {
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  return `${Math.round(s / 3600)} h ago`;
}
function who(peerId) {
  if (!peerId) return 'unknown';
  return state.status && peerId === state.status.peer_id ? 'this machine' : `…${short(peerId)}`;
}
let toastTimer;
function toast(text, bad = false) {
  const t = $('toast');
  t.textContent = text;
  t.className = bad ? 'show bad' : 'show';
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { t.className = ''; }, bad ? 8000 : 4000);
}

/** A unified diff as lines coloured by kind. */
function diffView(text) {
  const pre = el('pre', { class: 'diff' });
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const cls = line.startsWith('+') ? 'add' : line.startsWith('-') ? 'del'
      : line.startsWith('@@') ? 'hunk' : undefined;
    pre.append(el('span', { class: cls }, line + '\n'));
  }
  return pre;
}

// ---- the views ----

function renderSummary() {
  const s = state.status;
  if (!s) return;
  const parts = [s.share, `${s.role}${s.leader && s.role !== 'leader' ? ` (leader …${short(s.leader)})` : ''}`,
    `version ${s.head.number}`];
  if (s.paused) parts.push('paused');
  else if (s.held) parts.push(`holding ${short(s.held.version)} (${s.held.reason})`);
  else if (s.transfers && s.transfers.length) parts.push('receiving…');
  else parts.push(s.settled ? 'in sync' : 'syncing…');
  parts.push(`${s.peers_connected} of ${s.peers} peers connected`);
  $('summary').textContent = parts.join(' · ');
  $('conflict-count').textContent = state.conflicts.length ? String(state.conflicts.length) : '';
}

function renderGroup() {
  const s = state.status;
  const body = $('members').tBodies[0];
  const labels = [...$('members').tHead.rows[0].cells].map((c) => c.textContent);
  const row = (peer, ...cells) => el('tr', { 'data-peer': peer },
    cells.map((c, i) => { c.dataset.label = labels[i]; return c; }));
  const rows = [];
  if (s) {
    rows.push(row(s.peer_id,
      el('td', { class: 'id', title: s.peer_id }, `…${short(s.peer_id)} (this machine)`),
      el('td', {}, s.role), el('td', {}, s.reachability), el('td', {}, '-'),
      el('td', {}, s.adopted.number), el('td', {}, bytes(s.traffic.sync_sent)),
      el('td', {}, bytes(s.traffic.sync_received))));
  }
  for (const p of state.peers) {
    const reached = p.connected ? (p.path || 'connected')
      : (p.last_seen_ms ? `not connected (seen ${ago(p.last_seen_ms)})` : 'not connected');
    rows.push(row(p.peer_id,
      el('td', { class: 'id', title: p.peer_id }, `…${short(p.peer_id)}`),
      el('td', {}, p.role), el('td', { title: p.path_addr || '' }, reached),
      el('td', {}, p.rtt_ms !== undefined ? `${p.rtt_ms.toFixed(1)} ms` : '-'),
      el('td', {}, p.last_shared_number || (p.last_shared ? short(p.last_shared) : '-')),
      el('td', {}, bytes(p.bytes_sent)), el('td', {}, bytes(p.bytes_received))));
  }
  body.replaceChildren(...rows);
  const transfers = (s && s.transfers) || [];
  $('transfers').replaceChildren(...(transfers.length ? transfers.map((t) => el('li', {},
    el('label', {}, `version …${short(t.version)} from …${short(t.peer)}: ${t.received} of ${t.chunks} chunks`,
      el('progress', { max: t.chunks, value: t.received }))))
    : [el('li', { class: 'muted' }, 'Nothing arriving now.')]));
}

function renderHistory() {
  const list = $('timeline');
  const items = [...state.versions].reverse().map((v) => {
    const open = state.open.has(v.number);
    const li = el('li', { class: v.kind === 'merge' ? 'merge' : 'ff', 'data-version': v.number });
    const head = el('button', { type: 'button', 'aria-expanded': String(open),
      onclick: () => { if (state.open.has(v.number)) state.open.delete(v.number); else state.open.add(v.number); renderHistory(); } },
    el('strong', {}, v.number), ' ', el('span', { class: 'kind' }, v.kind), ' ',
    when(v.created_at_ms), ' · from ', who(v.origin),
    v.displaced ? ` · ${v.displaced} displaced` : '');
    li.append(head);
    if (open) li.append(versionDetail(v));
    return li;
  });
  list.replaceChildren(...items);
  // The pickers of the compare and restore forms.
  // A choice the user made stays; until then they follow the history (to: the newest,
  // from: the one before it).
  const newest = state.versions.length - 1;
  const defaults = { 'compare-from': Math.max(newest - 1, 0), 'compare-to': newest, 'restore-version': Math.max(newest - 1, 0) };
  for (const [id, at] of Object.entries(defaults)) {
    const select = $(id);
    const chosen = select.value;
    select.replaceChildren(...[...state.versions].reverse().map((v) => el('option', { value: v.number }, v.number)));
    if (select.dataset.chosen && chosen) select.value = chosen;
    else if (state.versions[at]) select.value = state.versions[at].number;
  }
}

const details = new Map();
function versionDetail(v) {
  const box = el('div', { class: 'detail' });
  const fill = (c) => {
    // A first version of a large share changes every path: the first few hundred are shown.
    const shown = c.changes.slice(0, MAX_CHANGES_SHOWN);
    const rows = shown.map((ch) => el('li', { class: `change-${ch.change}` },
      `${ch.change} `, el('code', {}, ch.path), ' ',
      c.against && ch.change !== 'removed'
        ? el('button', { type: 'button', class: 'secondary', 'data-diff': ch.path,
          onclick: (e) => showDiff(e.target.parentElement, ch.path, c.against, v.number) }, 'diff')
        : null,
      ch.change !== 'removed'
        ? el('button', { type: 'button', class: 'secondary',
          onclick: (e) => act(e.target, '/v1/restore', { version: v.number, path: ch.path },
            (a) => `restored ${ch.path} to version ${v.number} (${a.changed ?? '?'} paths changed)`) }, 'restore this file')
        : null));
    box.replaceChildren(
      el('p', {}, c.against ? `Against version ${c.against}:` : (c.note || 'The first version:')),
      el('ul', { class: 'changes' }, rows.length ? rows : el('li', { class: 'muted' }, 'no paths changed'),
        c.changes.length > shown.length
          ? el('li', { class: 'muted' }, `… and ${c.changes.length - shown.length} more paths (chorus ls ${v.number} -R lists them all)`)
          : null),
      el('p', {}, `Parents: ${v.parents.map(short).join(', ') || 'none'}`),
      el('button', { type: 'button', onclick: (e) => act(e.target, '/v1/restore', { version: v.number },
        (a) => `the share is restored to version ${v.number} (${a.changed ?? '?'} paths changed)`) },
      `Restore the share to ${v.number}`));
  };
  if (details.has(v.number)) fill(details.get(v.number));
  else {
    box.append(el('p', { class: 'muted' }, 'Loading…'));
    api(`/v1/changes?version=${encodeURIComponent(v.number)}`)
      .then((c) => { details.set(v.number, c); fill(c); })
      .catch((e) => box.replaceChildren(el('p', {}, e.message)));
  }
  return box;
}

async function showDiff(where, path, from, to) {
  const q = new URLSearchParams({ path, from, to });
  try {
    const d = await api(`/v1/diff?${q}`);
    const shown = d.diff !== undefined
      ? (d.diff ? diffView(d.diff) : el('p', { class: 'muted' }, 'the same in both versions'))
      : el('p', { class: 'muted' }, d.binary ? 'not text: no line diff' : 'too long to compare line by line');
    const old = where.querySelector('.diff-box');
    const box = el('div', { class: 'diff-box', 'aria-label': `${path} from ${from} to ${to}` }, shown);
    if (old) old.replaceWith(box); else where.append(box);
  } catch (e) {
    toast(e.message, true);
  }
}

function renderConflicts() {
  const box = $('conflicts');
  if (!state.conflicts.length) {
    box.replaceChildren(el('p', { class: 'muted' }, 'No merge has displaced anything.'));
    return;
  }
  const cards = [...state.conflicts].reverse().map((c) => {
    const mine = state.status && (state.status.displaced_here || []).includes(c.seq);
    const won = c.kept !== undefined
      ? el('pre', { class: 'kept' }, [c.before, c.kept, c.after].filter((x) => x).join(''))
      : el('p', { class: 'muted' }, c.kept_kind ? `${c.kept_kind}${c.kept_size !== undefined ? `, ${bytes(c.kept_size)}` : ''}` : '(nothing)');
    const lost = c.preview !== undefined
      ? el('pre', { class: 'displaced' }, [c.before, c.preview, c.after].filter((x) => x).join(''))
      : el('p', { class: 'muted' }, c.what === 'deletion' ? 'the file was deleted'
        : c.what === 'mode' ? `permissions ${c.mode}`
          : `${c.displaced_kind || 'file'}${c.displaced_size !== undefined ? `, ${bytes(c.displaced_size)}` : ''}`);
    const canBeside = c.what === 'hunk' || c.what === 'whole';
    return el('article', { class: 'card', 'data-seq': c.seq },
      el('h3', {}, `#${c.seq} `, el('code', {}, c.path || 'the share'), ` · ${c.what}`, mine ? ' · your change' : ''),
      el('p', { class: 'muted' }, `Version ${c.displaced_from} was displaced by ${c.displaced_by}${c.line ? `, at line ${c.line}` : ''}.`),
      el('div', { class: 'sides' },
        el('div', {}, el('h4', {}, `What won (${c.displaced_by})`), won),
        el('div', {}, el('h4', {}, `Displaced (${c.displaced_from})`), lost)),
      el('button', { type: 'button', 'data-redo': 'in-place',
        onclick: (e) => act(e.target, '/v1/redo', { entry: c.seq },
          (a) => `brought back #${c.seq} in ${a.path} (${a.in_place ? 'in place' : `beside the file: ${ASIDE[a.beside_why] || 'what is there is left as it is'}`})`) },
      'Redo in place'),
      canBeside ? el('button', { type: 'button', class: 'secondary', 'data-redo': 'beside',
        onclick: (e) => act(e.target, '/v1/redo', { entry: c.seq, beside: true },
          (a) => `put #${c.seq} beside its file, as ${a.path}`) }, 'Redo beside the file') : null);
  });
  box.replaceChildren(...cards);
}

// Why a redo went beside its file (`beside_why` of POST /v1/redo).
const ASIDE = {
  'asked': 'as asked',
  'context-changed': 'the text around it changed since',
  'file-changed': 'the file changed since',
  'file-gone': 'the file is gone',
  'not-a-file': 'a folder is at its path now',
};

function renderActions() {
  const s = state.status;
  if (!s) return;
  $('pause-state').textContent = s.paused ? 'Paused: the share is neither scanned nor written.'
    : s.held ? `A version is held (${s.held.reason}${s.held.deleting ? `: it deletes ${s.held.deleting} of ${s.held.files} files` : ''}).`
      : 'Syncing.';
  $('pause').disabled = s.paused;
  $('resume').disabled = !s.paused && !s.held;
  $('resume-confirm').hidden = !(s.held && s.held.reason === 'mass-delete');
  const paths = new Set();
  for (const c of details.values()) for (const ch of c.changes) paths.add(ch.path);
  $('known-paths').replaceChildren(...[...paths].sort().map((p) => el('option', { value: p })));
}

/** Redraws what changed since the last refresh only, so an open diff or a focused button
 * survives the refreshes. */
const drawn = {};
function render(fresh) {
  const changed = (key, value) => {
    const json = JSON.stringify(value);
    if (drawn[key] === json) return false;
    drawn[key] = json;
    return true;
  };
  const statusChanged = changed('status', fresh.status);
  const peersChanged = changed('peers', fresh.peers);
  const versionsChanged = changed('versions', fresh.versions);
  const conflictsChanged = changed('conflicts', [fresh.conflicts, fresh.status.displaced_here]);
  renderSummary();
  if (statusChanged || peersChanged) renderGroup();
  if (versionsChanged) renderHistory();
  if (conflictsChanged) renderConflicts();
  if (statusChanged) renderActions();
}

// ---- keeping up to date ----

let refreshing = null;
async function refresh() {
  if (refreshing) return refreshing;
  refreshing = (async () => {
    try {
      const [status, peers, versions, conflicts] = await Promise.all(
        ['/v1/status', '/v1/peers', '/v1/versions', '/v1/conflicts'].map((p) => api(p)));
      Object.assign(state, { status, peers, versions, conflicts });
      render({ status, peers, versions, conflicts });
    } catch (e) {
      $('summary').textContent = `The daemon does not answer: ${e.message}`;
    } finally {
      refreshing = null;
    }
  })();
  return refreshing;
}

let soon = null;
function refreshSoon() {
  if (!soon) soon = setTimeout(() => { soon = null; refresh(); }, 50);
}

function listen() {
  const source = new EventSource('/v1/events');
  const live = $('live');
  source.onopen = () => { live.textContent = 'live'; live.className = 'live'; refreshSoon(); };
  source.onerror = () => { live.textContent = 'reconnecting'; live.className = 'live off'; };
  for (const kind of EVENTS) source.addEventListener(kind, refreshSoon);
}

function show(view) {
  if (!VIEWS.includes(view)) view = 'group';
  for (const v of VIEWS) {
    $(`view-${v}`).hidden = v !== view;
    const tab = $(`tab-${v}`);
    if (v === view) tab.setAttribute('aria-current', 'page'); else tab.removeAttribute('aria-current');
  }
  if (view === 'conflicts' && state.conflicts.length) {
    // Seen, as `chorus conflicts` marks them.
    const upto = Math.max(...state.conflicts.map((c) => c.seq));
    api('/v1/conflicts/seen', { upto }).catch(() => {});
  }
}

// ---- the forms and buttons ----

function wire() {
  $('pause').addEventListener('click', (e) => act(e.target, '/v1/pause', {}, () => 'paused: the share is neither scanned nor written'));
  $('resume').addEventListener('click', (e) => act(e.target, '/v1/resume', {}, (a) => a.released ? `syncing again; wrote version ${a.released}` : 'syncing again'));
  $('resume-confirm').addEventListener('click', (e) => act(e.target, '/v1/resume', { confirm: true }, () => 'wrote the held version'));
  $('undo').addEventListener('click', (e) => act(e.target, '/v1/undo', {}, (a) => `undid ${a.undid}: the share is back to ${a.back_to}`));
  $('redo-undo').addEventListener('click', (e) => act(e.target, '/v1/redo', {}, (a) => `took back the undo: the share is at ${short(a.redone)} again`));
  $('restore').addEventListener('submit', (e) => {
    e.preventDefault();
    const path = $('restore-path').value.trim();
    const version = $('restore-version').value;
    act(e.submitter, '/v1/restore', path ? { version, path } : { version },
      (a) => `restored ${path || 'the share'} to version ${version} (${a.changed ?? '?'} paths changed)`);
  });
  $('compare').addEventListener('submit', (e) => {
    e.preventDefault();
    const out = $('compare-out');
    out.replaceChildren();
    showDiff(out, $('compare-path').value.trim(), $('compare-from').value, $('compare-to').value);
  });
  $('invite').addEventListener('submit', async (e) => {
    e.preventDefault();
    const uses = $('invite-uses').value;
    const body = { expires_secs: Number($('invite-expires').value) };
    if (uses) body.uses = Number(uses);
    const a = await act(e.submitter, '/v1/invite', body, () => 'invite made: send the token to the new machine');
    if (!a) return;
    $('invite-token').value = a.token;
    $('invite-qr').src = `/ui/qr?text=${encodeURIComponent(a.token)}`;
    $('invite-out').hidden = false;
  });
  $('invite-copy').addEventListener('click', async () => {
    const text = $('invite-token').value;
    try {
      await navigator.clipboard.writeText(text);
    } catch {
      $('invite-token').select();
      document.execCommand('copy');
    }
    toast('token copied');
  });
  for (const id of ['compare-from', 'compare-to', 'restore-version']) {
    $(id).addEventListener('change', (e) => { e.target.dataset.chosen = '1'; });
  }
  window.addEventListener('hashchange', () => show(location.hash.slice(1)));
}

wire();
show(location.hash.slice(1));
refresh();
listen();
setInterval(refresh, 2000);
