// What every browser test shares: Debian's Chromium through playwright-core, expectations that
// stop the script with their reason, and screenshots at a desktop's and a phone's width.
import fs from 'node:fs';
import { chromium } from 'playwright-core';

export const ARTIFACTS = process.env.ARTIFACTS;
fs.mkdirSync(ARTIFACTS, { recursive: true });

export const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});

export function expect(ok, what) {
  if (!ok) throw new Error(`expected: ${what}`);
  console.log(`ok: ${what}`);
}

const WIDTHS = [[1366, 900, ''], [390, 844, '-phone']];

// The page as a desktop (1366×900) and a phone (390×844) show it; at the widths listed in `fit`,
// nothing may widen the page past the window.
export async function shot(page, name, fit = []) {
  for (const [width, height, suffix] of WIDTHS) {
    await page.setViewportSize({ width, height });
    if (fit.includes(width)) {
      const [scroll, inner] = await page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
      expect(scroll <= inner, `${name} at ${width} px: no horizontal overflow (${scroll} ≤ ${inner})`);
    }
    await page.screenshot({ path: `${ARTIFACTS}/${name}${suffix}.png`, fullPage: true });
  }
  await page.setViewportSize({ width: 1366, height: 900 });
}

// axe-core's accessibility rules on the page as shown at each width: no serious or critical
// violation. Evaluated through the DevTools protocol, so the console's CSP stays as it is.
const AXE = fs.readFileSync(new URL('./node_modules/axe-core/axe.min.js', import.meta.url), 'utf8');
export async function accessible(page, name) {
  for (const [width, height] of WIDTHS) {
    await page.setViewportSize({ width, height });
    if (!(await page.evaluate(() => typeof window.axe !== 'undefined'))) await page.evaluate(AXE);
    const violations = await page.evaluate(async () => {
      const result = await window.axe.run(document, { resultTypes: ['violations'] });
      return result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical')
        .map((v) => `${v.id} (${v.impact}): ${v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join('; ')}`);
    });
    expect(violations.length === 0, `${name} at ${width} px: no serious accessibility violation${violations.length ? `\n  ${violations.join('\n  ')}` : ''}`);
  }
  await page.setViewportSize({ width: 1366, height: 900 });
}
