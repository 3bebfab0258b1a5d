//! The OpenAPI 3.1 document served at `/openapi.json` (SPEC A3).
//!
//! It is generated from the code: every handler carries a `#[utoipa::path]` annotation (its
//! method, path, parameters, request body and every status it can answer), the request bodies
//! derive `ToSchema` where they are defined, and the enumerations (rails, event types) are
//! read from the constants the server itself uses. The response objects are written by
//! `render.rs` as JSON values, so their schemas are described here, one struct per object;
//! `tests/openapi.rs` checks them against `render`'s real output and against the answers of a
//! running server, and checks that every route of [`crate::ROUTES`] is documented.

use std::sync::LazyLock;

use utoipa::openapi::schema::{Schema, SchemaType, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{RefOr, Required};
use utoipa::{Modify, OpenApi};

use crate::web::spec::*;

/// The document, built once.
static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
    serde_json::to_string(&document()).unwrap_or_else(|error| {
        tracing::error!(%error, "cannot serialize the OpenAPI document");
        String::from("{}")
    })
});

/// The OpenAPI document.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The OpenAPI document as JSON text (what `/openapi.json` serves).
pub fn json() -> &'static str {
    DOCUMENT.as_str()
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "farthing",
        description = "farthing's Merchant API: invoices, customer balances, charges, refunds, \
            signed webhooks and the sandbox rail.\n\n\
            Conventions (SPEC A2): every object has a prefixed id (`inv_`, `cus_`, `chg_`, \
            `ref_`, `evt_`, `we_`), except the Lightning rail's LNURL links, challenges and \
            payouts, named by 64 hex characters; amounts are integers in minor units of their \
            currency (500 = 5.00 USD; BTC in satoshis); times are Unix seconds; lists take \
            `limit` and `starting_after` (or `ending_before` to page back) and answer `{\"object\": \"list\", \"data\": [...], \
            \"has_more\": bool}`, newest first; every error is `{\"error\": {\"type\", \"code\", \
            \"message\", \"param\"}}`, except on the public LNURL endpoints wallets call, which \
            answer LNURL's `{\"status\": \"ERROR\", \"reason\"}`; every write honours an \
            `Idempotency-Key` header (same key and body: the stored answer, with \
            `Idempotent-Replayed: true`; same key, another body: 422), except `POST /v1/payouts`, \
            idempotent by the BOLT11 it pays, and the decisions on refund requests, idempotent by \
            the request. A test-mode key (`fk_test_…`) sees only test data, \
            a live key (`fk_live_…`) only live data."
    ),
    paths(
        crate::healthz,
        crate::readyz,
        crate::metrics_text,
        crate::openapi_json,
        crate::http::invoices::create,
        crate::http::invoices::list,
        crate::http::invoices::retrieve,
        crate::http::invoices::cancel,
        crate::http::invoices::pay,
        crate::http::stars::send_invoice,
        crate::http::customers::create,
        crate::http::customers::list,
        crate::http::customers::retrieve,
        crate::http::charges::create,
        crate::http::charges::list,
        crate::http::charges::retrieve,
        crate::http::charges::create_refund,
        crate::http::charges::list_refunds,
        crate::http::charges::retrieve_refund,
        crate::http::charges::cancel_refund,
        crate::http::events::list,
        crate::http::events::retrieve,
        crate::http::events::redeliver,
        crate::http::events::create_endpoint,
        crate::http::events::list_endpoints,
        crate::http::events::retrieve_endpoint,
        crate::http::events::delete_endpoint,
        crate::http::rails::list,
        crate::http::rails::connect_stars,
        crate::http::rails::connect_lightning,
        crate::http::rails::connect_ton,
        crate::http::ton::list,
        crate::http::ton::assign,
        crate::http::rails::connect_card,
        crate::pages::dashboard::set_owners,
        crate::pages::dashboard::create_owner_link,
        crate::pages::dashboard::retrieve_owner_link,
        crate::http::subscriptions::list,
        crate::pages::dashboard::login_lnurl,
        crate::pages::dashboard::login_lnurl_status,
        crate::http::subscriptions::retrieve,
        crate::http::subscriptions::cancel,
        crate::http::subscriptions::resume,
        crate::http::settings::retrieve,
        crate::http::settings::update,
        crate::http::settings::list_requests,
        crate::http::settings::approve,
        crate::http::settings::decline,
        crate::http::lightning::create_withdraw,
        crate::http::lightning::retrieve_withdraw,
        crate::http::lightning::create_auth,
        crate::http::lightning::retrieve_auth,
        crate::http::lightning::customer_top_up,
        crate::http::lightning::create_payout,
        crate::http::lnurl::well_known,
        crate::http::lnurl::pay,
        crate::http::lnurl::pay_callback,
        crate::http::lnurl::top_up,
        crate::http::lnurl::top_up_callback,
        crate::http::lnurl::withdraw,
        crate::http::lnurl::withdraw_callback,
        crate::http::lnurl::auth,
        crate::telegram::webhook::receive,
        crate::http::test_mode::pay_invoice,
        crate::http::test_mode::top_up,
        crate::pages::checkout::page,
        crate::pages::checkout::asset,
        crate::http::customers::balance,
        crate::http::customers::update,
        crate::http::customers::statement,
        crate::http::keys::create,
        crate::http::keys::list,
        crate::http::keys::revoke,
        crate::http::keys::roll,
        crate::http::admin::create,
        crate::http::admin::list,
        crate::http::step_up::retrieve,
        crate::http::step_up::enroll,
        crate::http::step_up::confirm,
        crate::http::step_up::disable,
        crate::http::audit::list,
        crate::http::risk::retrieve,
        crate::http::risk::update,
        crate::http::risk::decisions,
        crate::pages::checkout::status,
        crate::pages::checkout::tonconnect_manifest,
        crate::pages::checkout::ton_connect,
        crate::pages::checkout::sandbox,
        crate::pages::webapp::create_session,
        crate::pages::webapp::pay,
        crate::pages::dashboard::login_telegram,
        crate::pages::dashboard::me,
    ),
    components(schemas(
        LnurlStatus,
        Error,
        ErrorDetail,
        ErrorType,
        Invoice,
        InvoiceStatus,
        PaymentInstructions,
        StarsInstructions,
        CardInstructions,
        LightningInstructions,
        TonInstructions,
        RailName,
        EventType,
        Customer,
        Balance,
        CustomerBalance,
        BalanceEntry,
        Charge,
        Refund,
        RailPayment,
        Event,
        EventData,
        Delivery,
        DeliveryStatus,
        WebhookEndpoint,
        WebhookEndpointStatus,
        Redelivery,
        RailState,
        StarsWithdrawal,
        crate::rails::telegram::stars::ConnectStars,
        crate::http::stars::SendInvoice,
        crate::http::stars::SentInvoice,
        crate::http::stars::TelegramMessage,
        crate::rails::lightning::ConnectLightning,
        crate::rails::ton::ConnectTon,
        crate::pages::checkout::TonConnectPayer,
        crate::rails::ton::JettonRequest,
        crate::http::lightning::CreateWithdraw,
        crate::http::lightning::CreateAuth,
        crate::http::lightning::CreatePayout,
        LnurlWithdraw,
        LnurlAuth,
        CustomerTopUpLink,
        Payout,
        LnurlPayRequest,
        LnurlPayCallback,
        LnurlWithdrawRequest,
        InvoiceList,
        CustomerList,
        SubscriptionObject,
        DashboardLnurlLoginObject,
        SubscriptionList,
        crate::http::settings::MerchantSettings,
        crate::http::settings::ApproveRefundRequest,
        SettingsObject,
        RefundRequestObject,
        RefundRequestList,
        ChargeList,
        ApiKey,
        ApiKeyList,
        AuditEntry,
        AuditEntryList,
        RiskDecision,
        RiskDecisionList,
        TonPayment,
        TonPaymentList,
        AssignedTonPayment,
        crate::http::ton::AssignTonPayment,
        RiskRulesObject,
        farthing_app::risk::RulesDoc,
        farthing_app::risk::LimitDoc,
        farthing_app::risk::NewCustomersDoc,
        farthing_app::risk::VelocityDoc,
        farthing_app::risk::BlockDoc,
        RefundList,
        EventList,
        WebhookEndpointList,
        RailList,
        HealthStatus,
        CheckoutStatus,
        WebappSession,
        WebappUser,
        crate::pages::webapp::CreateWebappSession,
        crate::pages::webapp::WebappPay,
        crate::rails::telegram::card::ConnectCard,
        crate::pages::dashboard::SetDashboardOwners,
        crate::pages::dashboard::DashboardLogin,
        DashboardOwners,
        DashboardSessionObject,
        DashboardMe,
        DashboardMerchant,
        DashboardUserObject,
    )),
    modifiers(&BearerAuth, &OptionalBodies),
    tags(
        (name = "invoices", description = "Requests for payment, paid on one of their rails (SPEC I1–I4)."),
        (name = "customers", description = "Customers and their prepaid balances per currency."),
        (name = "charges", description = "Pay-per-use debits of a customer balance (SPEC PR2)."),
        (name = "refunds", description = "Refunds of paid invoices and charges, back to the customer's balance."),
        (name = "events", description = "The event outbox, and redelivery of events to webhook endpoints (SPEC A4)."),
        (name = "webhook_endpoints", description = "Where events are delivered, signed per the Standard Webhooks spec (SPEC A4)."),
        (name = "rails", description = "The payment rails a merchant can take."),
        (name = "sandbox", description = "Test mode only (`fk_test_` keys): simulate payers and fund balances (SPEC RL5)."),
        (name = "subscriptions", description = "Telegram Stars subscriptions: started by paying a subscription invoice, renewed by Telegram every 30 days, each renewal paid as an invoice of its own (SPEC RL2, PR4)."),
        (name = "settings", description = "What the payment bot tells customers (`/terms`, top-up and tip presets) and whether it sends payment reminders (SPEC T2–T3)."),
        (name = "lightning", description = "LNURL links and payouts of the Lightning rail (SPEC RL3)."),
        (name = "lnurl", description = "The LNURL endpoints wallets call (LUD-03, LUD-04, LUD-06, LUD-12, LUD-16); no API key. Refusals are LNURL's `{\"status\": \"ERROR\", \"reason\"}`."),
        (name = "checkout", description = "The hosted checkout page; the invoice id is the capability, no API key."),
        (name = "dashboard", description = "Signing in to the merchant dashboard with Telegram (SPEC T5): the merchant names its owners, an owner logs in with the Telegram Login Widget of the merchant's bot."),
        (name = "api_keys", description = "A merchant's API keys while the server runs: scoped keys, listing, rolling with a grace period, revocation (SPEC A1)."),
        (name = "step_up", description = "Step-up authentication (SPEC S3): a TOTP authenticator (RFC 6238) whose current code, in the `Farthing-Step-Up` header, the sensitive operations need once it is on — payouts, refunds and approving refund requests, LNURL-withdraw links, API keys, webhook endpoints, rail credentials, dashboard owners (403 `step_up_required`, `step_up_invalid`, `step_up_replayed`; 429 after five wrong codes). A code works once."),
        (name = "risk", description = "Risk rules (SPEC S1, S2): limits per payment and per customer-day, stricter limits for new customers, velocity, block lists of Telegram users, wallets and client addresses; applied inside every charge, balance payment, Telegram pre-checkout, Mini App payment and payout, each decision recorded with its rule and reason. A refusal is 402 `risk_refused`, a needed step-up 403 `step_up_required`, both with the `decision` id."),
        (name = "admin", description = "The operator's API (the operator key, `admin_key_sha256`; off by default): add merchants while the server runs."),
        (name = "operations", description = "Health, readiness, metrics and this document."),
    )
)]
struct ApiDoc;

/// Adds the `bearer` security scheme: the merchant's secret API key.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("fk_live_… or fk_test_…")
                    .description(Some(
                        "`Authorization: Bearer <key>` with a secret API key printed once by \
                         `farthing merchant create`: `fk_live_…` for live mode, `fk_test_…` for \
                         test mode. Keys carry scopes (e.g. `invoices:write`); a key without the \
                         scope an operation needs gets 403 `missing_scope`.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "webapp_session",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("wss_…")
                    .description(Some(
                        "`Authorization: Bearer <session>` with the session `POST \
                         /webapp/session` answered for a Telegram Mini App's init data. It \
                         names one customer of one merchant, lasts `telegram.webapp_session_ttl_s` \
                         and, on SQLite, ends when the server restarts (on a shared PostgreSQL \
                         database with a secrets key, every instance accepts it until it expires).",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "dashboard_session",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("fds_…")
                    .description(Some(
                        "`Authorization: Bearer <session>` with the session `POST \
                         /dashboard/login/telegram` answered for a dashboard owner's Telegram \
                         login. It names one merchant and one Telegram user, lasts \
                         `telegram.dashboard_session_ttl_s` and, on SQLite, ends when the server \
                         restarts (on a shared PostgreSQL database with a secrets key, every \
                         instance accepts it until it expires).",
                    ))
                    .build(),
            ),
        );
    }
}

/// Request bodies declared `Option<Body>` may be left out (an empty body reads as `{}`), but
/// `null` is not a body: they become an optional body of schema `Body`, not "`Body` or null".
struct OptionalBodies;

impl Modify for OptionalBodies {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ];
            for operation in operations.into_iter().flatten() {
                let Some(RefOr::T(body)) = operation.request_body.as_mut() else {
                    continue;
                };
                let mut optional = false;
                for content in body.content.values_mut() {
                    let RefOr::T(content) = content else {
                        continue;
                    };
                    let Some(RefOr::T(Schema::OneOf(one_of))) = content.schema.as_ref() else {
                        continue;
                    };
                    let is_null = |item: &RefOr<Schema>| {
                        matches!(item, RefOr::T(Schema::Object(object))
                            if object.schema_type == SchemaType::Type(Type::Null))
                    };
                    let mut rest = one_of.items.iter().filter(|item| !is_null(item));
                    if let (Some(only), None) = (rest.next(), rest.next()) {
                        if one_of.items.len() == 2 {
                            content.schema = Some(only.clone());
                            optional = true;
                        }
                    }
                }
                if optional {
                    body.required = Some(Required::False);
                }
            }
        }
    }
}
