// The checkout page's script (pages/checkout.rs renders the page): shows the invoice's status
// as the server reports it (GET /pay/{id}/status, polled), the countdown, the sandbox button
// in test mode, the Lightning section's Copy and WebLN buttons, and the TON section's Copy
// buttons and TON Connect "Pay with wallet". It never decides that anything is paid.
// The invoice's status as the server rendered it (a JSON block of the page: no inline script).
const invoice = JSON.parse(document.getElementById('invoice-data').textContent);
// The page's words in its language (pages/texts.rs), also a JSON block.
const texts = JSON.parse(document.getElementById('page-texts').textContent);
const statusEl = document.getElementById('status');
const countdownEl = document.getElementById('countdown');
const sandboxEl = document.getElementById('sandbox');
const lightningEl = document.getElementById('lightning');
const tonEl = document.getElementById('ton');
function show(s) {
  statusEl.textContent = window.statusLabel ? window.statusLabel(s.status) : (texts.status[s.status] || s.status);
  statusEl.className = 'status ' + s.status;
  if (window.onInvoiceStatus) window.onInvoiceStatus(s);
  showReceipt(s);
  if (s.status !== 'open') {
    countdownEl.textContent = '';
    // Nothing left to pay: the sandbox button goes (it stays disabled for scripts that look).
    if (sandboxEl) { sandboxEl.disabled = true; const box = document.getElementById('sandbox-box'); if (box) box.hidden = true; }
    if (lightningEl) lightningEl.hidden = true;
    if (tonEl) tonEl.hidden = true;
    // The next step: back to the shop, and on an expired invoice, why.
    if (presetsEl) presetsEl.hidden = true;
    const back = document.getElementById('return-link');
    if (back) back.hidden = false;
    const balanceOnly = document.getElementById('balance-only');
    if (balanceOnly) balanceOnly.hidden = true;
    const expired = document.getElementById('expired-next');
    if (expired) expired.hidden = s.status !== 'expired';
  }
}
// Once paid: the receipt (amount, time, rail) instead of the rails to pay with.
function showReceipt(s) {
  const receipt = document.getElementById('receipt');
  const railsLine = document.getElementById('rails-line');
  if (railsLine) railsLine.hidden = s.status !== 'open';
  if (!receipt || s.status !== 'paid') return;
  const amountEl = document.getElementById('receipt-amount');
  if (s.amount_paid != null) {
    const exponent = Number(amountEl.dataset.exponent || 0);
    const value = exponent ? (s.amount_paid / 10 ** exponent).toFixed(exponent) : String(s.amount_paid);
    amountEl.textContent = value + ' ' + amountEl.dataset.unit;
  }
  if (s.paid_at) document.getElementById('receipt-time').textContent = new Date(s.paid_at * 1000).toLocaleString(texts.lang);
  if (s.paid_rail) document.getElementById('receipt-rail').textContent = texts.rail_names[s.paid_rail] || s.paid_rail;
  receipt.hidden = false;
}
function tick() {
  if (statusEl.className.indexOf('open') < 0) return;
  const left = Math.max(0, invoice.expires_at - Math.floor(Date.now() / 1000));
  const m = Math.floor(left / 60), s = left % 60;
  countdownEl.textContent = texts.expires_in + ' ' + m + ':' + String(s).padStart(2, '0');
}
// poll() may also be called early (after a wallet paid): only the latest call shows its answer
// and schedules the next, so there is one polling loop and no stale status.
let pollSeq = 0, pollTimer = 0;
async function poll() {
  const seq = ++pollSeq;
  clearTimeout(pollTimer);
  try {
    const r = await fetch('/pay/' + invoice.id + '/status', {cache: 'no-store'});
    if (seq !== pollSeq) return;
    if (r.ok) { const s = await r.json(); if (seq !== pollSeq) return; show(s); if (s.status !== 'open') return; }
  } catch (e) {}
  if (seq === pollSeq) pollTimer = setTimeout(poll, 1000);
}
// An amountless invoice's suggested amounts: one is chosen (the first at first).
const presetsEl = document.getElementById('presets');
let chosenMinor = null;
if (presetsEl) {
  const buttons = Array.from(presetsEl.querySelectorAll('button'));
  const choose = (button) => {
    buttons.forEach((b) => b.setAttribute('aria-pressed', String(b === button)));
    chosenMinor = button.dataset.minor;
  };
  buttons.forEach((b) => b.addEventListener('click', () => choose(b)));
  if (buttons.length) choose(buttons[0]);
}
if (sandboxEl) sandboxEl.addEventListener('click', async () => {
  sandboxEl.disabled = true;
  const amount = chosenMinor ? '?amount=' + encodeURIComponent(chosenMinor) : '';
  const r = await fetch('/pay/' + invoice.id + '/sandbox' + amount, {method: 'POST'});
  if (r.ok) show(await r.json()); else sandboxEl.disabled = false;
});
const bolt11El = document.getElementById('lightning-bolt11');
const copyEl = document.getElementById('lightning-copy');
const weblnEl = document.getElementById('webln-pay');
const lnErrorEl = document.getElementById('lightning-error');
function lnError(text) { if (lnErrorEl) { lnErrorEl.textContent = text; lnErrorEl.hidden = !text; } }
if (copyEl) copyEl.addEventListener('click', async () => {
  let copied = false;
  try { await navigator.clipboard.writeText(bolt11El.value); copied = true; } catch (e) {
    // No Clipboard API (a page served over plain http, an old browser): select the text.
    bolt11El.focus(); bolt11El.select(); bolt11El.setSelectionRange(0, bolt11El.value.length);
    try { copied = document.execCommand('copy'); } catch (e2) {}
  }
  copyEl.textContent = copied ? texts.copied : texts.selected;
  setTimeout(() => { copyEl.textContent = texts.copy; }, 2000);
});
// The TON section's Copy buttons: each copies the field it names (data-copy).
for (const button of document.querySelectorAll('button[data-copy]')) {
  button.addEventListener('click', async () => {
    const field = document.getElementById(button.dataset.copy);
    let copied = false;
    try { await navigator.clipboard.writeText(field.value); copied = true; } catch (e) {
      field.focus(); field.select(); field.setSelectionRange(0, field.value.length);
      try { copied = document.execCommand('copy'); } catch (e2) {}
    }
    button.textContent = copied ? texts.copied : texts.selected;
    setTimeout(() => { button.textContent = texts.copy; }, 2000);
  });
}
function offerWebln() { if (weblnEl && window.webln && statusEl.className.indexOf('open') >= 0) weblnEl.hidden = false; }
if (weblnEl) {
  offerWebln();
  // Some extensions inject window.webln after the page's script ran.
  window.addEventListener('webln:ready', offerWebln);
  window.addEventListener('load', offerWebln);
  weblnEl.addEventListener('click', async () => {
    weblnEl.disabled = true; lnError('');
    try {
      await window.webln.enable();
      await window.webln.sendPayment(bolt11El.value);
      // The wallet says it paid; the page still shows paid only when the server says so.
      weblnEl.textContent = texts.confirming;
      poll();
    } catch (e) {
      lnError(texts.wallet_failed + ((e && e.message) || String(e)));
      weblnEl.disabled = false;
    }
  });
}
// The TON section's "Pay with wallet": TON Connect (its UI library, tonconnect-ui.min.js, is
// served by farthing). The payer picks a wallet, connects, and the wallet is asked to sign the
// rail's own sendTransaction request (address, amount, the comment as payload, valid until the
// invoice expires; for USDT, asked of the server for the connected wallet). The page shows
// paid only when the watcher has seen the payment on chain.
const tonData = document.getElementById('ton-connect-data');
const tonPayEl = document.getElementById('ton-connect-pay');
const tonErrorEl = document.getElementById('ton-connect-error');
if (tonData && tonPayEl && window.TON_CONNECT_UI) {
  const connect = JSON.parse(tonData.textContent);
  let ui = null, wanted = null;
  const tonError = (text) => { tonErrorEl.textContent = text; tonErrorEl.hidden = !text; };
  // A request in TON Connect's wire form (snake case) as the UI library takes it.
  const asLibrary = (r) => ({
    validUntil: r.valid_until,
    network: r.network,
    ...(r.from ? {from: r.from} : {}),
    messages: r.messages.map((m) => ({address: m.address, amount: m.amount, payload: m.payload})),
  });
  // TON's request came with the page; a jetton's goes to the payer's own jetton wallet, which
  // the server names once it knows the connected wallet.
  async function transaction() {
    if (connect.request) return asLibrary(connect.request);
    const r = await fetch(connect.request_url, {
      method: 'POST', headers: {'content-type': 'application/json'},
      body: JSON.stringify({payer: ui.account.address}),
    });
    const body = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error((body.error && body.error.message) || ('HTTP ' + r.status));
    return asLibrary(body.request);
  }
  async function send() {
    const done = wanted; wanted = null;
    tonPayEl.disabled = true; tonError('');
    try {
      await ui.sendTransaction(await transaction(), {modals: ['before'], notifications: []});
      // The wallet signed and sent it; the chain and the watcher still have to see it.
      tonPayEl.textContent = texts.confirming;
      poll();
      if (done) done.resolve(true);
    } catch (e) {
      tonError(texts.wallet_failed + ((e && e.message) || String(e)));
      tonPayEl.disabled = false;
      if (done) done.reject(e);
    }
  }
  function library() {
    if (ui) return ui;
    // Made on the first tap: nothing is fetched for TON Connect until the payer asks for it.
    ui = new window.TON_CONNECT_UI.TonConnectUI({
      manifestUrl: connect.manifest_url,
      language: texts.lang === 'ru' ? 'ru' : 'en',
      analytics: {mode: 'off'},
    });
    if (connect.twa_return_url) ui.uiOptions = {actionsConfiguration: {twaReturnUrl: connect.twa_return_url}};
    // Connected after the tap (the payer picked a wallet in the modal): ask it to pay.
    ui.onStatusChange((wallet) => { if (wallet && wanted) send(); });
    ui.onModalStateChange((state) => {
      if (state.status === 'closed' && !ui.connected && wanted) { const w = wanted; wanted = null; tonPayEl.disabled = false; w.resolve(false); }
    });
    return ui;
  }
  // Pays: resolves true once the wallet sent the payment, false if the payer closed the list.
  async function pay() {
    library();
    tonError('');
    // A wallet connected before (kept by the library) is reused; but a bridge that cannot be
    // reached must not keep the payer waiting: after 2 s the wallet list opens anyway.
    await Promise.race([ui.connectionRestored, new Promise((done) => setTimeout(done, 2000))]);
    return new Promise((resolve, reject) => {
      wanted = {resolve, reject};
      if (ui.connected) send(); else { tonPayEl.disabled = true; ui.openModal(); }
    });
  }
  tonPayEl.hidden = false;
  tonPayEl.addEventListener('click', () => {
    pay().catch((e) => { tonError(texts.wallet_failed + ((e && e.message) || String(e))); tonPayEl.disabled = false; });
  });
  // The Mini App offers the same as one of its methods.
  window.farthingTon = {pay};
}
show(invoice); tick(); setInterval(tick, 1000); poll();
