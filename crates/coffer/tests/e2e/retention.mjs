// Configuration → Retention and → Holds in headless Chromium, as two administrators: a rule
// (first mistyped: the error stands beside the form, the values stay), a hold, a dry run with its
// counts, a deletion request the first administrator cannot approve and the second does, and the
// message view naming the rule and the hold. Screenshots go to $ARTIFACTS.
import { browser, expect, shot as screenshots } from './browser.mjs';

const { BASE, PASSWORD, HELD_ID } = process.env;
const shot = (page, name) => screenshots(page, name, [390]);
async function signIn(login) {
  const context = await browser.newContext({ viewport: { width: 1366, height: 900 } });
  const page = await context.newPage();
  page.on('dialog', (d) => { throw new Error(`a dialog opened: ${d.message()}`); });
  await page.goto(`${BASE}/signon`);
  await page.fill('input[name=login]', login);
  await page.fill('input[name=password]', PASSWORD);
  await page.click('#signon-form button[type=submit]');
  await page.waitForURL(`${BASE}/search`);
  return { context, page };
}

try {
  const { context, page } = await signIn('admin1');
  await page.goto(`${BASE}/config/retention`);
  await page.fill('#rule-form input[name=name]', 'old mail');
  await page.fill('#rule-form input[name=query]', '*');
  await page.fill('#rule-form input[name=keep]', 'seven years');
  await page.click('#rule-form button[type=submit]');
  expect((await page.textContent('#rule-error')).includes('write it as'), 'a mistyped period is explained beside the form');
  expect((await page.inputValue('#rule-form input[name=name]')) === 'old mail', 'the typed name survives the error');
  await page.fill('#rule-form input[name=keep]', '2y');
  await page.click('#rule-form button[type=submit]');
  await page.waitForSelector('#rules td:has-text("old mail")');
  expect((await page.textContent('#rules')).includes('2y'), 'the rule is listed with its period');

  await page.goto(`${BASE}/config/holds`);
  await page.fill('#hold-form input[name=name]', 'Smith v. Contoso');
  await page.fill('#hold-form input[name=reason]', 'litigation hold letter of 3 March');
  await page.fill('#hold-form input[name=query]', 'subject:merger');
  await page.click('#hold-form button[type=submit]');
  await page.waitForSelector('#holds td:has-text("Smith v. Contoso")');
  expect((await page.textContent('#holds')).includes('active'), 'the hold is active');
  await shot(page, 'holds');

  await page.goto(`${BASE}/config/retention`);
  await page.click('#dry-run');
  await page.waitForSelector('#run-report');
  const report = await page.textContent('#run-report');
  expect(report.includes('Would delete') && report.includes('old mail'), 'the dry run shows its counts per rule');
  await page.fill('#request-form input[name=query]', 'subject:merger OR subject:lunch');
  await page.fill('#request-form input[name=reason]', 'GDPR erasure request 2026-17');
  await page.click('#request-form button[type=submit]');
  await page.waitForSelector('#retention-notice');
  expect((await page.textContent('#requests')).includes('waits for another administrator'), 'the asker cannot approve');
  await shot(page, 'retention');

  await page.goto(`${BASE}/messages/${HELD_ID}`);
  expect((await page.textContent('#holds')).includes('Smith v. Contoso'), 'the message view names the hold');
  expect((await page.textContent('#retention')).includes('old mail'), 'the message view names the rule');
  await shot(page, 'message-governed');
  await context.close();

  const second = await signIn('admin2');
  await second.page.goto(`${BASE}/config/retention`);
  await second.page.click('#requests button:has-text("Approve")');
  await second.page.waitForSelector('#retention-notice');
  const notice = await second.page.textContent('#retention-notice');
  expect(notice.includes('approved') && notice.includes('legal hold Smith v. Contoso'), `the approval deletes the unheld and says why the rest stays: ${notice}`);
  expect((await second.page.textContent('#deletions')).includes('approval:'), 'the deletion certificate is listed');
  await shot(second.page, 'retention-approved');
  await second.context.close();
} finally {
  await browser.close();
}
