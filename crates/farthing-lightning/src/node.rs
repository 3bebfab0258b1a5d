//! [`Backend`]: the one client type the server holds, whichever node a merchant configured.

use tokio::sync::mpsc;

use crate::backend::{
    BackendConfig, BackendError, BackendHealth, CreateInvoice, CreatedInvoice, InvoiceState,
    LightningBackend, PaymentHash, PaymentOutcome,
};
use crate::{cln, lnbits, lnd};

/// The backend a merchant configured.
#[derive(Clone, Debug)]
pub enum Backend {
    /// LNbits.
    Lnbits(lnbits::Lnbits),
    /// LND REST.
    Lnd(lnd::Lnd),
    /// Core Lightning REST.
    Cln(cln::Cln),
}

impl Backend {
    /// Builds the client of `config` (no network I/O).
    pub fn new(config: &BackendConfig) -> Result<Backend, BackendError> {
        Ok(match config {
            BackendConfig::Lnbits {
                url,
                invoice_key,
                admin_key,
            } => Backend::Lnbits(lnbits::Lnbits::new(url, invoice_key, admin_key.as_deref())?),
            BackendConfig::Lnd {
                url,
                macaroon,
                tls_cert,
            } => Backend::Lnd(lnd::Lnd::new(url, macaroon, tls_cert.as_deref())?),
            BackendConfig::Cln {
                url,
                rune,
                tls_cert,
            } => Backend::Cln(cln::Cln::new(url, rune, tls_cert.as_deref())?),
        })
    }

    /// Asks the node for its balance: the health of `GET /v1/rails`.
    pub async fn health(&self) -> BackendHealth {
        match self.balance_msat().await {
            Ok(balance) => BackendHealth {
                reachable: true,
                balance_msat: Some(balance),
                error: None,
            },
            Err(error) => BackendHealth {
                reachable: false,
                balance_msat: None,
                error: Some(error.to_string()),
            },
        }
    }
}

impl LightningBackend for Backend {
    fn name(&self) -> &'static str {
        match self {
            Backend::Lnbits(b) => b.name(),
            Backend::Lnd(b) => b.name(),
            Backend::Cln(b) => b.name(),
        }
    }

    async fn create_invoice(
        &self,
        request: &CreateInvoice,
    ) -> Result<CreatedInvoice, BackendError> {
        match self {
            Backend::Lnbits(b) => b.create_invoice(request).await,
            Backend::Lnd(b) => b.create_invoice(request).await,
            Backend::Cln(b) => b.create_invoice(request).await,
        }
    }

    async fn invoice_state(
        &self,
        payment_hash: &PaymentHash,
    ) -> Result<InvoiceState, BackendError> {
        match self {
            Backend::Lnbits(b) => b.invoice_state(payment_hash).await,
            Backend::Lnd(b) => b.invoice_state(payment_hash).await,
            Backend::Cln(b) => b.invoice_state(payment_hash).await,
        }
    }

    async fn pay_invoice(
        &self,
        bolt11: &str,
        max_fee_msat: u64,
    ) -> Result<PaymentOutcome, BackendError> {
        match self {
            Backend::Lnbits(b) => b.pay_invoice(bolt11, max_fee_msat).await,
            Backend::Lnd(b) => b.pay_invoice(bolt11, max_fee_msat).await,
            Backend::Cln(b) => b.pay_invoice(bolt11, max_fee_msat).await,
        }
    }

    async fn balance_msat(&self) -> Result<u64, BackendError> {
        match self {
            Backend::Lnbits(b) => b.balance_msat().await,
            Backend::Lnd(b) => b.balance_msat().await,
            Backend::Cln(b) => b.balance_msat().await,
        }
    }

    async fn follow_settlements(
        &self,
        settled: mpsc::Sender<PaymentHash>,
    ) -> Result<(), BackendError> {
        match self {
            Backend::Lnbits(b) => b.follow_settlements(settled).await,
            Backend::Lnd(b) => b.follow_settlements(settled).await,
            Backend::Cln(b) => b.follow_settlements(settled).await,
        }
    }
}
