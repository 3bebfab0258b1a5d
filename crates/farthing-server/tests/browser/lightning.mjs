// Drives the Lightning section of the checkout page in Debian's headless Chromium
// (playwright-core, no browser download). Run by crates/farthing-server/tests/checkout_browser.rs:
//   node lightning.mjs qr <url> <bolt11> <screenshot prefix>
//     opens the page of an open BTC invoice, checks the QR code (an inline SVG of a sane size,
//     decoded with jsQR to LIGHTNING:<BOLT11 in upper case>), the BOLT11 field, the Copy button,
//     the lightning: link and that "Pay with wallet" stays hidden (no WebLN wallet), saves
//     <prefix>-open.png, prints READY, then waits (the test pays the BOLT11 from another LNbits
//     wallet meanwhile) until the page shows "Paid ✓" without reloading and hides the section;
//     saves <prefix>-paid.png.
//   node lightning.mjs webln <url> <bolt11> <screenshot prefix> <wallet endpoint>
//     the same page with a fake WebLN wallet injected before the page's script runs: its
//     sendPayment records the BOLT11 and has the test pay it (POST <wallet endpoint>, the BOLT11
//     as the body); checks "Pay with wallet" appears, clicks it, that the page asks the server
//     for the status right after the wallet paid, and waits for "Paid ✓"; saves <prefix>-paid.png.
// Exits 0 on success; prints the reason and exits 1 otherwise.
import { createRequire } from 'node:module';
import { chromium } from 'playwright-core';

const [scenario, url, bolt11, screenshot, endpoint] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});

function check(condition, message) {
  if (!condition) throw new Error(message);
}

// Decodes the QR code as Chromium drew it: a screenshot of the element, read back in a blank
// page with jsQR (the page under test gets no script of ours).
async function decodeQr(element) {
  const png = await element.screenshot();
  const blank = await browser.newPage();
  try {
    await blank.addScriptTag({ path: createRequire(import.meta.url).resolve('jsqr') });
    return await blank.evaluate(async (src) => {
      const image = new Image();
      image.src = src;
      await image.decode();
      const canvas = document.createElement('canvas');
      canvas.width = image.naturalWidth;
      canvas.height = image.naturalHeight;
      const context = canvas.getContext('2d');
      context.drawImage(image, 0, 0);
      const pixels = context.getImageData(0, 0, canvas.width, canvas.height);
      const code = window.jsQR(pixels.data, pixels.width, pixels.height);
      return code ? code.data : null;
    }, `data:image/png;base64,${png.toString('base64')}`);
  } finally {
    await blank.close();
  }
}

let failed = null;
try {
  const context = await browser.newContext({
    viewport: { width: 390, height: 844 }, // a phone
    permissions: ['clipboard-read', 'clipboard-write'],
    // The WebLN stand-in pays by fetching the test wallet from the page itself; a real WebLN
    // extension pays from its own context, which the page's Content-Security-Policy
    // (connect-src 'self') does not govern. Only this scenario bypasses the CSP.
    bypassCSP: scenario === 'webln',
  });
  if (scenario === 'webln') {
    await context.addInitScript((endpoint) => {
      window.weblnCalls = [];
      window.webln = {
        async enable() { window.weblnCalls.push(['enable']); },
        async sendPayment(invoice) {
          window.weblnCalls.push(['sendPayment', invoice]);
          const response = await fetch(endpoint, { method: 'POST', body: invoice });
          const answer = await response.json();
          if (!response.ok) throw new Error(`the test wallet did not pay: ${JSON.stringify(answer)}`);
          window.weblnPaidAt = performance.now();
          return { preimage: answer.preimage || '' };
        },
      };
    }, endpoint);
  }
  const page = await context.newPage();
  const reloads = [];
  page.on('framenavigated', (frame) => { if (frame === page.mainFrame()) reloads.push(frame.url()); });
  await page.goto(url);
  const status = page.locator('#status');
  const section = page.locator('#lightning');
  const weblnPay = page.locator('#webln-pay');
  check(await section.isVisible(), 'no Lightning section');
  check((await status.innerText()) === 'Awaiting payment', `status shows ${JSON.stringify(await status.innerText())}`);
  const field = await page.locator('#lightning-bolt11').inputValue();
  check(field === bolt11, `#lightning-bolt11 holds ${JSON.stringify(field)}, expected the invoice's BOLT11`);
  check(await page.locator('#lightning-bolt11').evaluate((input) => input.readOnly), 'the BOLT11 field is editable');
  check(await page.locator('#lightning-error').isHidden(), 'an error shows on a page with a BOLT11');
  check((await page.locator('#lightning-retry').count()) === 0, 'a retry link on a page with a BOLT11');

  if (scenario === 'qr') {
    const qr = page.locator('#lightning-qr svg');
    check(await qr.isVisible(), 'the QR code is not visible');
    const box = await qr.boundingBox();
    check(box.width >= 150 && box.width <= 390 - 2 * 20, `the QR code is ${box.width} px wide on a 390 px screen`);
    check(Math.abs(box.width - box.height) < 1, `the QR code is not square: ${box.width} x ${box.height}`);
    check(box.x >= 0 && box.x + box.width <= 390, `the QR code leaves the screen: x ${box.x}, width ${box.width}`);
    const decoded = await decodeQr(qr);
    const uri = `LIGHTNING:${bolt11.toUpperCase()}`;
    check(decoded === uri, `the QR code reads ${JSON.stringify(decoded)}, expected ${JSON.stringify(uri)}`);
    const href = await page.locator('#lightning-open').getAttribute('href');
    check(href === `lightning:${bolt11}`, `the wallet link is ${JSON.stringify(href)}`);
    await page.locator('#lightning-copy').click();
    await page.locator('#lightning-copy').filter({ hasText: 'Copied' }).waitFor({ timeout: 5000 });
    const copied = await page.evaluate(() => navigator.clipboard.readText());
    check(copied === bolt11, `Copy put ${JSON.stringify(copied)} on the clipboard`);
    check(await page.evaluate(() => window.webln === undefined), 'a WebLN wallet in a plain browser');
    check(await weblnPay.isHidden(), '"Pay with wallet" shows without a WebLN wallet');
    await page.screenshot({ path: `${screenshot}-open.png`, fullPage: true });
    console.log('READY');
    await status.filter({ hasText: 'Paid ✓' }).waitFor({ timeout: 20000 });
  } else if (scenario === 'webln') {
    await weblnPay.waitFor({ state: 'visible', timeout: 5000 });
    await weblnPay.click();
    await status.filter({ hasText: 'Paid ✓' }).waitFor({ timeout: 20000 });
    const calls = await page.evaluate(() => window.weblnCalls);
    check(JSON.stringify(calls) === JSON.stringify([['enable'], ['sendPayment', bolt11]]),
      `the wallet was called with ${JSON.stringify(calls)}`);
    // The page asks the server at once after the wallet paid, not at its next poll (1 s on).
    const asked = await page.evaluate(() => performance.getEntriesByType('resource')
      .filter((entry) => entry.name.endsWith('/status') && entry.startTime >= window.weblnPaidAt)
      .map((entry) => entry.startTime - window.weblnPaidAt));
    check(asked.length > 0 && asked[0] < 300, `status asked ${JSON.stringify(asked)} ms after the wallet paid`);
    const error = await page.locator('#lightning-error').textContent();
    check(error === '', `the page shows an error: ${JSON.stringify(error)}`);
  } else {
    throw new Error(`unknown scenario ${scenario}`);
  }
  await section.waitFor({ state: 'hidden', timeout: 5000 });
  check(await weblnPay.isHidden(), '"Pay with wallet" still shows on a paid invoice');
  check(reloads.length === 1, `the page reloaded: ${reloads.join(', ')}`);
  await page.screenshot({ path: `${screenshot}-paid.png`, fullPage: true });
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
