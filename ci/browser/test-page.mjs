// Drives the server's page (GET /) in headless Chromium, as a person would. The console: connect
// with an id, send a message and a ping, disconnect; then send a message far over the server's
// limit and see the server close with 1009. The chat: two pages join one room and see each
// other's messages with who sent them; one drops its connection while the other sends, then
// reconnects by itself and shows that the missed messages came back, in order, none twice;
// it leaves and sees no more. Checks what each page shows against the frames the browser
// really received, and that the page works under the server's strict CSP: no CSP violation,
// console error or page error. Element ids are the ones src/static/index.html lists.
//
//   node test-page.mjs BASE_URL SCREENSHOT.png
//
// Exit status 0 when every check passed, 1 otherwise (each failure printed on its own line).
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';

// playwright-core lives in ci/node/node_modules, which ES module resolution from this folder
// would not find.
const require = createRequire(new URL('../node/package.json', import.meta.url));
const { chromium } = require('playwright-core');

const [baseUrl, screenshotPath] = process.argv.slice(2);
if (!baseUrl || !screenshotPath) {
  console.error('usage: node test-page.mjs BASE_URL SCREENSHOT.png');
  process.exit(2);
}
const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];
const STEP_TIMEOUT_MS = 10_000;
// The page's first reconnect waits 1-2 s (RECONNECT_BASE_MS in src/static/app.js).
const FIRST_RECONNECT_AT_MOST_MS = 2_000;
const CONNECTION_ID = 'browser-ci-1';
const MESSAGE_DATA = { hello: 'browser', n: [1, 2.5, null] };
// Far over the MAX_MESSAGE_BYTES the suite starts the server with (ci/suites/21-browser.sh).
const OVERSIZED_BYTES = 1024 * 1024;

const failures = [];
const check = (ok, what) => {
  if (!ok) failures.push(what);
};

const profile = mkdtempSync(path.join(tmpdir(), 'cs-chromium-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  headless: true,
  args: CHROMIUM_ARGS,
  viewport: { width: 1000, height: 700 },
});
try {
  const page = context.pages()[0] ?? await context.newPage();
  page.setDefaultTimeout(STEP_TIMEOUT_MS);
  const watch = await watchPage(page);
  await openPage(page);
  await exchange(page);
  await serverClose(page);
  await page.screenshot({ path: screenshotPath, fullPage: true });
  await checkWatched(page, watch);
  await chat(context);
} catch (error) {
  failures.push(`the page flow broke off: ${error.message.split('\n')[0]}`);
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}

for (const failure of failures) console.log(`FAIL ${failure}`);
process.exit(failures.length === 0 ? 0 : 1);

// Records console errors and warnings, page errors, CSP violations (seen by the page itself,
// so blocked inline scripts or styles count too) and every WebSocket frame the browser receives.
async function watchPage(page) {
  const watch = { problems: [], received: [] };
  page.on('console', (msg) => {
    if (msg.type() === 'error' || msg.type() === 'warning') {
      watch.problems.push(`console ${msg.type()}: ${msg.text()} (${msg.location().url || 'no url'})`);
    }
  });
  page.on('pageerror', (error) => watch.problems.push(`page error: ${error.message}`));
  await page.addInitScript(() => {
    window.cspViolations = [];
    document.addEventListener('securitypolicyviolation', (e) =>
      window.cspViolations.push(`${e.violatedDirective} blocked ${e.blockedURI || 'inline'}`));
  });
  page.on('websocket', (ws) => ws.on('framereceived', ({ payload }) => watch.received.push(JSON.parse(payload))));
  return watch;
}

async function openPage(page) {
  const response = await page.goto(`${baseUrl}/`);
  check(response.status() === 200, `GET / answered ${response.status()}`);
  const csp = response.headers()['content-security-policy'] ?? '';
  check(csp.includes("default-src 'none'") || csp.includes("default-src 'self'"), `weak or missing CSP: "${csp}"`);
  console.log(`RESULT browser: page served with Content-Security-Policy: ${csp}`);
}

// Connect, send a message and a ping, see their answers, disconnect (1000).
async function exchange(page) {
  await connectAs(page, CONNECTION_ID);
  const established = await shownMessage(page, 'connection_established');
  check(established.connectionId === CONNECTION_ID, `connection_established for ${established.connectionId}`);
  check(typeof established.serverId === 'string' && established.serverId.length > 0, 'no serverId shown');

  await page.fill('#message', JSON.stringify(MESSAGE_DATA));
  await page.click('#send-message');
  const answer = await shownMessage(page, 'message_response');
  check(answer.id === '1', `message_response id ${answer.id}, expected "1"`);
  check(JSON.stringify(answer.data) === JSON.stringify(MESSAGE_DATA),
    `message_response data ${JSON.stringify(answer.data)}`);

  await page.click('#send-ping');
  const pong = await shownMessage(page, 'pong');
  check(pong.id === '2', `pong id ${pong.id}, expected "2"`);

  await page.click('#disconnect');
  await expectText(page, '#state', 'closed');
  await expectText(page, '#close-code', '1000');
}

// A server-side close: a message far over MAX_MESSAGE_BYTES ends with goodbye and 1009.
async function serverClose(page) {
  await connectAs(page, `${CONNECTION_ID}-large`);
  await page.fill('#message', 'x'.repeat(OVERSIZED_BYTES));
  await page.click('#send-message');
  await expectText(page, '#state', 'closed');
  await expectText(page, '#close-code', '1009');
  const goodbye = await shownMessage(page, 'goodbye');
  check(goodbye.reason === 'message_too_large', `goodbye reason ${goodbye.reason}`);
}

// What the page showed is exactly what the browser received, and nothing went wrong on the way.
async function checkWatched(page, watch, what = 'console page') {
  const types = await shownMatchesReceived(page, watch);
  console.log(`RESULT browser: ${what} received and shown ${types.join(', ')}; closed with 1000, then 1009`);
  await checkClean(page, watch, what);
}

async function shownMatchesReceived(page, { received }) {
  const shown = await page.$$eval('#log .in', (lines) => lines.map((l) => l.dataset.type));
  const types = received.map((m) => m.type);
  check(JSON.stringify(shown) === JSON.stringify(types),
    `the page shows ${JSON.stringify(shown)} but the browser received ${JSON.stringify(types)}`);
  return types;
}

async function checkClean(page, { problems }, what) {
  const violations = await page.evaluate(() => window.cspViolations);
  check(violations.length === 0, `${what}: CSP violations: ${violations.join('; ')}`);
  check(problems.length === 0, `${what}: console: ${problems.join('; ')}`);
  console.log(`RESULT browser: ${what}: ${violations.length} CSP violations, ${problems.length} console errors or warnings`);
}

// Two pages in one room see each other's messages; a drop and the recovery; leaving.
async function chat(context) {
  const room = `room:ci-${Date.now()}`;
  // The pages' timers run on Playwright's clock, so that the test decides when alice's page
  // reconnects: driving the browser can take seconds on a busy machine, longer than the drop.
  await context.clock.install();
  const [alice, bob] = [await context.newPage(), await context.newPage()];
  const watches = [];
  for (const [page, id] of [[alice, 'chat-alice'], [bob, 'chat-bob']]) {
    page.setDefaultTimeout(STEP_TIMEOUT_MS);
    watches.push(await watchPage(page));
    await openPage(page);
    await connectAs(page, id);
    await page.fill('#room', room);
    await page.click('#join');
    await expectText(page, '#chat-state', `in ${room}`);
  }
  await say(alice, 'hello from alice');
  await say(bob, 'hi alice, bob here');
  const both = [await chatShown(alice, 2), await chatShown(bob, 2)];
  const expected = [[1, 'chat-alice', 'chat-alice', 'hello from alice'], [2, 'chat-bob', 'chat-bob', 'hi alice, bob here']];
  for (const shown of both) check(same(shown, expected), `the room shows ${JSON.stringify(shown)}, expected ${JSON.stringify(expected)}`);

  // Alice's connection drops; bob talks on while her page's clock stands still; then her clock
  // runs past the reconnect delay, and her page reconnects by itself and recovers.
  await context.clock.pauseAt(Date.now() + 1_000);
  await alice.click('#drop');
  await expectText(alice, '#state', 'reconnecting');
  await say(bob, 'are you there?');
  await say(bob, 'you missed this');
  await chatShown(bob, 4);
  check(await alice.textContent('#state') === 'reconnecting', 'alice reconnected while her clock stood still');
  await context.clock.runFor(FIRST_RECONNECT_AT_MOST_MS);
  await context.clock.resume();
  await expectText(alice, '#chat-state', `in ${room}`);
  await expectText(alice, '#recovery', '2 missed messages came back');
  await say(bob, 'welcome back');
  const after = [await chatShown(alice, 5), await chatShown(bob, 5)];
  check(same(after[0], after[1]) && after[0].map((m) => m[0]).join() === '1,2,3,4,5',
    `after the recovery alice shows ${JSON.stringify(after[0])}, bob ${JSON.stringify(after[1])}`);

  await alice.click('#leave');
  await expectText(alice, '#chat-state', `left ${room}`);
  await say(bob, 'bye');
  await chatShown(bob, 6);
  check((await chatShown(alice, 5)).length === 5, 'alice left but still got a message');
  await alice.screenshot({ path: screenshotPath.replace(/\.png$/, '-chat.png'), fullPage: true });
  console.log(`RESULT browser: chat: 2 pages in ${room} saw each other's messages; alice dropped, missed 2, ` +
    `recovered both in order (offsets ${after[0].map((m) => m[0]).join(',')}); after leaving she got none`);
  for (const [i, page] of [alice, bob].entries()) {
    await shownMatchesReceived(page, watches[i]);
    await checkClean(page, watches[i], `chat page ${i === 0 ? 'alice' : 'bob'}`);
  }
}

function same(a, b) {
  return JSON.stringify(a) === JSON.stringify(b);
}

async function say(page, text) {
  await page.fill('#chat-text', text);
  await page.click('#chat-send');
}

// The room's messages as the page shows them once it shows at least `count`:
// [offset, data-from, shown sender, text].
async function chatShown(page, count) {
  await page.waitForFunction((n) => document.querySelectorAll('#chat-messages .chat-message').length >= n, count)
    .catch(() => { throw new Error(`fewer than ${count} chat messages shown`); });
  return page.$$eval('#chat-messages .chat-message', (lines) => lines.map((l) => [
    Number(l.dataset.offset), l.dataset.from, l.querySelector('.from').textContent, l.querySelector('.text').textContent]));
}

async function connectAs(page, id) {
  await page.fill('#connection-id', id);
  await page.click('#connect');
  await expectText(page, '#state', 'open');
}

async function expectText(page, selector, text) {
  await page.waitForFunction(([s, t]) => document.querySelector(s)?.textContent === t, [selector, text])
    .catch(async () => {
      throw new Error(`${selector} shows "${await page.textContent(selector)}", expected "${text}"`);
    });
}

// The server message of this type as the page shows it (the JSON after the arrow).
async function shownMessage(page, type) {
  const line = page.locator(`#log .in[data-type="${type}"]`).last();
  await line.waitFor();
  const text = await line.textContent();
  return JSON.parse(text.slice(text.indexOf('{')));
}
