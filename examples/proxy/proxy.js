'use strict';
// Stream any JSON API: the page of examples/proxy.rs. It opens `/proxy?url=…` with an
// EventSource, keeps the upstream's JSON from each `snapshot` event, applies each `patch` event
// (RFC 6902) to it, and renders the first array of objects it holds as a table. Every value is
// put in the page with textContent: the upstream's strings are never markup.

/// RFC 6902 JSON Patch, applied in order to a document parsed from JSON; returns the new
/// document (a change of the root replaces it). Throws when an operation does not apply.
function applyPatch(doc, operations) {
  const tokens = (pointer) => {
    if (pointer === '') return [];
    if (typeof pointer !== 'string' || pointer[0] !== '/') throw new Error(`bad pointer ${pointer}`);
    return pointer.slice(1).split('/').map((t) => t.replace(/~1/g, '/').replace(/~0/g, '~'));
  };
  const isObject = (node) => node !== null && typeof node === 'object' && !Array.isArray(node);
  const index = (array, token, adding) => {
    if (adding && token === '-') return array.length;
    if (!/^(0|[1-9][0-9]*)$/.test(token)) throw new Error(`bad index ${token}`);
    const i = Number(token);
    if (i > array.length || (!adding && i === array.length)) throw new Error(`index ${i} out of range`);
    return i;
  };
  const child = (node, token) => {
    if (Array.isArray(node)) return node[index(node, token, false)];
    if (isObject(node) && Object.hasOwn(node, token)) return node[token];
    throw new Error(`no ${token}`);
  };
  const parentOf = (root, path) => path.slice(0, -1).reduce(child, root);
  // Defined, not assigned, so that a key such as "__proto__" is a plain property.
  const define = (object, key, value) =>
    Object.defineProperty(object, key, { value, writable: true, enumerable: true, configurable: true });
  const put = (root, path, value, adding) => {
    if (path.length === 0) return value;
    const parent = parentOf(root, path);
    const last = path[path.length - 1];
    if (Array.isArray(parent)) {
      const i = index(parent, last, adding);
      if (adding) parent.splice(i, 0, value);
      else parent[i] = value;
    } else if (isObject(parent) && (adding || Object.hasOwn(parent, last))) {
      define(parent, last, value);
    } else {
      throw new Error(`cannot set ${last}`);
    }
    return root;
  };
  const take = (root, path) => {
    if (path.length === 0) return [undefined, root];
    const parent = parentOf(root, path);
    const last = path[path.length - 1];
    if (Array.isArray(parent)) return [root, parent.splice(index(parent, last, false), 1)[0]];
    if (!isObject(parent) || !Object.hasOwn(parent, last)) throw new Error(`no ${last}`);
    const value = parent[last];
    delete parent[last];
    return [root, value];
  };
  const copy = (value) => (value === undefined ? value : JSON.parse(JSON.stringify(value)));
  for (const op of operations) {
    const path = tokens(op.path);
    switch (op.op) {
      case 'add': doc = put(doc, path, copy(op.value), true); break;
      case 'replace': doc = put(doc, path, copy(op.value), false); break;
      case 'remove': [doc] = take(doc, path); break;
      case 'move': {
        let value;
        [doc, value] = take(doc, tokens(op.from));
        doc = put(doc, path, value, true);
        break;
      }
      case 'copy': doc = put(doc, path, copy(tokens(op.from).reduce(child, doc)), true); break;
      case 'test':
        if (JSON.stringify(path.reduce(child, doc)) !== JSON.stringify(op.value)) throw new Error('test failed');
        break;
      default: throw new Error(`unknown operation ${op.op}`);
    }
  }
  return doc;
}

const $ = (selector) => document.querySelector(selector);
const form = $('#source');
let source = null;
let state;
let counts;
let previousRows = new Map();

function setState(name) {
  $('#state').dataset.state = name;
  $('#state').textContent = name.replace('-', ' ');
}

function notice(text) {
  $('#notice').hidden = !text;
  $('#notice').textContent = text || '';
}

function showCounts() {
  for (const [name, value] of Object.entries(counts)) $(`#${name}`).textContent = value.toLocaleString('en');
}

const text = (value) => (value !== null && typeof value === 'object' ? JSON.stringify(value) : String(value));

/// The rows to render: the document if it is an array, else its first array of objects.
function rowsOf(doc) {
  if (Array.isArray(doc)) return doc;
  if (doc === null || typeof doc !== 'object') return [];
  const list = Object.values(doc).find((v) => Array.isArray(v) && v.every((row) => row !== null && typeof row === 'object'));
  return list || [];
}

function render() {
  const fields = $('#fields');
  fields.replaceChildren();
  if (state !== null && typeof state === 'object' && !Array.isArray(state)) {
    for (const [name, value] of Object.entries(state)) {
      if (value !== null && typeof value === 'object') continue;
      const dt = document.createElement('dt');
      const dd = document.createElement('dd');
      dt.textContent = name;
      dd.textContent = text(value);
      dd.dataset.field = name;
      fields.append(dt, dd);
    }
  }
  const rows = rowsOf(state);
  const columns = [];
  for (const row of rows) for (const name of Object.keys(row)) if (!columns.includes(name)) columns.push(name);
  const key = form.elements.key.value;
  // The rows' key first: it names them.
  if (columns.includes(key)) columns.unshift(...columns.splice(columns.indexOf(key), 1));
  const head = $('#board thead tr');
  head.replaceChildren(...columns.map((name) => Object.assign(document.createElement('th'), { textContent: name })));
  const seen = new Map();
  const body = rows.map((row, i) => {
    const tr = document.createElement('tr');
    const id = key && Object.hasOwn(row, key) ? text(row[key]) : String(i);
    const json = JSON.stringify(row);
    if (previousRows.size && previousRows.get(id) !== json) tr.className = 'changed';
    seen.set(id, json);
    for (const name of columns) {
      const td = document.createElement('td');
      td.textContent = Object.hasOwn(row, name) ? text(row[name]) : '';
      tr.append(td);
    }
    return tr;
  });
  previousRows = seen;
  $('#board tbody').replaceChildren(...body);
  $('#json').textContent = state === undefined ? '' : JSON.stringify(state, null, 2);
}

/// The stream was refused (an EventSource gives up on any answer but 200): ask for the
/// reason, which the server sends as text.
async function refused(url) {
  setState('refused');
  const abort = new AbortController();
  try {
    const response = await fetch(url, { signal: abort.signal });
    if (response.ok) {
      abort.abort();
      notice('the stream ended');
    } else {
      notice(`${response.status}: ${(await response.text()).trim()}`);
    }
  } catch (err) {
    notice(`the server cannot be reached (${err.message})`);
  }
}

function start(params) {
  if (source) source.close();
  counts = { snapshots: 0, patches: 0, operations: 0, bytes: 0 };
  state = undefined;
  previousRows = new Map();
  showCounts();
  render();
  notice('');
  setState('connecting');
  const url = `/proxy?${params}`;
  const stream = new EventSource(url);
  source = stream;
  stream.addEventListener('open', () => setState('live'));
  // The whole value: first, and again whenever the proxy sends it whole (where a patch would
  // be no smaller, or after a change it could not confirm was sent). It replaces the state,
  // whatever the page held; the rows it changes are marked as a patch's are.
  stream.addEventListener('snapshot', (event) => {
    state = JSON.parse(event.data);
    counts.snapshots += 1;
    counts.bytes += event.data.length;
    setState('live');
    notice('');
    render();
    showCounts();
  });
  stream.addEventListener('patch', (event) => {
    const operations = JSON.parse(event.data);
    try {
      state = applyPatch(state, operations);
    } catch (err) {
      // Out of step with the server (it never should be): start again from a snapshot.
      console.warn(`a patch did not apply (${err.message}); starting afresh`);
      start(params);
      return;
    }
    counts.patches += 1;
    counts.operations += operations.length;
    counts.bytes += event.data.length;
    setState('live');
    notice('');
    render();
    showCounts();
  });
  stream.addEventListener('error', (event) => {
    if (stream !== source) return;
    if (typeof event.data === 'string') {
      // The proxy's own `error` event: the upstream failed; the stream stays open.
      const failure = JSON.parse(event.data);
      setState('upstream-error');
      notice(`upstream: ${failure.message}; the proxy retries in ${failure.retry_ms} ms`);
    } else if (stream.readyState === EventSource.CLOSED) {
      refused(url);
    } else {
      setState('reconnecting');
    }
  });
}

/// The form's values as the stream's query.
function paramsOf() {
  const params = new URLSearchParams();
  params.set('url', form.elements.url.value.trim());
  if (form.elements.interval_ms.value) params.set('interval_ms', form.elements.interval_ms.value);
  if (form.elements.key.value.trim()) params.set('key', form.elements.key.value.trim());
  return params;
}

form.addEventListener('submit', (event) => {
  event.preventDefault();
  const params = paramsOf();
  history.replaceState(null, '', `?${params}`);
  start(params);
});

// The page's own query chooses the upstream (default: this server's demo board).
const query = new URLSearchParams(location.search);
form.elements.url.value = query.get('url') || `${location.origin}/demo/departures`;
if (query.has('interval_ms')) form.elements.interval_ms.value = query.get('interval_ms');
if (query.has('key')) form.elements.key.value = query.get('key');
start(paramsOf());
