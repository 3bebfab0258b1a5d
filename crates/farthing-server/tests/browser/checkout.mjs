// Drives the checkout page in Debian's headless Chromium (playwright-core, no browser download).
// Run by crates/farthing-server/tests/checkout_browser.rs:
//   node checkout.mjs sandbox <url> <expected amount text> <screenshot.png>
//     opens the page, checks the amount, clicks "Pay (sandbox)", waits for "Paid ✓".
//   node checkout.mjs look <url> <expected text> <screenshot.png>
//     opens the page, checks that it shows the text and does not overflow sideways (a phone).
//   node checkout.mjs follow <url> <expected status> <screenshot.png>
//     opens the page, prints READY, then waits for the status the server reports
//     (the test pays or lets the invoice expire meanwhile) without reloading the page.
// Exits 0 on success; prints the reason and exits 1 otherwise.
import { chromium } from 'playwright-core';

const [scenario, url, expected, screenshot] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
let failed = null;
try {
  const page = await browser.newPage({ viewport: { width: 390, height: 844 } }); // a phone
  const reloads = [];
  page.on('framenavigated', (frame) => { if (frame === page.mainFrame()) reloads.push(frame.url()); });
  await page.goto(url);
  const status = page.locator('#status');
  if (scenario === 'sandbox') {
    const amount = await page.locator('#amount').innerText();
    if (!amount.includes(expected)) throw new Error(`amount shows ${JSON.stringify(amount)}, expected ${expected}`);
    const countdown = await page.locator('#countdown').innerText();
    if (!/expires in \d+:\d\d/.test(countdown)) throw new Error(`no countdown: ${JSON.stringify(countdown)}`);
    await page.locator('#sandbox').click();
    await status.filter({ hasText: 'Paid ✓' }).waitFor({ timeout: 10000 });
    if (!(await page.locator('#sandbox').isDisabled())) throw new Error('the pay button is still enabled after payment');
    if (await page.locator('#sandbox').isVisible()) throw new Error('the pay button still shows after payment');
    // The receipt replaces the rails to pay with.
    await page.locator('#receipt').waitFor({ state: 'visible', timeout: 5000 });
    const receipt = await page.locator('#receipt').innerText();
    if (!receipt.includes(expected)) throw new Error(`the receipt does not show ${expected}: ${JSON.stringify(receipt)}`);
    if (!receipt.includes('Sandbox (test)')) throw new Error(`the receipt does not name the rail: ${JSON.stringify(receipt)}`);
    if (await page.locator('#rails-line').isVisible()) throw new Error('the rails to pay with still show after payment');
  } else if (scenario === 'look') {
    const text = await page.locator('main').innerText();
    if (!text.includes(expected)) throw new Error(`the page does not show ${JSON.stringify(expected)}: ${JSON.stringify(text)}`);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    if (overflow > 0) throw new Error(`the page overflows sideways by ${overflow}px`);
  } else if (scenario === 'follow') {
    console.log('READY');
    const text = expected === 'paid' ? 'Paid ✓' : expected;
    await status.filter({ hasText: text }).waitFor({ timeout: 20000 });
    if (reloads.length !== 1) throw new Error(`the page reloaded: ${reloads.join(', ')}`);
  } else {
    throw new Error(`unknown scenario ${scenario}`);
  }
  await page.screenshot({ path: screenshot, fullPage: true });
} catch (error) {
  failed = error;
} finally {
  await browser.close();
}
if (failed) {
  console.log(`FAILED: ${failed.message}`);
  process.exit(1);
}
console.log('OK');
