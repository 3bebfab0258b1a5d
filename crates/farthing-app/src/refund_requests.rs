//! Refund requests (SPEC T2): a customer asks for a refund of a paid invoice in the bot
//! (`/refund`); the merchant approves it (a refund is made, to the balance or through the rail
//! that paid) or declines it. The request's move from `pending` is made in the same job as the
//! refund's booking, so approving twice books one refund.

use farthing_core::invoice::{Invoice, InvoiceStatus};
use farthing_core::{CustomerId, InvoiceId, MerchantId, PublicId, RefundRequestId};
use farthing_store::{Refund, RefundRequest, RefundRequestStatus, Tx};

use crate::outbox::emit;
use crate::rail::RailSet;
use crate::refunds::{self, RefundRequest as NewRefund, Target, UnnamedPayer};
use crate::{wire, App, AppError, Mode};

/// Whether a customer may ask for a refund of `invoice`: paid by them, not a top-up, with
/// money left to refund.
pub fn is_refundable(invoice: &Invoice, customer: CustomerId) -> bool {
    matches!(
        invoice.status,
        InvoiceStatus::Paid | InvoiceStatus::PartiallyRefunded
    ) && invoice.refundable_minor() > 0
        && !crate::settlement::is_top_up(invoice)
        && invoice.payment.as_ref().and_then(|p| p.customer) == Some(customer)
}

/// Records a customer's request to refund `invoice` (`refund_request.created`); `None` when
/// the invoice is not theirs to refund, `Some((request, false))` when one is already pending.
pub async fn create(
    app: &App,
    mode: Mode,
    merchant: MerchantId,
    customer: CustomerId,
    invoice_id: InvoiceId,
    telegram_user_id: i64,
    lang: &str,
) -> Result<Option<(RefundRequest, bool)>, AppError> {
    let request = RefundRequest {
        id: crate::ids::new_id::<RefundRequestId>(),
        merchant,
        customer,
        invoice: invoice_id,
        telegram_user_id,
        lang: lang.to_owned(),
        status: RefundRequestStatus::Pending,
        refund: None,
        created_at_ns: 0,
        updated_at_ns: 0,
    };
    app.run(
        mode,
        move |tx| -> Result<Option<(RefundRequest, bool)>, AppError> {
            let Some(invoice) = tx
                .invoice(invoice_id)?
                .filter(|invoice| invoice.merchant == merchant)
            else {
                return Ok(None);
            };
            if !is_refundable(&invoice, customer) {
                return Ok(None);
            }
            if let Some(pending) = tx.pending_refund_request(invoice_id)? {
                return Ok(Some((pending, false)));
            }
            let now = tx.now_ns();
            let request = RefundRequest {
                created_at_ns: now,
                updated_at_ns: now,
                ..request
            };
            tx.insert_refund_request(&request)?;
            emit(
                tx,
                merchant,
                mode,
                "refund_request.created",
                &wire::refund_request(&request, mode),
            )?;
            Ok(Some((request, true)))
        },
    )
    .await
}

fn not_pending(request: &RefundRequest) -> AppError {
    AppError::conflict(
        "refund_request_not_pending",
        format!("this refund request is already {}", request.status.as_str()),
    )
}

/// The merchant's refund request, or not found.
pub fn load(
    app: &App,
    mode: Mode,
    merchant: MerchantId,
    id: RefundRequestId,
) -> Result<RefundRequest, AppError> {
    app.read(mode, move |reader| reader.refund_request(id))?
        .filter(|r| r.merchant == merchant)
        .ok_or_else(|| AppError::not_found("refund request", id.encode()))
}

/// Moves a pending request to `status` in the current job, with its event; a request already
/// in `status` is answered as it is; one that moved elsewhere is refused.
fn finish(
    tx: &mut Tx<'_, '_>,
    mode: Mode,
    id: RefundRequestId,
    status: RefundRequestStatus,
    refund: Option<farthing_core::RefundId>,
) -> Result<RefundRequest, AppError> {
    let current = tx
        .refund_request(id)?
        .ok_or_else(|| AppError::not_found("refund request", id.encode()))?;
    if current.status == status {
        return Ok(current);
    }
    if current.status != RefundRequestStatus::Pending {
        return Err(not_pending(&current));
    }
    tx.update_refund_request(id, status, refund)?;
    let updated = tx
        .refund_request(id)?
        .ok_or_else(|| AppError::internal("the refund request vanished"))?;
    let event = match status {
        RefundRequestStatus::Approved => "refund_request.approved",
        _ => "refund_request.declined",
    };
    emit(
        tx,
        updated.merchant,
        mode,
        event,
        &wire::refund_request(&updated, mode),
    )?;
    Ok(updated)
}

/// Where an approved refund goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Destination {
    /// The customer's balance.
    Balance,
    /// Back through the rail that paid the invoice.
    Rail,
}

/// What an approval did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Approved {
    /// The request, now `approved`.
    pub request: RefundRequest,
    /// The refund made now (`None` when the request was approved before).
    pub refund: Option<Refund>,
}

/// Approves a pending request: refunds its invoice (everything not yet refunded) to
/// `destination`, and moves the request to `approved`, in one job (through the rail: the rail
/// first, then that job). Approving an approved request answers it again; a declined one is
/// refused.
pub async fn approve(
    app: &App,
    rails: &impl RailSet,
    mode: Mode,
    merchant: MerchantId,
    id: RefundRequestId,
    destination: Destination,
) -> Result<Approved, AppError> {
    let request = load(app, mode, merchant, id)?;
    match request.status {
        RefundRequestStatus::Pending => {}
        RefundRequestStatus::Approved => {
            return Ok(Approved {
                request,
                refund: None,
            })
        }
        RefundRequestStatus::Declined => return Err(not_pending(&request)),
    }
    let reason = Some(format!("refund request {}", request.id.encode()));
    let base = app.clone();
    match destination {
        Destination::Balance => {
            let refund_request = NewRefund {
                target: Target::Invoice(request.invoice),
                amount_minor: None,
                reason,
                metadata: Vec::new(),
            };
            app.run(mode, move |tx| -> Result<Approved, AppError> {
                let refund = refunds::to_balance(
                    tx,
                    &base,
                    mode,
                    merchant,
                    &refund_request,
                    &UnnamedPayer::Refuse,
                )?;
                let request = finish(tx, mode, id, RefundRequestStatus::Approved, Some(refund.id))?;
                Ok(Approved {
                    request,
                    refund: Some(refund),
                })
            })
            .await
        }
        Destination::Rail => {
            let sent = refunds::send_through_rail(
                app,
                rails,
                mode,
                merchant,
                NewRefund {
                    target: Target::Invoice(request.invoice),
                    amount_minor: None,
                    reason,
                    metadata: Vec::new(),
                },
            )
            .await?;
            app.run(mode, move |tx| -> Result<Approved, AppError> {
                let refund = refunds::book_rail_refund(tx, &base, mode, merchant, &sent)?;
                let request = finish(tx, mode, id, RefundRequestStatus::Approved, Some(refund.id))?;
                Ok(Approved {
                    request,
                    refund: Some(refund),
                })
            })
            .await
        }
    }
}

/// Declines a pending request; declining a declined one answers it again.
pub async fn decline(
    app: &App,
    mode: Mode,
    merchant: MerchantId,
    id: RefundRequestId,
) -> Result<RefundRequest, AppError> {
    let request = load(app, mode, merchant, id)?;
    match request.status {
        RefundRequestStatus::Pending | RefundRequestStatus::Declined => {}
        RefundRequestStatus::Approved => return Err(not_pending(&request)),
    }
    app.run(mode, move |tx| {
        finish(tx, mode, id, RefundRequestStatus::Declined, None)
    })
    .await
}
