// concurrent-socket chat and protocol console: one connection to /ws/chat/{id}; the chat
// joins a room (subscribe), shows its publications with who sent them, sends (publish) and
// leaves (unsubscribe); after a drop it reconnects and rejoins with `recover` from the last
// offset it showed, so the missed messages come back in order. The console shows every frame
// and sends raw `message` and `ping` requests. Element ids are listed in index.html.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);

  // Longer messages are shown cut, so that a huge one does not flood the log.
  const MAX_SHOWN_CHARS = 500;
  // Reconnects wait 1-2 s, then twice as long each failed attempt (up to 30-60 s): random
  // within each step, so that the clients of a server that went away do not all come back at once.
  const RECONNECT_BASE_MS = 1000;
  const RECONNECT_MAX_MS = 30000;
  // Client close code of the Drop button: the page takes it for a network failure.
  const DROP_CODE = 4000;

  let socket = null;
  let nextId = 1;
  let established = false;
  let userClosed = false; // Disconnect: no reconnect
  let serverSaysStay = false; // a goodbye with reconnect: false
  let reconnectAttempt = 0;
  let reconnectTimer = null;

  // The room: its name, the epoch and newest offset shown, whether the subscription is live,
  // and the id of the pending subscribe.
  const room = { name: null, epoch: null, offset: 0, live: false, pendingJoin: null };

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

  function render() {
    const open = socket !== null && socket.readyState === WebSocket.OPEN;
    $('connect').disabled = socket !== null || reconnectTimer !== null;
    $('disconnect').disabled = !open && reconnectTimer === null;
    $('drop').disabled = !open;
    $('send-message').disabled = !open;
    $('send-ping').disabled = !open;
    $('join').disabled = !established || room.name !== null;
    $('leave').disabled = !established || !room.live;
    $('chat-send').disabled = !established || !room.live;
  }

  function send(message) {
    const text = JSON.stringify(message);
    socket.send(text);
    log('out', text, message.type);
  }

  const request = (message) => send({ ...message, id: String(nextId++) });

  function chatLine(className, text) {
    const line = document.createElement('li');
    line.className = className;
    line.textContent = text;
    $('chat-messages').append(line);
    $('chat-messages').scrollTop = $('chat-messages').scrollHeight;
    return line;
  }

  /** One publication of the room, shown once and in offset order. */
  function showPublication({ offset, data, from, user }, recovered = false) {
    const line = chatLine(recovered ? 'chat-message recovered' : 'chat-message', '');
    line.dataset.offset = String(offset);
    line.dataset.from = from;
    const who = document.createElement('span');
    who.className = 'from';
    who.textContent = user ?? from;
    const text = document.createElement('span');
    text.className = 'text';
    text.textContent = typeof data?.text === 'string' ? data.text : JSON.stringify(data);
    line.append(who, text);
    room.offset = offset;
  }

  function subscribe(recover) {
    const id = String(nextId++);
    room.pendingJoin = id;
    send(recover ? { type: 'subscribe', channel: room.name, id, recover } : { type: 'subscribe', channel: room.name, id });
  }

  /** Subscribes again from the last offset shown (after a reconnect or insufficient_state). */
  function rejoin() {
    room.live = false;
    $('chat-state').textContent = `rejoining ${room.name}`;
    subscribe(room.epoch === null ? undefined : { offset: room.offset, epoch: room.epoch });
  }

  function onSubscribed(message) {
    room.pendingJoin = null;
    room.live = true;
    $('chat-state').textContent = `in ${room.name}`;
    if (message.recovered === undefined) {
      room.offset = message.offset;
    } else if (message.recovered && message.epoch === room.epoch) {
      const n = message.publications.length;
      message.publications.forEach((p) => showPublication(p, true));
      $('recovery').textContent = `${n} missed message${n === 1 ? '' : 's'} came back`;
    } else {
      chatLine('chat-gap', 'history no longer holds what was missed: messages may be lost here');
      $('recovery').textContent = 'the missed messages could not be recovered';
      room.offset = message.offset;
    }
    room.epoch = message.epoch;
  }

  function onPublication(message) {
    if (message.channel !== room.name || !room.live || message.offset <= room.offset) return;
    if (message.offset === room.offset + 1) {
      showPublication(message);
    } else {
      rejoin(); // a gap: never expected, but never shown as if nothing was missed
    }
  }

  function onUnsubscribed(message) {
    if (message.channel !== room.name) return;
    if (message.reason) {
      rejoin(); // insufficient_state: the server could not exclude a gap
    } else {
      $('chat-state').textContent = `left ${room.name}`;
      room.name = null;
      room.live = false;
    }
  }

  function onError(message) {
    if (message.id !== undefined && message.id === room.pendingJoin) {
      $('chat-state').textContent = `could not join ${room.name}: ${message.code}`;
      room.name = null;
      room.pendingJoin = null;
    } else if (room.name !== null) {
      chatLine('chat-error', `${message.code}: ${message.message}`);
    }
  }

  function onServerMessage(message) {
    switch (message.type) {
      case 'connection_established':
        established = true;
        reconnectAttempt = 0;
        if (room.name !== null) rejoin();
        break;
      case 'subscribed':
        if (message.channel === room.name) onSubscribed(message);
        break;
      case 'publication':
        onPublication(message);
        break;
      case 'unsubscribed':
        onUnsubscribed(message);
        break;
      case 'error':
        onError(message);
        break;
      case 'goodbye':
        serverSaysStay = message.reconnect === false;
        break;
      default:
    }
  }

  function scheduleReconnect() {
    const step = Math.min(RECONNECT_BASE_MS * 2 ** reconnectAttempt, RECONNECT_MAX_MS);
    const delay = step + Math.random() * step;
    reconnectAttempt += 1;
    $('state').textContent = 'reconnecting';
    $('chat-state').textContent = `rejoining ${room.name} in ${(delay / 1000).toFixed(1)} s`;
    log('meta', `reconnecting in ${Math.round(delay)} ms`);
    reconnectTimer = setTimeout(() => {
      reconnectTimer = null;
      connect();
    }, delay);
  }

  function connect() {
    const id = $('connection-id').value.trim();
    const token = $('token').value.trim();
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    socket = new WebSocket(`${scheme}//${location.host}/ws/chat/${encodeURIComponent(id)}`);
    established = false;
    userClosed = false;
    serverSaysStay = false;
    $('state').textContent = 'connecting';
    $('close-code').textContent = '';
    log('meta', `connecting as ${id}`);
    socket.addEventListener('open', () => {
      $('state').textContent = 'open';
      if (token) {
        socket.send(JSON.stringify({ type: 'authenticate', token }));
        log('out', '{"type":"authenticate","token":"(hidden)"}', 'authenticate');
      }
      render();
      log('meta', 'open');
    });
    socket.addEventListener('message', (event) => {
      let message = null;
      try { message = JSON.parse(event.data); } catch { message = null; }
      log('in', typeof event.data === 'string' ? event.data : '[binary]', message?.type || 'unparsed');
      if (message) onServerMessage(message);
      render();
    });
    socket.addEventListener('close', (event) => {
      socket = null;
      established = false;
      room.live = false;
      $('state').textContent = 'closed';
      $('close-code').textContent = String(event.code);
      log('meta', `closed ${event.code}${event.reason ? ` (${event.reason})` : ''}`);
      if (room.name !== null && !userClosed && !serverSaysStay) scheduleReconnect();
      else if (room.name !== null) $('chat-state').textContent = `left ${room.name}`;
      render();
    });
    socket.addEventListener('error', () => log('meta', 'connection error'));
    render();
  }

  $('connect').addEventListener('click', connect);

  $('disconnect').addEventListener('click', () => {
    userClosed = true;
    if (reconnectTimer !== null) {
      clearTimeout(reconnectTimer);
      reconnectTimer = null;
      $('state').textContent = 'closed';
      $('chat-state').textContent = `left ${room.name}`;
      room.name = null;
    }
    if (socket) socket.close(1000, 'bye');
    render();
  });

  $('drop').addEventListener('click', () => socket && socket.close(DROP_CODE, 'dropped on purpose'));

  $('join').addEventListener('click', () => {
    const name = $('room').value.trim();
    if (name !== room.name || room.epoch === null) $('chat-messages').replaceChildren();
    if (name !== room.name) Object.assign(room, { epoch: null, offset: 0 });
    room.name = name;
    $('recovery').textContent = '';
    $('chat-state').textContent = `joining ${name}`;
    subscribe();
    render();
  });

  $('leave').addEventListener('click', () => request({ type: 'unsubscribe', channel: room.name }));

  function sendChat() {
    const text = $('chat-text').value;
    if (!text || $('chat-send').disabled) return;
    request({ type: 'publish', channel: room.name, data: { text } });
    $('chat-text').value = '';
  }
  $('chat-send').addEventListener('click', sendChat);
  $('chat-text').addEventListener('keydown', (event) => {
    if (event.key === 'Enter') sendChat();
  });

  $('send-message').addEventListener('click', () => {
    const raw = $('message').value;
    let data;
    try { data = JSON.parse(raw); } catch { data = raw; }
    request({ type: 'message', data });
  });

  $('send-ping').addEventListener('click', () => request({ type: 'ping' }));
})();
