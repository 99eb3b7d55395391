//! Large tool parts as blobs: an image an MCP tool returned is stored once
//! beside the log, by digest, and the `completed` event carries only the
//! reference, so replays and guests never copy it. The bytes are read back
//! only to send the part to a model.
//!
//! Invariants: a blob is durable before the event that refers to it is
//! appended (a crash between the two leaves a blob nothing refers to,
//! which is harmless); blobs belong to a tenant, and a reference is only
//! ever resolved within the tenant of the log that holds it.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::effects::{Message, ModelRequest, ToolAnswer};
use crate::journal::{ContentBlock, Journal, JournalError, PartData};

/// Store the parts of `answer` whose bytes are more than `threshold` as
/// blobs, and refer to them instead. Data that is not valid base64 stays
/// inline: the log keeps what the tool said.
pub(crate) async fn store_large(
    journal: &dyn Journal,
    tenant: &str,
    answer: &mut ToolAnswer,
    threshold: usize,
) -> Result<(), JournalError> {
    for part in &mut answer.parts {
        let Some(data) = part.data_mut() else {
            continue;
        };
        let PartData::Base64(text) = data else {
            continue;
        };
        // Base64 is 4 characters for 3 bytes: skip the decode for small ones.
        if text.len() / 4 * 3 <= threshold {
            continue;
        }
        let Ok(bytes) = STANDARD.decode(text.as_bytes()) else {
            continue;
        };
        if bytes.len() <= threshold {
            continue;
        }
        *data = PartData::Blob(journal.put_blob(tenant, &bytes).await?);
    }
    Ok(())
}

/// An export's line for a blob: `{"blob":"sha256:…","data":"BASE64"}`.
/// It comes before the first event that refers to the blob.
pub(crate) fn blob_line(digest: &str, bytes: &[u8]) -> String {
    serde_json::json!({"blob": digest, "data": STANDARD.encode(bytes)}).to_string()
}

/// Whether an export's line holds a blob rather than an event.
pub(crate) fn is_blob_line(line: &str) -> bool {
    line.starts_with("{\"blob\":")
}

/// A blob line's digest and bytes, the digest checked against the bytes.
pub(crate) fn parse_blob_line(line: &str) -> Result<(String, Vec<u8>), String> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Line {
        blob: String,
        data: String,
    }
    let line: Line = serde_json::from_str(line).map_err(|e| format!("not a blob line: {e}"))?;
    let bytes = STANDARD
        .decode(line.data.as_bytes())
        .map_err(|e| format!("the blob {}'s data is not base64: {e}", line.blob))?;
    let digest = crate::journal::digest_of(&bytes);
    if digest != line.blob {
        return Err(format!(
            "the blob {} holds bytes whose digest is {digest}",
            line.blob
        ));
    }
    Ok((digest, bytes))
}

/// Why a model request could not be made whole.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ResolveError {
    #[error("the blob {0} is not stored for this tenant")]
    Missing(String),
    #[error(transparent)]
    Journal(#[from] JournalError),
}

/// Put the bytes of every blob a request's tool results refer to back
/// inline, for the provider.
pub(crate) async fn resolve(
    journal: &dyn Journal,
    tenant: &str,
    request: &mut ModelRequest,
) -> Result<(), ResolveError> {
    for message in &mut request.messages {
        if !message_refers_to_blobs(message) {
            continue;
        }
        // Copied only when it refers to a blob: the rest stay shared.
        let message = std::sync::Arc::make_mut(message);
        for block in &mut message.content {
            let ContentBlock::ToolResult { parts, .. } = block else {
                continue;
            };
            for part in parts.iter_mut() {
                let Some(data) = part.data_mut() else {
                    continue;
                };
                let PartData::Blob(blob) = data else {
                    continue;
                };
                let bytes = journal
                    .blob(tenant, &blob.digest)
                    .await?
                    .ok_or_else(|| ResolveError::Missing(blob.digest.clone()))?;
                *data = PartData::Base64(STANDARD.encode(bytes));
            }
        }
    }
    Ok(())
}

/// Whether a request refers to any blob (so most requests skip the walk).
pub(crate) fn refers_to_blobs(request: &ModelRequest) -> bool {
    request.messages.iter().any(|m| message_refers_to_blobs(m))
}

fn message_refers_to_blobs(message: &Message) -> bool {
    message.content.iter().any(|b| match b {
        ContentBlock::ToolResult { parts, .. } => parts
            .iter()
            .any(|p| matches!(p.data(), Some(PartData::Blob(_)))),
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use crate::effects::Role;
    use crate::journal::MemoryJournal;
    use crate::journal::ToolPart;

    fn image(bytes: &[u8]) -> ToolPart {
        ToolPart::Image {
            mime_type: "image/png".into(),
            data: PartData::Base64(STANDARD.encode(bytes)),
            annotations: None,
        }
    }

    #[tokio::test]
    async fn large_parts_become_blobs_and_come_back_whole_for_their_tenant_only() {
        let journal = MemoryJournal::new();
        let big = vec![7u8; 20_000];
        let mut answer = ToolAnswer {
            text: "two images".into(),
            parts: vec![image(b"small"), image(&big)],
            structured: None,
        };
        store_large(journal.as_ref(), "acme", &mut answer, 16 << 10)
            .await
            .unwrap();
        assert_eq!(answer.parts[0], image(b"small"), "small parts stay inline");
        let ToolPart::Image {
            data: PartData::Blob(blob),
            ..
        } = &answer.parts[1]
        else {
            panic!("the large part is a blob: {:?}", answer.parts[1])
        };
        assert_eq!(blob.size, 20_000);
        assert!(blob.digest.starts_with("sha256:"));

        let request = |parts: Vec<ToolPart>| ModelRequest {
            model: "default".into(),
            system: None,
            extends: None,
            messages: vec![Arc::new(Message {
                role: Role::User,
                content: vec![ContentBlock::ToolResult {
                    call_id: "c".into(),
                    content: "two images".into(),
                    is_error: false,
                    parts,
                }],
            })],
            tools: Vec::new(),
            max_tokens: None,
        };
        let mut mine = request(answer.parts.clone());
        assert!(refers_to_blobs(&mine));
        resolve(journal.as_ref(), "acme", &mut mine).await.unwrap();
        assert_eq!(mine, request(vec![image(b"small"), image(&big)]));
        assert!(!refers_to_blobs(&mine));

        let mut theirs = request(answer.parts.clone());
        assert!(matches!(
            resolve(journal.as_ref(), "other", &mut theirs).await,
            Err(ResolveError::Missing(_))
        ));
    }
}
