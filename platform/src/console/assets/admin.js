'use strict';
// Administration pages: alarms, tenants, users and groups, tenant options, audit log.

Berth.pages.alarms = async () => {
  const table = document.getElementById('alarm-list');
  await Berth.guard(async () => {
    const page = await Berth.api('GET', '/application/applications?pageSize=100');
    const apps = await Promise.all((page.applications || []).filter((a) => a.type === 'MICROSERVICE')
      .map((a) => Berth.api('GET', '/application/applications/' + a.id)));
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
  await Berth.guard(async () => {
    const users = await Berth.api('GET', '/user/' + tenant + '/users?pageSize=100');
    Berth.fillRows(document.getElementById('user-list'), (users.users || []).map((u) => [
      u.userName, u.email || '', u.enabled ? 'yes' : 'no',
      ((u.groups && u.groups.references) || []).map((r) => r.group.name).join(', ')]), 'No users.');
  });
  await Berth.guard(async () => {
    const groups = await Berth.api('GET', '/user/' + tenant + '/groups?pageSize=100');
    Berth.fillRows(document.getElementById('group-list'), (groups.groups || []).map((g) => [
      g.name, ((g.roles && g.roles.references) || []).map((r) => (r.role || r).id).join(', ')]), 'No groups.');
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
