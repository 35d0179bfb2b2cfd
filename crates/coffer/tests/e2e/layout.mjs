// The console's reading pages at 1366×900 and 390×844 with hostile content: a subject of 300
// characters without a space, long addresses. Nothing may widen the page; the query, its sort and
// page survive a visit to a message; the sign-on page keeps the login after a refusal.
import { browser, expect, shot } from './browser.mjs';

const { BASE, PASSWORD } = process.env;
const fits = (page, name) => shot(page, name, [1366, 390]);

try {
  const context = await browser.newContext({ viewport: { width: 1366, height: 900 } });
  const page = await context.newPage();
  await page.goto(`${BASE}/signon`);
  await page.fill('input[name=login]', 'admin');
  await page.fill('input[name=password]', 'not the password');
  await page.click('#signon-form button[type=submit]');
  expect((await page.textContent('#signon-error')).includes('Wrong login'), 'a refusal says so');
  expect((await page.inputValue('input[name=login]')) === 'admin', 'the login stays in the form');
  await page.goto(`${BASE}/signon?error=Call+us+now`);
  expect(!(await page.content()).includes('Call us now'), 'the page shows no text from its address');
  await page.fill('input[name=login]', 'admin');
  await page.fill('input[name=password]', PASSWORD);
  await page.click('#signon-form button[type=submit]');
  await page.waitForURL(`${BASE}/search`);

  await page.click('#folder-tree a[data-folder="Projects"]');
  await page.waitForSelector('#results tbody tr');
  expect((await page.textContent('#folder-tree a.here')) === 'Projects', 'the folder tree marks the folder shown');
  expect((await page.textContent('#total')).trim() === '3', 'a folder in the tree lists its messages');
  await page.fill('#q', 'subject:(Overlong OR nothing)');
  await page.selectOption('select[name=sort]', 'oldest');
  await page.click('#search-form button[type=submit]');
  await page.waitForSelector('#results tbody tr');
  expect((await page.textContent('#total')).trim() === '3', 'a field before a group searches it for every word');
  const dates = await page.$$eval('#results td.date', (cells) => cells.map((c) => c.textContent));
  expect(dates.join() === [...dates].sort().join(), 'oldest first');
  await fits(page, 'layout-search');
  const searched = page.url();
  await page.click('#results a.subject');
  await page.waitForSelector('#message');
  expect((await page.$('#load-remote')) === null, 'a plain text message shows no remote-content advice');
  await fits(page, 'layout-message');
  const first = await page.getAttribute('#message', 'data-id');
  expect((await page.$('#previous')) === null, 'the first result has no previous');
  await page.click('#next-message');
  await page.waitForSelector('#message');
  expect((await page.getAttribute('#message', 'data-id')) !== first, 'Next opens the next result');
  await page.click('#previous');
  await page.waitForSelector('#message');
  expect((await page.getAttribute('#message', 'data-id')) === first, 'Previous comes back');
  await page.click('#back');
  expect(page.url() === searched || decodeURIComponent(page.url()).includes('sort=oldest'), 'back to the same search, sort kept');
  expect((await page.inputValue('#q')) === 'subject:(Overlong OR nothing)', 'the query is still there');
  await page.goto(`${BASE}/status`);
  await fits(page, 'layout-status');
  await page.goto(`${BASE}/config/retention`);
  await fits(page, 'layout-retention');
} finally {
  await browser.close();
}
