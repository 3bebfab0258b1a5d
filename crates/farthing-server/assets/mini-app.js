// The Mini App screen of the checkout page (SPEC T4), loaded only when the merchant has a bot:
// finds Telegram.WebApp, exchanges the init data for a session (POST /webapp/session, kept in
// sessionStorage), and shows amount, method (Stars through openInvoice, the balance, or a TON
// wallet through TON Connect — checkout.js's window.farthingTon) and Pay.
// The status still comes from the server only.
(() => {
// The Mini App's settings, a JSON block of the page.
const cfg = JSON.parse(document.getElementById('mini-app-data').textContent);
const TEXT = {
  en: {amount: 'Amount', method: 'Pay with', ton: 'TON wallet', stars: 'Telegram Stars', balance: 'Balance', available: '{n} available', pay: 'Pay', paying: 'Paying…', confirming: 'Confirming…', paid: 'Paid ✓', open: 'Awaiting payment', expired: 'Expired', canceled: 'Canceled', insufficient: 'Not enough balance', failed: 'Payment failed, please try again', none: 'This invoice can’t be paid in Telegram.'},
  fr: {amount: 'Montant', method: 'Payer avec', ton: 'Portefeuille TON', stars: 'Telegram Stars', balance: 'Solde', available: '{n} disponible', pay: 'Payer', paying: 'Paiement…', confirming: 'Confirmation…', paid: 'Payé ✓', open: 'En attente de paiement', expired: 'Expirée', canceled: 'Annulée', insufficient: 'Solde insuffisant', failed: 'Le paiement a échoué, réessayez', none: 'Cette facture ne peut pas être payée dans Telegram.'},
  de: {amount: 'Betrag', method: 'Bezahlen mit', ton: 'TON-Wallet', stars: 'Telegram Stars', balance: 'Guthaben', available: '{n} verfügbar', pay: 'Bezahlen', paying: 'Zahlung läuft…', confirming: 'Wird bestätigt…', paid: 'Bezahlt ✓', open: 'Zahlung ausstehend', expired: 'Abgelaufen', canceled: 'Storniert', insufficient: 'Guthaben reicht nicht', failed: 'Zahlung fehlgeschlagen, bitte erneut versuchen', none: 'Diese Rechnung kann nicht in Telegram bezahlt werden.'},
  fa: {amount: 'مبلغ', method: 'پرداخت با', ton: 'کیف پول TON', stars: 'استارز تلگرام', balance: 'موجودی', available: '{n} در دسترس', pay: 'پرداخت', paying: 'در حال پرداخت…', confirming: 'در حال تأیید…', paid: 'پرداخت شد ✓', open: 'در انتظار پرداخت', expired: 'منقضی شده', canceled: 'لغو شده', insufficient: 'موجودی کافی نیست', failed: 'پرداخت ناموفق بود، دوباره تلاش کنید', none: 'این صورتحساب در تلگرام قابل پرداخت نیست.'},
  ru: {amount: 'Сумма', method: 'Оплатить через', ton: 'Кошелёк TON', stars: 'Telegram Stars', balance: 'Баланс', available: 'доступно {n}', pay: 'Оплатить', paying: 'Оплата…', confirming: 'Подтверждение…', paid: 'Оплачено ✓', open: 'Ожидает оплаты', expired: 'Истёк', canceled: 'Отменён', insufficient: 'Недостаточно средств', failed: 'Оплата не прошла, попробуйте ещё раз', none: 'Этот счёт нельзя оплатить в Telegram.'},
};
const RTL = ['fa'];
let t = TEXT.en;
function setLanguage(code) {
  const lang = String(code || 'en').slice(0, 2).toLowerCase();
  const chosen = TEXT[lang] ? lang : 'en';
  t = TEXT[chosen];
  document.documentElement.lang = chosen;
  document.documentElement.dir = RTL.includes(chosen) ? 'rtl' : 'ltr';
}
const $ = (id) => document.getElementById(id);
// One session per bot and mode: a test-mode session can't pay a live invoice.
const storageKey = 'farthing.webapp.' + cfg.bot_id + (cfg.livemode ? '.live' : '.test');
function storedSession() {
  try {
    const s = JSON.parse(sessionStorage.getItem(storageKey) || 'null');
    if (s && s.session && s.expires_at > Date.now() / 1000 + 30) return s;
  } catch (e) {}
  return null;
}
function fmt(minor) {
  // Minor units to the decimal text, on strings (no floats with money).
  let digits = String(minor);
  if (cfg.exponent > 0) {
    digits = digits.padStart(cfg.exponent + 1, '0');
    digits = digits.slice(0, -cfg.exponent) + '.' + digits.slice(-cfg.exponent);
  }
  return digits + ' ' + cfg.unit;
}
let session = null, amount = cfg.amount, method = null, busy = false, asked = false, confirming = false, chosen = false, state = invoice.status;
function available() {
  const b = (session && session.balances || []).find((b) => b.currency === cfg.currency);
  return b ? b.available : 0;
}
function fail(text) { const el = $('webapp-error'); el.textContent = text || ''; el.hidden = !text; }
function render() {
  $('webapp-amount-label').textContent = t.amount;
  $('webapp-method-label').textContent = t.method;
  $('webapp-amount-label').hidden = cfg.amount !== null || state !== 'open';
  $('webapp-method-label').hidden = state !== 'open';
  const presets = $('webapp-presets');
  presets.replaceChildren();
  if (cfg.amount === null) {
    for (const p of cfg.presets) {
      const b = document.createElement('button');
      b.type = 'button'; b.className = 'preset'; b.textContent = p.label; b.dataset.minor = p.minor;
      b.setAttribute('aria-pressed', String(p.minor === amount));
      b.addEventListener('click', () => { if (busy) return; amount = p.minor; render(); });
      presets.append(b);
    }
  }
  const options = [];
  if (cfg.stars_link && window.Telegram && window.Telegram.WebApp && window.Telegram.WebApp.openInvoice) options.push(['stars', t.stars]);
  if (cfg.balance && session && amount !== null && available() >= amount) options.push(['balance', t.balance + ' · ' + t.available.replace('{n}', fmt(available()))]);
  // TON Connect opens the payer's wallet (Telegram's own or another) and returns to the bot.
  if (window.farthingTon && cfg.amount !== null) options.push(['ton', t.ton]);
  // Until the payer picks one: the balance when it covers the amount (one tap), else Stars.
  if (!chosen || !options.some(([m]) => m === method)) method = options.length ? (options.find(([m]) => m === 'balance') || options[0])[0] : null;
  const methods = $('webapp-methods');
  methods.replaceChildren();
  for (const [m, label] of options) {
    const b = document.createElement('button');
    b.type = 'button'; b.id = 'webapp-method-' + m; b.setAttribute('role', 'radio');
    b.setAttribute('aria-checked', String(m === method)); b.textContent = label;
    b.addEventListener('click', () => { if (!busy) { method = m; chosen = true; render(); } });
    methods.append(b);
  }
  const pay = $('webapp-pay');
  pay.textContent = busy ? t.paying : (confirming && state === 'open') ? t.confirming : t.pay + (amount !== null ? ' ' + fmt(amount) : '');
  pay.disabled = busy || confirming || state !== 'open' || !method || amount === null;
  if (asked && state === 'open' && !options.length && amount !== null) fail(t.none);
  else if ($('webapp-error').textContent === t.none) fail('');
  statusLabelRefresh();
}
function statusLabelRefresh() {
  const el = $('status');
  const s = el.className.replace('status', '').trim();
  if (s) el.textContent = window.statusLabel(s);
}
async function payBalance() {
  const response = await fetch('/webapp/pay/' + invoice.id, {
    method: 'POST',
    headers: {'content-type': 'application/json', 'authorization': 'Bearer ' + session.session},
    body: JSON.stringify(cfg.amount === null ? {amount} : {}),
  });
  const body = await response.json().catch(() => ({}));
  if (response.ok) { show(body); return; }
  if (response.status === 401) { sessionStorage.removeItem(storageKey); }
  const code = body.error && body.error.code;
  fail(code === 'insufficient_funds' ? t.insufficient : (body.error && body.error.message) || t.failed);
  poll();
}
function payStars() {
  return new Promise((resolve) => {
    window.Telegram.WebApp.openInvoice(cfg.stars_link, (status) => {
      // Telegram says paid; the page still shows paid only when the server says so.
      if (status === 'paid') { confirming = true; poll(); }
      else if (status === 'failed') fail(t.failed);
      resolve();
    });
  });
}
async function onPay() {
  if (busy || !method) return;
  busy = true; fail(''); render();
  try {
    if (method === 'balance') await payBalance();
    else if (method === 'ton') { if (await window.farthingTon.pay()) { confirming = true; poll(); } }
    else await payStars();
  }
  catch (e) { fail(t.failed); }
  busy = false; render();
}
async function start(tg) {
  if (tg) {
    try { tg.ready(); tg.expand(); } catch (e) {}
    const p = tg.themeParams || {};
    const root = document.documentElement.style;
    for (const [name, key] of [['--tg-bg', 'bg_color'], ['--tg-text', 'text_color'], ['--tg-card', 'secondary_bg_color'], ['--tg-button', 'button_color'], ['--tg-button-text', 'button_text_color'], ['--tg-hint', 'hint_color']]) {
      if (p[key]) root.setProperty(name, p[key]);
    }
    const unsafe = tg.initDataUnsafe && tg.initDataUnsafe.user;
    setLanguage(unsafe && unsafe.language_code);
  }
  document.documentElement.classList.add('mini-app');
  document.body.classList.add('mini-app');
  window.statusLabel = (s) => t[s] || s;
  window.onInvoiceStatus = (s) => {
    state = s.status;
    if (state !== 'open') { $('webapp-methods').hidden = true; $('webapp-presets').hidden = true; }
    if (s.amount_paid) $('amount').textContent = fmt(s.amount_paid);
    render();
  };
  $('rails-line').hidden = true;
  const lightning = $('lightning'); if (lightning) lightning.hidden = true;
  // The TON section keeps its address, amount and comment; its wallet button is the Pay below.
  const tonPay = $('ton-connect-pay'); if (tonPay) tonPay.hidden = true;
  $('webapp').hidden = false;
  $('webapp-pay').addEventListener('click', onPay);
  render();
  if (tg && tg.initData) {
    try {
      const response = await fetch('/webapp/session', {
        method: 'POST', headers: {'content-type': 'application/json'},
        body: JSON.stringify({bot_id: cfg.bot_id, init_data: tg.initData, invoice: invoice.id}),
      });
      const body = await response.json();
      if (response.ok) { session = body; sessionStorage.setItem(storageKey, JSON.stringify(body)); }
      else { session = storedSession(); if (!session) fail(body.error && body.error.message || t.failed); }
    } catch (e) { session = storedSession(); if (!session) fail(t.failed); }
  } else {
    session = storedSession();
  }
  asked = true;
  if (session) setLanguage(session.user && session.user.language_code);
  show(invoice);
  poll();
}
const tg = window.Telegram && window.Telegram.WebApp;
const opened = /[#&?]tgWebAppData=/.test(location.hash) || /[?&]tgWebApp(Data)?=/.test(location.search);
if (tg && tg.initData) start(tg);
else if (storedSession()) start(tg && tg.openInvoice ? tg : null);
else if (opened && cfg.script_url) {
  const script = document.createElement('script');
  script.src = cfg.script_url;
  script.onload = () => { const w = window.Telegram && window.Telegram.WebApp; if (w && w.initData) start(w); };
  document.head.append(script);
}
})();
