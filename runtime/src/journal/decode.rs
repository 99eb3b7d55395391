//! Decoding stored event bodies.

use super::JournalError;
use super::event::EventBody;

/// Decodes a canonical body.
pub fn decode_body(bytes: &[u8]) -> Result<EventBody, JournalError> {
    serde_json::from_slice(bytes).map_err(|e| JournalError::Corrupt(format!("event body: {e}")))
}
