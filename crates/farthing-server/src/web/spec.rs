//! The schemas the OpenAPI document describes the API with (SPEC A3): the objects, the error
//! shape, the shared parameters and the status texts every handler's `#[utoipa::path]` uses.
//! The document itself is assembled in the `openapi` module at the crate root.

#![allow(missing_docs)]

use utoipa::openapi::schema::{Object, ObjectBuilder, OneOfBuilder, Ref, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::{IntoParams, ToSchema};

/// The API's objects, typed once in the service crate (`farthing_app::wire`): the same structs
/// serialise the bodies and describe them here.
pub use farthing_app::wire::{
    enabled_events_schema, Balance, BalanceEntry, Charge, Customer, CustomerBalance, EventType,
    Invoice, InvoiceStatus, RailName, Refund, RefundRequestObject, WebhookEndpoint,
    WebhookEndpointStatus,
};

// ---------------------------------------------------------------------------------------------
// Shared descriptions of the errors most operations can answer.

/// 401 on every `/v1` operation.
pub const E401: &str = "No API key (`missing_api_key`), or an unknown or revoked one \
    (`invalid_api_key`).";
/// 403 on every `/v1` operation.
pub const E403: &str = "The API key lacks the scope this operation needs (`missing_scope`), or the operation needs a current step-up code in `Farthing-Step-Up` (`step_up_required`, `step_up_invalid`, `step_up_replayed`): step-up is on for this guarded operation, or a payment is above the risk rules' `step_up_above` (then with `decision`).";
/// 413 on every write that reads a body.
pub const E413: &str = "The body is larger than the server's limit (`body_too_large`).";
/// 422 on every write.
pub const E422: &str = "This Idempotency-Key was already used with a different request \
    (`idempotency_key_reused`): use a new key for a new request.";
/// 500 everywhere.
pub const E500: &str = "farthing hit an internal error (`internal_error`); nothing was changed. \
    Retry (with the same Idempotency-Key for a write).";
/// 503 on every write.
pub const E503: &str = "The ledger is overloaded or shutting down (`service_unavailable`); \
    nothing was written. Retry with the same Idempotency-Key.";
/// 503 on the LNURL callbacks that write.
pub const LNURL_503: &str = "The ledger is overloaded or shutting down; nothing was written. \
    Retry.";
/// 400 on every list.
pub const E400_LIST: &str = "A bad `limit` (`invalid_limit`), a `starting_after` or \
    `ending_before` that is not an id of this list's type (`invalid_id`), both cursors at once \
    or a repeated parameter (`invalid_parameter`), or an unknown query parameter \
    (`unknown_parameter`).";

// ---------------------------------------------------------------------------------------------
// Parameters.

/// The list parameters (SPEC A2).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// How many objects to return, from 1 to 100 (default 10).
    #[param(required = false, minimum = 1, maximum = 100, default = 10)]
    pub limit: u32,
    /// Cursor: the id of the last object of the previous page; this page starts after it
    /// (older objects).
    #[param(required = false)]
    pub starting_after: String,
    /// Cursor back: the id of the first object of the page you have; this page holds the
    /// objects just newer than it, still newest first, and `has_more` says whether newer ones
    /// follow. Not together with `starting_after`.
    #[param(required = false)]
    pub ending_before: String,
}

/// The idempotency header of every write (SPEC A2).
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
pub struct IdempotencyKey {
    /// 1 to 255 visible ASCII characters (a UUID is a good choice). The same key with the
    /// same request answers the stored response (with `Idempotent-Replayed: true`), without
    /// doing the work again; the same key with another request answers 422. Keys are kept at
    /// least 24 hours.
    #[param(
        rename = "Idempotency-Key",
        required = false,
        min_length = 1,
        max_length = 255
    )]
    pub idempotency_key: String,
}

// ---------------------------------------------------------------------------------------------
// Enumerations read from the server's own constants.

fn string_enum<'a>(values: impl IntoIterator<Item = &'a str>) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values))
        .build()
}

/// The `object` of an event: the object the event is about.
fn event_object_schema() -> Schema {
    Schema::OneOf(
        OneOfBuilder::new()
            .item(Ref::from_schema_name("Invoice"))
            .item(Ref::from_schema_name("Customer"))
            .item(Ref::from_schema_name("CustomerBalance"))
            .item(Ref::from_schema_name("Charge"))
            .item(Ref::from_schema_name("Refund"))
            .item(Ref::from_schema_name("RailPayment"))
            .item(Ref::from_schema_name("Payout"))
            .item(Ref::from_schema_name("StarsWithdrawal"))
            .item(Ref::from_schema_name("SubscriptionObject"))
            .item(Ref::from_schema_name("RefundRequestObject"))
            .build(),
    )
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
    object_webapp_session => ["webapp_session"],
    object_dashboard_owners => ["dashboard_owners"],
    object_dashboard_session => ["dashboard_session"],
    object_dashboard_user => ["dashboard_user"],
    object_rail_payment => ["rail_payment"],
    object_stars_withdrawal => ["stars_withdrawal"],
    object_event => ["event"],
    object_redelivery => ["redelivery"],
    object_rail => ["rail"],
    object_list => ["list"],
    object_lnurl_withdraw => ["lnurl_withdraw"],
    object_lnurl_auth => ["lnurl_auth"],
    object_lnurl_pay => ["lnurl_pay"],
    object_payout => ["payout"],
    currency_btc => ["BTC"],
    lnurl_withdraw_status => ["open", "claimed", "expired"],
    lnurl_auth_status => ["pending", "verified", "expired"],
    lnurl_auth_action => ["login", "register", "link", "auth"],
    payout_status => ["succeeded", "failed", "pending"],
    lnurl_status => ["OK", "ERROR"],
    tag_pay_request => ["payRequest"],
    tag_withdraw_request => ["withdrawRequest"],
}

// ---------------------------------------------------------------------------------------------
// Errors.

/// The one error shape of the API (SPEC A2).
#[derive(ToSchema)]
pub struct Error {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The body of an error.
#[derive(ToSchema)]
pub struct ErrorDetail {
    /// The broad class of the error.
    #[schema(rename = "type")]
    pub kind: ErrorType,
    /// Machine-readable, e.g. `insufficient_funds`, `resource_missing`, `invalid_amount`.
    #[schema(example = "insufficient_funds")]
    pub code: String,
    /// What happened and what to do, for a person.
    pub message: String,
    /// The request parameter at fault, if one is (e.g. `amount`, `rails[1]`,
    /// `metadata[plan]`).
    #[schema(required = true)]
    pub param: Option<String>,
    /// A refused payment (402 `insufficient_funds`): what the balance can spend now, in minor
    /// units of the currency.
    #[schema(required = false)]
    pub available: Option<u64>,
    /// A refused payment: what was asked, in minor units.
    #[schema(required = false)]
    pub requested: Option<u64>,
    /// A payment refused by the merchant's risk rules (402 `risk_refused`, 403
    /// `step_up_required`): the recorded decision, `rsk_…` (see `GET /v1/risk/decisions`).
    #[schema(required = false)]
    pub decision: Option<String>,
}

/// The broad class of an error.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum ErrorType {
    /// 400, 404, 409, 413: the request is wrong, or the object is not in a state that
    /// allows it.
    InvalidRequestError,
    /// 401: no usable API key.
    AuthenticationError,
    /// 403: the key may not do this.
    PermissionError,
    /// 422: an Idempotency-Key reused with a different request.
    IdempotencyError,
    /// 402: the payment could not be made (e.g. insufficient funds).
    PaymentError,
    /// 500, 503: farthing's side.
    ApiError,
}

// ---------------------------------------------------------------------------------------------
// Objects not yet in `farthing_app::wire` (their bodies are still built as JSON).

/// Per-rail payment instructions of an invoice (SPEC I1).
#[derive(ToSchema)]
pub struct PaymentInstructions {
    /// Present when the invoice accepts `stars` and Telegram made a Stars invoice link.
    pub stars: Option<StarsInstructions>,
    /// Present when the invoice (a fixed amount in a fiat currency) accepts `card` and
    /// Telegram made a payment-provider invoice link.
    pub card: Option<CardInstructions>,
    /// Present when the invoice accepts `lightning` (BTC, a fixed amount) and the merchant's
    /// Lightning node made a BOLT11 for it.
    pub lightning: Option<LightningInstructions>,
    /// Present when the invoice (in `TON` or a jetton such as `USDT`) accepts `ton` and the
    /// merchant connected a TON wallet.
    pub ton: Option<TonInstructions>,
}

/// How to pay an invoice over TON: a transfer to the merchant's own wallet with the comment.
#[derive(ToSchema)]
pub struct TonInstructions {
    /// The merchant's wallet, user-friendly (non-bounceable).
    pub address: String,
    /// `mainnet` or `testnet`.
    pub network: String,
    /// `TON` or the jetton's symbol (`USDT`).
    pub currency: String,
    /// For a jetton: its master contract (bounceable); `null` for TON.
    #[schema(required = true)]
    pub jetton_master: Option<String>,
    /// The amount in minor units (nanoton; micro-USDT); `null` for an amountless invoice.
    #[schema(required = true)]
    pub amount_minor: Option<u64>,
    /// The ten-character reference to write as the transfer's comment: how the payment finds
    /// the invoice.
    pub comment: String,
    /// Always `true`: a payment without the comment is credited to the payer's balance and
    /// listed as unmatched, not applied to the invoice.
    pub comment_required: bool,
    /// A `ton://transfer/…` link with everything filled in (`jetton=` for a jetton, `exp=` the
    /// invoice's expiry), for a QR code or a button; `null` for an amountless invoice.
    #[schema(required = true)]
    pub link: Option<String>,
    /// A TON Connect `sendTransaction` request (`valid_until` the invoice's expiry, `network`
    /// `-239` or `-3`, one message to the merchant's wallet with the comment as its payload);
    /// `null` for a jetton (the message goes to the payer's own jetton wallet, known only once
    /// a wallet is connected) or an amountless invoice.
    #[schema(required = true, value_type = Option<Object>)]
    pub ton_connect: Option<serde_json::Value>,
    /// The invoice's expiry (Unix seconds).
    pub expires_at: u64,
    /// What to tell the payer about the comment.
    pub warning: String,
}

/// How to pay an invoice with Telegram Stars.
#[derive(ToSchema)]
pub struct StarsInstructions {
    /// The `https://t.me/$…` link from `createInvoiceLink`.
    pub invoice_link: String,
}

/// How to pay an invoice by card, through the Telegram payment provider of the merchant's bot.
#[derive(ToSchema)]
pub struct CardInstructions {
    /// The `https://t.me/$…` link from `createInvoiceLink` (with the provider token, the
    /// invoice's currency and amount).
    pub invoice_link: String,
}

/// How to pay an invoice over Lightning.
#[derive(ToSchema)]
pub struct LightningInstructions {
    /// The BOLT11 payment request (satoshis of the invoice's amount); it expires no later than
    /// the invoice.
    pub bolt11: String,
    /// `lightning:` and the BOLT11, for a QR code or a wallet link.
    pub uri: String,
}

/// A payment a rail reported (Telegram Stars, Lightning, TON) and how it was settled: the part
/// that paid the invoice and the part credited to the payer's balance (SPEC I3). The
/// `invoice.payment_credited` event carries it.
#[derive(ToSchema)]
pub struct RailPayment {
    /// Always `rail_payment`.
    #[schema(schema_with = object_rail_payment)]
    pub object: String,
    /// Live (`true`) or test (`false`) mode.
    pub livemode: bool,
    /// The rail that brought the money.
    pub rail: RailName,
    /// The rail's own payment id: Telegram charge id, Lightning payment hash, TON transaction
    /// hash.
    pub external_id: String,
    /// The invoice the payment named, `inv_…`, or `null`.
    #[schema(required = true)]
    pub invoice: Option<String>,
    /// The paying customer, `cus_…`, or `null` when unknown and nothing was credited.
    #[schema(required = true)]
    pub customer: Option<String>,
    /// The currency or asset code.
    pub currency: String,
    /// What arrived, in minor units.
    pub amount: u64,
    /// The part that paid the invoice, in minor units.
    pub amount_paid: u64,
    /// The part credited to the customer's balance, in minor units.
    pub amount_credited: u64,
    /// Why something was credited: `late`, `already_paid`, `underpaid`, `overpaid`,
    /// `other_currency`, `unknown_invoice` or `top_up` (no invoice named, the payer's balance was meant); `null` when nothing was.
    #[schema(required = true)]
    pub credit_reason: Option<String>,
    /// The part held in the merchant's suspense account because it could not be booked where
    /// it belongs (e.g. a balance would exceed the largest amount farthing stores), in minor
    /// units; normally 0. The `rail_payment.suspended` event announces it and `farthing audit`
    /// lists it until an operator resolves it: nothing is dropped.
    pub amount_suspended: u64,
    /// Why money was held in suspense, or `null`.
    #[schema(required = true)]
    pub suspense_reason: Option<String>,
    /// When it was settled (Unix seconds).
    pub created: u64,
}

/// An event: what webhooks deliver, kept in the outbox (SPEC A4).
#[derive(ToSchema)]
pub struct Event {
    /// `evt_…`; also the webhook message id (`webhook-id`).
    pub id: String,
    /// Always `event`.
    #[schema(schema_with = object_event)]
    pub object: String,
    /// What happened.
    #[schema(rename = "type")]
    pub event_type: EventType,
    /// Live (`true`) or test (`false`) mode.
    pub livemode: bool,
    /// When it happened (Unix seconds).
    pub created: u64,
    /// The object as it was right after the change.
    pub data: EventData,
    /// `GET /v1/events/{id}` only: the event's deliveries, one per webhook endpoint.
    #[schema(required = false)]
    pub deliveries: Vec<Delivery>,
}

/// The payload of an event.
#[derive(ToSchema)]
pub struct EventData {
    /// The object the event is about: an invoice for `invoice.*` (a rail payment for
    /// `invoice.payment_credited`), a charge for
    /// `charge.succeeded`, a refund for `refund.*` (`succeeded`, `pending`, `canceled`), a customer for
    /// `customer.created`, a customer balance for `customer.balance_changed`, a payout for
    /// `payout.succeeded` and `payout.failed`, a Stars withdrawal for `stars.withdrawal`, a
    /// subscription for `subscription.*`.
    #[schema(schema_with = event_object_schema)]
    pub object: serde_json::Value,
}

/// Where a delivery stands.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Waiting for its next attempt.
    Pending,
    /// The endpoint answered 2xx.
    Delivered,
    /// Retries exhausted, or the endpoint answered 410 Gone.
    Failed,
    /// The endpoint was deleted or disabled.
    Canceled,
}

/// One event's delivery to one webhook endpoint.
#[derive(ToSchema)]
pub struct Delivery {
    /// `we_…`
    pub webhook_endpoint: String,
    /// Where it stands.
    pub status: DeliveryStatus,
    /// Attempts made so far.
    pub attempts: u32,
    /// When the next attempt is due (Unix seconds), while pending.
    #[schema(required = true)]
    pub next_attempt_at: Option<u64>,
    /// HTTP status of the last attempt.
    #[schema(required = true)]
    pub last_status_code: Option<u16>,
    /// Why the last attempt failed.
    #[schema(required = true)]
    pub last_error: Option<String>,
}

/// The answer of a redelivery: which endpoints the event was queued for.
#[derive(ToSchema)]
pub struct Redelivery {
    /// Always `redelivery`.
    #[schema(schema_with = object_redelivery)]
    pub object: String,
    /// `evt_…`
    pub event: String,
    /// The endpoints (`we_…`) the event was queued for, now.
    pub webhook_endpoints: Vec<String>,
}

/// A rail the merchant can take.
#[derive(ToSchema)]
pub struct RailState {
    /// Always `rail`.
    #[schema(schema_with = object_rail)]
    pub object: String,
    /// Its name.
    pub rail: RailName,
    /// Whether the merchant has configured it.
    pub configured: bool,
    /// `healthy` when the rail can take payments now.
    #[schema(example = "healthy")]
    pub health: String,
    /// Live (`true`) or test (`false`) mode.
    pub livemode: bool,
    /// Stars: the connected bot's id.
    pub bot_id: Option<u64>,
    /// Stars: the bot's username, as `getMe` verified it.
    pub username: Option<String>,
    /// Stars: how updates arrive (`webhook` or `polling`).
    pub mode: Option<String>,
    /// Stars: the webhook secret, only in the answer that generated it.
    pub webhook_secret: Option<String>,
    /// Stars (`GET /v1/rails`): when `getStarTransactions` was last reconciled (Unix seconds),
    /// or `null` before the first reconciliation.
    pub reconciled_at: Option<u64>,
    /// Stars (`GET /v1/rails`): why the last reconciliation failed, or `null`.
    pub reconcile_error: Option<String>,
    /// Lightning: why the last call to the node failed (with `health` `unhealthy`), or `null`.
    pub health_error: Option<String>,
    /// Lightning: `connected` while farthing follows the node's settlement stream,
    /// `disconnected` while it polls the node instead.
    pub settlement_stream: Option<String>,
    /// Lightning: the node's kind, `lnbits`, `lnd` or `cln`.
    pub backend: Option<String>,
    /// Lightning: the node's base URL.
    pub url: Option<String>,
    /// Lightning: the network of the node's invoices (`bitcoin`, `testnet`, `signet`,
    /// `regtest`).
    pub network: Option<String>,
    /// Lightning: whether the node was connected with a key that can pay (refunds over
    /// Lightning, payouts, LNURL-withdraw).
    pub can_pay: Option<bool>,
    /// Lightning: the merchant's Lightning Address, `name@host`, or `null` when none is set.
    pub lightning_address: Option<String>,
    /// Card: the fiat currencies the rail takes, or `null` for any.
    pub currencies: Option<Vec<String>>,
    /// TON: the merchant's wallet, user-friendly non-bounceable (what payers are asked to pay).
    pub address: Option<String>,
    /// TON: the wallet's raw form (`0:` and hex).
    pub address_raw: Option<String>,
    /// TON: the toncenter v3 base URL the wallet is watched through.
    pub api_url: Option<String>,
    /// TON: whether an indexer API key is stored (it is never returned).
    pub api_key_set: Option<bool>,
    /// TON: the accepted jettons, each `{symbol, master, decimals, wallet}` (`wallet`: the
    /// merchant's jetton wallet, checked against the chain).
    pub jettons: Option<Vec<serde_json::Value>>,
    /// TON: the watcher, `{last_poll_at, accounts: {<raw account>: {last_lt, last_hash,
    /// last_transaction_at, lag_s}}}`.
    pub watcher: Option<serde_json::Value>,
}

/// Who may sign in to the dashboard (`PUT /v1/dashboard/owners`).
#[derive(ToSchema)]
pub struct DashboardOwners {
    /// Always `dashboard_owners`.
    #[schema(schema_with = object_dashboard_owners)]
    pub object: String,
    /// Live (`true`) or test (`false`) mode: the list is per mode.
    pub livemode: bool,
    /// The Telegram user ids, ascending.
    pub telegram_user_ids: Vec<u64>,
    /// The LNURL-auth linking keys (hex), ascending.
    pub lnurl_linking_keys: Vec<String>,
}

/// The merchant of a dashboard session.
#[derive(ToSchema)]
pub struct DashboardMerchant {
    /// The merchant's id, `mer_…`.
    pub id: String,
    /// Its name.
    pub name: String,
}

/// The Telegram user of a dashboard session, as the Login Widget described them.
#[derive(ToSchema)]
pub struct DashboardUserObject {
    /// The Telegram user id.
    pub id: u64,
    /// First name.
    pub first_name: String,
    /// Last name, when the user has one.
    #[schema(required = false)]
    pub last_name: String,
    /// Username, when the user has one.
    #[schema(required = false)]
    pub username: String,
    /// Profile photo URL, when the user shares one.
    #[schema(required = false)]
    pub photo_url: String,
    /// For a sign-in with a Lightning wallet (LNURL-auth): the wallet's linking key (`id` is
    /// then 0).
    #[schema(required = false)]
    pub linking_key: String,
}

/// A dashboard sign-in with a Lightning wallet (`POST /dashboard/login/lnurl`, then
/// `GET /dashboard/login/lnurl/{id}`).
#[derive(ToSchema)]
pub struct DashboardLnurlLoginObject {
    /// Always `dashboard_lnurl_login`.
    #[schema(example = "dashboard_lnurl_login")]
    pub object: String,
    /// The challenge's id (its k1, hex).
    pub id: String,
    /// Live (`true`) or test (`false`) mode.
    pub livemode: bool,
    /// `pending`, `expired` or `verified`.
    #[schema(example = "pending")]
    pub status: String,
    /// The LNURL-auth URL (pending and expired).
    #[schema(required = false)]
    pub url: String,
    /// The same, bech32 (`LNURL1…`), for a QR code (pending and expired).
    #[schema(required = false)]
    pub lnurl: String,
    /// When the challenge (pending, expired) or the session (verified) ends (Unix seconds).
    pub expires_at: u64,
    /// Verified: the token for `Authorization: Bearer` on `GET /dashboard/me` (`fds_…`).
    #[schema(required = false)]
    pub session: String,
    /// Verified: the merchant whose dashboard it is.
    #[schema(required = false)]
    pub merchant: DashboardMerchant,
    /// Verified: who signed in.
    #[schema(required = false)]
    pub user: DashboardUserObject,
}

/// A dashboard session (`POST /dashboard/login/telegram`).
#[derive(ToSchema)]
pub struct DashboardSessionObject {
    /// Always `dashboard_session`.
    #[schema(schema_with = object_dashboard_session)]
    pub object: String,
    /// The token for `Authorization: Bearer` on `GET /dashboard/me` (`fds_…`): signed by the
    /// server, carrying no secret.
    pub session: String,
    /// When the session ends (Unix seconds).
    pub expires_at: u64,
    /// Live (`true`) or test (`false`): the mode whose owner list admitted the user.
    pub livemode: bool,
    /// The merchant whose dashboard it is.
    pub merchant: DashboardMerchant,
    /// Who signed in.
    pub user: DashboardUserObject,
}

/// Who is signed in (`GET /dashboard/me`).
#[derive(ToSchema)]
pub struct DashboardMe {
    /// Always `dashboard_user`.
    #[schema(schema_with = object_dashboard_user)]
    pub object: String,
    /// When the session ends (Unix seconds).
    pub expires_at: u64,
    /// Live (`true`) or test (`false`) mode.
    pub livemode: bool,
    /// The merchant whose dashboard it is.
    pub merchant: DashboardMerchant,
    /// Who signed in.
    pub user: DashboardUserObject,
}

/// An API key as the API shows it.
#[derive(ToSchema)]
pub struct ApiKey {
    /// Always `api_key`.
    #[schema(example = "api_key")]
    pub object: String,
    /// `key_…`: derived from the key's hash, never the key.
    pub id: String,
    /// Live (`true`) or test (`false`) mode: the mode of the key that made it.
    pub livemode: bool,
    /// The key's first characters.
    pub hint: String,
    /// What it may do.
    pub scopes: Vec<String>,
    /// When it was made (Unix seconds).
    pub created: u64,
    /// When it stopped working, or will stop: a rolled key keeps working until this time
    /// (Unix seconds); `null` while it is not revoked.
    #[schema(required = true)]
    pub revoked_at: Option<u64>,
    /// The key itself (`fk_live_…`/`fk_test_…`): in the answer of `POST /v1/api_keys` and
    /// `POST /v1/api_keys/{id}/roll` only, once. Store it now.
    #[schema(required = false)]
    pub secret: String,
}

/// One administrative action of the audit log.
#[derive(ToSchema)]
pub struct AuditEntry {
    /// Always `audit_entry`.
    #[schema(example = "audit_entry")]
    pub object: String,
    /// `aud_…`, time-ordered.
    pub id: String,
    /// Live (`true`) or test (`false`) mode.
    pub livemode: bool,
    /// The operation: method and route, e.g. `POST /v1/api_keys/{id}/revoke`.
    pub action: String,
    /// The path it was applied to (object ids, never secrets).
    pub target: String,
    /// Who acted: the API key, `key_…` (see `GET /v1/api_keys`).
    pub actor: String,
    /// The client's address, when known.
    #[schema(required = true)]
    pub origin: Option<String>,
    /// How it ended: the HTTP status answered (a refused attempt is recorded too).
    pub status: u16,
    /// When (Unix seconds).
    pub created: u64,
}

macro_rules! list_schema {
    ($($name:ident of $item:ident at $url:literal),+ $(,)?) => {
        $(
            #[doc = concat!("A page of ", stringify!($item), " objects (`GET ", $url, "`), newest first.")]
            #[derive(ToSchema)]
            #[schema(description = concat!("A page of ", stringify!($item), " objects (`GET ", $url, "`), newest first."))]
            pub struct $name {
                /// Always `list`.
                #[schema(schema_with = object_list)]
                pub object: String,
                /// The list's path.
                #[schema(example = $url)]
                pub url: String,
                /// The objects of this page.
                pub data: Vec<$item>,
                /// Whether more objects follow: pass the last id of `data` as
                /// `starting_after` for the next page (with `ending_before`: whether newer
                /// objects follow; pass the first id of `data` as `ending_before`).
                pub has_more: bool,
            }
        )+
    };
}

/// A transaction the TON watcher read on the merchant's wallet or jetton wallet.
#[derive(ToSchema)]
pub struct TonPayment {
    /// Always `ton_payment`.
    #[schema(example = "ton_payment")]
    pub object: String,
    /// The transaction hash in url-safe base64 (43 characters).
    pub id: String,
    /// The transaction hash as toncenter writes it (standard base64).
    pub hash: String,
    /// Live (`true`) or test (`false`) mode.
    pub livemode: bool,
    /// The account it is on (raw form): the wallet or a jetton wallet.
    pub account: String,
    /// Its logical time (a decimal string).
    pub lt: String,
    /// `settled`, `unmatched`, `assigned` or `ignored`.
    pub outcome: String,
    /// Why it was ignored (`fake_jetton`, `bounced_to_payer`, `excesses`, `own_notification`…),
    /// or how a payment was split (`overpaid`, `underpaid`, `late`, `topped_up`…), or `null`.
    pub reason: Option<String>,
    /// `TON` or `USDT` for a payment, else `null`.
    pub currency: Option<String>,
    /// The amount in minor units (nanoton, micro-USDT), or `null`.
    pub amount: Option<u64>,
    /// The payer's address (raw form), or `null`.
    pub payer: Option<String>,
    /// The payer's comment, or `null`.
    pub comment: Option<String>,
    /// The invoice it paid or was assigned to, `inv_…`, or `null`.
    pub invoice: Option<String>,
    /// The customer credited, `cus_…`, or `null`.
    pub customer: Option<String>,
    /// Its time on chain (Unix seconds).
    pub transaction_at: u64,
    /// When the watcher read it (Unix seconds).
    pub created: u64,
}

/// An assigned TON payment (`POST /v1/rails/ton/payments/{id}/assign`).
#[derive(ToSchema)]
pub struct AssignedTonPayment {
    /// Always `ton_payment`.
    #[schema(example = "ton_payment")]
    pub object: String,
    /// The transaction hash in url-safe base64.
    pub id: String,
    /// The transaction hash (standard base64).
    pub hash: String,
    /// Live or test mode.
    pub livemode: bool,
    /// The account it is on.
    pub account: String,
    /// Its logical time.
    pub lt: String,
    /// `assigned`.
    pub outcome: String,
    /// How it was first credited.
    pub reason: Option<String>,
    /// The currency.
    pub currency: Option<String>,
    /// The amount in minor units.
    pub amount: Option<u64>,
    /// The payer's address.
    pub payer: Option<String>,
    /// The payer's comment.
    pub comment: Option<String>,
    /// The invoice it was assigned to, or `null`.
    pub invoice: Option<String>,
    /// The customer whose balance holds it now (the payer's for an invoice).
    pub customer: Option<String>,
    /// Its time on chain.
    pub transaction_at: u64,
    /// When the watcher read it.
    pub created: u64,
    /// The invoice it paid, or `null` (assigned to a customer).
    pub paid_invoice: Option<Invoice>,
}

/// A decision of the merchant's risk rules about one payment attempt (SPEC S1, S2).
#[derive(ToSchema)]
pub struct RiskDecision {
    /// Always `risk_decision`.
    #[schema(example = "risk_decision")]
    pub object: String,
    /// `rsk_…`, time-ordered.
    pub id: String,
    /// Live (`true`) or test (`false`) mode.
    pub livemode: bool,
    /// Where the attempt came from: `charge`, `balance_payment`, `pre_checkout`, `mini_app`,
    /// `payout`.
    pub operation: String,
    /// `allow`, `step_up` or `refuse`.
    pub outcome: String,
    /// The deciding rule (`none` for an allowance): `blocked_telegram_user`, `blocked_wallet`,
    /// `blocked_ip`, `velocity_attempts`, `velocity_failures`, `per_payment_max`,
    /// `new_customer_per_payment_max`, `per_customer_day_max`, `step_up_above`.
    pub rule: String,
    /// Why, in words.
    pub reason: String,
    /// The paying customer, `cus_…`, when known.
    pub customer: Option<String>,
    /// The payer's Telegram user id, when known.
    pub telegram_user_id: Option<i64>,
    /// What was being paid (`inv_…`, `chg_…`, a payout's payment hash), when known.
    pub subject: Option<String>,
    /// The amount, in minor units.
    pub amount: u64,
    /// Its currency.
    pub currency: String,
    /// Unix seconds.
    pub created: u64,
}

/// The merchant's risk rules, as stored.
#[derive(ToSchema)]
pub struct RiskRulesObject {
    /// Always `risk_rules`.
    #[schema(example = "risk_rules")]
    pub object: String,
    /// Live (`true`) or test (`false`) mode.
    pub livemode: bool,
    /// Limits per currency.
    pub limits: Vec<farthing_app::risk::LimitDoc>,
    /// Who counts as new.
    pub new_customers: Option<farthing_app::risk::NewCustomersDoc>,
    /// Velocity per payer.
    pub velocity: farthing_app::risk::VelocityDoc,
    /// Block lists.
    pub block: farthing_app::risk::BlockDoc,
}

list_schema! {
    InvoiceList of Invoice at "/v1/invoices",
    CustomerList of Customer at "/v1/customers",
    ChargeList of Charge at "/v1/charges",
    RefundList of Refund at "/v1/refunds",
    EventList of Event at "/v1/events",
    WebhookEndpointList of WebhookEndpoint at "/v1/webhook_endpoints",
    RailList of RailState at "/v1/rails",
    SubscriptionList of SubscriptionObject at "/v1/subscriptions",
    RefundRequestList of RefundRequestObject at "/v1/refund_requests",
    ApiKeyList of ApiKey at "/v1/api_keys",
    AuditEntryList of AuditEntry at "/v1/audit_log",
    RiskDecisionList of RiskDecision at "/v1/risk/decisions",
    TonPaymentList of TonPayment at "/v1/rails/ton/payments",
    BalanceEntryList of BalanceEntry at "/v1/customers/{id}/statement",
}

/// A withdrawal of the bot's Stars to Fragment, found by the Stars reconciliation
/// (`getStarTransactions`): the object of `stars.withdrawal`, written when farthing first sees
/// it and whenever its state changes. A `succeeded` withdrawal is booked as a payout from the
/// merchant's XTR balance to the Stars rail's outside world, as far as the available balance
/// allows; the rest is `shortfall` (Stars the ledger never held for the merchant).
#[derive(ToSchema)]
pub struct StarsWithdrawal {
    /// Always `stars_withdrawal`.
    #[schema(schema_with = object_stars_withdrawal)]
    pub object: String,
    /// Live (`true`) or test (`false`) mode.
    pub livemode: bool,
    /// Telegram's transaction id.
    pub id: String,
    /// The bot the Stars left.
    pub bot_id: u64,
    /// Always `XTR`.
    pub currency: String,
    /// Whole Stars withdrawn.
    pub amount: u64,
    /// `pending`, `succeeded`, `failed` or `unknown` (a state this server does not know).
    pub state: String,
    /// A succeeded withdrawal: the transaction on Fragment; otherwise `null`.
    pub url: Option<String>,
    /// When Telegram made the withdrawal (Unix seconds).
    pub date: i64,
    /// What was booked as a payout, in Stars (0 until it succeeded).
    pub amount_booked: u64,
    /// What the merchant's available XTR balance could not cover, in Stars.
    pub shortfall: u64,
    /// When farthing first saw it (Unix seconds).
    pub created: u64,
}

/// Health and readiness.
#[derive(ToSchema)]
pub struct HealthStatus {
    /// `ok` (`/healthz`) or `ready` (`/readyz`).
    #[schema(example = "ok")]
    pub status: String,
}

/// What the checkout page polls.
#[derive(ToSchema)]
pub struct CheckoutStatus {
    /// `inv_…`
    pub id: String,
    /// Where the invoice stands.
    pub status: InvoiceStatus,
    /// When it expires if not paid (Unix seconds).
    pub expires_at: u64,
    /// The amount paid, in minor units, once paid.
    #[schema(required = true)]
    pub amount_paid: Option<u64>,
    /// The rail it was paid on, once paid.
    #[schema(required = true)]
    pub paid_rail: Option<RailName>,
    /// When it was paid (Unix seconds), once paid.
    #[schema(required = true)]
    pub paid_at: Option<u64>,
}

// ---------------------------------------------------------------------------------------------
// The checkout routes (handlers in `checkout.rs`), documented here.

/// The Telegram user of a Mini App session.
#[derive(ToSchema)]
pub struct WebappUser {
    /// The Telegram user id.
    pub id: u64,
    /// The user's first name.
    pub first_name: String,
    /// The user's username, when they have one.
    #[schema(required = false)]
    pub username: String,
    /// The IETF language tag of the user's Telegram client (`en`, `fa`…), when Telegram sent it.
    #[schema(required = false)]
    pub language_code: String,
}

/// A Mini App session (`POST /webapp/session`).
#[derive(ToSchema)]
pub struct WebappSession {
    /// Always `webapp_session`.
    #[schema(schema_with = object_webapp_session)]
    pub object: String,
    /// The token for `Authorization: Bearer` on `POST /webapp/pay/{invoice}` (`wss_…`): signed
    /// by the server, carrying no secret.
    pub session: String,
    /// When the session ends (Unix seconds).
    pub expires_at: u64,
    /// The customer `tg:<user id>` of the merchant, `cus_…` (created on first contact).
    pub customer: String,
    /// Who opened the Mini App.
    pub user: WebappUser,
    /// Live (`true`) or test (`false`) mode.
    pub livemode: bool,
    /// The customer's balances per currency.
    pub balances: Vec<Balance>,
}

/// An LNURL status answer (LUD-03, LUD-04, LUD-06): `{"status": "OK"}` or
/// `{"status": "ERROR", "reason": …}`.
#[derive(ToSchema)]
pub struct LnurlStatus {
    /// `OK` or `ERROR`.
    #[schema(schema_with = lnurl_status, example = "ERROR")]
    pub status: String,
    /// What went wrong, for a person (with `ERROR` only).
    #[schema(required = false, value_type = String)]
    pub reason: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// The Lightning rail's objects (written by `api/lightning.rs` and `lightning/lnurl.rs`).

/// A single-use LNURL-withdraw link (LUD-03): a refund a customer claims with their wallet, or
/// a payout of the merchant's own balance.
#[derive(ToSchema)]
pub struct LnurlWithdraw {
    /// The link's k1, 64 hex characters (LNURL objects have no prefixed id).
    pub id: String,
    /// Always `lnurl_withdraw`.
    #[schema(schema_with = object_lnurl_withdraw)]
    pub object: String,
    /// Live (`true`) or test (`false`) mode.
    pub livemode: bool,
    /// `open` (claimable), `claimed` (a wallet sent its BOLT11 and the payment went out) or
    /// `expired`.
    #[schema(schema_with = lnurl_withdraw_status)]
    pub status: String,
    /// Whose BTC balance pays, `cus_…`; `null`: the merchant's own balance.
    #[schema(required = true)]
    pub customer: Option<String>,
    /// Always `BTC`.
    #[schema(schema_with = currency_btc)]
    pub currency: String,
    /// The least the link pays, in satoshis.
    pub amount_min: u64,
    /// The most the link pays, in satoshis.
    pub amount_max: u64,
    /// Shown by the wallet.
    pub description: String,
    /// The payment hash of the claiming wallet's BOLT11, hex, once claimed.
    #[schema(required = true)]
    pub payment_hash: Option<String>,
    /// The link, `…/lnurl/{mode}/withdraw/{k1}`.
    pub url: String,
    /// The link as a bech32 LNURL (`LNURL1…`), for a QR code.
    pub lnurl: String,
    /// When it was created (Unix seconds).
    pub created: u64,
    /// When it stops working (Unix seconds).
    pub expires_at: u64,
}

/// An LNURL-auth challenge (LUD-04): a customer logs in by signing it with their wallet.
#[derive(ToSchema)]
pub struct LnurlAuth {
    /// The challenge's k1, 64 hex characters (LNURL objects have no prefixed id).
    pub id: String,
    /// Always `lnurl_auth`.
    #[schema(schema_with = object_lnurl_auth)]
    pub object: String,
    /// Live (`true`) or test (`false`) mode.
    pub livemode: bool,
    /// `pending`, `verified` (a wallet signed it) or `expired`.
    #[schema(schema_with = lnurl_auth_status)]
    pub status: String,
    /// The LUD-04 action shown by the wallet.
    #[schema(schema_with = lnurl_auth_action)]
    pub action: String,
    /// The wallet's linking public key (compressed secp256k1, hex), once verified.
    #[schema(required = true)]
    pub linking_key: Option<String>,
    /// The customer the linking key belongs to, `cus_…` (made on its first login), once
    /// verified.
    #[schema(required = true)]
    pub customer: Option<String>,
    /// The challenge URL, `…/lnurl/{mode}/auth?tag=login&k1=…&action=…`.
    pub url: String,
    /// The URL as a bech32 LNURL (`LNURL1…`), for a QR code.
    pub lnurl: String,
    /// When it was created (Unix seconds).
    pub created: u64,
    /// When it stops working (Unix seconds).
    pub expires_at: u64,
}

/// A customer's LNURL-pay top-up link: whatever is paid to it is credited to the customer's
/// BTC balance.
#[derive(ToSchema)]
pub struct CustomerTopUpLink {
    /// Always `lnurl_pay`.
    #[schema(schema_with = object_lnurl_pay)]
    pub object: String,
    /// Live (`true`) or test (`false`) mode.
    pub livemode: bool,
    /// `cus_…`
    pub customer: String,
    /// The link, `…/lnurl/{mode}/topup/cus_…`.
    pub url: String,
    /// The link as a bech32 LNURL (`LNURL1…`), for a QR code.
    pub lnurl: String,
}

/// A payment out over Lightning: a merchant's payout to a BOLT11 (`POST /v1/payouts`), or an
/// LNURL-withdraw link claimed by a wallet (`payout.succeeded`, `payout.failed`).
#[derive(ToSchema)]
pub struct Payout {
    /// 64 hex characters (derived from the link and the payment hash).
    pub id: String,
    /// Always `payout`.
    #[schema(schema_with = object_payout)]
    pub object: String,
    /// Live (`true`) or test (`false`) mode.
    pub livemode: bool,
    /// Always `BTC`.
    #[schema(schema_with = currency_btc)]
    pub currency: String,
    /// The amount paid out, in satoshis (routing fees are the node's).
    pub amount: u64,
    /// `succeeded`, `failed` (the amount went back to the balance) or `pending` (the node has
    /// not finished; the amount stays held).
    #[schema(schema_with = payout_status)]
    pub status: String,
    /// `{"fee_msat": …}` when it succeeded, `{"failure_reason": …}` when it failed, `null`
    /// while pending.
    #[schema(required = true, value_type = Option<Object>)]
    pub detail: Option<serde_json::Value>,
    /// The BOLT11's payment hash, hex: in the answer of `POST /v1/payouts` only.
    #[schema(required = false, value_type = String)]
    pub payment_hash: Option<String>,
    /// Whose balance paid, `cus_…`, or `null` for the merchant's own: in `payout.*` events
    /// only.
    #[schema(required = false)]
    pub customer: Option<String>,
}

/// LNURL-pay's pay request (LUD-06, LUD-12, LUD-16), as wallets read it.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct LnurlPayRequest {
    /// Always `payRequest`.
    #[schema(schema_with = tag_pay_request)]
    pub tag: String,
    /// Where the wallet asks for a BOLT11 (`<callback>?amount=<msat>&comment=…`).
    pub callback: String,
    /// The smallest amount accepted, millisatoshis.
    pub min_sendable: u64,
    /// The largest amount accepted, millisatoshis.
    pub max_sendable: u64,
    /// The LUD-06 metadata, a JSON array as a string (`text/plain`; a Lightning Address adds
    /// `text/identifier`); the BOLT11 commits to its SHA-256.
    pub metadata: String,
    /// LUD-12: the longest `comment` the callback accepts.
    pub comment_allowed: u16,
}

/// LNURL-pay's callback answer (LUD-06): the BOLT11 to pay.
#[derive(ToSchema)]
pub struct LnurlPayCallback {
    /// The BOLT11.
    pub pr: String,
    /// Always empty.
    pub routes: Vec<serde_json::Value>,
}

/// LNURL-withdraw's withdraw request (LUD-03), as wallets read it.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct LnurlWithdrawRequest {
    /// Always `withdrawRequest`.
    #[schema(schema_with = tag_withdraw_request)]
    pub tag: String,
    /// Where the wallet sends its BOLT11 (`<callback>?k1=<k1>&pr=<BOLT11>`).
    pub callback: String,
    /// The link's k1 (hex).
    pub k1: String,
    /// The description the wallet puts in its BOLT11.
    pub default_description: String,
    /// The least the link pays, millisatoshis.
    pub min_withdrawable: u64,
    /// The most the link pays, millisatoshis.
    pub max_withdrawable: u64,
}

/// A Telegram Stars subscription (SPEC RL2, PR4).
#[derive(ToSchema)]
pub struct SubscriptionObject {
    /// Always `subscription`.
    #[schema(example = "subscription")]
    pub object: String,
    /// `sub_…`
    pub id: String,
    /// Live (`true`) or test (`false`) mode.
    pub livemode: bool,
    /// `active` (paid, renewing), `canceled` (paid until `current_period_end`, not renewing)
    /// or `expired` (the paid period is over).
    #[schema(example = "active")]
    pub status: String,
    /// The subscriber, `cus_…` (`tg:<user id>`).
    pub customer: String,
    /// The subscription invoice the subscriber first paid, `inv_…`.
    pub invoice: String,
    /// The invoice of the latest paid period (the first invoice or a renewal invoice).
    pub latest_invoice: String,
    /// The subscriber's Telegram user id.
    pub telegram_user_id: i64,
    /// `XTR`.
    pub currency: String,
    /// Price per period, minor units.
    pub amount: u64,
    /// Period length, seconds.
    pub period: u64,
    /// When the paid period ends (Unix seconds).
    pub current_period_end: u64,
    /// Renewals paid so far.
    pub renewals: u64,
    /// Canceled: it does not renew.
    pub cancel_at_period_end: bool,
    /// When it started (Unix seconds).
    pub created: u64,
}

/// The merchant's bot settings of one mode (`GET`/`PUT /v1/settings`).
#[derive(ToSchema)]
pub struct SettingsObject {
    /// Always `settings`.
    #[schema(example = "settings")]
    pub object: String,
    /// Live (`true`) or test (`false`) mode.
    pub livemode: bool,
    /// The offer the bot's `/terms` shows (empty: not set).
    pub terms: String,
    /// The refund policy `/terms` shows (empty: not set).
    pub refund_policy: String,
    /// How to reach the merchant, shown by `/terms` (empty: not set).
    pub contacts: String,
    /// Tip and top-up buttons, in Stars (empty: the server's `telegram.tip_presets`).
    pub tip_presets: Vec<u64>,
    /// Whether the bot reminds opted-in customers of invoices they left open, once each.
    pub reminders: bool,
}

// ---------------------------------------------------------------------------------------------
// The error answers most operations share, as response sets a `#[utoipa::path]` lists by name
// instead of repeating their rows.

fn error_response(description: &str) -> RefOr<utoipa::openapi::Response> {
    utoipa::openapi::ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            utoipa::openapi::ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Error")))
                .build(),
        )
        .build()
        .into()
}

macro_rules! error_responses {
    ($($(#[$doc:meta])* $name:ident => [$($status:literal => $description:expr),+]),+ $(,)?) => {
        $(
            $(#[$doc])*
            pub struct $name;

            impl utoipa::IntoResponses for $name {
                fn responses() -> std::collections::BTreeMap<String, RefOr<utoipa::openapi::Response>> {
                    [$(($status.to_owned(), error_response($description))),+].into_iter().collect()
                }
            }
        )+
    };
}

error_responses! {
    /// 401, 403, 500: what every authenticated read may answer.
    ReadErrors => ["401" => E401, "403" => E403, "500" => E500],
    /// 401, 403, 413, 422, 500, 503: what every authenticated write may answer.
    WriteErrors => [
        "401" => E401, "403" => E403, "413" => E413, "422" => E422, "500" => E500, "503" => E503
    ],
    /// 401: no usable API key.
    Unauthorized => ["401" => E401],
    /// 403: the key lacks the scope.
    Forbidden => ["403" => E403],
    /// 413: the body is too large.
    TooLarge => ["413" => E413],
    /// 422: an Idempotency-Key reused with another request.
    IdempotencyMismatch => ["422" => E422],
    /// 500: farthing's error.
    Internal => ["500" => E500],
    /// 503: overloaded or shutting down.
    Unavailable => ["503" => E503],
}
