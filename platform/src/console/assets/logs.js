'use strict';
// Logs of one instance: the last lines, then new ones live from the SSE stream (read with
// fetch, so the XSRF header goes along as on every call), filtered by the search box.

Berth.pages.logs = () => {
  const view = document.getElementById('logview');
  const {id, instance} = view.dataset;
  const list = document.getElementById('log-lines');
  const search = document.getElementById('log-search');
  const follow = document.getElementById('follow');
  const state = document.getElementById('log-state');
  const MAX_LINES = 2000;
  let controller = null;

  const matches = (text) => {
    const term = search.value.trim().toLowerCase();
    return !term || text.toLowerCase().includes(term);
  };
  const add = (line) => {
    const item = Berth.el('li', {text: line});
    item.hidden = !matches(line);
    list.append(item);
    while (list.children.length > MAX_LINES) list.firstElementChild.remove();
    if (!item.hidden) item.scrollIntoView({block: 'nearest'});
  };
  search.addEventListener('input', () => {
    for (const item of list.children) item.hidden = !matches(item.textContent);
  });

  const connect = async () => {
    controller = new AbortController();
    const url = '/application/applications/' + id + '/logs/' + encodeURIComponent(instance) + '/stream?tail=' + (list.children.length ? 0 : 200);
    state.textContent = 'Connecting…';
    let response;
    try {
      response = await fetch(url, {headers: Berth.headers({'Accept': 'text/event-stream'}), credentials: 'same-origin', signal: controller.signal});
    } catch (e) {
      if (e.name !== 'AbortError') state.textContent = 'Disconnected: ' + e.message;
      return;
    }
    if (!response.ok) {
      if (response.status === 401) Berth.toLogin();
      state.textContent = Berth.failure(response.status, await response.text()).message;
      return;
    }
    state.textContent = 'Following';
    view.dataset.following = 'true';
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = '';
    let ended = false;
    try {
      for (;;) {
        const {value, done} = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, {stream: true});
        let cut;
        while ((cut = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          const lines = block.split('\n');
          const kind = (lines.find((l) => l.startsWith('event: ')) || 'event: line').slice(7);
          const data = lines.filter((l) => l.startsWith('data: ')).map((l) => l.slice(6)).join('\n');
          if (kind === 'end') ended = true;
          else if (kind === 'failure') state.textContent = 'Failure: ' + data;
          else if (lines.some((l) => l.startsWith('data: '))) add(data);
        }
      }
    } catch (e) {
      if (e.name === 'AbortError') return;
    }
    view.dataset.following = 'false';
    state.textContent = ended ? 'The instance stopped; its log ends here.' : 'Disconnected.';
  };
  follow.addEventListener('change', () => {
    if (follow.checked) connect();
    else { if (controller) controller.abort(); state.textContent = 'Paused'; view.dataset.following = 'false'; }
  });
  connect();
};
