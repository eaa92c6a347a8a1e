// The host's own page around the dashboard plugin's page.
//
// The plugin's HTML runs in <iframe sandbox="allow-scripts"> served with
// `Content-Security-Policy: sandbox allow-scripts; connect-src 'none'`: an
// opaque origin that cannot read this page, its cookie, or send requests.
// This script fetches /api and /api/history and hands them to the frame by
// postMessage; the frame asks for the few actions below by postMessage and
// this script decides. The session cookie (HttpOnly) authorises them.
// A buzzer press is forwarded only while the page has transient user
// activation (a click or key press a moment ago; a click inside the frame
// activates this page too): the plugin's script cannot sound the buzzer on
// its own, only when the user just pressed something.
(function () {
  'use strict';
  var frame = document.getElementById('view');
  var bar = document.getElementById('bar');
  var REFRESH_MS = 2000, HISTORY_MS = 30000, RELOAD_GAP_MS = 4000;
  var last = null, history = null, historyAt = 0, reloadedAt = 0;
  var PATTERNS = { beep: 1, long: 1 };

  function send(message) {
    if (frame.contentWindow) frame.contentWindow.postMessage(message, '*');
  }

  function get(path) {
    var ac = window.AbortController && new AbortController();
    var timer = setTimeout(function () { if (ac) ac.abort(); }, 5000);
    return fetch(path, { cache: 'no-store', signal: ac && ac.signal })
      .then(function (r) {
        clearTimeout(timer);
        if (!r.ok) throw new Error('HTTP ' + r.status);
        var date = Date.parse(r.headers.get('Date')) || 0;
        return r.json().then(function (body) { return { body: body, date: date }; });
      }, function (e) { clearTimeout(timer); throw e; });
  }

  function poll() {
    get('/api').then(function (r) {
      last = { type: 'api', data: r.body, server_ms: r.date };
      send(last);
      if (Date.now() - historyAt > HISTORY_MS) loadHistory();
    }, function () {
      send({ type: 'offline' });
    }).then(function () { setTimeout(poll, REFRESH_MS); });
  }

  function loadHistory() {
    historyAt = Date.now();
    get('/api/history?range=1h').then(function (r) {
      history = { type: 'history', data: r.body };
      send(history);
    }, function () {});
  }

  function session() {
    get('/api/session').then(function (r) {
      bar.hidden = !!r.body.authorized || !r.body.control;
    }, function () {});
  }

  function buzzer(pattern) {
    fetch('/api/buzzer', {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ pattern: pattern })
    }).then(function (r) {
      if (r.ok) return send({ type: 'buzzer-result', ok: true, pattern: pattern });
      return r.json().catch(function () { return {}; }).then(function (body) {
        var error = r.status === 401 ? 'controls are locked: log in at /login'
          : (body.error || 'HTTP ' + r.status);
        if (r.status === 401) bar.hidden = false;
        send({ type: 'buzzer-result', ok: false, status: r.status, error: error });
      });
    }, function () {
      send({ type: 'buzzer-result', ok: false, error: 'host unreachable' });
    });
  }

  // Browsers without navigator.userActivation (before 2023) cannot tell a
  // press from a script: they get no buzzer from the page, rather than one
  // the plugin could press.
  function userPressed() {
    return !!(navigator.userActivation && navigator.userActivation.isActive);
  }

  window.addEventListener('message', function (e) {
    if (e.source !== frame.contentWindow) return;
    var m = e.data;
    if (!m || typeof m !== 'object') return;
    if (m.type === 'ready') {
      var r = +m.refresh_ms;
      if (r >= 1000 && r <= 60000) REFRESH_MS = r;
      if (last) send(last);
      if (history) send(history);
    } else if (m.type === 'buzzer' && PATTERNS.hasOwnProperty(m.pattern)) {
      if (userPressed()) {
        buzzer(m.pattern);
      } else {
        send({ type: 'buzzer-result', ok: false, pattern: m.pattern,
               error: 'not sent: press the button yourself' });
      }
    } else if (m.type === 'reload' && Date.now() - reloadedAt > RELOAD_GAP_MS) {
      reloadedAt = Date.now();
      frame.src = '/view';
    }
  });

  poll();
  session();
  setInterval(session, 60000);
})();
