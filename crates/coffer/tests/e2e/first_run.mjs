// The first run without the command line: the set-up link `coffer serve` printed creates the first
// administrator (once), who lands on a getting-started card with the journal address to copy.
import { browser, expect, shot as screenshots } from './browser.mjs';

const { BASE, LINK } = process.env;
const shot = (page, name) => screenshots(page, name, [390]);

try {
  const context = await browser.newContext({ viewport: { width: 1366, height: 900 } });
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: BASE });
  const page = await context.newPage();
  await page.goto(`${BASE}/signon`);
  expect((await page.textContent('#first-run')).includes('set-up link'), 'the sign-on page points to the set-up link');
  await page.goto(`${BASE}/setup?token=guessed`);
  expect((await page.$('#setup-invalid')) !== null, 'a guessed token gets no form');
  await page.goto(LINK);
  await shot(page, 'setup');
  await page.fill('#setup-form input[name=login]', 'admin');
  await page.fill('#setup-form input[name=display_name]', 'Archive Admin');
  await page.fill('#setup-form input[name=password]', 'a long enough password');
  await page.fill('#setup-form input[name=repeat]', 'a different password!!');
  await page.click('#setup-form button[type=submit]');
  expect((await page.textContent('#setup-error')).includes('differ'), 'mismatched passwords are caught');
  expect((await page.inputValue('#setup-form input[name=login]')) === 'admin', 'the login typed stays');
  await page.fill('#setup-form input[name=password]', 'a long enough password');
  await page.fill('#setup-form input[name=repeat]', 'a long enough password');
  await page.click('#setup-form button[type=submit]');
  await page.waitForURL(`${BASE}/search`);
  expect((await page.textContent('header .role')) === 'administrator', 'the new administrator is signed in');
  const address = (await page.textContent('#journal-address')).trim();
  expect(address.startsWith('journal-'), 'the getting-started card shows the journal address');
  await page.click('#getting-started button[data-copy]');
  expect((await page.evaluate(() => navigator.clipboard.readText())) === address, 'Copy puts the address on the clipboard');
  await shot(page, 'getting-started');
  const again = await browser.newContext();
  const other = await again.newPage();
  await other.goto(LINK);
  expect(other.url().startsWith(`${BASE}/signon`), 'the link works once: afterwards it leads to the sign-on form');
} finally {
  await browser.close();
}
