// Drives the checkout page as a Telegram Mini App in Debian's headless Chromium
// (playwright-core), with a stubbed `window.Telegram.WebApp` (no request to telegram.org).
// Run by crates/farthing-server/tests/webapp_browser.rs:
//   node webapp.mjs balance <url> <expected amount text> <screenshot.png> <initData>
//     the balance covers the invoice: one tap on Pay, the page switches to paid; then a reload
//     without initData keeps the session (sessionStorage) and shows paid.
//   node webapp.mjs stars <url> <expected amount text> <screenshot.png> <initData>
//     no balance: Stars is the method; Pay opens the invoice link (printed as OPENED <link>),
//     Telegram says 'paid', and the page shows paid once the server says so (the test pays).
//   node webapp.mjs presets <url> <expected amount text> <screenshot.png> <initData>
//     an amountless invoice: the second preset, then Pay from the balance.
//   node webapp.mjs rtl <url> <expected amount text> <screenshot.png> <initData>
//     a `fa` user: right-to-left layout and Persian texts.
// Exits 0 on success; prints the reason and exits 1 otherwise.
import { chromium } from 'playwright-core';

const [scenario, url, expected, screenshot, initData] = process.argv.slice(2);
const user = JSON.parse(new URLSearchParams(initData).get('user'));
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
let failed = null;
let page = null;
try {
  page = await browser.newPage({ viewport: { width: 390, height: 844 } });
  const external = [];
  page.on('request', (request) => { if (!request.url().startsWith(new URL(url).origin)) external.push(request.url()); });
  // The stub Telegram's clients provide; `withoutInitData` (set before a reload) leaves initData
  // empty, as a page reloaded outside Telegram's launch would have it.
  await page.addInitScript(({ initData, user }) => {
    const reloaded = sessionStorage.getItem('test.withoutInitData') === '1';
    window.__calls = [];
    window.Telegram = { WebApp: {
      initData: reloaded ? '' : initData,
      initDataUnsafe: reloaded ? {} : { user },
      themeParams: { bg_color: '#17212b', text_color: '#f5f5f5', secondary_bg_color: '#232e3c', button_color: '#5288c1', button_text_color: '#ffffff', hint_color: '#708499' },
      ready() { window.__calls.push('ready'); },
      expand() { window.__calls.push('expand'); },
      openInvoice(link, callback) { window.__calls.push('openInvoice ' + link); window.__invoiceCallback = callback; },
    } };
  }, { initData, user });
  await page.goto(url);
  await page.locator('#webapp').waitFor({ state: 'visible', timeout: 10000 });
  const amount = await page.locator('#amount').innerText();
  if (!amount.includes(expected)) throw new Error(`amount shows ${JSON.stringify(amount)}, expected ${expected}`);
  const calls = await page.evaluate(() => window.__calls);
  if (!calls.includes('ready') || !calls.includes('expand')) throw new Error(`ready/expand not called: ${calls}`);
  const status = page.locator('#status.paid');
  const pay = page.locator('#webapp-pay');
  if (scenario === 'balance') {
    await page.locator('#webapp-method-balance[aria-checked=true]').waitFor({ timeout: 10000 });
    await pay.click();
    await status.waitFor({ timeout: 10000 });
    if (!(await pay.isDisabled())) throw new Error('Pay is still enabled after payment');
    const text = await page.locator('#status').innerText();
    if (text !== 'Paid ✓') throw new Error(`status shows ${JSON.stringify(text)}`);
    await page.screenshot({ path: screenshot, fullPage: true });
    // Reload without initData: the stored session still holds the Mini App screen.
    await page.evaluate(() => sessionStorage.setItem('test.withoutInitData', '1'));
    await page.reload();
    await page.locator('#webapp').waitFor({ state: 'visible', timeout: 10000 });
    await status.waitFor({ timeout: 10000 });
  } else if (scenario === 'presets') {
    // An amountless invoice: choose the second preset, then Pay from the balance.
    const presets = page.locator('#webapp-presets button');
    await presets.first().waitFor({ timeout: 10000 });
    if ((await presets.count()) < 2) throw new Error('fewer than two presets');
    await presets.nth(1).click();
    await page.locator('#webapp-method-balance[aria-checked=true]').waitFor({ timeout: 10000 });
    const label = await pay.innerText();
    const chosen = await presets.nth(1).innerText();
    if (!label.includes(chosen)) throw new Error(`Pay says ${JSON.stringify(label)}, not ${chosen}`);
    await pay.click();
    await status.waitFor({ timeout: 10000 });
    await page.screenshot({ path: screenshot, fullPage: true });
  } else if (scenario === 'stars') {
    await page.locator('#webapp-method-stars[aria-checked=true]').waitFor({ timeout: 10000 });
    if (await page.locator('#webapp-method-balance').count()) throw new Error('balance offered without funds');
    await pay.click();
    const opened = (await page.evaluate(() => window.__calls)).find((c) => c.startsWith('openInvoice '));
    if (!opened) throw new Error('openInvoice was not called');
    console.log('OPENED ' + opened.slice('openInvoice '.length));
    // Telegram reports the payment to the page; the server learns it from the bot (the test).
    await page.evaluate(() => window.__invoiceCallback('paid'));
    await status.waitFor({ timeout: 20000 });
    await page.screenshot({ path: screenshot, fullPage: true });
  } else if (scenario === 'rtl') {
    const direction = await page.evaluate(() => getComputedStyle(document.body).direction);
    if (direction !== 'rtl') throw new Error(`direction is ${direction}`);
    const lang = await page.evaluate(() => document.documentElement.lang);
    if (lang !== 'fa') throw new Error(`lang is ${lang}`);
    await page.locator('#webapp-method-balance[aria-checked=true]').waitFor({ timeout: 10000 });
    const label = await pay.innerText();
    if (!label.includes('پرداخت')) throw new Error(`the Pay button says ${JSON.stringify(label)}`);
    await page.screenshot({ path: screenshot, fullPage: true });
  } else {
    throw new Error(`unknown scenario ${scenario}`);
  }
  if (external.length) throw new Error(`requests left the server: ${external.join(', ')}`);
} catch (error) {
  failed = error;
  try { console.log('PAGE: ' + (await page.locator('main').innerText()).replace(/\s+/g, ' ')); } catch (e) {}
} finally {
  await browser.close();
}
if (failed) {
  console.log(`FAILED: ${failed.message}`);
  process.exit(1);
}
console.log('OK');
