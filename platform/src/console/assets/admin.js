'use strict';
// Administration pages: alarms, tenants, users and groups, tenant options, audit log.

Berth.pages.alarms = async () => {
  const table = document.getElementById('alarm-list');
  await Berth.guard(async () => {
    // One request: withStatus carries each own microservice's status (and so its alarms).
    const page = await Berth.api('GET', '/application/applications?owner=' + encodeURIComponent(Berth.me.tenant) + '&pageSize=100&withStatus=true');
    const apps = (page.applications || []).filter((a) => a.status);
    const rows = [];
    for (const app of apps) {
      for (const alarm of Berth.alarms(app)) {
        rows.push([Berth.el('a', {href: '/console/applications/' + app.id, text: app.name}), alarm.severity, alarm.type, alarm.text]);
      }
    }
    Berth.fillRows(table, rows, 'No active alarms.');
  });
};

Berth.pages.tenants = async () => {
  const table = document.getElementById('tenant-list');
  await Berth.guard(async () => {
    const page = await Berth.api('GET', '/tenant/tenants?pageSize=100');
    Berth.fillRows(table, (page.tenants || []).map((t) => [t.id, t.domain || '', t.company || '', t.status || '']), 'No tenants.');
  });
};

Berth.pages.users = async () => {
  const tenant = encodeURIComponent(Berth.me.tenant);
  const base = '/user/' + tenant;
  const loadUsers = () => Berth.guard(async () => {
    const users = await Berth.api('GET', base + '/users?pageSize=100');
    Berth.fillRows(document.getElementById('user-list'), (users.users || []).map((u) => [
      u.userName, u.email || '', u.enabled ? 'yes' : 'no',
      ((u.groups && u.groups.references) || []).map((r) => r.group.name).join(', ')]), 'No users.');
  });
  await loadUsers();
  await Berth.guard(async () => {
    const groups = await Berth.api('GET', base + '/groups?pageSize=100');
    const list = groups.groups || [];
    Berth.fillRows(document.getElementById('group-list'), list.map((g) => [
      g.name, ((g.roles && g.roles.references) || []).map((r) => (r.role || r).id).join(', ')]), 'No groups.');
    document.getElementById('member-group').replaceChildren(...list.map((g) =>
      Berth.el('option', {value: String(g.id), text: g.name})));
  });

  // Users are created and changed through the user API; the API decides who may.
  const userResult = document.getElementById('user-result');
  const said = (where, text) => { where.textContent = text; where.className = 'ok'; };
  const userBody = () => {
    const body = {
      email: document.getElementById('user-email').value.trim() || undefined,
      enabled: document.getElementById('user-enabled').checked,
    };
    const password = document.getElementById('user-password').value;
    if (password) body.password = password;
    return body;
  };
  const userName = () => document.getElementById('user-name').value.trim();
  document.getElementById('user-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const name = userName();
    const done = await Berth.guard(() => Berth.api('POST', base + '/users',
      Object.assign({userName: name}, userBody())).then(() => true), userResult);
    if (done) { said(userResult, 'Created user ' + name + '.'); document.getElementById('user-password').value = ''; loadUsers(); }
  });
  document.getElementById('user-update').addEventListener('click', async () => {
    const name = userName();
    if (!name) { userResult.textContent = 'Give the user name to change.'; userResult.className = 'error'; return; }
    const done = await Berth.guard(() => Berth.api('PUT', base + '/users/' + encodeURIComponent(name), userBody())
      .then(() => true), userResult);
    if (done) { said(userResult, 'Saved user ' + name + '.'); document.getElementById('user-password').value = ''; loadUsers(); }
  });

  const memberResult = document.getElementById('member-result');
  const member = () => document.getElementById('member-user').value.trim();
  const group = () => document.getElementById('member-group');
  const groupName = () => group().selectedOptions[0] ? group().selectedOptions[0].textContent : '';
  document.getElementById('member-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const name = member();
    const done = await Berth.guard(() => Berth.api('POST', base + '/groups/' + group().value + '/users',
      {user: {id: name}}).then(() => true), memberResult);
    if (done) { said(memberResult, 'Added ' + name + ' to ' + groupName() + '.'); loadUsers(); }
  });
  document.getElementById('member-remove').addEventListener('click', async () => {
    const name = member();
    const done = await Berth.guard(() => Berth.api('DELETE', base + '/groups/' + group().value + '/users/'
      + encodeURIComponent(name)).then(() => true), memberResult);
    if (done) { said(memberResult, 'Removed ' + name + ' from ' + groupName() + '.'); loadUsers(); }
  });
};

Berth.pages.options = async () => {
  const table = document.getElementById('option-list');
  const result = document.getElementById('option-result');
  const load = async () => {
    const page = await Berth.api('GET', '/tenant/options?pageSize=100');
    Berth.fillRows(table, (page.options || []).map((o) => [o.category, o.key, o.value]), 'No options set.');
  };
  await Berth.guard(load);
  document.getElementById('option-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const body = {
      category: document.getElementById('opt-category').value.trim(),
      key: document.getElementById('opt-key').value.trim(),
      value: document.getElementById('opt-value').value,
    };
    const done = await Berth.guard(() => Berth.api('POST', '/tenant/options', body).then(() => true), result);
    if (done) {
      result.textContent = 'Saved ' + body.category + '.' + body.key + '.';
      result.className = 'ok';
      document.getElementById('opt-value').value = '';
      await Berth.guard(load);
    }
  });
};

Berth.pages.audit = async () => {
  const table = document.getElementById('audit-list');
  const load = async () => {
    const params = new URLSearchParams({pageSize: '100'});
    const type = document.getElementById('audit-type').value.trim();
    const app = document.getElementById('audit-app').value.trim();
    if (type) params.set('type', type);
    if (app) params.set('application', app);
    const page = await Berth.api('GET', '/audit/auditRecords?' + params);
    Berth.fillRows(table, (page.auditRecords || []).map((r) => [
      r.time || r.creationTime || '', r.type, r.severity, (r.source && r.source.id) || r.application || '', r.text, r.user || '']), 'No audit records match.');
  };
  await Berth.guard(load);
  document.getElementById('audit-filter').addEventListener('submit', (event) => {
    event.preventDefault();
    Berth.guard(load);
  });
};
