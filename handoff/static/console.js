/*
 * StarCard (星卡数码) support console — agent UI.
 * Plain ES2020, no dependencies, no build step. Works under a strict CSP
 * (script-src 'self'): no inline handlers, every listener is attached here.
 *
 * Security rule for this file: text that comes from the server is only ever
 * inserted as text (textContent / text nodes via el()). Never innerHTML.
 */
(() => {
  'use strict';

  const PING_MS = 10000;
  const POLL_MS = 15000;
  const SUPERVISOR_MS = 10000;
  const TOAST_MS = 4000;
  const BACKOFF_MS = [1000, 2000, 4000, 8000, 10000];
  const PRIORITY_COLORS = { urgent: '#cf222e', high: '#e16f24', normal: '#8c959f' };
  const RESOLUTIONS = ['resolved', 'unresolved', 'duplicate', 'spam'];
  const TICKET_ORDER = { open: 0, answered: 1, closed: 2 };

  const state = {
    me: null,            // {name, role}
    csrf: null,
    queue: null,         // last /api/queue payload
    clockOffset: 0,      // server time - browser time, ms
    currentId: null,     // conversation open in the right pane
    current: null,       // its detail payload
    tab: 'queue',
    ws: null,
    wsWanted: false,
    wsAttempt: 0,
    wsRetryTimer: null,
    pingTimer: null,
    pollTimer: null,
    supervisorTimer: null,
    toastTimer: null,
    queueLoading: null,
    queueAgain: false,
    canned: {},          // language -> Promise<[{title,text}]>
    cannedLists: {},     // language -> resolved list
    kb: { key: null, hits: null },
    ticketDrafts: {},
  };

  /* ------------------------------------------------------------------ */
  /* Small helpers                                                       */
  /* ------------------------------------------------------------------ */

  const $ = (sel, root = document) => root.querySelector(sel);
  const enc = encodeURIComponent;
  const same = (a, b) => a != null && b != null && String(a) === String(b);

  const PROPS = new Set(['value', 'disabled', 'hidden', 'selected', 'checked', 'type', 'rows']);

  /** Create an element. Strings among children become text nodes (never HTML). */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value == null || value === false) continue;
      if (key === 'class') node.className = value;
      else if (key === 'text') node.textContent = String(value);
      else if (key.startsWith('on') && typeof value === 'function') {
        node.addEventListener(key.slice(2), value);
      } else if (PROPS.has(key)) node[key] = value;
      else node.setAttribute(key, String(value));
    }
    appendChildren(node, children);
    return node;
  }

  function appendChildren(node, children) {
    for (const child of children.flat(Infinity)) {
      if (child == null || child === false) continue;
      node.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
    }
  }

  function svgEl(tag, attrs, text) {
    const node = document.createElementNS('http://www.w3.org/2000/svg', tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
    if (text != null) node.textContent = String(text);
    return node;
  }

  function truncate(text, n) {
    const s = String(text ?? '');
    return s.length > n ? s.slice(0, n - 1).trimEnd() + '…' : s;
  }

  /** Parse an ISO timestamp; timestamps without a zone are taken as UTC. */
  function parseTime(value) {
    if (!value) return NaN;
    const s = String(value);
    const hasZone = /[zZ]$|[+-]\d\d:?\d\d$/.test(s);
    return Date.parse(hasZone || !s.includes('T') ? s : s + 'Z');
  }

  function fmtClock(value) {
    const t = parseTime(value);
    if (Number.isNaN(t)) return '';
    return new Date(t).toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit', hour12: false });
  }

  function fmtDateTime(value) {
    const t = parseTime(value);
    if (Number.isNaN(t)) return String(value ?? '');
    return new Date(t).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
  }

  function fmtDuration(ms) {
    const total = Math.floor(Math.abs(ms) / 1000);
    const h = Math.floor(total / 3600);
    const m = Math.floor((total % 3600) / 60);
    const s = total % 60;
    const pad = (n) => String(n).padStart(2, '0');
    return h > 0 ? `${h}:${pad(m)}:${pad(s)}` : `${pad(m)}:${pad(s)}`;
  }

  function show(node, visible) {
    if (node) node.hidden = !visible;
  }

  /* ------------------------------------------------------------------ */
  /* API + errors                                                        */
  /* ------------------------------------------------------------------ */

  function detailOf(data) {
    if (!data) return '';
    if (typeof data === 'string') return data.slice(0, 300);
    const d = data.detail ?? data.error ?? data.message;
    if (Array.isArray(d)) return d.map((x) => (x && x.msg) || String(x)).join('; ');
    if (d && typeof d === 'object') return JSON.stringify(d);
    return d ? String(d) : '';
  }

  /**
   * fetch wrapper: JSON in/out, CSRF header on writes, 401 -> login view,
   * other errors thrown as Error(server detail) with .status.
   */
  async function api(method, path, body, { authRedirect = true } = {}) {
    const opts = { method, credentials: 'same-origin', headers: { Accept: 'application/json' } };
    if (method !== 'GET') {
      opts.headers['Content-Type'] = 'application/json';
      if (state.csrf) opts.headers['X-CSRF-Token'] = state.csrf;
      opts.body = JSON.stringify(body ?? {});
    }
    let res;
    try {
      res = await fetch(path, opts);
    } catch (err) {
      throw Object.assign(new Error('Network error — is the server reachable?'), { status: 0 });
    }
    const raw = await res.text();
    let data = null;
    if (raw) {
      try { data = JSON.parse(raw); } catch (err) { data = raw; }
    }
    if (res.status === 401 && authRedirect) sessionExpired();
    if (!res.ok) {
      const fallback = res.status === 401 ? 'Session expired, please sign in again' : `${res.status} ${res.statusText}`;
      throw Object.assign(new Error(detailOf(data) || fallback), { status: res.status, data });
    }
    return data;
  }

  function toast(message) {
    const box = $('#toast');
    box.textContent = message;
    box.hidden = false;
    box.classList.add('show');
    clearTimeout(state.toastTimer);
    state.toastTimer = setTimeout(() => {
      box.classList.remove('show');
      box.hidden = true;
    }, TOAST_MS);
  }

  /** Report an API error unless it was a 401 (the login form is shown instead). */
  function report(err) {
    if (err && err.status === 401) return;
    console.warn(err);
    toast((err && err.message) || 'Something went wrong');
  }

  /* ------------------------------------------------------------------ */
  /* Login / session                                                     */
  /* ------------------------------------------------------------------ */

  function showLogin(message) {
    show($('#main-view'), false);
    show($('#login-view'), true);
    $('#login-error').textContent = message || '';
    $('#login-submit').disabled = false;
    $('#login-name').focus();
  }

  async function onLoginSubmit(event) {
    event.preventDefault();
    const name = $('#login-name').value.trim();
    const password = $('#login-password').value;
    const error = $('#login-error');
    if (!name || !password) {
      error.textContent = 'Enter your name and password.';
      return;
    }
    $('#login-submit').disabled = true;
    error.textContent = '';
    try {
      const me = await api('POST', '/api/agent/login', { name, password }, { authRedirect: false });
      $('#login-password').value = '';
      enterApp(me);
    } catch (err) {
      if (err.status === 429) error.textContent = err.message || 'Too many attempts. Try again later.';
      else if (err.status === 401) error.textContent = err.message || 'Wrong name or password.';
      else error.textContent = err.message;
    } finally {
      $('#login-submit').disabled = false;
    }
  }

  function enterApp(me) {
    state.me = { name: me.name, role: me.role };
    state.csrf = me.csrf;
    show($('#login-view'), false);
    show($('#main-view'), true);
    $('#me-name').textContent = me.name;
    $('#me-role').textContent = me.role;
    show($('#tab-supervisor'), me.role === 'supervisor');
    show($('#tab-analytics'), me.role === 'supervisor');
    showTab('queue');
    loadQueue();
    state.wsWanted = true;
    state.wsAttempt = 0;
    connectWs();
    clearInterval(state.pollTimer);
    state.pollTimer = setInterval(loadQueue, POLL_MS);
  }

  /** Stop everything that belongs to a logged-in session. */
  function teardown() {
    state.me = null;
    state.csrf = null;
    state.queue = null;
    state.currentId = null;
    state.current = null;
    state.kb = { key: null, hits: null };
    state.canned = {};
    state.cannedLists = {};
    stopWs();
    clearInterval(state.pollTimer);
    clearInterval(state.supervisorTimer);
    $('#waiting-list').replaceChildren();
    $('#active-list').replaceChildren();
    $('#ticket-list').replaceChildren();
    renderEmptyPane();
  }

  function sessionExpired() {
    const wasIn = state.me != null;
    if (wasIn) teardown();
    showLogin(wasIn ? 'Your session has expired. Please sign in again.' : '');
  }

  async function logout() {
    try {
      await api('POST', '/api/agent/logout', {}, { authRedirect: false });
    } catch (err) {
      /* logging out anyway */
    }
    teardown();
    showLogin('');
  }

  /* ------------------------------------------------------------------ */
  /* Tabs                                                                */
  /* ------------------------------------------------------------------ */

  function showTab(name) {
    const supervisorOnly = name === 'supervisor' || name === 'analytics';
    if (supervisorOnly && !(state.me && state.me.role === 'supervisor')) name = 'queue';
    state.tab = name;
    for (const tab of document.querySelectorAll('.tab')) {
      const active = tab.dataset.tab === name;
      tab.classList.toggle('active', active);
      tab.setAttribute('aria-selected', String(active));
    }
    show($('#queue-view'), name === 'queue');
    show($('#tickets'), name === 'tickets');
    show($('#supervisor'), name === 'supervisor');
    show($('#analytics'), name === 'analytics');
    clearInterval(state.supervisorTimer);
    if (name === 'tickets') loadTickets();
    if (name === 'analytics') loadAnalytics();
    if (name === 'supervisor') {
      loadStats();
      state.supervisorTimer = setInterval(loadStats, SUPERVISOR_MS);
    }
  }

  /* ------------------------------------------------------------------ */
  /* Queue                                                               */
  /* ------------------------------------------------------------------ */

  /** Load /api/queue; bursts of calls are coalesced into one extra reload. */
  function loadQueue() {
    if (!state.me) return Promise.resolve();
    if (state.queueLoading) {
      state.queueAgain = true;
      return state.queueLoading;
    }
    state.queueLoading = (async () => {
      try {
        const q = await api('GET', '/api/queue');
        if (!state.me) return;
        state.queue = q;
        const now = parseTime(q.now);
        if (!Number.isNaN(now)) state.clockOffset = now - Date.now();
        renderQueue();
        syncCurrentWithQueue();
      } catch (err) {
        report(err);
      } finally {
        state.queueLoading = null;
        if (state.queueAgain) {
          state.queueAgain = false;
          loadQueue();
        }
      }
    })();
    return state.queueLoading;
  }

  function renderQueue() {
    const q = state.queue || { waiting: [], active: [], agents: [] };
    const waiting = q.waiting || [];
    const active = q.active || [];
    $('#waiting-count').textContent = String(waiting.length);
    $('#active-count').textContent = String(active.length);
    const badge = $('#queue-badge');
    badge.textContent = String(waiting.length);
    show(badge, waiting.length > 0);
    $('#waiting-list').replaceChildren(
      ...(waiting.length ? waiting.map(renderConvItem) : [el('div', { class: 'list-empty' }, 'Nobody is waiting.')]));
    $('#active-list').replaceChildren(
      ...(active.length ? active.map(renderConvItem) : [el('div', { class: 'list-empty' }, 'No active conversations.')]));
    updateTransferOptions();
    if (state.tab === 'supervisor') renderAgents();
  }

  function priorityBadge(priority) {
    const p = priority || 'normal';
    return el('span', { class: `badge priority priority-${p}` }, p);
  }

  function slaTimer(conv) {
    const node = el('span', {
      class: 'sla',
      'data-due': conv.sla_due || '',
      'data-created': conv.created || '',
      title: conv.sla_due ? `First response due ${fmtDateTime(conv.sla_due)}` : null,
    });
    updateSla(node);
    return node;
  }

  /** Refresh one SLA timer: countdown, amber under 25% of the span, red overdue. */
  function updateSla(node) {
    const due = parseTime(node.dataset.due);
    const created = parseTime(node.dataset.created);
    if (Number.isNaN(due)) {
      node.textContent = '';
      return;
    }
    const left = due - (Date.now() + state.clockOffset);
    const span = due - created;
    const red = left < 0;
    const amber = !red && span > 0 && left < 0.25 * span;
    node.textContent = red ? `+${fmtDuration(-left)} overdue` : fmtDuration(left);
    node.classList.toggle('sla-red', red);
    node.classList.toggle('sla-amber', amber);
    const item = node.closest('.conv');
    if (item) item.dataset.sla = red ? 'red' : amber ? 'amber' : 'ok';
  }

  function tickSla() {
    document.querySelectorAll('.sla[data-due]').forEach(updateSla);
  }

  function renderConvItem(conv) {
    const id = conv.conversation_id;
    const waiting = conv.state === 'waiting';
    const item = el('div', {
      class: 'conv' + (same(id, state.currentId) ? ' selected' : ''),
      'data-id': id,
      'data-state': conv.state,
      'data-priority': conv.priority,
      tabindex: '0',
      role: 'button',
    },
    el('div', { class: 'conv-row' },
      priorityBadge(conv.priority),
      el('span', { class: 'conv-channel' }, conv.channel || ''),
      el('span', { class: 'conv-lang' }, conv.language || ''),
      el('span', { class: 'spacer' }),
      slaTimer(conv)),
    el('div', { class: 'conv-reason' },
      el('span', { class: 'conv-reason-text' }, conv.reason || ''),
      el('span', { class: 'dot' }, '·'),
      el('span', { class: 'conv-category' }, conv.category || '')),
    el('div', { class: 'conv-summary' }, truncate(conv.summary || '', 80)),
    el('div', { class: 'conv-row conv-foot' },
      waiting
        ? el('span', { class: 'conv-position' }, conv.position != null ? `#${conv.position} in queue` : 'waiting')
        : el('span', { class: 'conv-agent' }, conv.agent ? `Agent: ${conv.agent}` : 'Unassigned'),
      el('span', { class: 'conv-id', title: String(id) }, String(id)),
      waiting ? el('button', {
        class: 'btn small primary claim',
        type: 'button',
        onclick: (e) => { e.stopPropagation(); claim(id); },
      }, 'Claim') : null));
    item.addEventListener('click', () => openConversation(id));
    item.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && e.target === item) openConversation(id);
    });
    return item;
  }

  function markSelected() {
    for (const item of document.querySelectorAll('.conv')) {
      item.classList.toggle('selected', same(item.dataset.id, state.currentId));
    }
  }

  /** If the queue shows the open conversation changed hands/state, reload it. */
  function syncCurrentWithQueue() {
    const c = state.current;
    if (!c || !state.queue) return;
    const all = [...(state.queue.waiting || []), ...(state.queue.active || [])];
    const inQueue = all.find((x) => same(x.conversation_id, c.conversation_id));
    const changed = inQueue
      ? inQueue.state !== c.state || (inQueue.agent || null) !== (c.agent || null)
      : c.state === 'waiting' || c.state === 'active';
    if (changed) reloadConversation(c.conversation_id);
  }

  async function claim(id) {
    try {
      await api('POST', `/api/conversations/${enc(id)}/claim`);
      state.currentId = id;
      markSelected();
      await Promise.all([loadQueue(), reloadConversation(id)]);
    } catch (err) {
      report(err);
      loadQueue();
      if (same(id, state.currentId)) reloadConversation(id);
    }
  }

  /* ------------------------------------------------------------------ */
  /* Conversation pane                                                   */
  /* ------------------------------------------------------------------ */

  const isMine = (c) => !!(c && state.me && c.state === 'active' && c.agent === state.me.name);

  function renderEmptyPane() {
    $('#conversation').replaceChildren(el('div', { class: 'pane-empty' }, 'Select a conversation from the queue.'));
  }

  function openConversation(id) {
    if (!same(id, state.currentId)) {
      state.current = null;
      state.kb = { key: null, hits: null };
      $('#conversation').replaceChildren(el('div', { class: 'pane-empty' }, 'Loading…'));
    }
    state.currentId = id;
    markSelected();
    return reloadConversation(id);
  }

  async function reloadConversation(id) {
    try {
      const detail = await api('GET', `/api/conversations/${enc(id)}`);
      if (!same(id, state.currentId) || !state.me) return;
      state.current = detail;
      renderConversation(detail);
    } catch (err) {
      report(err);
    }
  }

  /** Rebuild the pane, keeping the reply draft and focus if it is the same conversation. */
  function renderConversation(c) {
    const pane = $('#conversation');
    const box = $('#reply');
    const keep = box && same(pane.dataset.id, c.conversation_id)
      ? { value: box.value, focused: document.activeElement === box, pos: box.selectionStart }
      : null;
    pane.dataset.id = String(c.conversation_id);
    pane.replaceChildren(
      renderConvHeader(c),
      el('div', { class: 'conv-body' },
        el('div', { class: 'conv-main' },
          el('div', { class: 'summary-box' },
            el('div', { class: 'section-label' }, 'Summary'),
            el('p', { id: 'summary', class: 'summary' }, c.summary || 'No summary.')),
          renderTranscript(c),
          renderComposer(c)),
        renderSide(c)));
    scrollTranscript();
    const reply = $('#reply');
    if (reply && keep) {
      reply.value = keep.value;
      if (keep.focused) {
        reply.focus();
        reply.setSelectionRange(keep.pos, keep.pos);
      }
    }
    if (isMine(c)) refreshKb();
  }

  function meta(label, value, id) {
    return el('span', { class: 'meta' },
      el('span', { class: 'meta-label' }, label),
      el('span', { class: 'meta-value', id }, value == null || value === '' ? '—' : String(value)));
  }

  function renderConvHeader(c) {
    return el('header', { class: 'conv-header' },
      el('div', { class: 'conv-title' },
        el('h2', { id: 'conv-id' }, String(c.conversation_id)),
        priorityBadge(c.priority),
        el('span', { id: 'conv-state', class: `state-pill state-${c.state}` }, c.state || ''),
        c.state === 'waiting' ? slaTimer(c) : null),
      el('div', { class: 'conv-meta' },
        meta('Channel', c.channel),
        meta('Language', c.language),
        meta('Reason', c.reason),
        meta('Category', c.category),
        meta('Holder', c.agent, 'conv-agent')));
  }

  function renderTranscript(c) {
    const lines = c.transcript || [];
    return el('div', { id: 'transcript', class: 'transcript' },
      lines.length ? lines.map(renderLine) : el('div', { class: 'list-empty' }, 'No messages yet.'));
  }

  function renderLine(line) {
    const speaker = ['customer', 'bot', 'agent'].includes(line.speaker) ? line.speaker : 'system';
    const who = { customer: 'Customer', bot: 'Bot', agent: line.agent || 'Agent' }[speaker] || String(line.speaker);
    return el('div', { class: `line line-${speaker}`, 'data-speaker': speaker },
      el('div', { class: 'line-meta' },
        el('span', { class: 'line-who' }, who),
        el('time', { class: 'line-time', datetime: line.time || '' }, fmtClock(line.time))),
      el('div', { class: 'line-text' }, line.text ?? ''));
  }

  function scrollTranscript() {
    const t = $('#transcript');
    if (t) t.scrollTop = t.scrollHeight;
  }

  /** Append a pushed line to the open conversation (skipping duplicates). */
  function appendLine(line) {
    const c = state.current;
    if (!c || !line) return;
    c.transcript = c.transcript || [];
    const dup = c.transcript.some((x) => x.speaker === line.speaker && x.text === line.text && x.time === line.time);
    if (dup) return;
    c.transcript.push(line);
    const t = $('#transcript');
    if (!t) return;
    t.querySelector(':scope > .list-empty')?.remove();
    t.appendChild(renderLine(line));
    scrollTranscript();
    if (line.speaker === 'customer') refreshKb();
  }

  function renderComposer(c) {
    if (isMine(c)) {
      const reply = el('textarea', {
        id: 'reply',
        rows: 3,
        placeholder: 'Type a reply…  (Enter to send, Shift+Enter for a new line)',
        'aria-label': 'Reply',
      });
      reply.addEventListener('keydown', (e) => {
        if (e.key === 'Enter' && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
          e.preventDefault();
          sendReply();
        }
      });
      return el('div', { class: 'composer' }, reply,
        el('div', { class: 'composer-bar' },
          el('span', { class: 'muted' }, `Replying in ${c.language === 'zh' ? 'Chinese' : 'English'}`),
          el('button', { id: 'send', class: 'btn primary', type: 'button', onclick: sendReply }, 'Send')));
    }
    const locked = el('div', { class: 'composer locked' });
    if (c.state === 'waiting') {
      appendChildren(locked, [
        el('span', null, c.position != null ? `Waiting in queue (position ${c.position}).` : 'Waiting in queue.'),
        el('button', { id: 'claim', class: 'btn primary', type: 'button', onclick: () => claim(c.conversation_id) }, 'Claim'),
      ]);
    } else if (c.agent && c.state === 'active') {
      locked.appendChild(el('span', { id: 'held-by' }, `This conversation is held by ${c.agent}.`));
    } else {
      locked.appendChild(el('span', null, `Conversation ${c.state || 'closed'}` +
        (c.resolution ? ` · resolution: ${c.resolution}` : '') +
        (c.rating != null ? ` · rating: ${c.rating}/5` : '')));
    }
    return locked;
  }

  function sideSection(title, ...children) {
    return el('section', { class: 'side-section' }, el('h3', null, title), ...children);
  }

  function renderSide(c) {
    const details = sideSection('Details',
      el('dl', { class: 'details' },
        el('dt', null, 'Created'), el('dd', null, fmtDateTime(c.created)),
        el('dt', null, 'First response due'), el('dd', null, fmtDateTime(c.sla_due)),
        el('dt', null, 'Resolution'), el('dd', { id: 'conv-resolution' }, c.resolution || '—'),
        el('dt', null, 'Rating'), el('dd', { id: 'conv-rating' }, c.rating != null ? `${c.rating} / 5` : '—')));
    if (!isMine(c)) return el('aside', { class: 'conv-side' }, details);

    const canned = el('select', { id: 'canned', 'aria-label': 'Canned replies' },
      el('option', { value: '' }, 'Loading…'));
    canned.addEventListener('change', () => {
      const item = (state.cannedLists[c.language] || [])[Number(canned.value)];
      if (canned.value !== '' && item) insertIntoReply(item.text);
      canned.value = '';
    });
    fillCanned(canned, c.language);

    const transferSelect = el('select', { id: 'transfer-select', 'aria-label': 'Transfer to' });
    const resolution = el('select', { id: 'resolution', 'aria-label': 'Resolution' },
      RESOLUTIONS.map((r) => el('option', { value: r }, r)));
    const side = el('aside', { class: 'conv-side' },
      sideSection('Canned replies', canned),
      sideSection('Knowledge base', el('div', { id: 'kb', class: 'kb' }, el('div', { class: 'muted' }, 'Searching…'))),
      sideSection('Transfer', el('div', { class: 'inline' }, transferSelect,
        el('button', { id: 'transfer', class: 'btn', type: 'button', onclick: () => transfer(c.conversation_id) }, 'Transfer'))),
      sideSection('Hand back',
        el('button', { id: 'handback', class: 'btn block', type: 'button', onclick: () => handback(c.conversation_id) }, 'Hand back to bot')),
      sideSection('Close conversation', el('div', { class: 'inline' }, resolution,
        el('button', { id: 'close', class: 'btn danger', type: 'button', onclick: () => closeConversation(c.conversation_id) }, 'Close'))),
      details);
    updateTransferOptions(transferSelect);
    return side;
  }

  function insertIntoReply(text) {
    const box = $('#reply');
    if (!box) return;
    box.value = box.value.trim() ? box.value.replace(/\s*$/, '\n') + text : text;
    box.focus();
    box.setSelectionRange(box.value.length, box.value.length);
  }

  function loadCanned(lang) {
    if (!state.canned[lang]) {
      state.canned[lang] = api('GET', `/api/canned?language=${enc(lang)}`).then((list) => {
        state.cannedLists[lang] = Array.isArray(list) ? list : [];
        return state.cannedLists[lang];
      }).catch((err) => {
        delete state.canned[lang];
        throw err;
      });
    }
    return state.canned[lang];
  }

  async function fillCanned(select, lang) {
    try {
      const list = await loadCanned(lang);
      select.replaceChildren(
        el('option', { value: '' }, list.length ? 'Insert a canned reply…' : 'No canned replies'),
        ...list.map((item, i) => el('option', { value: String(i), title: item.text }, item.title)));
    } catch (err) {
      select.replaceChildren(el('option', { value: '' }, 'Unavailable'));
      report(err);
    }
  }

  /** Fill the transfer select with online agents other than me (keeps the choice). */
  function updateTransferOptions(select = $('#transfer-select')) {
    if (!select || !state.me) return;
    const agents = ((state.queue && state.queue.agents) || [])
      .filter((a) => a.online && a.name !== state.me.name);
    const previous = select.value;
    select.replaceChildren(...(agents.length
      ? agents.map((a) => el('option', { value: a.name }, `${a.name} (${a.active ?? 0} active)`))
      : [el('option', { value: '' }, 'No other agents online')]));
    if (agents.some((a) => a.name === previous)) select.value = previous;
    select.disabled = agents.length === 0;
    const button = $('#transfer');
    if (button) button.disabled = agents.length === 0;
  }

  function lastCustomerText(c) {
    const lines = (c.transcript || []).filter((l) => l.speaker === 'customer');
    return lines.length ? String(lines[lines.length - 1].text || '') : '';
  }

  /** Search the KB with the last customer line; cached per (conversation, language, text). */
  async function refreshKb() {
    const c = state.current;
    if (!c || !isMine(c) || !$('#kb')) return;
    const q = lastCustomerText(c).trim();
    const key = `${c.conversation_id}|${c.language}|${q}`;
    if (state.kb.key === key) {
      if (state.kb.hits) renderKb(state.kb.hits);
      return;
    }
    state.kb = { key, hits: null };
    if (!q) {
      renderKbMessage('No customer message yet.');
      return;
    }
    renderKbMessage('Searching…');
    try {
      const params = new URLSearchParams({ q, language: c.language || 'en', k: '3' });
      const res = await api('GET', `/api/kb/search?${params}`);
      if (state.kb.key !== key) return;
      state.kb.hits = Array.isArray(res) ? res : (res && res.hits) || [];
      renderKb(state.kb.hits);
    } catch (err) {
      if (state.kb.key === key) {
        state.kb = { key: null, hits: null };
        renderKbMessage('Knowledge base unavailable.');
      }
      report(err);
    }
  }

  function renderKbMessage(text) {
    const box = $('#kb');
    if (box) box.replaceChildren(el('div', { class: 'muted' }, text));
  }

  function renderKb(hits) {
    const box = $('#kb');
    if (!box) return;
    if (!hits.length) {
      renderKbMessage('No matching articles.');
      return;
    }
    box.replaceChildren(...hits.map((hit) => {
      const chunk = String(hit.chunk ?? hit.text ?? '');
      return el('div', { class: 'kb-hit', 'data-article': hit.article_id ?? '' },
        el('div', { class: 'kb-title' }, hit.title || String(hit.article_id ?? 'Article')),
        el('div', { class: 'kb-chunk' }, truncate(chunk, 200)),
        el('button', { class: 'btn small kb-insert', type: 'button', onclick: () => insertIntoReply(chunk) }, 'Insert'));
    }));
  }

  /** Run a conversation action, then refresh the pane and the queue. */
  async function convAction(id, path, body, button) {
    if (button) button.disabled = true;
    try {
      await api('POST', `/api/conversations/${enc(id)}/${path}`, body);
      await Promise.all([reloadConversation(id), loadQueue()]);
      return true;
    } catch (err) {
      report(err);
      return false;
    } finally {
      if (button && button.isConnected) button.disabled = false;
    }
  }

  async function sendReply() {
    const box = $('#reply');
    const id = state.currentId;
    if (!box || id == null) return;
    const text = box.value.trim();
    if (!text) return;
    const button = $('#send');
    if (button && button.disabled) return;
    if (button) button.disabled = true;
    try {
      await api('POST', `/api/conversations/${enc(id)}/messages`, { text });
      if (box.value.trim() === text) box.value = '';
      await reloadConversation(id);
    } catch (err) {
      report(err);
    } finally {
      const b = $('#send');
      if (b) b.disabled = false;
    }
  }

  function transfer(id) {
    const agent = $('#transfer-select').value;
    if (!agent) {
      toast('Choose an online agent to transfer to.');
      return;
    }
    convAction(id, 'transfer', { agent }, $('#transfer'));
  }

  function handback(id) {
    convAction(id, 'handback', {}, $('#handback'));
  }

  function closeConversation(id) {
    convAction(id, 'close', { resolution: $('#resolution').value }, $('#close'));
  }

  /* ------------------------------------------------------------------ */
  /* Tickets                                                             */
  /* ------------------------------------------------------------------ */

  async function loadTickets() {
    try {
      const list = await api('GET', '/api/tickets');
      renderTickets(Array.isArray(list) ? list : []);
    } catch (err) {
      report(err);
    }
  }

  function renderTickets(list) {
    const box = $('#ticket-list');
    for (const area of box.querySelectorAll('textarea.ticket-reply')) {
      state.ticketDrafts[area.dataset.id] = area.value;
    }
    const sorted = [...list].sort((a, b) =>
      ((TICKET_ORDER[a.state] ?? 3) - (TICKET_ORDER[b.state] ?? 3)) ||
      (parseTime(b.created) - parseTime(a.created)) || 0);
    box.replaceChildren(...(sorted.length ? sorted.map(renderTicket) : [el('div', { class: 'list-empty' }, 'No tickets.')]));
  }

  function renderTicket(t) {
    const id = t.ticket_id;
    const open = t.state !== 'closed';
    const card = el('article', { class: `ticket ticket-${t.state}`, 'data-id': id, 'data-state': t.state },
      el('header', { class: 'ticket-head' },
        el('span', { class: 'ticket-id' }, `#${id}`),
        el('span', { class: `badge ticket-state state-${t.state}` }, t.state || ''),
        el('span', { class: 'ticket-lang' }, t.language || ''),
        el('span', { class: 'spacer' }),
        el('time', { class: 'ticket-created', datetime: t.created || '' }, fmtDateTime(t.created))),
      el('div', { class: 'ticket-contact' }, el('span', { class: 'meta-label' }, 'Contact'), el('span', null, t.contact || '—')),
      el('div', { class: 'ticket-message' }, t.message || ''),
      t.reply ? el('div', { class: 'ticket-answer' }, el('div', { class: 'section-label' }, 'Reply sent'), el('div', null, t.reply)) : null,
      t.conversation_id ? el('button', {
        class: 'btn link ticket-conversation', type: 'button',
        onclick: () => { showTab('queue'); openConversation(t.conversation_id); },
      }, `Conversation ${t.conversation_id}`) : null);
    if (open) {
      const area = el('textarea', { class: 'ticket-reply', 'data-id': id, rows: 3, placeholder: 'Write a reply to the customer…', 'aria-label': 'Ticket reply' });
      area.value = state.ticketDrafts[id] || '';
      card.appendChild(el('div', { class: 'ticket-actions' }, area,
        el('div', { class: 'inline end' },
          el('button', { class: 'btn ticket-close', type: 'button', onclick: (e) => ticketAction(id, 'close', null, e.currentTarget) }, 'Close'),
          el('button', { class: 'btn primary ticket-send', type: 'button', onclick: (e) => ticketAction(id, 'reply', area, e.currentTarget) }, 'Send reply'))));
    }
    return card;
  }

  async function ticketAction(id, action, area, button) {
    let body = {};
    if (action === 'reply') {
      const text = area.value.trim();
      if (!text) {
        toast('Write a reply first.');
        return;
      }
      body = { text };
    }
    button.disabled = true;
    try {
      await api('POST', `/api/tickets/${enc(id)}/${action}`, body);
      if (action === 'reply') {
        area.value = '';
        delete state.ticketDrafts[id];
      }
      await loadTickets();
    } catch (err) {
      report(err);
    } finally {
      if (button.isConnected) button.disabled = false;
    }
  }

  /* ------------------------------------------------------------------ */
  /* Supervisor                                                          */
  /* ------------------------------------------------------------------ */

  async function loadStats() {
    if (state.tab !== 'supervisor' || !state.me || state.me.role !== 'supervisor') return;
    try {
      const s = await api('GET', '/api/supervisor/stats');
      if (state.tab === 'supervisor') renderStats(s || {});
    } catch (err) {
      report(err);
    }
  }

  function setText(sel, value) {
    const node = $(sel);
    if (node) node.textContent = value == null ? '–' : String(value);
  }

  function renderStats(s) {
    const w = s.waiting_by_priority || {};
    const csat = s.csat || {};
    setText('#stat-waiting-urgent', w.urgent ?? 0);
    setText('#stat-waiting-high', w.high ?? 0);
    setText('#stat-waiting-normal', w.normal ?? 0);
    setText('#stat-agents-online', s.agents_online ?? 0);
    setText('#stat-active', s.active ?? 0);
    setText('#stat-sla-breaches', s.sla_breaches ?? 0);
    setText('#stat-csat', typeof csat.average === 'number' ? csat.average.toFixed(1) : '–');
    setText('#stat-csat-count', `${csat.count ?? 0} rating${csat.count === 1 ? '' : 's'}`);
    setText('#stat-closed-today', s.closed_today ?? 0);
    $('#stat-sla-breaches').classList.toggle('alert', (s.sla_breaches || 0) > 0);

    const dist = csat.distribution || {};
    const reasons = s.handoffs_by_reason || {};
    $('#chart-waiting').replaceChildren(barChart(['urgent', 'high', 'normal'].map((p) =>
      ({ label: p, value: w[p] || 0, color: PRIORITY_COLORS[p] }))));
    $('#chart-csat').replaceChildren(barChart(['1', '2', '3', '4', '5'].map((k) =>
      ({ label: `${k} ★`, value: dist[k] || 0, color: '#1f6feb' }))));
    $('#chart-handoffs').replaceChildren(barChart(Object.entries(reasons)
      .sort((a, b) => b[1] - a[1])
      .map(([reason, n]) => ({ label: reason, value: n || 0, color: '#57606a' }))));
    setText('#sup-updated', `Updated ${new Date().toLocaleTimeString()}`);
    renderAgents();
  }

  /** Horizontal bar chart as inline SVG (labels left, values right of bars). */
  function barChart(items) {
    const width = 360;
    const labelW = 120;
    const valueW = 36;
    const rowH = 28;
    const pad = 6;
    const rows = Math.max(items.length, 1);
    const height = rows * rowH + pad * 2;
    const max = Math.max(1, ...items.map((i) => i.value));
    const svg = svgEl('svg', {
      viewBox: `0 0 ${width} ${height}`, width: '100%', height, class: 'bar-chart', role: 'img',
      'aria-label': items.map((i) => `${i.label}: ${i.value}`).join(', ') || 'No data',
    });
    if (!items.length) {
      svg.appendChild(svgEl('text', { x: width / 2, y: height / 2, 'text-anchor': 'middle', 'dominant-baseline': 'middle', class: 'bar-empty' }, 'No data yet'));
      return svg;
    }
    const barMax = width - labelW - valueW;
    items.forEach((item, i) => {
      const y = pad + i * rowH;
      const w = item.value > 0 ? Math.max(2, Math.round((barMax * item.value) / max)) : 0;
      const g = svgEl('g', { class: 'bar-row', 'data-label': item.label, 'data-value': item.value });
      g.appendChild(svgEl('text', { x: labelW - 8, y: y + rowH / 2, 'text-anchor': 'end', 'dominant-baseline': 'middle', class: 'bar-label' }, truncate(item.label, 18)));
      g.appendChild(svgEl('rect', { x: labelW, y: y + 2, width: barMax, height: rowH - 8, rx: 3, class: 'bar-track' }));
      const rect = svgEl('rect', { x: labelW, y: y + 2, width: w, height: rowH - 8, rx: 3, fill: item.color || '#1f6feb', class: 'bar', 'data-value': item.value });
      rect.appendChild(svgEl('title', null, `${item.label}: ${item.value}`));
      g.appendChild(rect);
      g.appendChild(svgEl('text', { x: labelW + w + 6, y: y + rowH / 2, 'dominant-baseline': 'middle', class: 'bar-value' }, item.value));
      svg.appendChild(g);
    });
    return svg;
  }

  /* ------------------------------------------------------------------ */
  /* Analytics (supervisors)                                             */
  /* ------------------------------------------------------------------ */

  const pct = (v) => (typeof v === 'number' ? `${Math.round(v * 100)}%` : '–');

  async function loadAnalytics() {
    if (state.tab !== 'analytics' || !state.me || state.me.role !== 'supervisor') return;
    const days = Number($('#analytics-days').value) || 14;
    try {
      const r = await api('GET', `/api/supervisor/analytics?days=${days}`);
      if (state.tab === 'analytics') renderAnalytics(r || {});
    } catch (err) {
      report(err);
    }
  }

  function renderAnalytics(r) {
    const t = r.totals || {};
    const rows = r.days || [];
    setText('#an-containment', pct(t.containment));
    setText('#an-containment-note', `${Math.max((t.conversations || 0) - (t.handoffs || 0), 0)} of ${t.conversations || 0} without a person`);
    setText('#an-conversations', t.conversations ?? 0);
    setText('#an-handoffs', t.handoffs ?? 0);
    setText('#an-within-sla', pct(t.first_response_within_sla));
    setText('#an-first-note', `${t.first_responses || 0} first response${t.first_responses === 1 ? '' : 's'}`);
    setText('#an-csat', typeof t.csat_average === 'number' ? t.csat_average.toFixed(1) : '–');
    setText('#an-csat-note', `${t.ratings || 0} rating${t.ratings === 1 ? '' : 's'}`);
    const day = (d) => d.date.slice(5);
    $('#chart-containment').replaceChildren(columnChart(rows.map((d) =>
      ({ label: day(d), value: d.containment == null ? null : Math.round(d.containment * 100) })), 100));
    $('#chart-first-response').replaceChildren(columnChart(rows.map((d) => {
      const f = d.first_response || {};
      return { label: day(d), value: f.count ? Math.round((100 * f.within_sla) / f.count) : null };
    }), 100));
    $('#chart-csat-trend').replaceChildren(columnChart(rows.map((d) =>
      ({ label: day(d), value: (d.csat || {}).average ?? null })), 5));
    $('#chart-reasons').replaceChildren(barChart(Object.entries(t.handoffs_by_reason || {})
      .map(([reason, n]) => ({ label: reason, value: n || 0, color: '#57606a' }))));
    renderUnanswered(r.unanswered || []);
    setText('#analytics-updated', `Updated ${new Date().toLocaleTimeString()}`);
  }

  function renderUnanswered(groups) {
    const body = $('#unanswered tbody');
    if (!groups.length) {
      body.replaceChildren(el('tr', null, el('td', { colspan: '5', class: 'muted' }, 'Nothing unanswered in this period.')));
      return;
    }
    body.replaceChildren(...groups.map((g) => {
      const examples = (g.examples || []).filter((x) => x !== g.question);
      const button = el('button', { class: 'btn small', type: 'button', onclick: () => draftArticle(g, button) }, 'Draft KB article');
      return el('tr', { class: 'unanswered-row' },
        el('td', null, g.question,
          examples.length ? el('details', null, el('summary', null, `${examples.length} more way${examples.length === 1 ? '' : 's'} it was asked`),
            el('ul', null, examples.map((x) => el('li', null, x)))) : null),
        el('td', { class: 'unanswered-count' }, String(g.count)),
        el('td', null, g.language || ''),
        el('td', null, g.nearest_article || el('span', { class: 'muted' }, 'none')),
        el('td', null, button));
    }));
  }

  async function draftArticle(group, button) {
    button.disabled = true;
    try {
      const d = await api('POST', '/api/supervisor/drafts', {
        question: group.question, language: group.language === 'zh' ? 'zh' : 'en', examples: (group.examples || []).slice(0, 20),
      });
      openDraft(d);
    } catch (err) {
      report(err);
    } finally {
      if (button.isConnected) button.disabled = false;
    }
  }

  function openDraft(d) {
    const dialog = $('#draft-dialog');
    state.draft = d;
    $('#draft-path').textContent = d.path;
    $('#draft-lang').textContent = d.language;
    $('#draft-text').value = d.text;
    $('#draft-status').textContent = '';
    refreshDownload();
    if (typeof dialog.showModal === 'function') dialog.showModal(); else dialog.setAttribute('open', '');
    $('#draft-text').focus();
  }

  function refreshDownload() {
    const link = $('#draft-download');
    if (link.href && link.href.startsWith('blob:')) URL.revokeObjectURL(link.href);
    link.href = URL.createObjectURL(new Blob([$('#draft-text').value], { type: 'text/markdown' }));
    link.download = state.draft ? state.draft.name : 'draft.md';
  }

  async function saveDraft() {
    if (!state.draft) return;
    const status = $('#draft-status');
    try {
      const r = await api('PUT', `/api/supervisor/drafts/${enc(state.draft.language)}/${enc(state.draft.name)}`, { text: $('#draft-text').value });
      status.textContent = r.valid ? 'Saved. The article passes the knowledge-base checks.' : `Saved, but not publishable yet: ${r.problem}`;
      refreshDownload();
    } catch (err) {
      report(err);
    }
  }

  /** Column chart as inline SVG; null values are drawn as an empty slot. */
  function columnChart(items, max) {
    const width = 560;
    const height = 150;
    const bottom = 20;
    const top = 14;
    const n = Math.max(items.length, 1);
    const slot = width / n;
    const svg = svgEl('svg', {
      viewBox: `0 0 ${width} ${height}`, width: '100%', height, class: 'column-chart', role: 'img',
      'aria-label': items.map((i) => `${i.label}: ${i.value == null ? 'no data' : i.value}`).join(', ') || 'No data',
    });
    const top_ = Math.max(max || 0, ...items.map((i) => i.value || 0), 1);
    items.forEach((item, i) => {
      const x = i * slot + slot * 0.15;
      const w = slot * 0.7;
      const full = height - bottom - top;
      const h = item.value == null ? 2 : Math.max(2, (full * item.value) / top_);
      const rect = svgEl('rect', { x, y: height - bottom - h, width: w, height: h, rx: 2, class: item.value == null ? 'col-empty' : 'col', 'data-value': item.value ?? '' });
      rect.appendChild(svgEl('title', null, `${item.label}: ${item.value == null ? 'no data' : item.value}`));
      svg.appendChild(rect);
      if (item.value != null && n <= 16) svg.appendChild(svgEl('text', { x: x + w / 2, y: height - bottom - h - 3, 'text-anchor': 'middle', class: 'axis' }, item.value));
      // at most ~8 day labels, the latest always among them
      if ((n - 1 - i) % Math.ceil(n / 8) === 0) svg.appendChild(svgEl('text', { x: x + w / 2, y: height - 6, 'text-anchor': 'middle', class: 'axis' }, item.label));
    });
    return svg;
  }

  function renderAgents() {
    const body = $('#agents tbody');
    if (!body) return;
    const agents = (state.queue && state.queue.agents) || [];
    body.replaceChildren(...(agents.length ? agents.map((a) => el('tr', { 'data-name': a.name },
      el('td', null, a.name),
      el('td', null, a.role || ''),
      el('td', null, el('span', { class: `presence ${a.online ? 'online' : 'offline'}` }, a.online ? 'online' : 'offline')),
      el('td', null, String(a.active ?? 0))))
      : [el('tr', null, el('td', { colspan: '4', class: 'muted' }, 'No agents.'))]));
  }

  /* ------------------------------------------------------------------ */
  /* WebSocket (push + heartbeat)                                        */
  /* ------------------------------------------------------------------ */

  function wsUrl() {
    return (location.protocol === 'https:' ? 'wss' : 'ws') + '://' + location.host + '/api/agent/ws';
  }

  function setConnected(ok) {
    show($('#conn-status'), !ok);
  }

  function connectWs() {
    clearTimeout(state.wsRetryTimer);
    if (!state.wsWanted) return;
    let ws;
    try {
      ws = new WebSocket(wsUrl());
    } catch (err) {
      scheduleReconnect();
      return;
    }
    state.ws = ws;
    ws.addEventListener('open', () => {
      if (state.ws !== ws) return;
      state.wsAttempt = 0;
      setConnected(true);
      sendPing();
      clearInterval(state.pingTimer);
      state.pingTimer = setInterval(sendPing, PING_MS);
      loadQueue(); // catch up on anything missed while disconnected
      if (state.currentId != null) reloadConversation(state.currentId);
    });
    ws.addEventListener('message', onWsMessage);
    ws.addEventListener('close', () => {
      if (state.ws !== ws) return;
      state.ws = null;
      clearInterval(state.pingTimer);
      if (!state.wsWanted) return;
      setConnected(false);
      loadQueue(); // also detects an expired session (401)
      scheduleReconnect();
    });
  }

  function scheduleReconnect() {
    if (!state.wsWanted) return;
    const delay = BACKOFF_MS[Math.min(state.wsAttempt, BACKOFF_MS.length - 1)];
    state.wsAttempt += 1;
    clearTimeout(state.wsRetryTimer);
    state.wsRetryTimer = setTimeout(connectWs, delay);
  }

  function stopWs() {
    state.wsWanted = false;
    clearTimeout(state.wsRetryTimer);
    clearInterval(state.pingTimer);
    const ws = state.ws;
    state.ws = null;
    if (ws) ws.close();
    setConnected(true);
  }

  function sendPing() {
    const ws = state.ws;
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: 'ping' }));
  }

  function onWsMessage(event) {
    let msg;
    try {
      msg = JSON.parse(event.data);
    } catch (err) {
      return;
    }
    if (!msg || !state.me) return;
    if (msg.type === 'queue') loadQueue();
    else if (msg.type === 'line' && same(msg.conversation_id, state.currentId)) appendLine(msg.line);
    else if (msg.type === 'conversation' && same(msg.conversation_id, state.currentId)) reloadConversation(state.currentId);
  }

  /* ------------------------------------------------------------------ */
  /* Boot                                                                */
  /* ------------------------------------------------------------------ */

  function bindStatic() {
    $('#login-form').addEventListener('submit', onLoginSubmit);
    $('#logout').addEventListener('click', logout);
    $('#tickets-refresh').addEventListener('click', loadTickets);
    $('#analytics-days').addEventListener('change', loadAnalytics);
    $('#draft-save').addEventListener('click', saveDraft);
    $('#draft-text').addEventListener('input', () => { $('#draft-status').textContent = 'Not saved yet.'; });
    for (const tab of document.querySelectorAll('.tab')) {
      tab.addEventListener('click', () => showTab(tab.dataset.tab));
    }
  }

  async function boot() {
    bindStatic();
    setInterval(tickSla, 1000);
    try {
      const me = await api('GET', '/api/agent/me', undefined, { authRedirect: false });
      if (me && me.name) enterApp(me);
      else showLogin('');
    } catch (err) {
      showLogin(err.status === 401 ? '' : err.message);
    }
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', boot);
  else boot();
})();
