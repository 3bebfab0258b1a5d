// The checkout page's script (pages/checkout.rs renders the page): shows the invoice's status
// as the server reports it (GET /pay/{id}/status, polled), the countdown, the sandbox button
// in test mode, and the Lightning section's Copy and WebLN buttons. It never decides that
// anything is paid.
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
show(invoice); tick(); setInterval(tick, 1000); poll();
