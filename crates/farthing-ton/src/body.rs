//! Message bodies the rail writes and reads: text comments (op 0 and a snake string) and the
//! TEP-74 jetton messages that carry a payer's comment in their forward payload.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use tonlib_core::cell::{ArcCell, BagOfCells, Cell, CellBuilder, CellParser};

use crate::Address;

/// TEP-74 `transfer` (payer → its own jetton wallet).
pub const OP_JETTON_TRANSFER: u32 = 0x0f8a_7ea5;
/// TEP-74 `internal_transfer` (jetton wallet → jetton wallet): the merchant's jetton wallet
/// accepts it only from a wallet of its own master, so a successful one is real value.
pub const OP_INTERNAL_TRANSFER: u32 = 0x178d_4519;
/// TEP-74 `transfer_notification` (receiver's jetton wallet → its owner).
pub const OP_TRANSFER_NOTIFICATION: u32 = 0x7362_d09c;
/// TEP-74 `excesses` (the gas left over, back to the response address).
pub const OP_EXCESSES: u32 = 0xd532_76db;

/// The longest comment the rail reads in full; a longer one cannot name an invoice and is kept
/// cut to this many bytes for display.
pub const MAX_COMMENT_BYTES: usize = 512;

/// Why a body could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BodyError(pub String);

fn cell_error(error: impl std::fmt::Display) -> BodyError {
    BodyError(error.to_string())
}

/// The single root cell of a base64 bag of cells (standard or url alphabet).
pub fn parse_boc(base64: &str) -> Result<ArcCell, BodyError> {
    let bytes = STANDARD
        .decode(base64.trim())
        .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(base64.trim()))
        .map_err(|_| BodyError("not base64".to_owned()))?;
    BagOfCells::parse(&bytes)
        .map_err(cell_error)?
        .single_root()
        .map_err(cell_error)
}

/// The body cell of a text comment: a 32-bit zero op, then the UTF-8 text in snake format
/// (123 bytes in the first cell, 127 in each cell referenced after it).
pub fn comment_cell(text: &str) -> Result<Cell, BodyError> {
    let bytes = text.as_bytes();
    let first = bytes.len().min(123);
    let mut tail: Option<Cell> = None;
    let rest = &bytes[first..];
    for chunk in rest.chunks(127).rev() {
        let mut builder = CellBuilder::new();
        builder.store_slice(chunk).map_err(cell_error)?;
        if let Some(next) = tail.take() {
            builder.store_child(next).map_err(cell_error)?;
        }
        tail = Some(builder.build().map_err(cell_error)?);
    }
    let mut builder = CellBuilder::new();
    builder.store_u32(32, 0).map_err(cell_error)?;
    builder.store_slice(&bytes[..first]).map_err(cell_error)?;
    if let Some(next) = tail {
        builder.store_child(next).map_err(cell_error)?;
    }
    builder.build().map_err(cell_error)
}

/// A comment body as TON Connect's `payload` takes it (a base64 bag of cells), with the
/// standard base64 of its cell hash (what toncenter calls `message_content.hash`).
pub fn comment_payload(text: &str) -> Result<(String, String), BodyError> {
    let cell = comment_cell(text)?;
    let hash = STANDARD.encode(cell.cell_hash().as_slice());
    let boc = BagOfCells::from_root(cell)
        .serialize(true)
        .map_err(cell_error)?;
    Ok((STANDARD.encode(boc), hash))
}

/// The text of a comment body (op 0 and a snake string), or `None` when the cell is no text
/// comment (another op, an empty body, bytes that are not UTF-8). A comment longer than
/// [`MAX_COMMENT_BYTES`] is cut there (at a character boundary).
pub fn read_comment(cell: &Cell) -> Option<String> {
    let mut parser = cell.parser();
    if parser.remaining_bits() < 32 || parser.load_u32(32).ok()? != 0 {
        return None;
    }
    let mut bytes = parser.load_snake_format_aligned(false).ok()?;
    if bytes.len() > MAX_COMMENT_BYTES {
        bytes.truncate(MAX_COMMENT_BYTES);
        while std::str::from_utf8(&bytes).is_err() && !bytes.is_empty() {
            bytes.pop();
        }
    }
    String::from_utf8(bytes).ok()
}

/// The 32-bit op of a body, when it has one.
pub fn op(cell: &Cell) -> Option<u32> {
    let mut parser = cell.parser();
    if parser.remaining_bits() < 32 {
        return None;
    }
    parser.load_u32(32).ok()
}

/// A TEP-74 `internal_transfer`, as the receiving jetton wallet gets it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InternalTransfer {
    /// The sender's query id.
    pub query_id: u64,
    /// Jetton units (for USDT: micro-USDT).
    pub amount: u128,
    /// The payer: the *owner* of the sending jetton wallet (`None` for `addr_none`).
    pub from: Option<Address>,
    /// Nanoton forwarded to the receiver's owner with the notification.
    pub forward_ton_amount: u128,
    /// The payer's comment from the forward payload (inline or in a ref), if it is one.
    pub comment: Option<String>,
}

fn load_amount(parser: &mut CellParser<'_>) -> Result<u128, BodyError> {
    let value = parser.load_coins().map_err(cell_error)?;
    u128::try_from(value).map_err(|_| BodyError("amount above 2^128".to_owned()))
}

fn load_optional_address(parser: &mut CellParser<'_>) -> Result<Option<Address>, BodyError> {
    let address = parser.load_address().map_err(cell_error)?;
    Ok((address != tonlib_core::TonAddress::NULL).then(|| Address::from_tonlib(&address)))
}

/// Reads the forward payload (`Either Cell ^Cell`) and the comment in it.
fn load_forward_comment(parser: &mut CellParser<'_>) -> Result<Option<String>, BodyError> {
    if parser.remaining_bits() == 0 {
        // Some senders leave the Either bit out altogether: no payload.
        return Ok(None);
    }
    let in_ref = parser.load_bit().map_err(cell_error)?;
    if in_ref {
        let payload = parser.next_reference().map_err(cell_error)?;
        Ok(read_comment(&payload))
    } else {
        let payload = parser.load_remaining().map_err(cell_error)?;
        Ok(read_comment(&payload))
    }
}

/// The query id of a TEP-74 message body with op `op`, and the parser after it (`None` when
/// the body has another op, or none).
fn open_jetton_message(cell: &Cell, op: u32) -> Result<Option<(u64, CellParser<'_>)>, BodyError> {
    let mut parser = cell.parser();
    if parser.remaining_bits() < 32 || parser.load_u32(32).map_err(cell_error)? != op {
        return Ok(None);
    }
    let query_id = parser.load_u64(64).map_err(cell_error)?;
    Ok(Some((query_id, parser)))
}

/// Reads an `internal_transfer` body (`None` when the op is another).
pub fn read_internal_transfer(cell: &Cell) -> Result<Option<InternalTransfer>, BodyError> {
    let Some((query_id, mut parser)) = open_jetton_message(cell, OP_INTERNAL_TRANSFER)? else {
        return Ok(None);
    };
    let amount = load_amount(&mut parser)?;
    let from = load_optional_address(&mut parser)?;
    let _response = load_optional_address(&mut parser)?;
    let forward_ton_amount = load_amount(&mut parser)?;
    let comment = load_forward_comment(&mut parser)?;
    Ok(Some(InternalTransfer {
        query_id,
        amount,
        from,
        forward_ton_amount,
        comment,
    }))
}

/// A TEP-74 `transfer_notification`, as an owner's wallet gets it from a jetton wallet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransferNotification {
    /// Jetton units.
    pub amount: u128,
    /// The payer (owner address).
    pub sender: Option<Address>,
    /// The comment of the forward payload, if it is one.
    pub comment: Option<String>,
}

/// Reads a `transfer_notification` body (`None` when the op is another).
pub fn read_transfer_notification(cell: &Cell) -> Result<Option<TransferNotification>, BodyError> {
    let Some((_query_id, mut parser)) = open_jetton_message(cell, OP_TRANSFER_NOTIFICATION)? else {
        return Ok(None);
    };
    let amount = load_amount(&mut parser)?;
    let sender = load_optional_address(&mut parser)?;
    let comment = load_forward_comment(&mut parser)?;
    Ok(Some(TransferNotification {
        amount,
        sender,
        comment,
    }))
}

/// A TEP-74 `transfer`, as an owner sends it to its own jetton wallet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JettonTransfer {
    /// Jetton units.
    pub amount: u128,
    /// The receiver (owner address; its jetton wallet is derived by the master).
    pub destination: Option<Address>,
    /// Who gets the gas left over.
    pub response_destination: Option<Address>,
    /// Nanoton forwarded to the receiver with the notification.
    pub forward_ton_amount: u128,
    /// The comment of the forward payload, if it is one.
    pub comment: Option<String>,
}

/// The body of a `transfer` of `amount` jetton units to `destination` with `comment` as the
/// forward payload (in a ref cell), the gas left over to `response_destination`, and 1 nanoton
/// forwarded so that the receiver's wallet notifies its owner with the comment. As a base64
/// bag of cells (TON Connect's `payload`).
pub fn jetton_transfer_payload(
    query_id: u64,
    amount: u128,
    destination: &Address,
    response_destination: &Address,
    comment: &str,
) -> Result<String, BodyError> {
    let mut builder = CellBuilder::new();
    builder
        .store_u32(32, OP_JETTON_TRANSFER)
        .and_then(|b| b.store_u64(64, query_id))
        .and_then(|b| store_coins(b, amount))
        .and_then(|b| b.store_address(&destination.to_tonlib()))
        .and_then(|b| b.store_address(&response_destination.to_tonlib()))
        // No custom payload.
        .and_then(|b| b.store_bit(false))
        .and_then(|b| store_coins(b, 1))
        // The forward payload in a ref.
        .and_then(|b| b.store_bit(true))
        .map_err(cell_error)?;
    builder
        .store_child(comment_cell(comment)?)
        .map_err(cell_error)?;
    let cell = builder.build().map_err(cell_error)?;
    let boc = BagOfCells::from_root(cell)
        .serialize(true)
        .map_err(cell_error)?;
    Ok(STANDARD.encode(boc))
}

/// Stores `amount` as TON's `Coins` (`VarUInteger 16`: four bits of byte length, then the bytes).
fn store_coins(
    builder: &mut CellBuilder,
    amount: u128,
) -> Result<&mut CellBuilder, tonlib_core::cell::TonCellError> {
    let bytes = amount.to_be_bytes();
    let skip = bytes.iter().take_while(|byte| **byte == 0).count();
    let significant = &bytes[skip..];
    // At most 16 bytes, and a u128 has 16: the length fits four bits only below 16, and a
    // `Coins` value is below 2^120 on chain.
    let length = u8::try_from(significant.len()).unwrap_or(u8::MAX);
    builder.store_u8(4, length)?.store_slice(significant)
}

/// Reads a `transfer` body (`None` when the op is another).
pub fn read_jetton_transfer(cell: &Cell) -> Result<Option<JettonTransfer>, BodyError> {
    let Some((_query_id, mut parser)) = open_jetton_message(cell, OP_JETTON_TRANSFER)? else {
        return Ok(None);
    };
    let amount = load_amount(&mut parser)?;
    let destination = load_optional_address(&mut parser)?;
    let response_destination = load_optional_address(&mut parser)?;
    // The custom payload: `Maybe ^Cell`.
    if parser.load_bit().map_err(cell_error)? {
        parser.next_reference().map_err(cell_error)?;
    }
    let forward_ton_amount = load_amount(&mut parser)?;
    let comment = load_forward_comment(&mut parser)?;
    Ok(Some(JettonTransfer {
        amount,
        destination,
        response_destination,
        forward_ton_amount,
        comment,
    }))
}

/// The one-cell body of a `get_wallet_address(owner)` argument: the owner as a `MsgAddress`.
pub fn address_slice_boc(owner: &Address) -> Result<String, BodyError> {
    let mut builder = CellBuilder::new();
    builder
        .store_address(&owner.to_tonlib())
        .map_err(cell_error)?;
    let cell = builder.build().map_err(cell_error)?;
    let boc = BagOfCells::from_root(cell)
        .serialize(true)
        .map_err(cell_error)?;
    Ok(STANDARD.encode(boc))
}

/// Reads the address a get-method returned as a slice (a base64 bag of cells).
pub fn read_address_slice(base64: &str) -> Result<Address, BodyError> {
    let cell = parse_boc(base64)?;
    let mut parser = cell.parser();
    load_optional_address(&mut parser)?.ok_or_else(|| BodyError("addr_none".to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_comment_matches_the_research_vector_and_reads_back() {
        // The body of "inv_01HZX9" as @ton/core writes it (research notes, §1.3).
        let expected = parse_boc("te6cckEBAQEAEAAAHAAAAABpbnZfMDFIWlg5B8lk8A==").expect("boc");
        let cell = comment_cell("inv_01HZX9").expect("cell");
        assert_eq!(cell.cell_hash(), expected.cell_hash());
        assert_eq!(read_comment(&expected).as_deref(), Some("inv_01HZX9"));
        let (boc, hash) = comment_payload("inv_01HZX9").expect("payload");
        assert_eq!(
            parse_boc(&boc).expect("ours").cell_hash(),
            expected.cell_hash()
        );
        assert_eq!(hash, STANDARD.encode(expected.cell_hash().as_slice()));
    }

    #[test]
    fn long_and_non_ascii_comments_round_trip_through_ref_cells() {
        for text in [
            "x".repeat(123),
            "y".repeat(124),
            "z".repeat(400),
            "Спасибо за статью — 🎉".repeat(5),
            String::new(),
        ] {
            let cell = comment_cell(&text).expect("cell");
            assert_eq!(
                read_comment(&cell).as_deref(),
                Some(text.as_str()),
                "{text}"
            );
        }
        let long = "é".repeat(400);
        let read = read_comment(&comment_cell(&long).expect("cell")).expect("read");
        assert!(read.len() <= MAX_COMMENT_BYTES && long.starts_with(&read));
    }

    #[test]
    fn other_bodies_are_no_comments() {
        let mut builder = CellBuilder::new();
        builder.store_u32(32, OP_EXCESSES).expect("op");
        let excesses = builder.build().expect("cell");
        assert_eq!(read_comment(&excesses), None);
        assert_eq!(op(&excesses), Some(OP_EXCESSES));
        assert_eq!(read_comment(&Cell::default()), None);
        assert_eq!(read_internal_transfer(&excesses), Ok(None));
        assert!(parse_boc("not a boc").is_err());
        assert_eq!(read_jetton_transfer(&excesses), Ok(None));
    }

    #[test]
    fn a_jetton_transfer_reads_back() {
        let to =
            Address::parse("0:b113a994b5024a16719f69139328eb759596c38a25f59028b146fecdc3621dfe")
                .expect("to")
                .address;
        let back =
            Address::parse("0:0000000000000000000000000000000000000000000000000000000000000001")
                .expect("back")
                .address;
        let boc = jetton_transfer_payload(7, 2_500_000, &to, &back, "Refund K7M2Q9XH4D")
            .expect("payload");
        let cell = parse_boc(&boc).expect("boc");
        assert_eq!(op(&cell), Some(OP_JETTON_TRANSFER));
        assert_eq!(
            read_jetton_transfer(&cell).expect("reads"),
            Some(JettonTransfer {
                amount: 2_500_000,
                destination: Some(to),
                response_destination: Some(back),
                forward_ton_amount: 1,
                comment: Some("Refund K7M2Q9XH4D".to_owned()),
            })
        );
    }
}
