/* live.js — the one helper every live page uses to follow a stream.
 *
 * EventSource already does most of the work by itself: it keeps one HTTP
 * response open, cuts the text/event-stream into events, and when the
 * connection drops it reconnects after the delay the server sent in
 * `retry:` (3 s here), sending the last `id:` it saw as a Last-Event-ID
 * header so the server can skip a snapshot the page already has.
 *
 * This file adds three things:
 *  - each event's `data` is parsed as JSON; an event that is not valid JSON
 *    is dropped quietly (the pages must not write to the console);
 *  - a visible connection state on an indicator element;
 *  - recovery when the browser gives up. After an answer that is not a 200
 *    event stream (say, a proxy's 502 while the server restarts) EventSource
 *    goes to CLOSED and never tries again, so we build a new one after 3 s.
 *
 * Usage: const live = liveStream('/sse', (obj, event) => { ... }, el);
 *        live.close();  // stop for good
 *
 * And liveRegion(el), the way every page speaks to screen readers.
 */
function liveStream(url, onData, indicatorEl) {
  const RETRY_MS = 3000;
  const LABELS = { connecting: 'connecting…', open: 'connected', reconnecting: 'reconnecting…' };
  let source = null;
  let retryTimer = null;

  function show(state) {
    if (!indicatorEl) return;
    indicatorEl.dataset.state = state;
    indicatorEl.textContent = LABELS[state];
  }

  function onMessage(event) {
    let obj;
    try {
      obj = JSON.parse(event.data);
    } catch (err) {
      return; // not JSON: ignore this one event, keep the stream
    }
    onData(obj, event);
  }

  function onError() {
    show('reconnecting');
    // CONNECTING means the browser is already retrying on its own.
    if (source.readyState !== EventSource.CLOSED) return;
    source.close();
    retryTimer = setTimeout(connect, RETRY_MS);
  }

  function connect() {
    retryTimer = null;
    source = new EventSource(url);
    source.addEventListener('open', () => show('open'));
    source.addEventListener('message', onMessage);
    source.addEventListener('error', onError);
  }

  show('connecting');
  connect();
  return {
    close() {
      clearTimeout(retryTimer);
      source.close();
    },
  };
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
