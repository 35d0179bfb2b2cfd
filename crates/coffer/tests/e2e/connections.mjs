// The guide's connection set-up in the console, as a new administrator does it: an Office 365
// connection (its form, Update Manifest with the manifest from the Azure portal, Test,
// Synchronize), then an IMAP connection signing in with OAuth2 through that connection's
// certificate, and Test; then Configuration → Login with Entra ID and that certificate, Request
// admin consent, and a role assignment through Lookup, after which that person signs in as an
// administrator. The Rust test `imap` runs Coffer, Dovecot and the Microsoft fake, then this
// script, then checks what the fake and the archive saw.
import fs from 'node:fs';
import { accessible, ARTIFACTS, browser, expect, shot } from './browser.mjs';

const { BASE, PASSWORD, FAKE, TENANT_ID, CLIENT_ID, IMAP_PORT, CA_FILE, GROUP } = process.env;

// Opens a <details> section by its summary, unless the page showed it open already.
async function unfold(details) {
  if ((await details.getAttribute('open')) === null) await details.locator('summary').click();
}

try {
  const context = await browser.newContext({ acceptDownloads: true, viewport: { width: 1366, height: 900 } });
  const page = await context.newPage();
  await page.goto(`${BASE}/signon`);
  await page.fill('input[name=login]', 'admin');
  await page.fill('input[name=password]', PASSWORD);
  await page.click('#signon-form button[type=submit]');
  await page.waitForURL(`${BASE}/search`);

  // Configuration → Connections → Office 365: the form, with a mistake first.
  await page.goto(`${BASE}/config/connections`);
  await shot(page, 'connections-form', [1366, 390]);
  const m365 = page.locator('#new-m365-form');
  await m365.locator('input[name=name]').fill('contoso');
  await m365.locator('input[name=tenant_id]').fill(TENANT_ID);
  await m365.locator('input[name=client_id]').fill(CLIENT_ID);
  await m365.locator('input[name=certificate]').fill('m365');
  await m365.locator('select[name=cloud]').selectOption('custom');
  await m365.locator('input[name=login_host]').fill(FAKE);
  await m365.locator('input[name=graph_host]').fill(FAKE);
  await m365.locator('textarea[name=mailboxes]').fill('alice@contoso.com');
  await m365.locator('input[name=synchronize]').check();
  await m365.locator('button[type=submit]').click();
  await page.waitForSelector('#new-connection-error');
  expect((await page.textContent('#new-connection-error')).startsWith('webhook_url'), 'synchronize without a webhook address is refused beside the form');
  expect((await page.inputValue('#new-m365-form input[name=tenant_id]')) === TENANT_ID, 'what was typed is kept');
  await page.locator('#new-m365-form input[name=synchronize]').uncheck();
  await page.locator('#new-m365-form button[type=submit]').click();
  await page.waitForSelector('#connection-contoso');
  expect((await page.textContent('#connection-contoso .state')).trim() === 'not started', 'the new connection waits for its certificate');
  expect((await page.textContent('#connection-contoso .job-error')).includes('certificate'), 'and says so');
  await shot(page, 'connections-new', [1366, 390]);

  // Update Manifest: the manifest downloaded from the portal in, the updated one out, uploaded in the portal.
  const original = await (await fetch(`${FAKE}/portal/manifest`)).text();
  fs.writeFileSync(`${ARTIFACTS}/portal-manifest.json`, original);
  const manifest = page.locator('#connection-contoso details.manifest');
  await unfold(manifest);
  await manifest.locator('input[name=manifest]').setInputFiles(`${ARTIFACTS}/portal-manifest.json`);
  await manifest.locator('input[name=common_name]').fill('archive.contoso.com');
  await manifest.locator('input[name=organization]').fill('Contoso');
  await manifest.locator('input[name=country]').fill('CH');
  const [download] = await Promise.all([page.waitForEvent('download'), manifest.locator('button[type=submit]').click()]);
  const updated = JSON.parse(fs.readFileSync(await download.path(), 'utf8'));
  expect(updated.keyCredentials.length === 1, 'the updated manifest carries Coffer\'s certificate');
  const uploaded = await fetch(`${FAKE}/portal/manifest`, { method: 'POST', body: JSON.stringify(updated) });
  expect(uploaded.status === 204, 'the portal takes the updated manifest');

  await page.goto(`${BASE}/config/connections`);
  expect((await page.textContent('#connection-contoso .state')).trim() === 'on demand', 'with its certificate the connection runs, without a restart');
  await page.locator('#connection-contoso form[action$="/test"] button').click();
  await page.waitForSelector('#test-result');
  expect(await page.locator('#test-result.ok').count() === 1, `Test connection succeeds: ${await page.textContent('#test-result')}`);

  // Synchronize: the edit form, applied at once.
  const edit = page.locator('#connection-contoso details.connection-edit');
  await unfold(edit);
  await edit.locator('input[name=synchronize]').check();
  await edit.locator('input[name=webhook_url]').fill(`${BASE}/o365`);
  await edit.locator('button[type=submit]').click();
  await page.waitForSelector('#test-result');
  expect((await page.textContent('#test-result')).includes('saved and ready'), 'synchronize is on');
  expect((await page.textContent('#connection-contoso table')).includes(`${BASE}/o365`), 'the webhook is listed');

  // An IMAP connection with OAuth2, its token from the Office 365 connection.
  await unfold(page.locator('#new-imap'));
  const imap = page.locator('#new-imap-form');
  await imap.locator('input[name=name]').fill('journal');
  await imap.locator('input[name=host]').fill('localhost');
  await imap.locator('input[name=port]').fill(IMAP_PORT);
  await imap.locator('input[name=ca_file]').fill(CA_FILE);
  await imap.locator('input[name=username]').fill('journal');
  await imap.locator('select[name=auth]').selectOption('xoauth2');
  await imap.locator('select[name=m365]').selectOption('contoso');
  await imap.locator('button[type=submit]').click();
  await page.waitForSelector('#connection-journal');
  expect((await page.textContent('#test-result')).includes('saved and running'), 'the IMAP connection runs at once');
  await page.locator('#connection-journal form[action$="/test"] button').click();
  await page.waitForSelector('#test-result');
  const tested = await page.textContent('#test-result');
  expect(await page.locator('#test-result.ok').count() === 1 && tested.includes('logged in as journal'), `Test connection signs in with OAuth2: ${tested}`);
  expect(!(await page.content()).includes('client_state='), 'no secret is shown');
  await shot(page, 'connections', [1366, 390]);
  await accessible(page, 'connections');

  // Configuration → Login: Entra ID, the client authenticated by the connection's certificate.
  await page.goto(`${BASE}/config/login`);
  const login = page.locator('#login-settings');
  await login.locator('input[name=enabled]').check();
  await login.locator('select[name=provider]').selectOption('entra');
  await login.locator('input[name=entra_tenant_id]').fill(TENANT_ID);
  await login.locator('input[name=login_host]').fill(FAKE);
  await login.locator('input[name=client_id]').fill(CLIENT_ID);
  await login.locator('select[name=client_auth]').selectOption('certificate');
  await login.locator('select[name=certificate_alias]').selectOption('m365');
  await login.locator('input[name=callback_path]').fill('/authorize.do');
  await login.locator('button[type=submit]').click();
  await page.waitForSelector('#issuer');
  expect((await page.textContent('#issuer')) === `${FAKE}/${TENANT_ID}/v2.0`, 'the issuer ID tokens are checked against is shown');
  const [consent] = await Promise.all([context.waitForEvent('page'), page.click('#admin-consent')]);
  await consent.waitForURL(/\/config\/login\?consent=granted/);
  expect((await consent.textContent('main')).includes('Admin consent was granted.'), 'Request admin consent comes back granted');
  await consent.close();

  // New role assignment → Lookup: alice's group, given the administrator role.
  await page.fill('#lookup-form input[name=lookup]', 'alice@contoso.com');
  await page.click('#lookup-form button[type=submit]');
  await page.waitForSelector('#lookup-result');
  const row = page.locator('#lookup-result tr', { hasText: 'group Archive Admins' });
  await row.locator('select[name=role]').selectOption('administrator');
  await row.locator('button').click();
  await page.waitForSelector('#login-settings');
  expect((await page.inputValue('textarea[name=assignments]')).startsWith(`groups ${GROUP} administrator`), 'the assignment goes first');
  await shot(page, 'login-entra', [1366, 390]);

  // Alice signs in with Entra ID and is an administrator through her group.
  const alice = await browser.newContext({ viewport: { width: 1366, height: 900 } });
  const alicePage = await alice.newPage();
  await alicePage.goto(`${BASE}/signon`);
  await alicePage.click('#sso');
  await alicePage.waitForURL(`${BASE}/search`);
  expect((await alicePage.textContent('header .role')) === 'administrator', 'alice signs in as an administrator');
  await alice.close();
} finally {
  await browser.close();
}
