// The console in a real headless Chromium, against a running sipscreen (started by
// tests/console.rs, which also places the SIPp call this script asks for).
//
// Environment: CONSOLE_URL (the console, http://127.0.0.1:PORT/), CONSOLE_TOKEN (an admin
// token), CONSOLE_SIGNAL_DIR (where the test puts `call-placed` once the call is done),
// CONSOLE_SCREENSHOTS (where each view's screenshot goes), CONSOLE_DIALED (the number the
// call dials), and optionally CONSOLE_LOCAL_URL (the console of a sipscreen whose loopback
// admin listener has no tokens). Prints `console-e2e: call now` when the call is to be placed. Exits 0 when
// every check passed; 1 with the reason otherwise.

import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const BASE = env('CONSOLE_URL');
const TOKEN = env('CONSOLE_TOKEN');
const SIGNAL_DIR = env('CONSOLE_SIGNAL_DIR');
const SHOTS = env('CONSOLE_SCREENSHOTS');
const DIALED = env('CONSOLE_DIALED');
/** A second sipscreen whose admin listener has no tokens, if given. */
const LOCAL = process.env.CONSOLE_LOCAL_URL;
const PERMISSION = 'console-no-mobiles';

/** The whole run is bounded, whatever hangs. */
const LIMIT_MS = 150_000;
setTimeout(() => {
  console.error(`console-e2e: not done within ${LIMIT_MS / 1000} s`);
  process.exit(1);
}, LIMIT_MS).unref();

let passed = 0;
function check(condition, what) {
  if (!condition) throw new Error(`failed: ${what}`);
  passed += 1;
  console.log(`ok ${passed} - ${what}`);
}

/** The API itself, to see what the console's clicks did. */
async function api(path) {
  const res = await fetch(new URL(path, BASE), {
    headers: { 'X-Auth-Token': TOKEN, 'Wazo-Tenant': 'acme' },
  });
  return { status: res.status, body: res.status === 200 ? await res.json() : await res.text() };
}

async function waitForFile(path, ms) {
  const end = Date.now() + ms;
  while (!existsSync(path)) {
    if (Date.now() > end) throw new Error(`${path} did not appear within ${ms / 1000} s`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

// Errors the browser logs for HTTP answers this run provokes on purpose: the first request
// without a token (401), a wrong token (401), a refused change (400), and /metrics where it is
// not served (404). Any other console error or page error fails the run.
const provoked = [];
const provoke = (status, path) => provoked.push({ status, path });
const errors = [];

await mkdir(SHOTS, { recursive: true });
const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
});
try {
  const context = await browser.newContext({
    viewport: { width: 1360, height: 820 },
    colorScheme: 'light',
    reducedMotion: 'reduce',
  });
  const page = await context.newPage();
  page.setDefaultTimeout(10_000);
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push({ text: m.text(), url: m.location().url ?? '' });
  });
  page.on('pageerror', (e) => errors.push({ text: `page error: ${e.message}`, url: '' }));
  const shot = async (name) => {
    await page.screenshot({ path: join(SHOTS, `${name}.png`) });
    console.log(`screenshot ${name}.png`);
  };
  const view = async (name) => {
    await page.getByRole('navigation', { name: 'Views' }).getByRole('link', { name }).click();
    await page.getByRole('heading', { level: 1, name }).waitFor();
    await labelled(name);
  };
  // Every control has an accessible name: a label, aria-label or its text.
  const labelled = async (where) => {
    const nameless = await page.evaluate(() =>
      [...document.querySelectorAll('input, select, textarea, button, a[href]')]
        .filter((el) => {
          if (el.closest('[hidden]')) return false;
          const aria = el.getAttribute('aria-label') || el.getAttribute('aria-labelledby');
          const labels = 'labels' in el && el.labels ? el.labels.length : 0;
          const text = ['BUTTON', 'A'].includes(el.tagName) ? el.textContent.trim() : '';
          return !aria && !labels && !text;
        })
        .map((el) => el.outerHTML.slice(0, 120)),
    );
    check(nameless.length === 0, `${where}: every control has a name ${nameless.join(' ')}`);
  };

  // Log in: the page loads without a token, finds the API wants one, and asks.
  provoke(401, '/1.1/tenants');
  await page.goto(BASE);
  await page.getByRole('heading', { name: 'sipscreen console' }).waitFor();
  const tokenField = page.getByLabel('Admin token');
  check(await tokenField.isVisible(), 'the login asks for a token after a 401');
  await shot('login');
  await tokenField.fill('not-the-token');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.locator('#token-error').waitFor();
  check(
    (await page.locator('#token-error').textContent()).includes('not accepted'),
    'a wrong token is refused at the field',
  );
  await page.getByLabel('Admin token').fill(TOKEN);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('navigation', { name: 'Views' }).waitFor();
  check(
    (await page.evaluate(() => sessionStorage.getItem('sipscreen.token'))) === TOKEN,
    'the token is kept in sessionStorage',
  );

  // Keyboard: a view opens with the focus on its title; before it, in order, come the skip
  // link, the tenant, sign-out and the views (walked back with Shift+Tab), and the skip link
  // leads back to the title.
  await page.getByRole('heading', { level: 1, name: 'Users' }).waitFor();
  const focused = () =>
    page.evaluate(() => {
      const el = document.activeElement;
      return (el?.labels?.[0]?.textContent ?? el?.textContent ?? '').trim();
    });
  check((await focused()) === 'Users', "the view's title has the focus");
  const stops = [];
  for (let i = 0; i < 15 && stops[0] !== 'Skip to content'; i++) {
    await page.keyboard.press('Shift+Tab');
    stops.unshift(await focused());
  }
  const order = ['Skip to content', 'Tenant', 'Sign out', 'Users', 'Call permissions', 'Call ACLs',
    'ACL patterns', 'Test a call', 'Live decisions', 'Health'];
  check(JSON.stringify(stops) === JSON.stringify(order), `the focus order: ${stops.join(' → ')}`);
  await page.keyboard.press('Enter');
  check((await focused()) === 'Users', 'the skip link leads to the title');

  // Several tenants: a selector, and every request names the chosen one.
  const tenantSelect = page.getByLabel('Tenant');
  check((await tenantSelect.locator('option').count()) === 2, 'a tenant selector lists both tenants');
  await tenantSelect.selectOption('acme');

  // Users: rights at a glance, bob's ACL rules in metric order.
  await page.getByRole('heading', { level: 1, name: 'Users' }).waitFor();
  await labelled('Users');
  const rows = page.locator('table.users tbody > tr');
  await rows.filter({ hasText: 'alice' }).first().waitFor();
  check((await rows.filter({ hasText: '1001' }).count()) === 1, 'alice (1001) is listed');
  await page.getByRole('button', { name: 'bob' }).click();
  const detail = page.locator('tr.detail');
  await detail.waitFor();
  const rules = await detail.locator('ol.rules li').allTextContents();
  check(
    rules.length === 3 && rules[0].includes('spain-premium') && rules[1].includes('spain-mobile'),
    `bob's ACL rules in metric order: ${rules.join(' | ')}`,
  );
  check((await detail.textContent()).includes('no-international'), "bob's group permission is shown");
  await page.getByLabel('Search').fill('100');
  check((await rows.filter({ hasText: 'alice' }).count()) === 1, 'search by extension');
  await page.getByLabel('Search').fill('');
  await shot('users');

  // Create a deny permission and give it to alice.
  await view('Call permissions');
  await page.getByRole('button', { name: 'New call permission' }).click();
  const editor = page.locator('section.editor');
  await editor.getByLabel('Name').fill(PERMISSION);
  await editor.getByLabel('Extensions').fill('_6XXXXXXXX');
  await editor.getByLabel('Description').fill('No mobile calls');
  await editor.getByRole('group', { name: /^Users/ }).getByLabel(/alice/).check();
  await editor.getByRole('button', { name: 'Create' }).click();
  await editor.getByRole('heading', { name: `Call permission “${PERMISSION}”` }).waitFor();
  check(
    (await page.getByRole('status').filter({ hasText: 'Saved' }).textContent()).includes(PERMISSION),
    'the new permission is saved',
  );
  const created = await api(`/1.1/callpermissions/${PERMISSION}`);
  check(
    created.status === 200 && created.body.mode === 'deny' && created.body.users.includes('alice'),
    `the API has it, for alice: ${JSON.stringify(created.body)}`,
  );
  await labelled('Call permissions editor');
  await shot('permissions');

  // An invalid extension: the API's error, at the field.
  await page.getByRole('button', { name: 'New call permission' }).click();
  await editor.getByLabel('Name').fill('console-bad');
  await editor.getByLabel('Extensions').fill('not valid!');
  provoke(400, '/1.1/callpermissions');
  await editor.getByRole('button', { name: 'Create' }).click();
  const extensionError = editor.locator('#perm-extensions-error');
  await extensionError.waitFor();
  const message = await extensionError.textContent();
  check(
    message.startsWith('extensions[0]:') && message.includes('not valid!'),
    `the API's error is at the Extensions field: ${message}`,
  );
  check(
    (await editor.getByLabel('Extensions').getAttribute('aria-invalid')) === 'true' &&
      (await editor.getByLabel('Extensions').getAttribute('aria-describedby')).includes('perm-extensions-error'),
    'the field is marked invalid and described by its error',
  );
  check(
    await page.evaluate(() => document.activeElement?.id === 'perm-extensions'),
    'the field in error has the focus',
  );
  check((await api('/1.1/callpermissions/console-bad')).status === 404, 'nothing was created');
  await shot('permission-error');

  // Test a call: alice dialing a mobile is denied by the new permission.
  await view('Test a call');
  await page.getByRole('textbox', { name: 'Caller' }).fill('1001');
  await page.getByRole('textbox', { name: 'Dialed' }).fill(DIALED);
  await page.getByRole('button', { name: 'Check' }).click();
  const result = page.locator('article.result');
  await result.waitFor();
  check((await result.locator('.verdict .badge').textContent()) === 'deny', 'the decision is deny');
  check((await result.locator('dd.rule').textContent()) === PERMISSION, "the rule is the new permission's");
  const decided = result.locator('li.decided');
  check(
    (await decided.count()) === 1 && (await decided.textContent()).includes(PERMISSION),
    'the trace marks the permission that decided',
  );
  await shot('check');

  // Live decisions: the same call placed for real shows up by itself.
  await view('Live decisions');
  await page.locator('.feed-state.open').waitFor();
  console.log('console-e2e: call now');
  await waitForFile(join(SIGNAL_DIR, 'call-placed'), 60_000);
  const row = page.locator('table.live tbody tr').filter({ hasText: DIALED }).filter({ hasText: 'alice' });
  await row.first().waitFor();
  const rowText = await row.first().textContent();
  check(rowText.includes('deny') && rowText.includes(PERMISSION) && rowText.includes('alice'), `the live table shows the refused call: ${rowText}`);
  await shot('live');
  await page.getByLabel('Filter').fill('nothing-matches-this');
  check((await row.count()) === 0, 'the filter hides what does not match');
  await page.getByLabel('Filter').fill(PERMISSION);
  check((await row.count()) === 1, 'the filter keeps what matches');
  await row.first().locator('td').nth(2).click();
  await page.getByRole('heading', { level: 1, name: 'Test a call' }).waitFor();
  await result.waitFor();
  check(
    // The caller as the proxy identified it (alice's extension, from the From header).
    (await page.getByRole('textbox', { name: 'Caller' }).inputValue()) === '1001' &&
      (await page.getByRole('textbox', { name: 'Dialed' }).inputValue()) === DIALED &&
      (await result.locator('.verdict .badge').textContent()) === 'deny',
    'a row opens the same call in Test a call',
  );

  // Call ACLs and their patterns.
  await view('Call ACLs');
  await page.getByRole('button', { name: 'spain-only' }).click();
  await page.getByRole('heading', { name: 'Call ACL “spain-only”' }).waitFor();
  check(
    (await page.getByLabel('Rule 1 metric').inputValue()) === '5' &&
      (await page.getByLabel('Rule 2 metric').inputValue()) === '10',
    'the ACL editor lists the rules by metric',
  );
  await labelled('Call ACL editor');
  // A rule added at the end, and alice given the ACL: both in force after one Save.
  await page.getByRole('button', { name: 'Add a rule' }).click();
  await page.getByLabel('Rule 3 pattern').selectOption('head-office');
  await page.getByLabel('Rule 3 action').selectOption('allow');
  await page.locator('section.editor').getByRole('group', { name: /^Users with this ACL/ }).getByLabel(/alice/).check();
  await page.locator('section.editor').getByRole('button', { name: 'Save' }).click();
  await page.getByRole('status').filter({ hasText: 'Saved Call ACL “spain-only”' }).waitFor();
  const acl = await api('/1.1/callacls/spain-only');
  const alice = await api('/1.1/users/alice');
  const added = acl.body.rules.at(-1);
  check(
    added.metric === 20 && added.pattern === 'head-office' && added.action === 'allow' &&
      acl.body.rules.length === 3 && alice.body.call_acl === 'spain-only',
    `the ACL got its rule and alice: ${JSON.stringify(acl.body.rules)}, alice's ACL ${alice.body.call_acl}`,
  );
  await shot('acls');
  await view('ACL patterns');
  const patterns = await page.locator('table.grid tbody').textContent();
  check(patterns.includes('head-office') && patterns.includes('spain-mobile'), 'tenant and brand patterns are listed');
  // A tenant pattern created, then deleted (two steps).
  await page.getByRole('button', { name: 'New ACL pattern' }).click();
  await page.locator('section.editor').getByLabel('Name').fill('france');
  await page.getByLabel('Regular expression', { exact: true }).fill('^33');
  await page.locator('section.editor').getByRole('button', { name: 'Create' }).click();
  await page.getByRole('heading', { name: 'Tenant ACL pattern “france”' }).waitFor();
  check((await api('/1.1/aclpatterns/france')).body.regex === '^33', 'a tenant pattern is created');
  await page.getByRole('button', { name: 'Delete…' }).click();
  await page.getByRole('button', { name: 'Delete “france”' }).click();
  await page.getByRole('status').filter({ hasText: 'Deleted ACL pattern “france”' }).waitFor();
  check((await api('/1.1/aclpatterns/france')).status === 404, 'and deleted');
  await page.getByRole('button', { name: 'spain-mobile' }).click();
  check(
    (await page.getByLabel('Regular expression', { exact: true }).inputValue()) === '^34[67][0-9]{8}$',
    'the pattern editor shows the regex',
  );
  await labelled('ACL pattern editor');
  await shot('patterns');

  // Health: charts from /metrics, or a plain word that it is not served.
  const metrics = await fetch(new URL('/metrics', BASE), { headers: { 'X-Auth-Token': TOKEN } });
  if (metrics.status === 404) {
    provoke(404, '/metrics');
    await view('Health');
    await page.getByText('does not serve /metrics').waitFor();
    check(true, 'Health says plainly that /metrics is not served');
    // The charts, from an exposition of the same families served in its place: counters that
    // grow by about `rate` a second (a poll every 2 s), unevenly but never backwards.
    let polls = 0;
    const count = (n, rate) => Math.round(2 * rate * (n + 0.5 * Math.sin(n)));
    await page.route('**/metrics', (route) => {
      polls += 1;
      const n = polls;
      route.fulfill({
        status: 200,
        contentType: 'text/plain; version=0.0.4',
        body: [
          '# TYPE sipscreen_decisions_total counter',
          `sipscreen_decisions_total{tenant="acme",call="external",decision="allow",stage="none"} ${count(n, 24)}`,
          `sipscreen_decisions_total{tenant="acme",call="internal",decision="allow",stage="none"} ${count(n, 9)}`,
          `sipscreen_decisions_total{tenant="acme",call="external",decision="deny",stage="call_permission"} ${count(n, 5)}`,
          `sipscreen_decisions_total{tenant="acme",call="external",decision="challenge",stage="call_permission"} ${count(n, 1)}`,
          '# TYPE sipscreen_refusals_total counter',
          `sipscreen_refusals_total{reason="admission"} ${count(n, 2)}`,
          `sipscreen_refusals_total{reason="rate_limit"} ${count(n, 1)}`,
          `sipscreen_refusals_total{reason="malformed"} ${count(n, 0.3)}`,
          '# TYPE sipscreen_transactions gauge',
          `sipscreen_transactions ${Math.round(40 + 12 * Math.sin(n / 2))}`,
          '# TYPE sipscreen_dialogs gauge',
          `sipscreen_dialogs ${Math.round(120 + 25 * Math.sin(n / 3))}`,
        ].join('\n'),
      });
    });
    await page.getByRole('button', { name: 'Try again' }).click();
  } else {
    await view('Health');
  }
  await page.waitForFunction(() => document.querySelectorAll('.chart polyline').length >= 3, null, {
    timeout: 15_000,
  });
  const legend = await page.locator('.chart').first().textContent();
  check(legend.includes('deny') && legend.includes('allow'), `the decisions chart has its legend: ${legend}`);
  await page.waitForTimeout(9_000); // a few more points, for the picture
  await shot('health');
  await labelled('Health');

  // Sign out: the token is forgotten.
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByLabel('Admin token').waitFor();
  check((await page.evaluate(() => sessionStorage.getItem('sipscreen.token'))) === null, 'signing out forgets the token');

  // On a loopback listener without tokens, the console asks for nothing.
  if (LOCAL) {
    await page.goto(LOCAL);
    await page.getByRole('heading', { level: 1, name: 'Users' }).waitFor();
    check(
      (await page.getByText('Local administration').isVisible()) && (await page.getByLabel('Admin token').count()) === 0,
      'without tokens, no login: local administration',
    );
  }

  const unexpected = errors.filter((e) => {
    const status = Number(/status of (\d{3})/.exec(e.text)?.[1]);
    const path = e.url ? new URL(e.url).pathname : '';
    return !provoked.some((p) => p.status === status && path === p.path);
  });
  check(unexpected.length === 0, `no console errors ${JSON.stringify(unexpected)}`);
  console.log(`console-e2e: ${passed} passed, 0 failed`);
} catch (e) {
  console.error(`console-e2e: ${e.stack ?? e}`);
  console.error(`console errors so far: ${JSON.stringify(errors)}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
