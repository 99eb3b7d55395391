//! A tool result's typed parts on a provider's wire: images go natively
//! where the wire takes them; everything else becomes text the model can
//! read, so nothing a tool returned is silently dropped.

use crate::journal::{PartData, ToolPart};

/// The media types both wires take as images.
const IMAGE_TYPES: &[&str] = &["image/png", "image/jpeg", "image/gif", "image/webp"];

/// Whether a part is for the model: one whose annotations' `audience`
/// names only people (`["user"]`) is kept in the log and not sent.
fn for_model(part: &ToolPart) -> bool {
    let audience = part
        .annotations()
        .and_then(|a| serde_json::from_str::<serde_json::Value>(a).ok())
        .and_then(|a| a.get("audience").and_then(|v| v.as_array()).cloned());
    match audience {
        Some(audience) if !audience.is_empty() => audience.iter().any(|r| r == "assistant"),
        _ => true,
    }
}

/// An image a wire can send natively: its media type and base64 data.
pub(super) fn image(part: &ToolPart) -> Option<(&str, &str)> {
    if !for_model(part) {
        return None;
    }
    native_image(part)
}

/// An image in a type both wires take, whoever it is for.
fn native_image(part: &ToolPart) -> Option<(&str, &str)> {
    match part {
        ToolPart::Image {
            mime_type,
            data: PartData::Base64(data),
            ..
        } if IMAGE_TYPES.contains(&mime_type.as_str()) => Some((mime_type, data)),
        _ => None,
    }
}

/// A part that is not sent as an image, as text for the model: a resource's
/// text with its address, a link, or a note of what was left out and why.
pub(super) fn text(part: &ToolPart) -> Option<String> {
    if !for_model(part) || native_image(part).is_some() {
        return None;
    }
    let size = |d: &PartData| match d {
        // Base64 is 4 characters for every 3 bytes.
        PartData::Base64(b) => b.len() / 4 * 3,
        PartData::Blob(r) => usize::try_from(r.size).unwrap_or(usize::MAX),
    };
    Some(match part {
        ToolPart::Image {
            mime_type, data, ..
        } => {
            format!(
                "[an image ({mime_type}, {} bytes) that this wire cannot send]",
                size(data)
            )
        }
        ToolPart::Audio {
            mime_type, data, ..
        } => {
            format!(
                "[audio ({mime_type}, {} bytes) that this wire cannot send]",
                size(data)
            )
        }
        ToolPart::Resource {
            uri,
            mime_type,
            text,
            data,
            ..
        } => {
            let mime = mime_type.as_deref().unwrap_or("unknown type");
            match (text, data) {
                (Some(text), _) => format!("[resource {uri} ({mime})]\n{text}"),
                (None, Some(data)) => {
                    format!("[resource {uri} ({mime}, {} bytes, not shown)]", size(data))
                }
                (None, None) => format!("[resource {uri} ({mime}), empty]"),
            }
        }
        ToolPart::ResourceLink {
            uri,
            name,
            mime_type,
            description,
            ..
        } => {
            let mut line = format!("[resource link {name}: {uri}");
            if let Some(mime) = mime_type {
                line.push_str(&format!(" ({mime})"));
            }
            if let Some(description) = description {
                line.push_str(&format!(" — {description}"));
            }
            line.push(']');
            line
        }
    })
}

/// A result's text followed by the text of its parts that are not images.
pub(super) fn with_text_parts(content: &str, parts: &[ToolPart]) -> String {
    let mut out = content.to_string();
    for t in parts.iter().filter_map(text) {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&t);
    }
    out
}
