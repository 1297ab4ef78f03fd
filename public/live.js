/* live.js — how every page follows the server's streams: one connection
 * per browser, however many tabs are open.
 *
 * Usage: follow('poll', (obj, event) => { ... }, indicatorEl);
 *        (stream names: clock, redpacket, poll, cinema, as /metrics lists them)
 *
 * Why not one EventSource per page: over HTTP/1.1 a browser keeps at most
 * six connections per host, and an EventSource holds one for as long as its
 * page is open, so with six pages open a seventh never loads (no error
 * anywhere: its request just waits). The server carries any set of streams
 * on one response (GET /live?stream=clock&stream=poll, each event named by
 * its stream, one id that names a position in all of them). So the tabs of
 * this origin share one:
 *  - they elect a leader with the Web Locks API: the tab that holds the lock
 *    "sse-live" leads; the others wait in the lock's queue, and when the
 *    leader closes or crashes the browser hands the lock to the next one;
 *  - every tab says which streams it follows on a BroadcastChannel, and
 *    holds a lock of its own for as long as it lives: the leader drops a tab
 *    whose lock is gone (it crashed) or that said goodbye (it closed or
 *    navigated away). Locks, not periodic messages, because a browser
 *    slows the timers of a background tab to one a minute;
 *  - the leader holds the one /live connection for the union of them, and
 *    passes each event, with its id, to the others on the channel;
 *  - when the union changes (a tab opens, navigates away, crashes) the
 *    leader reconnects with the last id, so the server sends just the
 *    streams whose state that id does not name; a new tab is sent the last
 *    event of each of its streams by the leader, and a new leader resumes
 *    from the last id it heard.
 * Each page's indicator tells the truth either way: the leader shows its
 * connection's state, a follower the state the leader reports (and
 * "reconnecting…" while no tab holds the leader's lock).
 *
 * Where Web Locks or BroadcastChannel are missing, the page keeps a
 * connection of its own to /live. Either way, each event's data is parsed
 * as JSON (an event that is not is dropped quietly: the pages must not write
 * to the console), and when the browser gives up on a connection (say, a
 * proxy's 502 while the server restarts: EventSource then stays CLOSED) a
 * new one is made after 3 s.
 *
 * And liveRegion(el), the way every page speaks to screen readers.
 */
const live = (() => {
  const RETRY_MS = 3000, CHECK_MS = 1000, TAB_NEW_MS = 3000;
  const LEADER_LOCK = 'sse-live', TAB_LOCK = 'sse-live-tab-';
  const LABELS = { connecting: 'connecting…', open: 'connected', reconnecting: 'reconnecting…' };
  const shared = 'locks' in navigator && 'BroadcastChannel' in window;
  const me = Math.random().toString(36).slice(2);
  const handlers = new Map();   // stream -> [onData]: what this tab follows
  const indicators = new Set();
  const latest = new Map();     // stream -> { data, id }: its last event, for a tab that opens
  const tabs = new Map();       // tab -> { streams, seen }: what every other tab follows (every tab keeps this)
  let state = 'connecting';
  let lastId = '';              // the id of the last event heard: a position in every stream
  let leading = !shared, channel = null, release = null;
  let source = null, sourceStreams = '', retryTimer = null;

  // The indicator: the connection's state, and whether this tab holds it
  // (data-role leader, or alone without sharing) or shares another's (follower).
  function show(next) {
    state = next;
    const role = !shared ? 'alone' : leading ? 'leader' : 'follower';
    for (const el of indicators) {
      el.dataset.state = next;
      el.dataset.role = role;
      el.title = role === 'follower' ? "through another tab's connection" : "this tab's own connection";
      el.textContent = LABELS[next];
    }
    if (leading && channel) channel.postMessage({ type: 'state', state: next });
  }

  // An event of `stream`, to this tab's handlers. `replay`: an old event the
  // leader sends a tab that just opened (it moves no id).
  function deliver(stream, data, id, replay) {
    if (!replay) {
      latest.set(stream, { data, id });
      if (id) lastId = id;
    }
    let obj;
    try {
      obj = JSON.parse(data);
    } catch (err) {
      return; // not JSON: ignore this one event, keep the stream
    }
    for (const onData of handlers.get(stream) || []) onData(obj, { type: stream, data, lastEventId: id });
  }

  // ---- The leader's connection ----

  function union() {
    const all = new Set(handlers.keys());
    for (const t of tabs.values()) t.streams.forEach((s) => all.add(s));
    return [...all].sort();
  }

  // (Re)connects when the union differs from what the connection carries.
  function connect(force) {
    const streams = union();
    const key = streams.join('&');
    if (!force && source && key === sourceStreams) return;
    clearTimeout(retryTimer);
    retryTimer = null;
    if (source) source.close();
    source = null;
    sourceStreams = key;
    if (streams.length === 0) return;
    const query = streams.map((s) => 'stream=' + encodeURIComponent(s)).join('&');
    source = new EventSource('/live?' + query + (lastId ? '&lastEventId=' + encodeURIComponent(lastId) : ''));
    const mine = source;
    source.addEventListener('open', () => show('open'));
    source.addEventListener('error', () => {
      if (mine !== source) return; // replaced already
      show('reconnecting');
      // CONNECTING means the browser is already retrying on its own.
      if (mine.readyState !== EventSource.CLOSED) return;
      retryTimer = setTimeout(() => connect(true), RETRY_MS);
    });
    for (const stream of streams) {  // each event, here and to the other tabs
      source.addEventListener(stream, (e) => {
        deliver(stream, e.data, e.lastEventId, false);
        if (channel) channel.postMessage({ type: 'event', stream, data: e.data, id: e.lastEventId });
      });
    }
  }

  function lead() {
    leading = true;
    show(state === 'connecting' ? 'connecting' : 'reconnecting');
    channel.postMessage({ type: 'who' }); // every tab says again what it follows
    connect(true);
    return new Promise((resolve) => { release = resolve; }); // held until this tab goes
  }

  // ---- Tabs talking ----

  function hello() {
    channel.postMessage({ type: 'hello', tab: me, streams: [...handlers.keys()] });
  }

  function onMessage({ data: m }) {
    if (m.type === 'hello') {
      const before = tabs.get(m.tab);
      tabs.set(m.tab, { streams: m.streams, seen: Date.now() });
      if (!leading) return;
      channel.postMessage({ type: 'state', state });
      if (!before || before.streams.join() !== m.streams.join()) {
        for (const stream of m.streams) {  // what it lacks until the next change: the last event of each
          const last = latest.get(stream);
          if (last) channel.postMessage({ type: 'event', to: m.tab, stream, data: last.data, id: last.id });
        }
        connect(false);
      }
    } else if (m.type === 'bye') {
      tabs.delete(m.tab);
      if (leading) connect(false);
    } else if (m.type === 'who') {
      hello();
    } else if (m.type === 'state' && !leading) {
      if (m.state !== state) show(m.state);
    } else if (m.type === 'event' && !leading && (!m.to || m.to === me)) {
      deliver(m.stream, m.data, m.id, Boolean(m.to));
    }
  }

  // Once a second: the leader drops tabs that died without a goodbye (their
  // lock is gone; a tab just opened may not hold its lock yet), and a
  // follower notices when no tab leads.
  async function check() {
    const { held } = await navigator.locks.query();
    const names = new Set(held.map((lock) => lock.name));
    if (!leading) {
      if (!names.has(LEADER_LOCK) && state !== 'reconnecting') show('reconnecting');
      return;
    }
    let gone = false;
    for (const [tab, t] of tabs) {
      if (!names.has(TAB_LOCK + tab) && Date.now() - t.seen > TAB_NEW_MS) gone = tabs.delete(tab);
    }
    if (gone) connect(false);
  }

  function start() {
    if (!shared) return connect(false);
    channel = new BroadcastChannel('sse-live');
    channel.onmessage = onMessage;
    navigator.locks.request(TAB_LOCK + me, () => new Promise(() => {})); // this tab is alive while it holds it
    hello();
    setInterval(check, CHECK_MS);
    navigator.locks.request(LEADER_LOCK, lead);
    addEventListener('pagehide', () => {
      channel.postMessage({ type: 'bye', tab: me });
      if (source) source.close();
      if (release) release();
    });
  }

  let started = false;
  return function follow(stream, onData, indicatorEl) {
    if (!handlers.has(stream)) handlers.set(stream, []);
    handlers.get(stream).push(onData);
    if (indicatorEl) indicators.add(indicatorEl);
    show(state);
    if (!started) {
      started = true;
      queueMicrotask(start); // after the page's other follow() calls of this script
    } else if (leading) {
      connect(false);
    } else {
      hello();
    }
  };
})();

function follow(stream, onData, indicatorEl) {
  live(stream, onData, indicatorEl);
}

/* liveRegion(el) returns say(text, kind): puts `text` in `el`, an
 * aria-live region, and `kind` in its data-kind for the stylesheet. The
 * same words twice in a row are cleared first and put back 100 ms later:
 * a screen reader announces only a change. */
function liveRegion(el) {
  let timer = null;
  return function say(text, kind) {
    clearTimeout(timer);
    if (kind !== undefined) el.dataset.kind = kind;
    if (el.textContent !== text) {
      el.textContent = text;
      return;
    }
    el.textContent = '';
    timer = setTimeout(() => { el.textContent = text; }, 100);
  };
}
