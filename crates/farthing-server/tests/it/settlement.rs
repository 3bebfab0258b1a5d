//! Integration tests of rail-payment settlement (`farthing_server::settlement`; SPEC P1, P3,
//! I3): a real server over a fresh database, with `settle_payment` run as a store job the way
//! a rail adapter runs it.
//!
//! Every test ends with [`Harness::stop`], which checks the ledger audit (SPEC L5) on both
//! stores and that money is conserved: per currency, what the merchant's balance and its
//! customers' balances gained equals what the rails reported — nothing lost, nothing counted
//! twice (SPEC I3).

use crate::support::server;
use std::collections::BTreeMap;

use farthing_core::invoice::{
    CreditReason, Invoice, InvoiceAmount, InvoiceStatus, NewInvoice, DEFAULT_EXPIRES_IN_S,
};
use farthing_core::ledger::{code, Account, Group, Transfer, TransferAction};
use farthing_core::{Currency, CustomerId, InvoiceId, MerchantId, PublicId, Rail, TransferId};
use farthing_server::http::book;
use farthing_server::settlement::{
    credit_transfer_id, settle_payment, suspended_total, IncomingPayment, SettledPayment,
};
use farthing_server::state::Mode;
use farthing_server::web::error::ApiError;
use farthing_server::Running;
use farthing_store::{Customer, PageRequest, RailPayment, Store, StoreError};
use serde_json::{json, Value};

const XTR: Currency = Currency::XTR;
const TON: Currency = Currency::TON;

/// A server with two merchants; money reported to merchant A is tallied per currency.
struct Harness {
    running: Running,
    a: MerchantId,
    b: MerchantId,
    base: String,
    /// Per currency: the sum of every amount a rail reported and that was settled now (not a
    /// duplicate).
    reported: BTreeMap<Currency, u128>,
    _dir: tempfile::TempDir,
}

async fn spawn() -> Harness {
    let server = server::spawn(|_| {}).await;
    let a = server.merchant("Shop A").await;
    let b = server.merchant("Shop B").await;
    let base = server.running.state().config().base_url().to_owned();
    let (running, dir) = (server.running, server.dir);
    Harness {
        running,
        a: MerchantId::parse(&a.id).expect("merchant id"),
        b: MerchantId::parse(&b.id).expect("merchant id"),
        base,
        reported: BTreeMap::new(),
        _dir: dir,
    }
}

/// A Stars payment of `amount` XTR to merchant A for `invoice`.
fn stars(external_id: &str, invoice: Option<InvoiceId>, amount: u64) -> IncomingPayment {
    IncomingPayment {
        merchant: MerchantId(0),
        rail: Rail::Stars,
        external_id: external_id.to_owned(),
        invoice,
        payer: None,
        payer_external_id: None,
        currency: XTR,
        amount_minor: amount,
        payload: None,
    }
}

impl Harness {
    fn store(&self) -> &Store {
        self.running.state().store(Mode::Test)
    }

    /// Settles `payment` for merchant A in the test store; the job's own result.
    async fn try_settle(
        &mut self,
        mut payment: IncomingPayment,
    ) -> Result<SettledPayment, ApiError> {
        if payment.merchant == MerchantId(0) {
            payment.merchant = self.a;
        }
        let (currency, amount) = (payment.currency, payment.amount_minor);
        let base = self.base.clone();
        let result = self
            .store()
            .run(move |tx| settle_payment(tx, Mode::Test, payment, &base))
            .await
            .expect("the job's batch committed");
        if let Ok(settled) = &result {
            if !settled.duplicate {
                *self.reported.entry(currency).or_default() += u128::from(amount);
            }
        }
        result.map_err(ApiError::from)
    }

    #[track_caller]
    fn settled(result: Result<SettledPayment, ApiError>) -> SettledPayment {
        result.unwrap_or_else(|error| panic!("settlement refused: {error:?}"))
    }

    async fn settle(&mut self, payment: IncomingPayment) -> SettledPayment {
        Self::settled(self.try_settle(payment).await)
    }

    /// Runs a job in the test store.
    async fn job<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut farthing_store::Tx<'_, '_>) -> Result<T, StoreError> + Send + 'static,
    ) -> T {
        self.store()
            .run(work)
            .await
            .expect("committed")
            .expect("job")
    }

    /// Creates an open invoice of merchant `merchant` for `amount` XTR, payable with Stars.
    async fn invoice_of(
        &self,
        merchant: MerchantId,
        amount: InvoiceAmount,
        customer: Option<CustomerId>,
    ) -> Invoice {
        self.job(move |tx| {
            let invoice = NewInvoice {
                currency: XTR,
                amount,
                description: "a paid post".to_owned(),
                payload: None,
                rails: vec![Rail::Stars],
                customer,
                expires_in_s: DEFAULT_EXPIRES_IN_S,
                metadata: Vec::new(),
            }
            .into_invoice(farthing_server::ids::new_id(), merchant, tx.now_ns())
            .map_err(|error| StoreError::Corrupt(error.to_string()))?;
            tx.insert_invoice(&invoice)?;
            Ok(invoice)
        })
        .await
    }

    /// An open invoice whose expiry is its creation time: past due at once.
    async fn invoice_expiring_at_creation(&self, amount: u64) -> Invoice {
        let merchant = self.a;
        self.job(move |tx| {
            let mut invoice = NewInvoice {
                currency: XTR,
                amount: InvoiceAmount::Fixed(amount),
                description: "a paid post".to_owned(),
                payload: None,
                rails: vec![Rail::Stars],
                customer: None,
                expires_in_s: DEFAULT_EXPIRES_IN_S,
                metadata: Vec::new(),
            }
            .into_invoice(farthing_server::ids::new_id(), merchant, tx.now_ns())
            .map_err(|error| StoreError::Corrupt(error.to_string()))?;
            invoice.expires_at_ns = invoice.created_at_ns;
            tx.insert_invoice(&invoice)?;
            Ok(invoice)
        })
        .await
    }

    async fn invoice(&self, amount: u64) -> Invoice {
        self.invoice_of(self.a, InvoiceAmount::Fixed(amount), None)
            .await
    }

    async fn customer(&self, external_id: Option<&str>) -> CustomerId {
        let (merchant, external_id) = (self.a, external_id.map(str::to_owned));
        self.job(move |tx| {
            let customer = Customer {
                id: farthing_server::ids::new_id(),
                merchant,
                external_id,
                metadata: Vec::new(),
                created_at_ns: tx.now_ns(),
            };
            tx.insert_customer(&customer)?;
            Ok(customer.id)
        })
        .await
    }

    fn read_invoice(&self, id: InvoiceId) -> Invoice {
        self.store()
            .read(|reader| reader.invoice(id))
            .expect("read")
            .expect("invoice exists")
    }

    fn row(&self, rail: Rail, external_id: &str) -> Option<RailPayment> {
        self.store()
            .read(|reader| reader.rail_payment(self.a, rail, external_id))
            .expect("read")
    }

    fn balance(&self, account: Account) -> i128 {
        self.store()
            .account(account.id)
            .expect("read")
            .map_or(0, |state| state.balances.posted())
    }

    fn merchant_balance(&self, currency: Currency) -> i128 {
        self.balance(book::merchant(self.a, currency))
    }

    fn customer_balance(&self, customer: CustomerId, currency: Currency) -> i128 {
        self.balance(book::customer(self.a, customer, currency))
    }

    /// Merchant A's customers.
    fn customers(&self) -> Vec<Customer> {
        self.store()
            .read(|reader| reader.customers(self.a, PageRequest::newest(100)))
            .expect("read")
            .data
    }

    /// Merchant A's events of `kind`, oldest first, as their JSON bodies.
    fn events(&self, kind: &str) -> Vec<Value> {
        let page = self
            .store()
            .read(|reader| reader.events(self.a, PageRequest::newest(100)))
            .expect("read");
        assert!(!page.has_more, "more events than a test expects");
        page.data
            .iter()
            .rev()
            .filter(|event| event.event_type == kind)
            .map(|event| serde_json::from_str(&event.data).expect("event JSON"))
            .collect()
    }

    fn event_count(&self) -> usize {
        self.store()
            .read(|reader| reader.events(self.a, PageRequest::newest(100)))
            .expect("read")
            .data
            .len()
    }

    /// What merchant A and its customers hold in `currency`.
    fn held(&self, currency: Currency) -> i128 {
        self.merchant_balance(currency)
            + self
                .customers()
                .iter()
                .map(|customer| self.customer_balance(customer.id, currency))
                .sum::<i128>()
    }

    /// Checks the audit and the conservation of money, then shuts the server down.
    async fn stop(self) {
        self.stop_with_extra_external(Rail::Stars).await;
    }

    /// [`Harness::stop`], counting money that came in on `extra` as reported too.
    async fn stop_with_extra_external(self, extra: Rail) {
        for mode in [Mode::Live, Mode::Test] {
            let report = self
                .running
                .state()
                .store(mode)
                .audit()
                .expect("audit runs");
            assert!(report.is_ok(), "{mode:?} ledger audit failed: {report}");
        }
        for currency in [XTR, TON] {
            let reported = self.reported.get(&currency).copied().unwrap_or(0);
            assert_eq!(
                self.held(currency),
                i128::try_from(reported).expect("small"),
                "{currency}: merchant and customer balances must gain exactly what was reported"
            );
            // Everything came in through the Stars or TON rails' external accounts.
            let mut rails = vec![Rail::Stars, Rail::Ton];
            if !rails.contains(&extra) {
                rails.push(extra);
            }
            let external: i128 = rails
                .into_iter()
                .map(|rail| self.balance(book::rail(self.a, rail, currency)))
                .sum();
            assert_eq!(-external, i128::try_from(reported).expect("small"));
        }
        self.running.shutdown().await;
    }
}

#[track_caller]
fn assert_split(settled: &SettledPayment, paid: u64, credited: u64, reason: Option<CreditReason>) {
    let payment = &settled.payment;
    assert_eq!(
        (
            payment.paid_minor,
            payment.credited_minor,
            payment.credit_reason
        ),
        (paid, credited, reason),
        "unexpected split: {payment:?}"
    );
    assert!(!settled.duplicate);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_exact_payment_pays_the_invoice() {
    let mut h = spawn().await;
    let invoice = h.invoice(10).await;
    let mut payment = stars("charge-exact", Some(invoice.id), 10);
    payment.payload = Some(
        json!({"telegram_payment_charge_id": "charge-exact", "provider_payment_charge_id": "p-1"}),
    );
    let settled = h.settle(payment).await;

    assert_split(&settled, 10, 0, None);
    assert_eq!(settled.payment.customer, None, "no payer was named");
    let paid = settled.invoice.clone().expect("the invoice");
    assert_eq!(paid.status, InvoiceStatus::Paid);
    let record = paid.payment.expect("payment recorded");
    assert_eq!(record.amount_minor, 10);
    assert_eq!(record.rail, Rail::Stars);
    assert_eq!(record.transfer_id, TransferId(invoice.id.raw()));
    assert_eq!(
        h.read_invoice(invoice.id),
        paid,
        "the stored invoice is the returned one"
    );
    assert_eq!(h.merchant_balance(XTR), 10);

    // The row is stored with the payload, and listed under the invoice.
    let row = h.row(Rail::Stars, "charge-exact").expect("row");
    assert_eq!(row, settled.payment);
    let payload: Value =
        serde_json::from_str(row.payload.as_deref().expect("payload")).expect("JSON");
    assert_eq!(payload["provider_payment_charge_id"], "p-1");
    let listed = h
        .store()
        .read(|reader| reader.rail_payments_of_invoice(h.a, invoice.id))
        .expect("read");
    assert_eq!(listed, vec![row]);

    let paid_events = h.events("invoice.paid");
    assert_eq!(paid_events.len(), 1);
    let object = &paid_events[0]["data"]["object"];
    assert_eq!(object["id"], invoice.id.encode());
    assert_eq!(object["status"], "paid");
    assert_eq!(object["paid_rail"], "stars");
    assert_eq!(object["livemode"], false);
    assert_eq!(
        object["checkout_url"],
        format!("{}/pay/{}", h.base, invoice.id.encode())
    );
    assert!(h.events("invoice.payment_credited").is_empty());
    assert!(h.events("customer.balance_changed").is_empty());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_payment_reported_twice_settles_once_and_a_changed_report_is_refused() {
    let mut h = spawn().await;
    let invoice = h.invoice(10).await;
    let first = h.settle(stars("charge-twice", Some(invoice.id), 10)).await;
    let events = h.event_count();

    let again = h.settle(stars("charge-twice", Some(invoice.id), 10)).await;
    assert!(again.duplicate, "the second report is a duplicate");
    assert_eq!(again.payment, first.payment);
    assert_eq!(again.invoice, first.invoice);
    assert_eq!(h.merchant_balance(XTR), 10, "booked once");
    assert_eq!(h.event_count(), events, "a duplicate writes no event");

    // Another amount, invoice or currency under the same id: refused, naming what differs.
    for (payment, field) in [
        (stars("charge-twice", Some(invoice.id), 11), "amount_minor"),
        (stars("charge-twice", None, 10), "invoice"),
        (
            IncomingPayment {
                currency: TON,
                ..stars("charge-twice", Some(invoice.id), 10)
            },
            "currency",
        ),
    ] {
        let error = h.try_settle(payment).await.expect_err("a changed report");
        assert_eq!(error.code, "rail_payment_mismatch");
        assert_eq!(error.status.as_u16(), 409);
        assert!(error.message.contains(field), "{field}: {}", error.message);
        assert!(error.message.contains("charge-twice"), "{}", error.message);
    }
    // Another merchant reporting the same rail id reports a payment of its own: rail payment
    // ids are per merchant, so no merchant can claim (and so block) another's payment. B has
    // no such invoice, so B's money is credited to a payer of B's; A's settlement stands.
    let mut other = stars("charge-twice", Some(invoice.id), 10);
    other.merchant = h.b;
    let base = h.base.clone();
    let others = h
        .store()
        .run(move |tx| settle_payment(tx, Mode::Test, other, &base))
        .await
        .expect("committed")
        .expect("B's own payment");
    assert!(!others.duplicate);
    assert_eq!(others.payment.merchant, h.b);
    assert_eq!(
        others.payment.credit_reason,
        Some(CreditReason::UnknownInvoice)
    );

    assert_eq!(h.merchant_balance(XTR), 10);
    assert_eq!(h.event_count(), events);
    assert_eq!(h.row(Rail::Stars, "charge-twice"), Some(first.payment));
    assert!(h.customers().is_empty());
    // The same id on another rail is another payment (credited: the invoice is paid).
    let ton = IncomingPayment {
        rail: Rail::Ton,
        ..stars("charge-twice", Some(invoice.id), 10)
    };
    let ton = h.settle(ton).await;
    assert_split(&ton, 0, 10, Some(CreditReason::AlreadyPaid));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn paying_a_paid_invoice_again_credits_the_payer_found_or_created_by_external_id() {
    let mut h = spawn().await;
    let invoice = h.invoice(10).await;
    h.settle(stars("charge-1", Some(invoice.id), 10)).await;

    let mut second = stars("charge-2", Some(invoice.id), 10);
    second.payer_external_id = Some("tg:12345".to_owned());
    let settled = h.settle(second).await;
    assert_split(&settled, 0, 10, Some(CreditReason::AlreadyPaid));
    let customers = h.customers();
    assert_eq!(customers.len(), 1, "the payer was created");
    assert_eq!(customers[0].external_id.as_deref(), Some("tg:12345"));
    let payer = customers[0].id;
    assert_eq!(settled.payment.customer, Some(payer));
    assert_eq!(h.customer_balance(payer, XTR), 10);
    assert_eq!(h.merchant_balance(XTR), 10, "the merchant was paid once");
    let invoice_after = settled.invoice.expect("invoice");
    assert_eq!(invoice_after.status, InvoiceStatus::Paid);
    assert_eq!(
        invoice_after.payment.map(|p| p.amount_minor),
        Some(10),
        "the invoice keeps its first payment"
    );
    // The credit is booked under the id derived from the rail payment.
    let transfer = h
        .store()
        .transfer(credit_transfer_id(h.a, Rail::Stars, "charge-2"))
        .expect("read")
        .expect("the credit transfer");
    assert_eq!(transfer.record.amount_minor, 10);

    let credited = h.events("invoice.payment_credited");
    assert_eq!(credited.len(), 1);
    let object = &credited[0]["data"]["object"];
    assert_eq!(object["object"], "rail_payment");
    assert_eq!(object["invoice"], invoice.id.encode());
    assert_eq!(object["rail"], "stars");
    assert_eq!(object["external_id"], "charge-2");
    assert_eq!(object["customer"], payer.encode());
    assert_eq!(object["amount"], 10);
    assert_eq!(object["amount_paid"], 0);
    assert_eq!(object["amount_credited"], 10);
    assert_eq!(object["credit_reason"], "already_paid");
    let balance = h.events("customer.balance_changed");
    assert_eq!(balance.len(), 1);
    assert_eq!(balance[0]["data"]["object"]["balance"], 10);
    assert_eq!(h.events("customer.created").len(), 1);

    // The next payment by the same payer finds the same customer.
    let mut third = stars("charge-3", Some(invoice.id), 4);
    third.payer_external_id = Some("tg:12345".to_owned());
    let settled = h.settle(third).await;
    assert_eq!(settled.payment.customer, Some(payer));
    assert_eq!(h.customers().len(), 1, "reused, not created again");
    assert_eq!(h.customer_balance(payer, XTR), 14);

    // A named payer is used as it is; one of another merchant is refused and changes nothing.
    let known = h.customer(None).await;
    let mut named = stars("charge-4", Some(invoice.id), 3);
    named.payer = Some(known);
    assert_eq!(h.settle(named).await.payment.customer, Some(known));
    assert_eq!(h.customer_balance(known, XTR), 3);
    let mut foreign = stars("charge-5", Some(invoice.id), 3);
    foreign.payer = Some(CustomerId(12345));
    let events = h.event_count();
    let error = h.try_settle(foreign).await.expect_err("unknown payer");
    assert_eq!(error.code, "customer_not_found");
    assert_eq!(h.row(Rail::Stars, "charge-5"), None);
    assert_eq!(h.event_count(), events);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn late_payments_after_expiry_or_cancel_are_credited() {
    let mut h = spawn().await;
    let payer = h.customer(Some("tg:1")).await;
    let late = |external_id: &str, invoice: &Invoice| {
        let mut payment = stars(external_id, Some(invoice.id), 10);
        payment.payer = Some(payer);
        payment
    };

    // Past its expiry but not yet marked by the scheduler: late all the same.
    let past = h.invoice_expiring_at_creation(10).await;
    let settled = h.settle(late("late-1", &past)).await;
    assert_split(&settled, 0, 10, Some(CreditReason::Late));
    let status = settled.invoice.as_ref().map(|i| i.status);
    assert!(
        matches!(status, Some(InvoiceStatus::Open | InvoiceStatus::Expired)),
        "a late payment does not pay the invoice: {status:?}"
    );

    // Expired (as the scheduler does it), and canceled.
    let expired = h.invoice(10).await;
    let canceled = h.invoice(10).await;
    let (e, c) = (expired.id, canceled.id);
    h.job(move |tx| {
        let mut invoice = tx.invoice(e)?.expect("invoice");
        assert!(invoice.expire(invoice.expires_at_ns));
        tx.update_invoice(&invoice)?;
        let mut invoice = tx.invoice(c)?.expect("invoice");
        invoice
            .cancel(tx.now_ns())
            .map_err(|error| StoreError::Corrupt(error.to_string()))?;
        tx.update_invoice(&invoice)?;
        Ok(())
    })
    .await;
    for (external_id, invoice, status) in [
        ("late-2", &expired, InvoiceStatus::Expired),
        ("late-3", &canceled, InvoiceStatus::Canceled),
    ] {
        let settled = h.settle(late(external_id, invoice)).await;
        assert_split(&settled, 0, 10, Some(CreditReason::Late));
        assert_eq!(settled.invoice.map(|i| i.status), Some(status));
        assert_eq!(h.read_invoice(invoice.id).status, status);
    }
    assert_eq!(h.customer_balance(payer, XTR), 30);
    assert_eq!(h.merchant_balance(XTR), 0);
    assert_eq!(h.events("invoice.payment_credited").len(), 3);
    assert!(h.events("invoice.paid").is_empty());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn short_and_long_payments_are_split_so_nothing_is_lost() {
    let mut h = spawn().await;
    let payer = h.customer(Some("tg:2")).await;
    let invoice = h.invoice(10).await;

    // Underpaid: all of it is credited, the invoice stays open.
    let mut short = stars("short", Some(invoice.id), 7);
    short.payer = Some(payer);
    let settled = h.settle(short).await;
    assert_split(&settled, 0, 7, Some(CreditReason::Underpaid));
    assert_eq!(h.read_invoice(invoice.id).status, InvoiceStatus::Open);
    assert_eq!(h.customer_balance(payer, XTR), 7);
    assert_eq!(h.merchant_balance(XTR), 0);

    // Overpaid: the invoice is paid, the excess credited.
    let mut long = stars("long", Some(invoice.id), 15);
    long.payer = Some(payer);
    let settled = h.settle(long).await;
    assert_split(&settled, 10, 5, Some(CreditReason::Overpaid));
    let paid = h.read_invoice(invoice.id);
    assert_eq!(paid.status, InvoiceStatus::Paid);
    assert_eq!(
        paid.payment.map(|p| (p.amount_minor, p.customer)),
        Some((10, Some(payer)))
    );
    assert_eq!(h.merchant_balance(XTR), 10);
    assert_eq!(h.customer_balance(payer, XTR), 12);
    assert_eq!(h.events("invoice.paid").len(), 1);
    let credited = h.events("invoice.payment_credited");
    assert_eq!(credited.len(), 2);
    assert_eq!(credited[1]["data"]["object"]["amount_paid"], 10);
    assert_eq!(credited[1]["data"]["object"]["amount_credited"], 5);
    assert_eq!(credited[1]["data"]["object"]["credit_reason"], "overpaid");

    // An amountless invoice takes what is within its bounds.
    let tip = h
        .invoice_of(
            h.a,
            InvoiceAmount::Open {
                presets: vec![5],
                min_minor: 5,
                max_minor: 50,
            },
            None,
        )
        .await;
    let settled = h.settle(stars("tip", Some(tip.id), 30)).await;
    assert_split(&settled, 30, 0, None);
    assert_eq!(h.merchant_balance(XTR), 40);

    // Another currency than the invoice's: credited, in that currency.
    let other = h.invoice(10).await;
    let mut ton = stars("ton-1", Some(other.id), 1_000_000);
    ton.rail = Rail::Ton;
    ton.currency = TON;
    ton.payer = Some(payer);
    let settled = h.settle(ton).await;
    assert_split(&settled, 0, 1_000_000, Some(CreditReason::OtherCurrency));
    assert_eq!(h.read_invoice(other.id).status, InvoiceStatus::Open);
    assert_eq!(h.customer_balance(payer, TON), 1_000_000);
    assert_eq!(h.merchant_balance(TON), 0);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn payments_for_unknown_invoices_are_credited_to_someone() {
    let mut h = spawn().await;

    // No such invoice; the payer is known by its Telegram id.
    let mut unknown = stars("unknown-1", Some(InvoiceId(42)), 5);
    unknown.payer_external_id = Some("tg:9".to_owned());
    let settled = h.settle(unknown).await;
    assert_split(&settled, 0, 5, Some(CreditReason::UnknownInvoice));
    assert_eq!(settled.invoice, None);
    assert_eq!(
        settled.payment.invoice,
        Some(InvoiceId(42)),
        "kept as reported"
    );
    let payer = settled.payment.customer.expect("a payer");

    // Another merchant's invoice is unknown to this one, and stays untouched.
    let foreign = h.invoice_of(h.b, InvoiceAmount::Fixed(5), None).await;
    let mut wrong = stars("unknown-2", Some(foreign.id), 5);
    wrong.payer_external_id = Some("tg:9".to_owned());
    let settled = h.settle(wrong).await;
    assert_split(&settled, 0, 5, Some(CreditReason::UnknownInvoice));
    assert_eq!(settled.payment.customer, Some(payer));
    assert_eq!(h.read_invoice(foreign.id).status, InvoiceStatus::Open);
    assert_eq!(h.balance(book::merchant(h.b, XTR)), 0);
    let listed = h
        .store()
        .read(|reader| reader.rail_payments_of_invoice(h.b, foreign.id))
        .expect("read");
    assert!(
        listed.is_empty(),
        "not listed under the other merchant's invoice"
    );

    // No invoice named and nobody known: a new customer holds the money.
    let settled = h.settle(stars("anonymous", None, 6)).await;
    assert_split(&settled, 0, 6, Some(CreditReason::UnknownInvoice));
    let anonymous = settled.payment.customer.expect("a customer was created");
    assert_ne!(anonymous, payer);
    assert_eq!(h.customer_balance(anonymous, XTR), 6);

    // No invoice named but a known payer: a top-up of the payer's balance.
    let mut top_up = stars("top-up", None, 4);
    top_up.payer_external_id = Some("tg:9".to_owned());
    let settled = h.settle(top_up).await;
    assert_split(&settled, 0, 4, Some(CreditReason::TopUp));
    assert_eq!(settled.payment.customer, Some(payer));

    // The invoice's own customer takes a credit when the rail names no payer.
    let owner = h.customer(None).await;
    let owned = h
        .invoice_of(h.a, InvoiceAmount::Fixed(10), Some(owner))
        .await;
    let settled = h.settle(stars("owned", Some(owned.id), 3)).await;
    assert_split(&settled, 0, 3, Some(CreditReason::Underpaid));
    assert_eq!(settled.payment.customer, Some(owner));
    assert_eq!(h.customer_balance(owner, XTR), 3);
    assert_eq!(
        h.customer_balance(payer, XTR),
        14,
        "5 + 5 unknown + 4 top-up"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn when_the_ledger_already_holds_the_invoices_payment_the_money_is_credited() {
    let mut h = spawn().await;
    let invoice = h.invoice(10).await;
    // Book a payment under the invoice's id while leaving the invoice open: the state a bug
    // elsewhere could leave. The ledger must refuse a second paying transfer.
    let (merchant, id) = (h.a, invoice.id);
    h.job(move |tx| {
        let from = book::rail(merchant, Rail::Card, XTR);
        let to = book::merchant(merchant, XTR);
        let group = Group {
            accounts: vec![from, to],
            transfers: vec![Transfer {
                id: TransferId(id.raw()),
                action: TransferAction::Single {
                    debit: from.id,
                    credit: to.id,
                    currency: XTR,
                    amount_minor: 10,
                },
                code: code::PAYMENT,
                reference: id.raw(),
            }],
        };
        tx.apply(&group)?
            .map_err(|error| StoreError::Corrupt(error.to_string()))?;
        Ok(())
    })
    .await;
    *h.reported.entry(XTR).or_default() += 10;
    let before = h.merchant_balance(XTR);

    let mut payment = stars("charge-after-ledger", Some(invoice.id), 10);
    payment.payer_external_id = Some("tg:3".to_owned());
    let settled = h.settle(payment).await;
    assert_split(&settled, 0, 10, Some(CreditReason::AlreadyPaid));
    assert_eq!(
        h.merchant_balance(XTR),
        before,
        "the merchant is not paid twice"
    );
    let payer = settled.payment.customer.expect("payer");
    assert_eq!(h.customer_balance(payer, XTR), 10);
    assert!(h.events("invoice.paid").is_empty());
    // The card rail's external account also gave 10.
    let card = h.balance(book::rail(h.a, Rail::Card, XTR));
    assert_eq!(card, -10);
    h.stop_with_extra_external(Rail::Card).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_concurrent_reports_of_one_payment_book_it_once() {
    let mut h = spawn().await;
    let invoice = h.invoice(10).await;
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let store = h.store().clone();
        let (base, merchant, id) = (h.base.clone(), h.a, invoice.id);
        tasks.push(tokio::spawn(async move {
            let mut payment = stars("charge-race", Some(id), 10);
            payment.merchant = merchant;
            payment.payer_external_id = Some("tg:50".to_owned());
            store
                .run(move |tx| settle_payment(tx, Mode::Test, payment, &base))
                .await
        }));
    }
    let mut fresh = 0;
    for task in tasks {
        let settled = Harness::settled(
            task.await
                .expect("join")
                .expect("committed")
                .map_err(ApiError::from),
        );
        assert_split_any(&settled);
        if !settled.duplicate {
            fresh += 1;
        }
    }
    assert_eq!(
        fresh, 1,
        "exactly one report settles; the others are duplicates"
    );
    *h.reported.entry(XTR).or_default() += 10;
    assert_eq!(h.merchant_balance(XTR), 10);
    assert_eq!(h.events("invoice.paid").len(), 1);
    assert!(
        h.customers().is_empty(),
        "nothing was credited, so no payer was created"
    );
    h.stop().await;
}

#[track_caller]
fn assert_split_any(settled: &SettledPayment) {
    let payment = &settled.payment;
    assert_eq!((payment.paid_minor, payment.credited_minor), (10, 0));
}

/// SPEC L1 / security issue item 1: one merchant drives every total it can reach to its limit;
/// another merchant's payments on the same rails still settle, and the first merchant's own
/// money that cannot be booked where it belongs is held in suspense, never dropped.
#[tokio::test(flavor = "multi_thread")]
async fn one_merchant_at_every_limit_cannot_block_another_and_nothing_is_dropped() {
    use farthing_core::money::MAX_AMOUNT_MINOR;
    let mut h = spawn().await;
    // Merchant B: a customer credited far beyond the old 64-bit totals (three payments of the
    // largest amount into one shared account would have stopped the rail for everyone).
    let (b, base) = (h.b, h.base.clone());
    let top_ups = h
        .job(move |tx| {
            let customer = Customer {
                id: farthing_server::ids::new_id(),
                merchant: b,
                external_id: Some("tg:666".to_owned()),
                metadata: Vec::new(),
                created_at_ns: tx.now_ns(),
            };
            tx.insert_customer(&customer)?;
            Ok(customer.id)
        })
        .await;
    let b_customer = top_ups;
    let fill = |n: u64| IncomingPayment {
        merchant: b,
        rail: Rail::Card,
        external_id: format!("b-fill-{n}"),
        invoice: None,
        payer: Some(b_customer),
        payer_external_id: None,
        currency: XTR,
        amount_minor: MAX_AMOUNT_MINOR,
        payload: None,
    };
    let (first, second, base1) = (fill(0), fill(1), base.clone());
    let (filled, spent, refilled) = h
        .store()
        .run(move |tx| {
            // Fill B's customer to the largest balance from B's card rail, spend it all to B,
            // fill it again: B's card rail account has now sent 2 × MAX, past any 64-bit total.
            let filled = settle_payment(tx, Mode::Test, first, &base1);
            let spend = book::transfer(
                TransferId(farthing_server::ids::new_id::<farthing_core::ChargeId>().raw()),
                book::customer(b, b_customer, XTR),
                book::merchant(b, XTR),
                MAX_AMOUNT_MINOR,
                code::CHARGE,
                0,
            );
            let spent = tx.apply(&spend)?;
            let refilled = settle_payment(tx, Mode::Test, second, &base1);
            Ok::<_, StoreError>((filled, spent, refilled))
        })
        .await
        .expect("committed")
        .expect("job");
    for settled in [filled, refilled] {
        let settled = settled.expect("B's payment settles");
        assert_eq!(settled.payment.credited_minor, MAX_AMOUNT_MINOR);
    }
    spent.expect("B spends its customer's balance");
    assert_eq!(
        h.balance(book::rail(b, Rail::Card, XTR)),
        -2 * i128::from(MAX_AMOUNT_MINOR),
        "B's own rail account went past the old 64-bit cap and goes on working"
    );
    // B's customer balance is full: B's next payment for that customer cannot be credited
    // where it belongs, so it is held in suspense, recorded and announced.
    let before = suspended_total();
    let base2 = base.clone();
    let suspended = h
        .store()
        .run(move |tx| {
            settle_payment(
                tx,
                Mode::Test,
                IncomingPayment {
                    merchant: b,
                    rail: Rail::Stars,
                    external_id: "b-overflow".to_owned(),
                    invoice: None,
                    payer: Some(b_customer),
                    payer_external_id: None,
                    currency: XTR,
                    amount_minor: 5,
                    payload: None,
                },
                &base2,
            )
        })
        .await
        .expect("committed")
        .expect("a payment that cannot be booked is held, not refused");
    assert_eq!(suspended.payment.suspended_minor, 5);
    assert_eq!(
        (
            suspended.payment.paid_minor,
            suspended.payment.credited_minor
        ),
        (0, 0)
    );
    assert!(suspended
        .payment
        .suspense_reason
        .as_deref()
        .is_some_and(|reason| reason.contains("largest amount")));
    assert!(suspended_total() > before);
    assert_eq!(
        h.balance(book::suspense(b, Rail::Stars, XTR)),
        5,
        "held in B's suspense account for the rail"
    );
    let suspended_events = h
        .store()
        .read(|reader| reader.events(b, PageRequest::newest(100)))
        .expect("read")
        .data
        .into_iter()
        .filter(|event| event.event_type == "rail_payment.suspended")
        .count();
    assert_eq!(suspended_events, 1);
    // The same report again is a duplicate of the suspended one: held once.
    let again = h
        .store()
        .run(move |tx| {
            settle_payment(
                tx,
                Mode::Test,
                IncomingPayment {
                    merchant: b,
                    rail: Rail::Stars,
                    external_id: "b-overflow".to_owned(),
                    invoice: None,
                    payer: Some(b_customer),
                    payer_external_id: None,
                    currency: XTR,
                    amount_minor: 5,
                    payload: None,
                },
                &base,
            )
        })
        .await
        .expect("committed")
        .expect("duplicate");
    assert!(again.duplicate);
    assert_eq!(h.balance(book::suspense(b, Rail::Stars, XTR)), 5);
    // The audit still holds every invariant but lists the suspended money for an operator.
    let report = h.store().audit().expect("audit");
    assert!(report.problems.is_empty(), "{report}");
    assert!(
        report.findings.iter().any(|f| f.contains("b-overflow")),
        "{report}"
    );

    // Merchant A, on the same rails and currency, is untouched by all of it: its payments
    // settle as always, including one that uses the very same Stars charge id as B's.
    let invoice = h.invoice(10).await;
    let settled = h.settle(stars("b-overflow", Some(invoice.id), 10)).await;
    assert_split(&settled, 10, 0, None);
    let card = h.settle(stars("a-after", None, 7)).await;
    assert_eq!(card.payment.credited_minor, 7);
    // A's own ledger is clean; the stop checks conservation of A's money. B's suspense is a
    // finding of the test store, so the audit there is checked above instead.
    let report = h.running.state().store(Mode::Live).audit().expect("audit");
    assert!(report.is_ok(), "{report}");
    let held = h.held(XTR);
    assert_eq!(held, 17);
    h.running.shutdown().await;
}

/// A rail report above the rail's published maximum for one payment cannot be real (a merchant
/// forging `successful_payment` on its own bot): refused at the edge, nothing booked.
#[tokio::test(flavor = "multi_thread")]
async fn a_report_above_the_rails_maximum_is_refused_at_the_edge() {
    let mut h = spawn().await;
    let refused = h
        .try_settle(stars("forged", None, 9_223_372_036_854_773_676))
        .await
        .expect_err("refused");
    assert_eq!(refused.code, "invalid_rail_payment");
    assert_eq!(refused.param.as_deref(), Some("amount_minor"));
    let refused = h
        .try_settle(stars(
            "forged-2",
            None,
            farthing_core::rail::MAX_STARS_PAYMENT + 1,
        ))
        .await
        .expect_err("refused");
    assert_eq!(refused.param.as_deref(), Some("amount_minor"));
    assert!(h.row(Rail::Stars, "forged").is_none());
    // The largest real one settles.
    let mut payment = stars("largest", None, farthing_core::rail::MAX_STARS_PAYMENT);
    payment.payer_external_id = Some("tg:1".to_owned());
    h.settle(payment).await;
    h.stop().await;
}
