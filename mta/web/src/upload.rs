//! Update bundles received over HTTP — the API's request body and the
//! Update page's file field go through `mta_app::update::Receiver::receive`
//! — and the HTTP status of each outcome.

use axum::http::StatusCode;
use mta_app::update::{ReceiveError, UpdateError};

/// Why an upload ended without a bundle handed to init: the HTTP status
/// and one line a person can read.
pub type Refusal = (StatusCode, String);

/// The HTTP status and text of a refusal.
pub fn refusal(e: ReceiveError) -> Refusal {
    let status = match &e {
        ReceiveError::Refused(UpdateError::Busy) => StatusCode::CONFLICT,
        ReceiveError::Refused(UpdateError::NoKey) => StatusCode::SERVICE_UNAVAILABLE,
        ReceiveError::Refused(UpdateError::TooLarge) => StatusCode::PAYLOAD_TOO_LARGE,
        ReceiveError::Refused(UpdateError::NoRoom) => StatusCode::INSUFFICIENT_STORAGE,
        ReceiveError::Refused(UpdateError::Io(_)) => StatusCode::INTERNAL_SERVER_ERROR,
        ReceiveError::Refused(UpdateError::Bundle(_)) => StatusCode::UNPROCESSABLE_ENTITY,
        ReceiveError::Stalled | ReceiveError::TooSlow => StatusCode::REQUEST_TIMEOUT,
        ReceiveError::BrokeOff(_) => StatusCode::BAD_REQUEST,
    };
    (status, e.to_string())
}
