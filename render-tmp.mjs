import { chromium } from 'playwright-core';
import { chromiumExecutable, CHROMIUM_ARGS } from '/work/main/dist/test/support/chromium.js';
const [svg, png] = process.argv.slice(2);
const browser = await chromium.launch({ executablePath: await chromiumExecutable(), args: [...CHROMIUM_ARGS] });
const page = await browser.newPage({ viewport: { width: 980, height: 1000 } });
await page.goto('file://' + svg);
await page.screenshot({ path: png, fullPage: true, timeout: 120000 });
await browser.close();
