// Drives the TON section's "Pay with wallet" (TON Connect) in Debian's headless Chromium
// (playwright-core). Run by crates/farthing-server/tests/it/ton.rs:
//   node ton.mjs <url> <payer raw address> <network id> <screenshot prefix>
// A wallet is injected before the page's scripts run, built to TON Connect's JS bridge
// (ton-blockchain/ton-connect bridge.md: window.<key>.tonconnect with deviceInfo, walletInfo,
// connect, restoreConnection, send, listen) under Tonkeeper's bridge key, holding the payer's
// address on <network id>. Every request to a host other than 127.0.0.1 is refused and listed.
// The script opens the page, clicks "Pay with wallet", picks the wallet in TON Connect's list, and when the
// wallet is asked to sign, prints `REQUEST <the sendTransaction params as JSON>` and answers
// with a signed-looking BoC. It then waits until the page says "Paid, confirming…" and, once
// the test had the payment mined and served by the indexer, "Paid ✓" — without a reload.
// It checks that TON Connect's library came from farthing itself, that no script came from
// elsewhere, that nothing reached TON Connect's analytics, and that the page's
// Content-Security-Policy refused nothing. Prints `EXTERNAL <url>` for each refused request,
// then OK; or FAILED: <reason> and exits 1.
//   node ton.mjs <url> <payer> <network id> <screenshot prefix> <init data>
// The page as the merchant bot's Mini App in Telegram's Android client: the launch parameters
// in the URL's fragment, window.Telegram.WebApp with the signed init data, and the client's
// TelegramWebviewProxy (its postEvent is how a Mini App asks the client to open a t.me link).
// No wallet is injected (a phone has none). It checks that "TON wallet" is the Mini App's
// method, taps Pay, picks Telegram's own wallet in TON Connect's list, and checks that the
// client was asked to open that wallet (web_app_open_tg_link, /wallet/start?startapp=
// tonconnect-…) with the connect request; then, after a reload, picks Tonkeeper and checks its
// universal link carries the request and returns the payer to Telegram (ret=tg://resolve).
import { chromium } from 'playwright-core';

const [url, payer, network, screenshot, initData] = process.argv.slice(2);
const miniApp = !!initData;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});

function check(condition, message) {
  if (!condition) throw new Error(message);
}

let failed = null, shown = null;
const external = [];
try {
  const context = await browser.newContext({ viewport: miniApp ? { width: 390, height: 844 } : { width: 1280, height: 900 } });
  await context.route('**/*', (route) => {
    const target = new URL(route.request().url());
    if (target.hostname === '127.0.0.1') return route.continue();
    external.push(`${route.request().resourceType()} ${target.href}`);
    return route.abort();
  });
  await context.addInitScript(({ payer, network, miniApp }) => {
    window.cspViolations = [];
    document.addEventListener('securitypolicyviolation', (e) => {
      // TON Connect's UI sets an empty `ontouchstart` attribute on <body> (so that iOS shows
      // :active styles); recent Chromium (156) reports it as a refused inline handler, though
      // an empty handler does nothing either way. That one is not a refusal that matters.
      if (e.violatedDirective === 'script-src-attr' && e.sample === ''
        && e.sourceFile.endsWith('/tonconnect-ui.min.js')) return;
      window.cspViolations.push(`${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber} ${e.sample}`);
    });
    window.walletCalls = [];
    const deviceInfo = {
      platform: 'browser', appName: 'Tonkeeper', appVersion: '4.0.0', maxProtocolVersion: 2,
      features: ['SendTransaction', { name: 'SendTransaction', maxMessages: 4 }],
    };
    if (!miniApp) window.tonkeeper = {
      tonconnect: {
        deviceInfo,
        walletInfo: {
          name: 'Tonkeeper', app_name: 'tonkeeper', image: 'https://tonkeeper.com/assets/tonconnect-icon.png',
          about_url: 'https://tonkeeper.com', platforms: ['chrome', 'firefox', 'safari'],
        },
        protocolVersion: 2,
        isWalletBrowser: false,
        async connect(version, message) {
          window.walletCalls.push(['connect', version, message]);
          return {
            event: 'connect', id: 1,
            payload: {
              items: [{ name: 'ton_addr', address: payer, network, publicKey: '00'.repeat(32), walletStateInit: 'te6cckEBAQEAAgAAAEysuc0=' }],
              device: deviceInfo,
            },
          };
        },
        async restoreConnection() {
          return { event: 'connect_error', id: 0, payload: { code: 0, message: 'nothing to restore' } };
        },
        async send(message) {
          window.walletCalls.push(['send', message]);
          // The BoC of an empty cell as the "signed message": the page must not care what it
          // is, it waits for the chain.
          return { result: 'te6cckEBAQEAAgAAAEysuc0=', id: message.id };
        },
        listen() { return () => {}; },
        disconnect() {},
      },
    };
    if (miniApp) {
      // Telegram's Android client as a Mini App host, as far as this page needs it.
      const user = JSON.parse(new URLSearchParams(miniApp).get('user'));
      window.Telegram = { WebApp: {
        initData: miniApp, initDataUnsafe: { user }, themeParams: {}, platform: 'android', version: '8.0',
        ready() {}, expand() {},
        openLink(link) { window.walletCalls.push(['openLink', link]); },
      } };
      window.TelegramWebviewProxy = {
        postEvent(type, data) { window.walletCalls.push(['postEvent', type, data]); },
      };
      // A wallet app's universal link leaves the Mini App through the browser.
      window.open = (href, target) => { window.walletCalls.push(['open', href, target]); return null; };
    }
  }, { payer, network, miniApp: initData || '' });
  const page = await context.newPage();
  shown = page;
  page.on('pageerror', (e) => console.error('page error:', e.message));
  const reloads = [];
  page.on('framenavigated', (frame) => { if (frame === page.mainFrame()) reloads.push(frame.url()); });
  await page.goto(miniApp
    ? `${url}#tgWebAppData=${encodeURIComponent(initData)}&tgWebAppPlatform=android&tgWebAppVersion=8.0`
    : url);
  const status = page.locator('#status');
  if (!miniApp) check((await status.innerText()) === 'Awaiting payment', `status shows ${JSON.stringify(await status.innerText())}`);
  const pay = page.locator('#ton-connect-pay');
  if (miniApp) {
    // Pays with the Mini App's TON method and picks `choice` in TON Connect's list; returns
    // what the page asked the Telegram client and the browser to open.
    const choose = async (choice) => {
      await page.locator('#webapp').waitFor({ state: 'visible', timeout: 5000 });
      check(await pay.isHidden(), 'the section\'s own wallet button shows in the Mini App');
      const method = page.locator('#webapp-method-ton');
      await method.waitFor({ state: 'visible', timeout: 5000 });
      check((await method.getAttribute('aria-checked')) === 'true', 'TON wallet is not the chosen method');
      await page.locator('#webapp-pay').click();
      await page.getByText(choice, { exact: true }).filter({ visible: true }).first().click({ timeout: 10000 });
      await page.waitForFunction(() => window.walletCalls.some((c) => c[0] === 'postEvent' || c[0] === 'open'), null, { timeout: 10000 });
      return page.evaluate(() => window.walletCalls);
    };
    // The connect request a wallet link carries.
    const manifestOf = (params) => JSON.parse(params.get('r') || '{}').manifestUrl || '';
    // Telegram's own wallet: the client opens it (web_app_open_tg_link) and it goes back by itself.
    let calls = await choose('Connect Wallet in Telegram');
    const opened = calls.filter((c) => c[0] === 'postEvent' && c[1] === 'web_app_open_tg_link')
      .map((c) => JSON.parse(c[2]).path_full);
    check(opened.length === 1, `the client was asked to open ${JSON.stringify(calls)}`);
    const link = new URL(`https://t.me${opened[0]}`);
    const start = link.searchParams.get('startapp') || '';
    check(link.pathname === '/wallet/start' && start.startsWith('tonconnect-'), `opened ${opened[0]}`);
    const decoded = await page.evaluate((s) => window.TON_CONNECT_UI.decodeTelegramUrlParameters(s), start.slice('tonconnect-'.length));
    const params = new URLSearchParams(decoded);
    check(manifestOf(params).endsWith('/tonconnect-manifest.json'), `connect request ${decoded}`);
    check(params.get('ret') === 'back', `Telegram's wallet returns to ${params.get('ret')}`);
    console.log(`OPENED ${link.pathname}`);
    await page.screenshot({ path: `${screenshot}-wallet.png`, fullPage: true });
    // Another wallet app (Tonkeeper, on the phone): its universal link, leaving through the
    // browser; the wallet returns the payer to Telegram (tg://resolve), where the Mini App is.
    await page.reload();
    calls = await choose('Tonkeeper');
    const links = calls.filter((c) => c[0] === 'open').map((c) => new URL(c[1]));
    check(links.length === 1 && links[0].host === 'app.tonkeeper.com', `opened ${JSON.stringify(calls)}`);
    check(manifestOf(links[0].searchParams).endsWith('/tonconnect-manifest.json'), `connect request ${links[0]}`);
    check(links[0].searchParams.get('ret') === 'tg://resolve',
      `Tonkeeper returns to ${JSON.stringify(links[0].searchParams.get('ret'))}, not to Telegram`);
    console.log(`OPENED ${links[0].origin}${links[0].pathname}`);
  } else {
    await pay.waitFor({ state: 'visible', timeout: 5000 });
    check((await pay.innerText()) === 'Pay with wallet', `the button says ${JSON.stringify(await pay.innerText())}`);
    await pay.click();
    // TON Connect's wallet list: pick Tonkeeper, then its browser extension (the injected
    // wallet) rather than the QR code for the phone.
    await page.getByText('Tonkeeper', { exact: true }).first().click({ timeout: 10000 });
    await page.getByText('Browser Extension', { exact: true }).click({ timeout: 10000 });
    // The wallet is asked to sign the page's request.
    await page.waitForFunction(() => window.walletCalls.some((c) => c[0] === 'send'), null, { timeout: 10000 });
    const calls = await page.evaluate(() => window.walletCalls);
    const connects = calls.filter((c) => c[0] === 'connect');
    check(connects.length === 1, `the wallet was asked to connect ${connects.length} times`);
    check(connects[0][2].manifestUrl.endsWith('/tonconnect-manifest.json'), `manifest ${connects[0][2].manifestUrl}`);
    const sends = calls.filter((c) => c[0] === 'send');
    check(sends.length === 1, `the wallet was asked to sign ${sends.length} times`);
    check(sends[0][1].method === 'sendTransaction', `the wallet was asked to ${sends[0][1].method}`);
    console.log(`REQUEST ${sends[0][1].params[0]}`);
    await pay.filter({ hasText: 'Paid, confirming…' }).waitFor({ timeout: 10000 });
    const error = await page.locator('#ton-connect-error').textContent();
    check(error === '', `the page shows an error: ${JSON.stringify(error)}`);
    await page.screenshot({ path: `${screenshot}-sent.png`, fullPage: true });
    await status.filter({ hasText: 'Paid ✓' }).waitFor({ timeout: 30000 });
    await page.locator('#ton').waitFor({ state: 'hidden', timeout: 5000 });
    check(reloads.length === 1, `the page reloaded: ${reloads.join(', ')}`);
    await page.screenshot({ path: `${screenshot}-paid.png`, fullPage: true });
  }
  const scripts = await page.evaluate(() => performance.getEntriesByType('resource')
    .filter((entry) => entry.initiatorType === 'script' || entry.name.endsWith('.js') || entry.name.includes('.js?'))
    .map((entry) => entry.name));
  const origin = new URL(url).origin;
  check(scripts.some((name) => name.startsWith(`${origin}/pay/assets/tonconnect-ui.min.js?v=`)),
    `TON Connect's library was not loaded from farthing: ${JSON.stringify(scripts)}`);
  check(!external.some((entry) => entry.startsWith('script ')), `a script from elsewhere: ${JSON.stringify(external)}`);
  check(!external.some((entry) => entry.includes('analytics')), `TON Connect's analytics were called: ${JSON.stringify(external)}`);
  const violations = await page.evaluate(() => window.cspViolations);
  check(violations.length === 0, `the Content-Security-Policy refused: ${JSON.stringify(violations)}`);
} catch (error) {
  failed = error;
  if (shown) await shown.screenshot({ path: `${screenshot}-failed.png`, fullPage: true }).catch(() => {});
} finally {
  await browser.close();
}
for (const entry of external) console.log(`EXTERNAL ${entry}`);
if (failed) {
  console.log(`FAILED: ${failed.message}`);
  process.exit(1);
}
console.log('OK');
