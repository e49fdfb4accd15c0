'use strict';
// Starts the page's script once the document is parsed.
document.addEventListener('DOMContentLoaded', async () => {
  const page = document.body.dataset.page;
  const signout = document.getElementById('signout');
  if (signout) signout.addEventListener('click', Berth.signOut);
  if (page === 'login' || page === 'missing') {
    if (Berth.pages[page]) Berth.pages[page]();
    return;
  }
  const me = await Berth.guard(Berth.loadMe);
  if (me === undefined && !Berth.me) return;
  if (Berth.pages[page]) Berth.pages[page]();
});

Berth.pages.login = () => {
  const form = document.getElementById('login');
  const tenantInput = document.getElementById('tenant');
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    Berth.flash('');
    const tenant = tenantInput.value.trim() || 'management';
    const body = new URLSearchParams({
      grant_type: 'PASSWORD',
      username: document.getElementById('username').value,
      password: document.getElementById('password').value,
    });
    let response;
    try {
      response = await fetch('/tenant/oauth?tenant_id=' + encodeURIComponent(tenant), {
        method: 'POST', body, credentials: 'same-origin',
        headers: {'Accept': 'application/json', 'UseXBasic': 'true'},
      });
    } catch (e) {
      Berth.flash('Berth cannot be reached: ' + e.message);
      return;
    }
    if (!response.ok) {
      Berth.flash(Berth.failure(response.status, await response.text()).message);
      document.getElementById('password').focus();
      return;
    }
    const next = new URLSearchParams(location.search).get('next') || '';
    // Only a console path: never an open redirect to another site.
    location.assign(/^\/console\/[A-Za-z0-9/_.-]*$/.test(next) ? next : '/console/applications');
  });
};
