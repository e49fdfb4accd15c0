'use strict';
// Berth console: helpers shared by every page. Everything the console shows comes from the
// public REST API, called with the session cookie and the X-XSRF-TOKEN header it requires.

const Berth = {pages: {}, me: null};

Berth.cookie = (name) => {
  const hit = document.cookie.split('; ').find((c) => c.startsWith(name + '='));
  return hit ? decodeURIComponent(hit.slice(name.length + 1)) : '';
};

// UseXBasic: the API's 401s then challenge with XBasic, which browsers do not answer with a
// login dialog of their own (as Cumulocity's web clients do).
Berth.headers = (extra) => Object.assign({
  'Accept': 'application/json',
  'X-XSRF-TOKEN': Berth.cookie('XSRF-TOKEN'),
  'UseXBasic': 'true',
}, extra || {});

// The API's error body ({error, message, info}) in words; a status line when there is none.
Berth.failure = (status, text) => {
  let message = '';
  try {
    const body = JSON.parse(text);
    message = body.message || body.error || '';
  } catch (_) { message = ''; }
  const error = new Error(message || ('The server answered ' + status));
  error.status = status;
  return error;
};

Berth.toLogin = () => {
  const back = encodeURIComponent(location.pathname + location.search);
  location.assign('/console/login?next=' + back);
};

// fetch() against the API: JSON in and out, errors thrown with the API's message.
Berth.api = async (method, path, body) => {
  const init = {method, headers: Berth.headers(), credentials: 'same-origin'};
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (e) {
    throw new Error('Berth cannot be reached: ' + e.message);
  }
  let text = '';
  try {
    text = await response.text();
  } catch (e) {
    // The status line arrived but the body broke off: a success stays one (its effect happened).
    if (response.ok) return null;
    throw Berth.failure(response.status, '');
  }
  if (response.status === 401 && document.body.dataset.page !== 'login') {
    Berth.toLogin();
    throw Berth.failure(401, text);
  }
  if (!response.ok) throw Berth.failure(response.status, text);
  if (!text) return null;
  const type = response.headers.get('Content-Type') || '';
  return type.includes('json') ? JSON.parse(text) : text;
};

// An element with attributes and children; text always goes in as text, never as markup.
Berth.el = (tag, attrs, ...children) => {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') node.className = value;
    else if (key === 'text') node.textContent = value;
    else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? '' : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
};

Berth.flash = (message, kind) => {
  const box = document.getElementById('flash');
  if (!box) return;
  box.textContent = message;
  box.className = kind || 'error';
  box.hidden = !message;
};

// Runs an action, showing its failure in words instead of breaking the page.
Berth.guard = async (action, where) => {
  try {
    return await action();
  } catch (e) {
    if (where) {
      where.textContent = e.message;
      where.className = 'error';
    } else {
      Berth.flash(e.message, 'error');
    }
    return undefined;
  }
};

Berth.fillRows = (table, rows, empty) => {
  const body = table.tBodies[0];
  body.replaceChildren();
  if (!rows.length) {
    const cols = table.tHead.rows[0].cells.length;
    body.append(Berth.el('tr', {}, Berth.el('td', {colspan: cols, class: 'empty', text: empty || 'Nothing here.'})));
    return;
  }
  for (const cells of rows) {
    body.append(Berth.el('tr', {}, cells.map((c) => Berth.el('td', {}, c))));
  }
};

Berth.hasRole = (role) => !!Berth.me && Berth.me.roles.has(role);

// Sections marked data-role are hidden from users without that role (the API refuses anyway).
Berth.applyRoles = () => {
  for (const node of document.querySelectorAll('[data-role]')) {
    node.hidden = !Berth.hasRole(node.dataset.role);
  }
};

Berth.loadMe = async () => {
  const user = await Berth.api('GET', '/user/currentUser');
  const tenant = await Berth.api('GET', '/tenant/currentTenant');
  const roles = new Set((user.effectiveRoles || []).map((r) => r.id || r.name));
  Berth.me = {user: user.userName, tenant: tenant.name, roles};
  const who = document.getElementById('who');
  if (who) who.textContent = tenant.name + ' / ' + user.userName;
  Berth.applyRoles();
};

Berth.signOut = async () => {
  await Berth.guard(() => Berth.api('POST', '/user/logout'));
  location.assign('/console/login');
};

Berth.bytes = (n) => {
  if (n === null || n === undefined) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return n.toFixed(i ? 1 : 0) + ' ' + units[i];
};

// A small line chart (SVG) of the last values; `max` fixes the scale when known.
Berth.spark = (values, max, label) => {
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', '0 0 100 24');
  svg.setAttribute('class', 'spark');
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', label);
  svg.dataset.points = values.length;
  const top = Math.max(max || 0, ...values, 1e-9);
  const step = values.length > 1 ? 100 / (values.length - 1) : 100;
  const points = values.map((v, i) => (i * step).toFixed(1) + ',' + (23 - (v / top) * 22).toFixed(1));
  const line = document.createElementNS(ns, 'polyline');
  line.setAttribute('points', points.join(' '));
  svg.append(line);
  return svg;
};
