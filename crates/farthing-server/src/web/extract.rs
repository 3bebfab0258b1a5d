//! Turning request parts into checked values, with errors in the API's shape: bodies,
//! amounts, ids, list parameters, idempotency keys.

use axum::http::{HeaderMap, StatusCode};
use farthing_core::money::MAX_AMOUNT_MINOR;
use farthing_core::{Currency, PublicId};
use farthing_store::PageRequest;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

use crate::web::error::ApiError;

/// Parses a JSON body; the error names the field and says what is wrong.
pub fn json_body<T: DeserializeOwned>(headers: &HeaderMap, body: &[u8]) -> Result<T, ApiError> {
    let content_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // Media types compare case-insensitively (RFC 9110 8.3.1); parameters such as charset
    // may follow a semicolon.
    let media_type = content_type.split(';').next().unwrap_or("").trim();
    if !body.is_empty() && !media_type.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::invalid(
            "unsupported_content_type",
            "send the body as JSON with `Content-Type: application/json`",
        ));
    }
    let body = if body.is_empty() {
        b"{}".as_slice()
    } else {
        body
    };
    // Every body is a JSON object: serde would also build a struct from an array of its
    // fields in order (`[]` for a body of optional fields), which no client means.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::invalid(
            "invalid_body",
            "invalid JSON body: send a JSON object (`{...}`)",
        ));
    }
    serde_json::from_slice(body).map_err(|error| {
        let message = error.to_string();
        let param = message
            .split('`')
            .nth(1)
            .filter(|_| message.starts_with("unknown field"))
            .map(str::to_owned);
        let mut api = ApiError::invalid("invalid_body", format!("invalid JSON body: {message}"));
        api.param = param;
        api
    })
}

/// An amount in minor units: a JSON integer from 1 to the maximum.
pub fn amount(value: &Value, param: &str) -> Result<u64, ApiError> {
    let bad = || {
        ApiError::invalid(
            "invalid_amount",
            format!(
                "{param} must be a positive integer number of minor units (e.g. 500 for 5.00 USD), at most {MAX_AMOUNT_MINOR}"
            ),
        )
        .param(param)
    };
    match value {
        Value::Number(number) => number
            .as_u64()
            .filter(|a| *a >= 1 && *a <= MAX_AMOUNT_MINOR)
            .ok_or_else(bad),
        _ => Err(bad()),
    }
}

/// An optional amount.
pub fn optional_amount(value: &Option<Value>, param: &str) -> Result<Option<u64>, ApiError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(value) => amount(value, param).map(Some),
    }
}

/// A currency code.
pub fn currency(code: &str, param: &str) -> Result<Currency, ApiError> {
    Currency::parse(code)
        .map_err(|error| ApiError::invalid("invalid_currency", error.to_string()).param(param))
}

/// An id of type `T` in a body parameter.
pub fn id_param<T: PublicId>(text: &str, param: &str) -> Result<T, ApiError> {
    T::parse(text).map_err(|error| ApiError::invalid("invalid_id", error.to_string()).param(param))
}

/// An id of type `T` in the path: a malformed one is simply not found.
pub fn id_path<T: PublicId>(text: &str) -> Result<T, ApiError> {
    T::parse(text).map_err(|_| ApiError::not_found(T::NOUN, text))
}

/// Checks merchant metadata: at most 50 keys of at most 40 characters, values of at most
/// 500 characters.
pub fn metadata(
    map: Option<serde_json::Map<String, Value>>,
) -> Result<Vec<(String, String)>, ApiError> {
    let Some(map) = map else {
        return Ok(Vec::new());
    };
    if map.len() > 50 {
        return Err(
            ApiError::invalid("invalid_metadata", "metadata may hold at most 50 keys")
                .param("metadata"),
        );
    }
    map.into_iter()
        .map(|(key, value)| {
            let Value::String(value) = value else {
                return Err(ApiError::invalid(
                    "invalid_metadata",
                    format!("metadata[{key}] must be a string"),
                )
                .param(format!("metadata[{key}]")));
            };
            if key.is_empty() || key.chars().count() > 40 || value.chars().count() > 500 {
                return Err(ApiError::invalid(
                    "invalid_metadata",
                    "metadata keys must be 1-40 characters and values at most 500",
                )
                .param(format!("metadata[{key}]")));
            }
            Ok((key, value))
        })
        .collect()
}

/// List parameters `limit` (1..=100, default 10), `starting_after` and `ending_before` (ids of
/// the list's type).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Most items.
    pub limit: Option<String>,
    /// Cursor: the last id of the previous page.
    pub starting_after: Option<String>,
    /// Cursor back: the first id of the next (newer) page.
    pub ending_before: Option<String>,
    /// The list's own filters that were given (see [`list_query_with`]).
    pub filters: Vec<(String, String)>,
}

impl ListQuery {
    /// The value of filter `name`, if given.
    pub fn filter(&self, name: &str) -> Option<&str> {
        self.filters
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

impl ListQuery {
    /// `limit`: 1 to 100, 10 when not given.
    pub fn limit(&self) -> Result<usize, ApiError> {
        match &self.limit {
            None => Ok(10),
            Some(text) => text
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=100).contains(n))
                .ok_or_else(|| {
                    ApiError::invalid("invalid_limit", "limit must be an integer from 1 to 100")
                        .param("limit")
                }),
        }
    }

    /// The page request for ids of type `T`.
    pub fn page<T: PublicId>(&self) -> Result<PageRequest, ApiError> {
        let limit = self.limit()?;
        let starting_after = self
            .starting_after
            .as_deref()
            .map(|id| id_param::<T>(id, "starting_after").map(PublicId::raw))
            .transpose()?;
        let ending_before = self
            .ending_before
            .as_deref()
            .map(|id| id_param::<T>(id, "ending_before").map(PublicId::raw))
            .transpose()?;
        if starting_after.is_some() && ending_before.is_some() {
            return Err(ApiError::invalid(
                "invalid_parameter",
                "give starting_after (the next, older page) or ending_before (the previous, newer page), not both",
            )
            .param("ending_before"));
        }
        Ok(PageRequest {
            limit,
            starting_after,
            ending_before,
        })
    }
}

/// Parses the query string into a list query, with errors in the API's shape.
pub fn list_query(query: Option<&str>) -> Result<ListQuery, ApiError> {
    list_query_with(query, &[])
}

/// The filters a list of objects with a status and a customer takes.
pub const OBJECT_FILTERS: [&str; 4] = ["status", "customer", "created[gte]", "created[lte]"];

/// The store's filter from a list's filter parameters: `status` (one of `statuses`; a list
/// without statuses takes none), `customer` (`cus_…`), `created[gte]` and `created[lte]`
/// (Unix seconds, inclusive).
pub fn list_filter(
    query: &ListQuery,
    statuses: &[&str],
) -> Result<farthing_store::ListFilter, ApiError> {
    let mut filter = farthing_store::ListFilter::default();
    if let Some(status) = query.filter("status") {
        if !statuses.contains(&status) {
            return Err(ApiError::invalid(
                "invalid_status",
                format!("status must be one of {}", statuses.join(", ")),
            )
            .param("status"));
        }
        filter.status = Some(status.to_owned());
    }
    if let Some(customer) = query.filter("customer") {
        filter.customer = Some(id_param::<farthing_core::CustomerId>(customer, "customer")?.raw());
    }
    let seconds = |name: &str| -> Result<Option<u64>, ApiError> {
        query
            .filter(name)
            .map(|text| {
                text.parse::<u64>()
                    .ok()
                    .filter(|s| *s <= 253_402_300_799)
                    .ok_or_else(|| {
                        ApiError::invalid(
                            "invalid_created",
                            format!("{name} must be a time in Unix seconds"),
                        )
                        .param(name.to_owned())
                    })
            })
            .transpose()
    };
    // Ids begin with their creation time in milliseconds (48 bits above 80 random ones).
    let id_at = |unix_s: u64| u128::from(unix_s.saturating_mul(1000)) << 80;
    if let Some(from) = seconds("created[gte]")? {
        filter.id_at_least = Some(id_at(from));
    }
    if let Some(to) = seconds("created[lte]")? {
        filter.id_below = Some(id_at(to.saturating_add(1)));
    }
    Ok(filter)
}

/// The paging parameters and the list's own `filters` (each at most once).
pub fn list_query_with(query: Option<&str>, filters: &[&str]) -> Result<ListQuery, ApiError> {
    let mut list = ListQuery {
        limit: None,
        starting_after: None,
        ending_before: None,
        filters: Vec::new(),
    };
    for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        let repeated = || {
            ApiError::invalid(
                "invalid_parameter",
                format!("query parameter {key:?} is given twice; give it once"),
            )
            .param(key.clone().into_owned())
        };
        match key.as_ref() {
            "limit" if list.limit.is_none() => list.limit = Some(value.into_owned()),
            "starting_after" if list.starting_after.is_none() => {
                list.starting_after = Some(value.into_owned())
            }
            "ending_before" if list.ending_before.is_none() => {
                list.ending_before = Some(value.into_owned())
            }
            "limit" | "starting_after" | "ending_before" => return Err(repeated()),
            name if filters.contains(&name) => {
                if list.filter(name).is_some() {
                    return Err(repeated());
                }
                list.filters.push((name.to_owned(), value.into_owned()));
            }
            other => {
                let takes = ["limit", "starting_after", "ending_before"]
                    .iter()
                    .chain(filters)
                    .copied()
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(ApiError::invalid(
                    "unknown_parameter",
                    format!("unknown query parameter {other:?}: this list takes {takes}"),
                )
                .param(other.to_owned()));
            }
        }
    }
    Ok(list)
}

/// The `Idempotency-Key` header, if any: 1 to 255 visible ASCII characters.
pub fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let text = value.to_str().ok().map(str::trim).unwrap_or("");
    if text.is_empty() || text.len() > 255 || !text.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::invalid(
            "invalid_idempotency_key",
            "Idempotency-Key must be 1 to 255 visible ASCII characters (a UUID is a good choice)",
        ));
    }
    Ok(Some(text.to_owned()))
}

/// A request body read once and checked: its JSON parsed into `T` (an empty body as `{}`), the
/// raw bytes kept for the idempotency fingerprint, and the `Idempotency-Key`. Replaces the
/// prologue every write handler used to repeat; its refusals are the API's errors (413 for a
/// body over `max_body_bytes`, 400 `unsupported_content_type`, `invalid_body`,
/// `invalid_idempotency_key`).
pub struct Checked<T> {
    /// The parsed body.
    pub value: T,
    /// The bytes as received.
    pub raw: axum::body::Bytes,
    /// The request's headers (idempotency, content type).
    pub headers: HeaderMap,
}

impl<T> axum::extract::FromRequest<crate::state::AppState> for Checked<T>
where
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(
        request: axum::extract::Request,
        state: &crate::state::AppState,
    ) -> Result<Self, ApiError> {
        let headers = request.headers().clone();
        let raw = body_bytes(
            axum::body::Bytes::from_request(request, state).await,
            state.config().max_body_bytes,
        )?;
        idempotency_key(&headers)?;
        let value = json_body(&headers, &raw)?;
        Ok(Checked {
            value,
            raw,
            headers,
        })
    }
}

/// The body of a request, or the API's error for a bad one (too large, unreadable).
pub fn body_bytes(
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
    limit: usize,
) -> Result<axum::body::Bytes, ApiError> {
    body.map_err(|rejection| {
        let text = rejection.body_text();
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large(limit)
        } else if text.contains(crate::serve::BODY_TIMEOUT) {
            let mut error = ApiError::invalid(
                "request_timeout",
                format!(
                    "{}; send the body at once, or retry",
                    crate::serve::BODY_TIMEOUT
                ),
            );
            error.status = StatusCode::REQUEST_TIMEOUT;
            error
        } else {
            ApiError::invalid("unreadable_body", text)
        }
    })
}
