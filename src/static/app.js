// concurrent-socket test client: connect to /ws/chat/{id}, send `message` and `ping`, show
// every server message and the close code. Element ids are listed in index.html.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  let socket = null;
  let nextId = 1;

  // Longer messages are shown cut, so that a huge one does not flood the log.
  const MAX_SHOWN_CHARS = 500;

  function log(kind, text, type) {
    const shown = text.length > MAX_SHOWN_CHARS
      ? `${text.slice(0, MAX_SHOWN_CHARS)}… (${text.length} characters)`
      : text;
    const line = document.createElement('div');
    line.className = kind;
    if (type) line.dataset.type = type;
    line.textContent = `${new Date().toISOString().slice(11, 23)} ${kind === 'in' ? '<-' : kind === 'out' ? '->' : '--'} ${shown}`;
    $('log').append(line);
    $('log').scrollTop = $('log').scrollHeight;
  }

  function setOpen(open) {
    $('connect').disabled = open;
    $('disconnect').disabled = !open;
    $('send-message').disabled = !open;
    $('send-ping').disabled = !open;
  }

  function send(message) {
    const text = JSON.stringify(message);
    socket.send(text);
    log('out', text, message.type);
  }

  $('connect').addEventListener('click', () => {
    const id = $('connection-id').value.trim();
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    socket = new WebSocket(`${scheme}//${location.host}/ws/chat/${encodeURIComponent(id)}`);
    $('state').textContent = 'connecting';
    $('close-code').textContent = '';
    log('meta', `connecting as ${id}`);
    socket.addEventListener('open', () => {
      $('state').textContent = 'open';
      setOpen(true);
      log('meta', 'open');
    });
    socket.addEventListener('message', (event) => {
      let type = '';
      try { type = JSON.parse(event.data).type || ''; } catch { type = 'unparsed'; }
      log('in', typeof event.data === 'string' ? event.data : '[binary]', type);
    });
    socket.addEventListener('close', (event) => {
      $('state').textContent = 'closed';
      $('close-code').textContent = String(event.code);
      setOpen(false);
      log('meta', `closed ${event.code}${event.reason ? ` (${event.reason})` : ''}`);
    });
    socket.addEventListener('error', () => log('meta', 'connection error'));
  });

  $('disconnect').addEventListener('click', () => socket && socket.close(1000, 'bye'));

  $('send-message').addEventListener('click', () => {
    const raw = $('message').value;
    let data;
    try { data = JSON.parse(raw); } catch { data = raw; }
    send({ type: 'message', id: String(nextId++), data });
  });

  $('send-ping').addEventListener('click', () => send({ type: 'ping', id: String(nextId++) }));
})();
