//! The wire form of every API object: typed structs (Serialize for the body, ToSchema for the
//! OpenAPI document, so the two cannot drift) built from the domain types. Stripe-like JSON with
//! prefixed ids, integer minor units, Unix-second timestamps and `livemode`.
//!
//! Webhook event bodies embed these same objects (`data.object`).

use std::borrow::Cow;
use std::collections::BTreeMap;

use farthing_core::invoice::{Invoice as DomainInvoice, InvoiceAmount};
use farthing_core::{Currency, PublicId, Rail};
use farthing_store::{Charge as DomainCharge, Customer as DomainCustomer, EventRecord};
use farthing_store::{Refund as DomainRefund, WebhookEndpoint as DomainEndpoint};
use serde::Serialize;
use serde_json::{json, Map, Value};
use utoipa::openapi::schema::{ArrayBuilder, Object, ObjectBuilder, Ref, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

use crate::outbox::EVENT_TYPES;
use crate::Mode;

/// Unix seconds from ledger nanoseconds.
pub fn unix_s(ns: u64) -> u64 {
    ns / 1_000_000_000
}

/// Metadata pairs as a JSON object.
pub fn metadata(pairs: &[(String, String)]) -> Value {
    Value::Object(
        pairs
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect::<Map<_, _>>(),
    )
}

fn metadata_map(pairs: &[(String, String)]) -> BTreeMap<String, String> {
    pairs.iter().cloned().collect()
}

/// How to pay an invoice on each rail that made instructions for it (`{}` when none): each
/// rail's own JSON object (the Stars or card invoice link, the BOLT11 with its `lightning:`
/// URI, …), keyed by rail name. Each rail documents its object; the server's OpenAPI document
/// gathers them as `PaymentInstructions`.
fn payment_instructions(invoice: &DomainInvoice) -> Map<String, Value> {
    let mut instructions = Map::new();
    for (rail, text) in &invoice.instructions {
        match serde_json::from_str::<Value>(text) {
            Ok(value) => {
                instructions.insert(rail.as_str().to_owned(), value);
            }
            Err(error) => {
                tracing::error!(invoice = %invoice.id.encode(), %rail, %error, "unreadable payment instructions");
            }
        }
    }
    instructions
}

// ---------------------------------------------------------------------------------------------
// Schema helpers.

fn string_enum<'a>(values: impl IntoIterator<Item = &'a str>) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values))
        .build()
}

macro_rules! constants {
    ($($name:ident => [$($value:literal),+]),+ $(,)?) => {
        $(
            fn $name() -> Object {
                string_enum([$($value),+])
            }
        )+
    };
}

constants! {
    object_invoice => ["invoice"],
    object_customer => ["customer"],
    object_customer_balance => ["customer_balance"],
    object_charge => ["charge"],
    object_refund => ["refund"],
    object_webhook_endpoint => ["webhook_endpoint"],
    object_refund_request => ["refund_request"],
    object_balance => ["balance"],
    object_balance_entry => ["balance_entry"],
    balance_entry_type => ["top_up", "payment", "charge", "refund", "payout", "correction", "other"],
    status_succeeded => ["succeeded"],
    refund_destination => ["balance", "rail"],
    refund_request_status => ["pending", "approved", "declined"],
    refund_status => ["pending", "succeeded", "canceled"],
}

fn payment_instructions_schema() -> Ref {
    Ref::from_schema_name("PaymentInstructions")
}

/// A rail name (`farthing_core::Rail::ALL`).
pub struct RailName;

impl PartialSchema for RailName {
    fn schema() -> RefOr<Schema> {
        string_enum(Rail::ALL.iter().map(|rail| rail.as_str())).into()
    }
}

impl ToSchema for RailName {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("RailName")
    }
}

/// An event type (one of [`EVENT_TYPES`]).
pub struct EventType;

impl PartialSchema for EventType {
    fn schema() -> RefOr<Schema> {
        string_enum(EVENT_TYPES.iter().copied()).into()
    }
}

impl ToSchema for EventType {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("EventType")
    }
}

/// `enabled_events` of a webhook endpoint: event types, or `"*"` for every type.
pub fn enabled_events_schema() -> Schema {
    Schema::Array(
        ArrayBuilder::new()
            .items(string_enum(
                std::iter::once("*").chain(EVENT_TYPES.iter().copied()),
            ))
            .min_items(Some(1))
            .build(),
    )
}

/// Where an invoice stands.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum InvoiceStatus {
    /// Waiting for payment.
    Open,
    /// Paid.
    Paid,
    /// Not paid in time.
    Expired,
    /// Canceled by the merchant.
    Canceled,
    /// Paid, then refunded in part.
    PartiallyRefunded,
    /// Paid, then refunded in full.
    Refunded,
}

/// Whether a webhook endpoint receives events.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum WebhookEndpointStatus {
    /// Events are delivered.
    Enabled,
    /// Nothing is delivered (see `disabled_reason`).
    Disabled,
}

macro_rules! into_value {
    ($($object:ty),+ $(,)?) => {
        $(
            impl From<$object> for Value {
                fn from(object: $object) -> Value {
                    // Plain structs with string keys: serialising them cannot fail.
                    serde_json::to_value(object).unwrap_or(Value::Null)
                }
            }
        )+
    };
}

into_value!(
    Invoice,
    Customer,
    CustomerBalance,
    Charge,
    Refund,
    WebhookEndpoint,
    RefundRequestObject,
    BalanceEntry,
);

// ---------------------------------------------------------------------------------------------
// Objects.

/// An invoice: a request for payment, paid once on one of its rails (SPEC I1–I4).
#[derive(Serialize, ToSchema)]
pub struct Invoice {
    /// `inv_…`
    pub id: String,
    /// Always `invoice`.
    #[schema(schema_with = object_invoice, value_type = String)]
    pub object: &'static str,
    /// Live (`true`) or test (`false`) mode.
    pub livemode: bool,
    /// Where it stands.
    #[schema(value_type = InvoiceStatus)]
    pub status: &'static str,
    /// The fixed amount in minor units; `null` for an amountless invoice.
    #[schema(required = true)]
    pub amount: Option<u64>,
    /// Amountless invoices: the smallest amount the payer may choose; otherwise `null`.
    #[schema(required = true)]
    pub amount_min: Option<u64>,
    /// Amountless invoices: the largest amount the payer may choose; otherwise `null`.
    #[schema(required = true)]
    pub amount_max: Option<u64>,
    /// Amountless invoices: the suggested amounts; otherwise `null`.
    #[schema(required = true)]
    pub amount_presets: Option<Vec<u64>>,
    /// The currency or asset code, upper case (e.g. `USD`, `XTR`, `TON`).
    pub currency: &'static str,
    /// Shown to the payer (may be empty).
    pub description: String,
    /// Opaque merchant data, returned with every event.
    #[schema(required = true)]
    pub payload: Option<String>,
    /// The rails the payer may use.
    #[schema(value_type = Vec<RailName>)]
    pub rails: Vec<&'static str>,
    /// The expected payer, `cus_…`, if one was given.
    #[schema(required = true)]
    pub customer: Option<String>,
    /// Merchant key/value data.
    pub metadata: BTreeMap<String, String>,
    /// The amount paid, in minor units, once paid.
    #[schema(required = true)]
    pub amount_paid: Option<u64>,
    /// Refunded so far, in minor units.
    pub amount_refunded: u64,
    /// The rail it was paid on, once paid.
    #[schema(required = true, value_type = Option<RailName>)]
    pub paid_rail: Option<&'static str>,
    /// The paying customer, `cus_…`, if the payer was one.
    #[schema(required = true)]
    pub paid_by: Option<String>,
    /// When it was paid (Unix seconds).
    #[schema(required = true)]
    pub paid_at: Option<u64>,
    /// When it was created (Unix seconds).
    pub created: u64,
    /// When it expires if not paid (Unix seconds).
    pub expires_at: u64,
    /// When it was canceled or expired (Unix seconds).
    #[schema(required = true)]
    pub closed_at: Option<u64>,
    /// The hosted checkout page, `…/pay/inv_…`.
    pub checkout_url: String,
    /// Where the checkout sends the payer back afterwards, if given.
    #[schema(required = true)]
    pub return_url: Option<String>,
    /// How to pay on each rail that has instructions; `{}` when none.
    #[schema(schema_with = payment_instructions_schema)]
    pub payment_instructions: Map<String, Value>,
    /// A Telegram Stars subscription invoice: the period in seconds (2592000, 30 days);
    /// `null` for a one-off invoice.
    #[schema(required = true)]
    pub subscription_period: Option<u64>,
}

/// A customer, with balances per currency.
#[derive(Serialize, ToSchema)]
pub struct Customer {
    /// `cus_…`
    pub id: String,
    /// Always `customer`.
    #[schema(schema_with = object_customer, value_type = String)]
    pub object: &'static str,
    /// Live (`true`) or test (`false`) mode.
    pub livemode: bool,
    /// The merchant's reference (e.g. a Telegram user id); unique per merchant.
    #[schema(required = true)]
    pub external_id: Option<String>,
    /// Merchant key/value data.
    pub metadata: BTreeMap<String, String>,
    /// One entry per currency the customer has held (empty on creation).
    pub balances: Vec<Balance>,
    /// When it was created (Unix seconds).
    pub created: u64,
}

/// A customer's balance in one currency.
#[derive(Serialize, ToSchema)]
pub struct Balance {
    /// The currency or asset code.
    pub currency: &'static str,
    /// Posted balance, in minor units.
    pub balance: i64,
    /// What can be spent now (the balance less pending debits), in minor units.
    pub available: i64,
}

/// A customer's balance in one currency, as a top-up answers it and as the
/// `customer.balance_changed` event carries it.
#[derive(Serialize, ToSchema)]
pub struct CustomerBalance {
    /// Always `customer_balance`.
    #[schema(schema_with = object_customer_balance, value_type = String)]
    pub object: &'static str,
    /// Live (`true`) or test (`false`) mode.
    pub livemode: bool,
    /// `cus_…`
    pub customer: String,
    /// The currency or asset code.
    pub currency: &'static str,
    /// Posted balance, in minor units.
    pub balance: i64,
    /// What can be spent now, in minor units.
    pub available: i64,
}

/// A charge: a debit of a customer's balance (SPEC PR2).
#[derive(Serialize, ToSchema)]
pub struct Charge {
    /// `chg_…`
    pub id: String,
    /// Always `charge`.
    #[schema(schema_with = object_charge, value_type = String)]
    pub object: &'static str,
    /// Live (`true`) or test (`false`) mode.
    pub livemode: bool,
    /// Always `succeeded`: a charge that can't be paid is refused, never stored.
    #[schema(schema_with = status_succeeded, value_type = String)]
    pub status: &'static str,
    /// Whose balance paid, `cus_…`.
    pub customer: String,
    /// Amount in minor units.
    pub amount: u64,
    /// Refunded so far, in minor units.
    pub amount_refunded: u64,
    /// The currency or asset code.
    pub currency: &'static str,
    /// Shown in statements (may be empty).
    pub description: String,
    /// Merchant key/value data.
    pub metadata: BTreeMap<String, String>,
    /// When it was created (Unix seconds).
    pub created: u64,
}

/// A refund: back to the customer's balance, or through the rail that paid.
#[derive(Serialize, ToSchema)]
pub struct Refund {
    /// `ref_…`
    pub id: String,
    /// Always `refund`.
    #[schema(schema_with = object_refund, value_type = String)]
    pub object: &'static str,
    /// Live (`true`) or test (`false`) mode.
    pub livemode: bool,
    /// `succeeded` (the money went back), `pending` (a rail waits for the merchant to send it:
    /// see `next_action`; the amount is held on the merchant's balance) or `canceled` (given up
    /// before it was sent; the hold released).
    #[schema(schema_with = refund_status, value_type = String)]
    pub status: &'static str,
    /// While `pending`: what the merchant does to send it — for TON, `{"type": "ton_transfer",
    /// "ton_transfer": {…}}`, a transfer from the merchant's own wallet to the payer (address,
    /// amount, the comment it must carry, a `ton://` link and a TON Connect request); `null`
    /// otherwise.
    #[schema(required = true, value_type = Option<Object>)]
    pub next_action: Option<serde_json::Value>,
    /// The refunded invoice, `inv_…`, or `null`.
    #[schema(required = true)]
    pub invoice: Option<String>,
    /// The refunded charge, `chg_…`, or `null`.
    #[schema(required = true)]
    pub charge: Option<String>,
    /// Who got the money, `cus_…`.
    pub customer: String,
    /// Amount in minor units.
    pub amount: u64,
    /// The currency or asset code.
    pub currency: &'static str,
    /// Why, as the merchant said.
    #[schema(required = true)]
    pub reason: Option<String>,
    /// Where the money went: `balance` (the customer's balance with the merchant) or `rail`
    /// (back through the rail that paid, e.g. Telegram `refundStarPayment`).
    #[schema(schema_with = refund_destination, value_type = String)]
    pub destination: &'static str,
    /// Merchant key/value data.
    pub metadata: BTreeMap<String, String>,
    /// When it was created (Unix seconds).
    pub created: u64,
}

/// A webhook endpoint: where events are delivered, signed per the Standard Webhooks spec.
#[derive(Serialize, ToSchema)]
pub struct WebhookEndpoint {
    /// `we_…`
    pub id: String,
    /// Always `webhook_endpoint`.
    #[schema(schema_with = object_webhook_endpoint, value_type = String)]
    pub object: &'static str,
    /// Live (`true`) or test (`false`) mode.
    pub livemode: bool,
    /// Where deliveries go.
    pub url: String,
    /// The event types delivered; `["*"]` for every type.
    #[schema(schema_with = enabled_events_schema)]
    pub enabled_events: Vec<String>,
    /// Whether it receives deliveries.
    #[schema(value_type = WebhookEndpointStatus)]
    pub status: String,
    /// Why it was disabled.
    #[schema(required = true)]
    pub disabled_reason: Option<String>,
    /// When it was created (Unix seconds).
    pub created: u64,
    /// The signing secret, `whsec_…`: in the answer of `POST /v1/webhook_endpoints` only, once.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false, value_type = String)]
    pub secret: Option<String>,
    /// `true`: in the answer of `DELETE /v1/webhook_endpoints/{id}` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false, value_type = bool)]
    pub deleted: Option<bool>,
}

/// A refund a customer asked for with `/refund` in the bot: the object of
/// `refund_request.created`, `refund_request.approved` and `refund_request.declined`.
#[derive(Serialize, ToSchema)]
pub struct RefundRequestObject {
    /// Always `refund_request`.
    #[schema(schema_with = object_refund_request, value_type = String)]
    pub object: &'static str,
    /// `rrq_…`
    pub id: String,
    /// Live (`true`) or test (`false`) mode.
    pub livemode: bool,
    /// `pending`, `approved` or `declined`.
    #[schema(schema_with = refund_request_status, value_type = String)]
    pub status: &'static str,
    /// Who asks, `cus_…` (`tg:<user id>`).
    pub customer: String,
    /// The paid invoice to refund, `inv_…`.
    pub invoice: String,
    /// The asker's Telegram user id (told the decision in the bot).
    pub telegram_user_id: i64,
    /// The refund made on approval, `ref_…`.
    #[schema(required = true)]
    pub refund: Option<String>,
    /// When it was asked (Unix seconds).
    pub created: u64,
    /// When it last changed (Unix seconds).
    pub updated: u64,
}

/// The merchant's own money per currency (`GET /v1/balance`).
#[derive(Serialize, ToSchema)]
pub struct MerchantBalance {
    /// Always `balance`.
    #[schema(schema_with = object_balance, value_type = String)]
    pub object: &'static str,
    /// Live (`true`) or test (`false`) mode.
    pub livemode: bool,
    /// One entry per currency the merchant has held, by currency code.
    pub balances: Vec<MerchantCurrencyBalance>,
}

/// The merchant's money in one currency, in minor units.
#[derive(Serialize, ToSchema)]
pub struct MerchantCurrencyBalance {
    /// The currency or asset code.
    pub currency: &'static str,
    /// Earned and free to pay out or refund from.
    pub available: i64,
    /// Held, not yet available (e.g. a refund window).
    pub pending: i64,
    /// Platform fees taken from this merchant's payments so far.
    pub fees: i64,
}

/// The merchant's balance from its own ledger accounts.
pub fn merchant_balance(
    accounts: &[farthing_core::ledger::AccountState],
    mode: Mode,
) -> MerchantBalance {
    use farthing_core::ledger::AccountKind;
    let mut by_currency: BTreeMap<&'static str, MerchantCurrencyBalance> = BTreeMap::new();
    for state in accounts {
        let code = state.account.currency.code();
        let entry = by_currency
            .entry(code)
            .or_insert_with(|| MerchantCurrencyBalance {
                currency: code,
                available: 0,
                pending: 0,
                fees: 0,
            });
        let clamp = |value: i128| i64::try_from(value).unwrap_or(i64::MAX);
        match state.account.kind {
            AccountKind::MerchantBalance { .. } => {
                entry.available = clamp(state.balances.available());
            }
            AccountKind::MerchantPending { .. } => entry.pending = clamp(state.balances.posted()),
            AccountKind::PlatformFees { .. } => entry.fees = clamp(state.balances.posted()),
            _ => {}
        }
    }
    MerchantBalance {
        object: "balance",
        livemode: mode.is_live(),
        balances: by_currency.into_values().collect(),
    }
}

into_value!(MerchantBalance);

// ---------------------------------------------------------------------------------------------
// Built from the domain.

/// An invoice.
pub fn invoice(invoice: &DomainInvoice, mode: Mode, checkout_url: &str) -> Invoice {
    let (amount, min, max, presets) = match &invoice.amount {
        InvoiceAmount::Fixed(amount) => (Some(*amount), None, None, None),
        InvoiceAmount::Open {
            presets,
            min_minor,
            max_minor,
        } => (
            None,
            Some(*min_minor),
            Some(*max_minor),
            Some(presets.clone()),
        ),
    };
    let payment = invoice.payment;
    Invoice {
        id: invoice.id.encode(),
        object: "invoice",
        livemode: mode.is_live(),
        status: invoice.status.as_str(),
        amount,
        amount_min: min,
        amount_max: max,
        amount_presets: presets,
        currency: invoice.currency.code(),
        description: invoice.description.clone(),
        payload: invoice.payload.clone(),
        rails: invoice.rails.iter().map(|rail| rail.as_str()).collect(),
        customer: invoice.customer.map(PublicId::encode),
        metadata: metadata_map(&invoice.metadata),
        amount_paid: payment.map(|p| p.amount_minor),
        amount_refunded: invoice.amount_refunded_minor,
        paid_rail: payment.map(|p| p.rail.as_str()),
        paid_by: payment.and_then(|p| p.customer).map(PublicId::encode),
        paid_at: payment.map(|p| unix_s(p.paid_at_ns)),
        created: unix_s(invoice.created_at_ns),
        expires_at: unix_s(invoice.expires_at_ns),
        closed_at: invoice.closed_at_ns.map(unix_s),
        checkout_url: checkout_url.to_owned(),
        payment_instructions: payment_instructions(invoice),
        subscription_period: invoice.subscription_period_s.map(u64::from),
        return_url: invoice.return_url.clone(),
    }
}

/// A customer with balances: `(currency, balance, available)` in minor units.
pub fn customer(
    customer: &DomainCustomer,
    mode: Mode,
    balances: &[(Currency, i128, i128)],
) -> Customer {
    Customer {
        id: customer.id.encode(),
        object: "customer",
        livemode: mode.is_live(),
        external_id: customer.external_id.clone(),
        metadata: metadata_map(&customer.metadata),
        balances: balances
            .iter()
            .map(|(currency, balance, available)| Balance {
                currency: currency.code(),
                balance: i64::try_from(*balance).unwrap_or(i64::MAX),
                available: i64::try_from(*available).unwrap_or(i64::MAX),
            })
            .collect(),
        created: unix_s(customer.created_at_ns),
    }
}

/// A customer's balance in one currency: the object of `customer.balance_changed`.
pub fn customer_balance(
    customer: farthing_core::CustomerId,
    mode: Mode,
    currency: Currency,
    balances: &farthing_core::ledger::Balances,
) -> CustomerBalance {
    CustomerBalance {
        object: "customer_balance",
        livemode: mode.is_live(),
        customer: customer.encode(),
        currency: currency.code(),
        balance: i64::try_from(balances.posted()).unwrap_or(i64::MAX),
        available: i64::try_from(balances.available()).unwrap_or(i64::MAX),
    }
}

/// A charge.
pub fn charge(charge: &DomainCharge, mode: Mode) -> Charge {
    Charge {
        id: charge.id.encode(),
        object: "charge",
        livemode: mode.is_live(),
        status: "succeeded",
        customer: charge.customer.encode(),
        amount: charge.amount_minor,
        amount_refunded: charge.refunded_minor,
        currency: charge.currency.code(),
        description: charge.description.clone(),
        metadata: metadata_map(&charge.metadata),
        created: unix_s(charge.created_at_ns),
    }
}

/// A refund.
pub fn refund(refund: &DomainRefund, mode: Mode) -> Refund {
    Refund {
        id: refund.id.encode(),
        object: "refund",
        livemode: mode.is_live(),
        status: refund.status.as_str(),
        next_action: refund
            .next_action
            .as_deref()
            .and_then(|text| serde_json::from_str(text).ok()),
        invoice: refund.invoice.map(PublicId::encode),
        charge: refund.charge.map(PublicId::encode),
        customer: refund.customer.encode(),
        amount: refund.amount_minor,
        currency: refund.currency.code(),
        reason: refund.reason.clone(),
        destination: if refund.rail.is_some() {
            "rail"
        } else {
            "balance"
        },
        metadata: metadata_map(&refund.metadata),
        created: unix_s(refund.created_at_ns),
    }
}

/// A stored event (its body is kept exactly as delivered).
pub fn event(event: &EventRecord) -> Value {
    serde_json::from_str(&event.data).unwrap_or_else(
        |_| json!({"id": event.id.encode(), "object": "event", "type": event.event_type}),
    )
}

/// A webhook endpoint; the secret only when it is first created.
pub fn endpoint(endpoint: &DomainEndpoint, mode: Mode, with_secret: bool) -> WebhookEndpoint {
    WebhookEndpoint {
        id: endpoint.id.encode(),
        object: "webhook_endpoint",
        livemode: mode.is_live(),
        url: endpoint.url.clone(),
        enabled_events: endpoint.events.clone(),
        status: endpoint.status.clone(),
        disabled_reason: endpoint.disabled_reason.clone(),
        created: unix_s(endpoint.created_at_ns),
        secret: with_secret.then(|| endpoint.secret.clone()),
        deleted: None,
    }
}

/// A list page.
pub fn list<T: Serialize>(data: Vec<T>, has_more: bool, url: &str) -> Value {
    json!({"object": "list", "url": url, "data": data, "has_more": has_more})
}

/// A refund request customers made in the bot.
pub fn refund_request(request: &farthing_store::RefundRequest, mode: Mode) -> RefundRequestObject {
    RefundRequestObject {
        object: "refund_request",
        id: request.id.encode(),
        livemode: mode.is_live(),
        status: request.status.as_str(),
        customer: request.customer.encode(),
        invoice: request.invoice.encode(),
        telegram_user_id: request.telegram_user_id,
        refund: request.refund.map(PublicId::encode),
        created: unix_s(request.created_at_ns),
        updated: unix_s(request.updated_at_ns),
    }
}

/// One movement of a customer's balance, as its statement lists it
/// (`GET /v1/customers/{id}/statement`).
#[derive(Serialize, ToSchema)]
pub struct BalanceEntry {
    /// `ble_…`: the entry's place in the statement (a cursor for `starting_after` and
    /// `ending_before`).
    pub id: String,
    /// Always `balance_entry`.
    #[schema(schema_with = object_balance_entry, value_type = String)]
    pub object: &'static str,
    /// Live (`true`) or test (`false`) mode.
    pub livemode: bool,
    /// Whose balance, `cus_…`.
    pub customer: String,
    /// The balance's currency or asset code.
    pub currency: &'static str,
    /// Signed minor units: positive credits the balance (a top-up, a refund), negative
    /// debits it (a charge, a payment, a payout).
    pub amount: i64,
    /// The balance right after this entry, in minor units.
    pub balance_after: i64,
    /// Why it moved: `top_up`, `payment` (an invoice paid from the balance), `charge`,
    /// `refund`, `payout` (e.g. an LNURL-withdraw), `correction` (by the operator) or `other`.
    #[serde(rename = "type")]
    #[schema(schema_with = balance_entry_type, value_type = String)]
    pub entry_type: &'static str,
    /// The object behind it, when it has a public id: `chg_…`, `ref_…` or `inv_…`.
    #[schema(required = true)]
    pub source: Option<String>,
    /// When it was booked (Unix seconds).
    pub created: u64,
}

/// A statement entry of `customer`'s balance in `currency`.
pub fn balance_entry(
    entry: &farthing_store::CustomerEntry,
    customer: farthing_core::CustomerId,
    currency: Currency,
    mode: Mode,
) -> BalanceEntry {
    use farthing_core::ledger::code;
    use farthing_core::{ChargeId, InvoiceId, RefundId};
    let reference = entry.reference;
    let (entry_type, source) = match entry.code {
        code::CHARGE => ("charge", Some(ChargeId::from_raw(reference).encode())),
        code::REFUND => ("refund", Some(RefundId::from_raw(reference).encode())),
        code::PAYMENT => ("payment", Some(InvoiceId::from_raw(reference).encode())),
        // A sandbox top-up names the customer itself; a rail's names the invoice paid.
        code::TOP_UP if reference != 0 && reference != customer.raw() => {
            ("top_up", Some(InvoiceId::from_raw(reference).encode()))
        }
        code::TOP_UP => ("top_up", None),
        code::PAYOUT => ("payout", None),
        code::CORRECTION => ("correction", None),
        _ => ("other", None),
    };
    let source = source.filter(|_| reference != 0);
    BalanceEntry {
        id: balance_entry_id(entry.timestamp_ns, entry.account).encode(),
        object: "balance_entry",
        livemode: mode.is_live(),
        customer: customer.encode(),
        currency: currency.code(),
        amount: entry.amount_minor,
        balance_after: entry.balance_after_minor,
        entry_type,
        source,
        created: unix_s(entry.timestamp_ns),
    }
}

/// The id of the entry at ledger time `timestamp_ns` of balance `account`.
pub fn balance_entry_id(
    timestamp_ns: u64,
    account: farthing_core::AccountId,
) -> farthing_core::BalanceEntryId {
    let low = u128::from_be_bytes(account.to_be_bytes()) & u128::from(u64::MAX);
    farthing_core::BalanceEntryId::from_raw((u128::from(timestamp_ns) << 64) | low)
}
