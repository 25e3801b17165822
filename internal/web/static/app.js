// Resilience Management: the page's only script. The page works without
// it (forms post and redirect back); with it:
//   - the live part of the page follows the node through the API's event
//     stream (EventSource on /api/v1/events, with the session cookie): at
//     every status event the server-rendered fragment /partials/live is
//     fetched again and swapped in, so the markup has one source;
//   - Start services / Stop services open a dialog with the server's
//     confirmation (and its live peer check), and the confirmed action is
//     posted to the API with the session's CSRF token in X-CSRF-Token;
//   - progress is announced to screen readers in an aria-live region.
(function () {
  'use strict';

  var live = document.getElementById('live');
  addCloseButtons(document);
  if (!live) {
    return;
  }

  var csrfMeta = document.querySelector('meta[name="csrf-token"]');
  var csrf = csrfMeta ? csrfMeta.content : '';
  var announcer = document.getElementById('announcer');
  var flashArea = document.getElementById('flash');
  var indicator = document.getElementById('live-indicator');
  var dialog = document.getElementById('confirm-dialog');
  var dialogBody = document.getElementById('confirm-body');
  var background = { 'X-Resilience-Background': '1' };
  var acting = false;
  var tones = { active: 'ok', activating: 'busy', deactivating: 'busy', failed: 'bad', inactive: 'idle' };
  var opener = null;

  function toLogin() {
    var next = location.pathname + location.search;
    location.assign('/login?expired=1&next=' + encodeURIComponent(next));
  }

  // ---- The live fragment -------------------------------------------------

  var inflight = false;
  var again = false;

  function refresh() {
    if (inflight) {
      again = true;
      return;
    }
    inflight = true;
    fetch(live.dataset.src, { headers: background, credentials: 'same-origin', cache: 'no-store' })
      .then(function (r) {
        if (r.status === 401) {
          toLogin();
          throw new Error('logged out');
        }
        if (!r.ok) {
          throw new Error('HTTP ' + r.status);
        }
        return r.text();
      })
      .then(swap)
      .catch(function () { /* the next event or tick tries again */ })
      .then(function () {
        inflight = false;
        if (again) {
          again = false;
          refresh();
        }
      });
  }

  var lastHTML = null;

  function swap(html) {
    if (html === lastHTML) {
      return; // nothing changed: keep the DOM (and the user's selection)
    }
    lastHTML = html;
    var focused = document.activeElement;
    var focusID = focused && live.contains(focused) ? focused.id : '';
    live.innerHTML = html;
    var status = live.querySelector('#status');
    var dot = document.getElementById('node-dot');
    if (status && dot) {
      dot.className = 'dot tone-' + (tones[status.dataset.status] || 'unknown');
    }
    if (acting) {
      disableActions();
    }
    if (focusID) {
      var el = document.getElementById(focusID);
      if (el && !el.disabled) {
        el.focus();
      }
    }
  }

  function disableActions() {
    var buttons = live.querySelectorAll('[data-action-button]');
    for (var i = 0; i < buttons.length; i++) {
      buttons[i].disabled = true;
    }
  }

  // ---- The event stream -------------------------------------------------

  var first = true;
  var lastText = '';

  function describe(s) {
    if (s.transition) {
      var stop = s.transition.action === 'stop' || s.status === 'deactivating';
      var verb = stop ? 'Stopping services' : 'Starting services';
      var done = 0;
      var current = '';
      var services = s.services || [];
      services.forEach(function (svc) {
        if (svc.state === (stop ? 'stopped' : 'running')) {
          done++;
        }
        if (svc.state === 'starting' || svc.state === 'stopping') {
          current = svc.name + ' ' + svc.state;
        }
      });
      return verb + ': ' + done + ' of ' + services.length + ' done' + (current ? ', ' + current : '') + '.';
    }
    return s.name + ' is ' + s.status + ' at epoch ' + s.epoch + (s.error ? ': ' + s.error : '') + '.';
  }

  function announce(s) {
    var text = describe(s);
    if (text === lastText) {
      return;
    }
    lastText = text;
    if (first) {
      first = false; // the page already says it
      return;
    }
    announcer.textContent = text;
  }

  function setLive(on) {
    indicator.hidden = false;
    indicator.classList.toggle('offline', !on);
    indicator.querySelector('.live-text').textContent = on ? 'Live' : 'Reconnecting…';
  }

  // Events are handled at most every 150 ms, the latest one only: a burst
  // of events costs the page one refresh, not one each.
  var latest = null;
  var tick = 0;

  function handle() {
    tick = 0;
    var s;
    try {
      s = JSON.parse(latest);
    } catch (err) {
      return;
    }
    announce(s);
    refresh();
  }

  function connect() {
    if (!window.EventSource) {
      return;
    }
    var es = new EventSource('/api/v1/events');
    es.addEventListener('open', function () { setLive(true); });
    es.addEventListener('status', function (e) {
      latest = e.data;
      if (!tick) {
        tick = setTimeout(handle, first ? 0 : 150);
      }
    });
    es.addEventListener('error', function () {
      setLive(false);
      if (es.readyState === EventSource.CLOSED) {
        // Refused (logged out?) or gone: check, then try again.
        setTimeout(function () {
          refresh();
          connect();
        }, 3000);
      }
    });
    window.addEventListener('pagehide', function () { es.close(); });
  }

  // ---- Messages ---------------------------------------------------------

  function showFlash(kind, text) {
    var div = document.createElement('div');
    div.className = 'flash flash-' + kind;
    div.setAttribute('data-flash', kind);
    var icons = document.getElementById('flash-icons');
    var icon = icons && icons.content.querySelector('[data-kind="' + (kind === 'error' ? 'warn' : kind) + '"] svg');
    if (icon) {
      div.appendChild(icon.cloneNode(true));
    }
    var p = document.createElement('p');
    p.textContent = text;
    div.appendChild(p);
    flashArea.textContent = '';
    flashArea.appendChild(div);
    addCloseButtons(flashArea);
  }

  function addCloseButtons(root) {
    var flashes = root.querySelectorAll('.flash');
    for (var i = 0; i < flashes.length; i++) {
      if (flashes[i].querySelector('.flash-close')) {
        continue;
      }
      var b = document.createElement('button');
      b.type = 'button';
      b.className = 'flash-close';
      b.setAttribute('aria-label', 'Dismiss this message');
      b.textContent = '×';
      flashes[i].appendChild(b);
    }
  }

  document.addEventListener('click', function (e) {
    var close = e.target.closest('.flash-close');
    if (close) {
      close.parentNode.remove();
      return;
    }
    if (e.target.closest('[data-close]')) {
      e.preventDefault();
      dialog.close();
    }
  });

  // ---- Confirmation and actions ------------------------------------------

  function openConfirm(form) {
    var button = form.querySelector('button');
    opener = button ? button.id : null;
    dialogBody.innerHTML = '<p class="muted">Loading…</p>';
    dialog.showModal();
    var url = form.action + (form.action.indexOf('?') < 0 ? '?' : '&') + 'partial=1';
    fetch(url, { credentials: 'same-origin', cache: 'no-store' })
      .then(function (r) {
        if (r.status === 401) {
          toLogin();
          throw new Error('logged out');
        }
        return r.text();
      })
      .then(function (html) {
        dialogBody.innerHTML = html;
        addCloseButtons(dialogBody);
        var focus = dialogBody.querySelector('#force') || dialogBody.querySelector('#reason') || dialogBody.querySelector('button');
        if (focus) {
          focus.focus();
        }
      })
      .catch(function (err) {
        dialogBody.textContent = 'The confirmation could not be loaded: ' + err.message;
      });
  }

  function act(form) {
    var action = form.dataset.action;
    var body = { reason: form.elements.reason.value };
    if (action === 'start') {
      body.force = !!(form.elements.force && form.elements.force.checked);
    }
    var name = form.dataset.node;
    dialog.close();
    acting = true;
    disableActions();
    showFlash('info', (action === 'start' ? 'Starting' : 'Stopping') + ' services on ' + name + '…');
    fetch(form.dataset.api, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrf },
      body: JSON.stringify(body)
    })
      .then(function (r) {
        return r.json().then(
          function (j) { return { status: r.status, body: j }; },
          function () { return { status: r.status, body: {} }; });
      })
      .then(function (res) {
        if (res.status === 401) {
          toLogin();
          return;
        }
        if (res.status === 200) {
          var s = res.body;
          showFlash('ok', 'Services ' + (action === 'start' ? 'started' : 'stopped') + ' on ' + s.name + ': ' + s.status + ' at epoch ' + s.epoch + '.');
          return;
        }
        var err = res.body.error || {};
        var msg = err.message || 'HTTP ' + res.status;
        if (err.code === 'transition_failed' && res.body.status && res.body.status.error) {
          msg = res.body.status.error + '. It may be retried';
        }
        var verb = action === 'start' ? 'Start services' : 'Stop services';
        showFlash(res.status === 409 ? 'warn' : 'error', verb + ' ' + (res.status === 409 ? 'refused' : 'failed') + ': ' + msg + '.');
      })
      .catch(function (err) {
        showFlash('error', 'The request failed (' + err.message + '); the page shows the node as it is now.');
      })
      .then(function () {
        acting = false;
        lastHTML = null; // swap even if nothing changed: the buttons come back
        refresh();
      });
  }

  document.addEventListener('submit', function (e) {
    var form = e.target;
    if (form.matches('form[data-confirm]') && dialog && dialog.showModal) {
      e.preventDefault();
      openConfirm(form);
    } else if (form.matches('form[data-api]') && dialog.contains(form)) {
      e.preventDefault();
      act(form);
    }
  });

  if (dialog) {
    dialog.addEventListener('close', function () {
      var el = opener && document.getElementById(opener);
      if (el && !el.disabled) {
        el.focus();
      }
    });
  }

  connect();
  // Now and then, even with no event: relative times stay right, and a
  // session that ended sends the user to the login form.
  setInterval(refresh, 30000);
})();
