'use strict';
// Applications: the list (status and alarms at a glance, search) and one application's page
// (deployments with live charts, upload with progress and diagnostics, subscriptions, manifest).

Berth.statusWord = (app) => {
  if (app.type !== 'MICROSERVICE') return app.type === 'HOSTED' ? 'hosted' : '–';
  const deps = (app.status && app.status.deployments) || [];
  if (!app.activeVersionId) return 'no version uploaded';
  if (!deps.length) return 'not subscribed';
  const ready = deps.filter((d) => d.available > 0 && !d.unhealthy).length;
  if (ready === deps.length) return 'ready';
  if (deps.some((d) => d.reason)) return deps.find((d) => d.reason).reason;
  return ready + ' of ' + deps.length + ' ready';
};

Berth.alarms = (app) => ((app.status && app.status.alarms) || []);

Berth.pages.applications = async () => {
  const table = document.getElementById('apps');
  const search = document.getElementById('app-search');
  let apps = [];
  const render = () => {
    const term = search.value.trim().toLowerCase();
    const shown = apps.filter((a) => !term || a.name.toLowerCase().includes(term)
      || (a.contextPath || '').toLowerCase().includes(term));
    Berth.fillRows(table, shown.map((a) => {
      const alarms = Berth.alarms(a);
      return [
        Berth.el('a', {href: '/console/applications/' + a.id, text: a.name}),
        a.type,
        a.owner && a.owner.tenant ? a.owner.tenant.id : '',
        Berth.el('span', {class: 'status status-' + Berth.statusWord(a).replace(/\W+/g, '-'), text: Berth.statusWord(a)}),
        alarms.length ? Berth.el('span', {class: 'badge', text: alarms.length + ' ' + alarms.map((x) => x.severity).join(', ')}) : '–',
      ];
    }), term ? 'No application matches.' : 'No applications yet.');
  };
  search.addEventListener('input', render);
  const load = async () => {
    // One request: withStatus adds each own microservice's status to the collection. `owner`:
    // the tenant's own applications (without a filter the API lists what it may use).
    const page = await Berth.api('GET', '/application/applications?owner=' + encodeURIComponent(Berth.me.tenant) + '&pageSize=100&withStatus=true');
    apps = page.applications || [];
    render();
  };
  await Berth.guard(load);
  document.getElementById('new-app').addEventListener('submit', async (event) => {
    event.preventDefault();
    const name = document.getElementById('new-app-name').value.trim();
    const created = await Berth.guard(() => Berth.api('POST', '/application/applications',
      {name, key: name + '-key', type: 'MICROSERVICE'}));
    if (created) location.assign('/console/applications/' + created.id);
  });
};

Berth.history = {};

// One deployment: its counters, autoscaler and a row per instance with charts.
Berth.deployment = (appId, d) => {
  const title = d.tenant ? 'Tenant ' + d.tenant : 'Shared deployment';
  const facts = [
    'version ' + (d.version || '–'),
    d.available + ' of ' + d.desired + ' available',
    'restarts ' + d.restarts,
    'OOM kills ' + d.oomKills,
  ];
  if (d.lastOomKill) facts.push('last OOM kill ' + d.lastOomKill + (d.lastOomPeakBytes ? ' at ' + Berth.bytes(d.lastOomPeakBytes) : ''));
  if (d.reason) facts.push(d.reason);
  const rows = (d.instances || []).map((i) => {
    const h = Berth.history[i.name] || (Berth.history[i.name] = {cpu: [], mem: []});
    const cpu = i.cpu ? i.cpu.cores : 0;
    h.cpu.push(cpu); h.mem.push(i.memory.usedBytes || 0);
    // 15 minutes at one sample per 2 s.
    if (h.cpu.length > 450) { h.cpu.shift(); h.mem.shift(); }
    return Berth.el('tr', {},
      Berth.el('td', {}, Berth.el('a', {href: '/console/applications/' + appId + '/logs/' + encodeURIComponent(i.name), text: i.name, 'aria-label': 'Logs of ' + i.name})),
      Berth.el('td', {class: i.ready ? 'ok' : 'warn', text: i.state + (i.ready ? ', ready' : ', not ready')}),
      Berth.el('td', {text: i.ip || '–'}),
      Berth.el('td', {text: String(i.restarts)}),
      Berth.el('td', {}, (cpu * 1000).toFixed(0) + ' m', Berth.spark(h.cpu, null, 'CPU of ' + i.name)),
      Berth.el('td', {}, Berth.bytes(i.memory.usedBytes) + ' / ' + Berth.bytes(i.memory.limitBytes), Berth.spark(h.mem, i.memory.limitBytes, 'Memory of ' + i.name)),
      Berth.el('td', {text: i.lastFailure || ''}));
  });
  const scaler = d.autoscaler ? Berth.el('p', {class: 'hint'},
    'Autoscaler: ' + d.autoscaler.replicas + ' replicas (' + d.autoscaler.minReplicas + '–' + d.autoscaler.maxReplicas + ', target ' + d.autoscaler.target + ')',
    d.autoscaler.lastDecision ? ' · last decision: ' + (typeof d.autoscaler.lastDecision === 'string' ? d.autoscaler.lastDecision : JSON.stringify(d.autoscaler.lastDecision)) : '') : null;
  return Berth.el('article', {class: 'deployment', 'data-tenant': d.tenant || ''},
    Berth.el('h3', {text: title}),
    Berth.el('p', {class: 'facts', text: facts.join(' · ')}),
    scaler,
    Berth.el('div', {class: 'scroll'}, Berth.el('table', {},
      Berth.el('caption', {class: 'sr', text: 'Instances of ' + title}),
      Berth.el('thead', {}, Berth.el('tr', {}, ['Instance (logs)', 'State', 'Address', 'Restarts', 'CPU', 'Memory', 'Last failure'].map((c) => Berth.el('th', {scope: 'col', text: c})))),
      Berth.el('tbody', {}, rows.length ? rows : Berth.el('tr', {}, Berth.el('td', {colspan: 7, class: 'empty', text: 'No instances yet.'}))))));
};

Berth.renderApp = (app) => {
  document.getElementById('title').textContent = app.name;
  document.title = app.name + ' · Berth';
  const alarms = Berth.alarms(app);
  const summary = document.getElementById('app-summary');
  summary.replaceChildren(
    Berth.el('span', {class: 'status', text: Berth.statusWord(app)}),
    ' · ' + app.type + ' · owner ' + (app.owner && app.owner.tenant ? app.owner.tenant.id : '') +
    (app.contextPath ? ' · /service/' + app.contextPath : ''),
    alarms.length ? Berth.el('ul', {class: 'alarms'}, alarms.map((a) => Berth.el('li', {class: 'alarm', text: a.severity + ': ' + a.text}))) : '');
  const deps = (app.status && app.status.deployments) || [];
  document.getElementById('deployments').replaceChildren(...(deps.length
    ? deps.map((d) => Berth.deployment(app.id, d))
    : [Berth.el('p', {class: 'empty', text: 'No deployment: upload a version and subscribe a tenant.'})]));
  document.getElementById('manifest').textContent = app.manifest ? JSON.stringify(app.manifest, null, 2) : 'No version uploaded yet.';
};

// The stored versions (the versions API): the active one (tag latest) marked; Activate moves
// latest to another version (a rollback the supervisor rolls out), Delete removes one not running.
Berth.loadVersions = async (appId, deployed) => {
  const page = await Berth.api('GET', '/application/applications/' + appId + '/versions?pageSize=100');
  const admin = Berth.hasRole('ROLE_APPLICATION_MANAGEMENT_ADMIN');
  const result = document.getElementById('versions-result');
  const done = (message) => { result.textContent = message; result.className = 'ok'; };
  const path = '/application/applications/' + appId + '/versions';
  const act = (v, others) => [
    Berth.el('button', {type: 'button', class: 'activate', 'data-version': v.version,
      'aria-label': 'Activate version ' + v.version, text: 'Activate',
      onclick: async () => {
        const ok = await Berth.guard(() => Berth.api('PUT', path + '/' + encodeURIComponent(v.version),
          {tags: ['latest', ...others]}).then(() => true), result);
        if (ok) { done('Version ' + v.version + ' activated; its deployments are being replaced.'); deployed(); }
      }}),
    ' ',
    Berth.el('button', {type: 'button', class: 'danger delete-version', 'data-version': v.version,
      'aria-label': 'Delete version ' + v.version, text: 'Delete',
      onclick: async () => {
        if (!confirm('Delete version ' + v.version + ' with its image and package?')) return;
        const ok = await Berth.guard(() => Berth.api('DELETE', path + '?version=' + encodeURIComponent(v.version))
          .then(() => true), result);
        if (ok) { done('Version ' + v.version + ' deleted.'); Berth.loadVersions(appId, deployed); }
      }}),
  ];
  Berth.fillRows(document.getElementById('versions'), (page.applicationVersions || []).map((v) => {
    const tags = v.tag || [];
    const active = tags.includes('latest');
    const others = tags.filter((t) => t !== 'latest');
    return [
      Berth.el('span', {class: active ? 'ok' : ''}, v.version, active ? ' (active)' : ''),
      v.uploadTime || '–',
      others.length ? others.join(', ') : '–',
      admin && !active ? act(v, others) : '–',
    ];
  }), 'No version uploaded yet.');
};

Berth.upload = (appId, file, progress) => new Promise((resolve, reject) => {
  const xhr = new XMLHttpRequest();
  xhr.open('POST', '/application/applications/' + appId + '/binaries');
  for (const [k, v] of Object.entries(Berth.headers())) xhr.setRequestHeader(k, v);
  xhr.upload.addEventListener('progress', (e) => {
    if (e.lengthComputable) progress.value = Math.round((e.loaded / e.total) * 100);
  });
  xhr.addEventListener('load', () => (xhr.status < 300 ? resolve(xhr.responseText)
    : reject(Berth.failure(xhr.status, xhr.responseText))));
  xhr.addEventListener('error', () => reject(new Error('The upload was interrupted')));
  const form = new FormData();
  form.append('file', file);
  xhr.send(form);
});

Berth.pages.application = async () => {
  const id = document.getElementById('app').dataset.id;
  // The versions table is rebuilt only when the active version changed (an activation, an
  // upload, an automatic rollback), so keyboard focus on its buttons survives the polling.
  let shownActive;
  // The charts start with the supervisor's last 15 minutes; polling adds to them.
  await Berth.api('GET', '/application/applications/' + id + '/usageHistory').then((h) => {
    for (const i of h.instances || []) {
      Berth.history[i.name] = {cpu: i.samples.map((x) => x.cpuCores || 0), mem: i.samples.map((x) => x.memoryBytes)};
    }
  }).catch(() => {});
  const refresh = () => Berth.api('GET', '/application/applications/' + id).then((app) => {
    Berth.renderApp(app);
    // null, not undefined, when there is none: `undefined` means "not shown yet".
    const active = app.activeVersionId || null;
    if (active !== shownActive) {
      shownActive = active;
      return Berth.loadVersions(id, () => refresh());
    }
    return undefined;
  });
  if (!await Berth.guard(() => refresh().then(() => true))) {
    // Not visible to this user (or gone): only the message stays.
    document.getElementById('app').hidden = true;
    return;
  }
  // Status, instances and charts follow the supervisor's view every 2 s.
  setInterval(() => refresh().then(() => Berth.flash('')).catch((e) => Berth.flash(e.message)), 2000);

  const result = document.getElementById('upload-result');
  const diagnostics = document.getElementById('diagnostics');
  const progress = document.getElementById('upload-progress');
  document.getElementById('upload').addEventListener('submit', async (event) => {
    event.preventDefault();
    const file = document.getElementById('upload-file').files[0];
    if (!file) { result.textContent = 'Choose a package first.'; return; }
    progress.hidden = false; progress.value = 0;
    diagnostics.hidden = true; result.className = ''; result.textContent = 'Uploading ' + file.name + '…';
    try {
      await Berth.upload(id, file, progress);
      result.textContent = 'Uploaded ' + file.name + '.';
      result.className = 'ok';
      shownActive = undefined; // a re-uploaded snapshot keeps the active version's name
      await refresh();
    } catch (e) {
      result.className = 'error';
      if (e.status === undefined) {
        // No answer arrived: the upload may or may not have been applied; the page shows which.
        result.textContent = e.message + ' before Berth answered; the version below shows whether it was applied.';
        refresh().catch(() => {});
        return;
      }
      result.textContent = 'The package was refused.';
      diagnostics.textContent = e.message;
      diagnostics.hidden = false;
    }
  });

  const subResult = document.getElementById('sub-result');
  const tenantOf = () => document.getElementById('sub-tenant').value.trim();
  document.getElementById('subscribe').addEventListener('submit', async (event) => {
    event.preventDefault();
    const tenant = tenantOf();
    const done = await Berth.guard(() => Berth.api('POST', '/tenant/tenants/' + encodeURIComponent(tenant) + '/applications',
      {application: {id: String(id)}}).then(() => true), subResult);
    if (done) { subResult.textContent = 'Subscribed ' + tenant + '.'; subResult.className = 'ok'; refresh(); }
  });
  document.getElementById('unsubscribe').addEventListener('click', async () => {
    const tenant = tenantOf();
    const done = await Berth.guard(() => Berth.api('DELETE', '/tenant/tenants/' + encodeURIComponent(tenant) + '/applications/' + id).then(() => true), subResult);
    if (done) { subResult.textContent = 'Unsubscribed ' + tenant + '.'; subResult.className = 'ok'; refresh(); }
  });
  document.getElementById('delete-app').addEventListener('click', async () => {
    if (!confirm('Delete this application, its versions and deployments?')) return;
    const done = await Berth.guard(() => Berth.api('DELETE', '/application/applications/' + id).then(() => true));
    if (done) location.assign('/console/applications');
  });
};
