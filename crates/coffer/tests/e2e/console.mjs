// Coffer's console in headless Chromium (Debian's, driven by playwright-core). The Rust test
// `console` starts Coffer, the OpenID provider and mail over SMTP, then runs this script; any
// failed expectation exits non-zero with the reason. Screenshots go to $ARTIFACTS.
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import { accessible, browser, expect, shot } from './browser.mjs';

const { BASE, PASSWORD, EXPECTED_SHA256, LISTENER_PORT } = process.env;

// The first line an SMTP listener sends on the port.
function smtpGreeting(port) {
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(port), '127.0.0.1');
    socket.setTimeout(10000, () => { socket.destroy(); reject(new Error('no greeting')); });
    socket.once('data', (data) => { socket.end('QUIT\r\n'); resolve(data.toString()); });
    socket.once('error', reject);
  });
}
async function fresh() {
  const context = await browser.newContext({ acceptDownloads: true, viewport: { width: 1366, height: 900 } });
  const page = await context.newPage();
  page.on('dialog', (d) => { throw new Error(`a dialog opened: ${d.message()}`); });
  return { context, page };
}

try {
  // Local sign-in on the sign-on form.
  {
    const { context, page } = await fresh();
    await page.goto(`${BASE}/search`);
    expect(page.url().startsWith(`${BASE}/signon`), 'an anonymous visitor is sent to the sign-on form');
    await shot(page, 'signon');
    await page.fill('input[name=login]', 'admin');
    await page.fill('input[name=password]', PASSWORD);
    await page.click('#signon-form button[type=submit]');
    await page.waitForURL(`${BASE}/search`);
    expect((await page.textContent('header .role')) === 'administrator', 'the local administrator is signed in');

    // Search → open the message → download the original.
    await page.fill('#q', 'subject:quarterly');
    await page.click('#search-form button[type=submit]');
    await page.waitForSelector('#results tbody tr');
    expect((await page.textContent('#total')).trim() === '1', 'the query finds the one quarterly message');
    await shot(page, 'search');
    await page.click('#results a.subject');
    await page.waitForSelector('#message');
    expect((await page.textContent('#bcc')).includes('dave@contoso.com'), 'an administrator sees the Bcc line');
    await shot(page, 'message');
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#download-raw')]);
    const bytes = fs.readFileSync(await download.path());
    expect(crypto.createHash('sha256').update(bytes).digest('hex') === EXPECTED_SHA256, 'the downloaded .eml is the original, byte for byte');

    // The charts draw points for the mail that came in over SMTP.
    await page.goto(`${BASE}/status`);
    const points = await page.locator('#messages-hourly circle.point').count();
    expect(points > 0, `the hourly chart draws points (${points})`);
    expect((await page.textContent('#journal-addresses')).includes('journal-'), 'the journal address is shown');
    await shot(page, 'status');

    // A configuration change shows up in the audit log.
    await page.goto(`${BASE}/config/tenants`);
    await page.fill('form[action="/config/tenants"] input[name=name]', 'northwind');
    await page.fill('form[action="/config/tenants"] input[name=domains]', 'northwind.example');
    await page.click('form[action="/config/tenants"] button[type=submit]');
    await page.waitForURL(`${BASE}/config/tenants`);
    expect((await page.textContent('#tenants')).includes('northwind'), 'the new tenant is listed');
    // Edit it: another domain and the networks its reports come from.
    const edit = page.locator('details.tenant-edit', { hasText: 'Edit northwind' });
    await edit.locator('summary').click();
    await edit.locator('input[name=domains]').fill('northwind.example, northwind.test');
    await edit.locator('input[name=networks]').fill('40.92.0.0/15');
    await edit.locator('button[type=submit]').click();
    await page.waitForURL(`${BASE}/config/tenants`);
    const row = await page.textContent('#tenants');
    expect(row.includes('northwind.example, northwind.test') && row.includes('40.92.0.0/15'), 'the edited domains and networks are listed');
    await shot(page, 'tenants', [1366, 390]);
    // Work in that tenant, then back.
    await page.click('button[aria-label="Work here in tenant northwind"]');
    await page.waitForURL(`${BASE}/search`);
    expect((await page.textContent('#working-tenant')) === 'northwind', 'the header says which tenant is worked in');
    await shot(page, 'working-in-tenant', [1366, 390]);
    await page.click('#leave-tenant');
    await page.waitForURL(`${BASE}/search`);
    expect((await page.locator('#working-tenant').count()) === 0, 'back in the home tenant');
    // Search all tenants: each result tagged with its tenant, then back.
    await page.goto(`${BASE}/config/tenants`);
    await page.click('#search-all-tenants');
    await page.waitForURL(`${BASE}/search`);
    expect((await page.textContent('#working-tenant')) === 'all tenants', 'the header says all tenants are read');
    await page.fill('#q', 'subject:quarterly');
    await page.click('#search-form button[type=submit]');
    await page.waitForSelector('#results tbody tr');
    expect((await page.textContent('#results tbody td.tenant')).trim() === 'default', 'each result is tagged with its tenant');
    await shot(page, 'search-all-tenants', [1366, 390]);
    await page.click('#leave-tenant');
    await page.waitForURL(`${BASE}/search`);
    await page.goto(`${BASE}/audit`);
    const audit = await page.textContent('#audit');
    expect(audit.includes('tenant northwind added'), 'the change is in the audit log');
    expect(audit.includes('tenant northwind: domains northwind.example → northwind.example, northwind.test'), 'the edit is audited with before and after');
    expect(audit.includes('subject:quarterly'), 'the search is in the audit log with its query');
    await shot(page, 'audit');
    await page.goto(`${BASE}/config/login`);
    // Only the chosen provider's and client authentication's fields show.
    await page.selectOption('#login-settings select[name=provider]', 'entra');
    await page.selectOption('#login-settings select[name=client_auth]', 'certificate');
    expect(await page.isVisible('input[name=entra_tenant_id]') && !(await page.isVisible('input[name=issuer]')), 'Entra ID shows its directory, not an issuer');
    expect(await page.isVisible('select[name=certificate_alias]') && !(await page.isVisible('input[name=client_secret]')), 'certificate authentication shows the certificate, not a secret');
    await shot(page, 'login-settings-entra', [1366, 390]);
    await page.goto(`${BASE}/config/login`);
    expect(await page.isVisible('input[name=issuer]') && !(await page.isVisible('input[name=entra_tenant_id]')), 'any provider shows its issuer');
    await shot(page, 'login-settings');

    // Configuration → Listeners → New listener: it answers on its port at once; a mistake is
    // refused beside the form with what was typed kept.
    await page.goto(`${BASE}/config/listeners`);
    await page.fill('#new-listener input[name=name]', 'second');
    await page.fill('#new-listener input[name=listen]', `127.0.0.1:${LISTENER_PORT}`);
    await page.fill('#new-listener input[name=hostname]', 'mx2.archive.test');
    await page.selectOption('#new-listener select[name=tls]', 'off');
    await page.click('#new-listener button[type=submit]');
    await page.waitForSelector('#listener-result');
    expect((await page.textContent('#listener-result')).includes(`listening on 127.0.0.1:${LISTENER_PORT}`), 'the new listener is listening');
    expect((await smtpGreeting(LISTENER_PORT)).startsWith('220 mx2.archive.test'), 'it answers SMTP on its port without a restart');
    await page.fill('#new-listener input[name=name]', 'third');
    await page.fill('#new-listener input[name=listen]', 'mail.contoso.com');
    await page.click('#new-listener button[type=submit]');
    await page.waitForSelector('#new-listener-error');
    expect((await page.textContent('#new-listener-error')).startsWith('listen "mail.contoso.com"'), 'a wrong address is refused, naming the field');
    expect((await page.inputValue('#new-listener input[name=name]')) === 'third', 'what was typed stays');
    await shot(page, 'listeners', [1366, 390]);

    // Volumes → Import: an uploaded mbox comes in with its progress shown; a broken zip is refused
    // beside the form, with what was typed kept.
    await page.goto(`${BASE}/config/volumes`);
    const mbox = [1, 2].map((n) => `From dora@contoso.com Tue Jan  1 10:00:00 2019\r\nFrom: dora@contoso.com\r\n`
      + `To: erin@contoso.com\r\nSubject: Chestnut ${n}\r\nMessage-ID: <chestnut-${n}@contoso.com>\r\n\r\nBody ${n}\r\n`).join('');
    await page.setInputFiles('#import-form input[name=file]', { name: 'Orchard.mbox', mimeType: 'application/mbox', buffer: Buffer.from(mbox) });
    await page.fill('#import-form input[name=folder]', 'Imported');
    await page.click('#import-form button[type=submit]');
    await page.waitForURL(`${BASE}/config/volumes#imports`);
    await page.waitForFunction(() => document.querySelector('#imports tr.import')?.dataset.state === 'done', null, { timeout: 30000 });
    expect((await page.textContent('#imports tr.import .imported')).trim() === '2', 'the upload\'s two messages are imported, the list refreshing itself');
    await shot(page, 'volumes-import', [1366, 390]);
    await page.setInputFiles('#import-form input[name=file]', { name: 'broken.zip', mimeType: 'application/zip', buffer: Buffer.from('PK\x03\x04 not a zip') });
    await page.fill('#import-form input[name=folder]', 'Kept/Typed');
    await page.click('#import-form button[type=submit]');
    await page.waitForSelector('#import-error');
    expect((await page.textContent('#import-error')).includes('broken.zip: not a readable zip'), 'a broken zip is refused beside the form');
    expect((await page.inputValue('#import-form input[name=folder]')) === 'Kept/Typed', 'what was typed stays');
    await shot(page, 'volumes-import-refused', [1366, 390]);
    for (let i = 0; i < 50; i++) {
      await page.goto(`${BASE}/search?q=subject%3Achestnut+folder%3AImported%2FOrchard`);
      if ((await page.textContent('#total')).trim() === '2') break;
      await page.waitForTimeout(200);
    }
    expect((await page.textContent('#total')).trim() === '2', 'the imported messages are found in their folder');

    // The source supervisor's view: a connection that cannot connect backs off with its error;
    // Stop stops it, Poll now runs it again.
    let state = '';
    for (let i = 0; i < 50 && state !== 'backing off'; i++) {
      await page.goto(`${BASE}/config/connections`);
      state = (await page.textContent('.connection .job .state')).trim();
      if (state !== 'backing off') await page.waitForTimeout(200);
    }
    expect(state === 'backing off', `the unreachable connection backs off (${state})`);
    expect((await page.textContent('.connection .job-error')).length > 0, 'its last error is shown');
    await shot(page, 'connections');
    await page.click('form[action$="/stop"] button');
    await page.waitForSelector('#test-result');
    expect((await page.textContent('.connection .job .state')).trim() === 'stopped', 'Stop stops the connection');
    await page.goto(`${BASE}/audit`);
    expect((await page.textContent('#audit')).includes('journal: stopped'), 'stopping is audited');

    // Every page an administrator works in, for people with screen readers and keyboards.
    for (const path of ['/search?q=subject%3Aquarterly', '/status', '/audit', '/config/listeners', '/config/connections',
      '/config/login', '/config/volumes', '/config/certificates', '/config/users', '/config/retention', '/config/holds',
      '/config/tenants', '/account']) {
      await page.goto(`${BASE}${path}`);
      await accessible(page, path);
    }
    await page.goto(`${BASE}/search?q=subject%3Aquarterly`);
    await page.click('#results a.subject');
    await page.waitForSelector('#message');
    await accessible(page, 'the message view');
    await page.click('#logout');
    await page.waitForURL(`${BASE}/signon`);
    await context.close();
  }

  // Single sign-on: alice becomes an administrator through her group, bob a user.
  async function signOn(user) {
    const { context, page } = await fresh();
    await page.goto(`${BASE}/signon`);
    await page.click('#sso');
    await page.waitForSelector('input[name=login]');
    await page.fill('input[name=login]', user);
    await page.fill('input[name=password]', 'any password');
    await page.click('button[type=submit]');
    await page.waitForSelector('input[name=prompt][value=consent]', { state: 'attached' });
    await page.click('button[type=submit]'); // consent
    await page.waitForURL(`${BASE}/search`);
    return { context, page };
  }
  {
    const { context, page } = await signOn('alice');
    expect((await page.textContent('header .role')) === 'administrator', 'alice is an administrator (group archive-admins)');
    await shot(page, 'alice');
    await context.close();
  }
  {
    const { context, page } = await signOn('bob');
    expect((await page.textContent('header .role')) === 'user', 'bob is a user (no administrator group)');
    const rows = await page.locator('#results tbody tr').count();
    const text = await page.textContent('#results');
    expect(rows === 1 && text.includes('Quarterly results'), `bob sees only his own message (${rows})`);
    expect(!text.includes('Carol'), 'carol\'s message is not listed for bob');
    await shot(page, 'bob-search');
    await page.click('#results a.subject');
    await page.waitForSelector('#message');
    const html = await page.content();
    expect(!html.includes('dave@contoso.com') && (await page.locator('#bcc').count()) === 0, 'bob never sees the Bcc line');
    await shot(page, 'bob-message');
    expect((await page.locator('header nav a[href="/status"]').count()) === 0, 'bob has no Status page');
    await context.close();
  }
} finally {
  await browser.close();
}
