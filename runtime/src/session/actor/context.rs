//! The model context a session's calls share: the whole request of the
//! latest model call, which the next one extends.
//!
//! A guest may say a model request as "model call `base`'s messages,
//! then these" (`model-request.extends`), where `base` is the call this
//! holds. The actor puts the whole request together here, sharing the
//! messages (`Arc`) instead of copying them, and digests it from where the
//! base's digest left off, so a turn costs the messages it adds, not the
//! conversation.
//!
//! Invariants:
//! - a request leaves here whole (`extends` is `None`), and its digest is
//!   exactly [`ModelRequest::digest`]: the SHA-256 of its JSON, of which the
//!   part up to the end of its last message is hashed once and carried on;
//! - what is held is only a cache: dropping it costs the next request one
//!   whole crossing, never a different request or digest.

use sha2::{Digest, Sha256};

use crate::effects::ModelRequest;

/// The whole request of a model call, and the SHA-256 of its JSON up to
/// the end of its last message (`{"model":…,"messages":[m1,…,mn`).
#[derive(Clone)]
pub(in crate::session) struct ModelBase {
    key: String,
    request: ModelRequest,
    prefix: Sha256,
}

/// A request that extends a call the host does not hold.
#[derive(Debug, thiserror::Error)]
#[error("model request {key:?} extends model call {extends:?}, but the host holds {held:?}")]
pub(super) struct NotHeld {
    key: String,
    extends: String,
    held: Option<String>,
}

impl ModelBase {
    /// The key of the call this holds: what a guest is offered as `base`.
    pub(in crate::session) fn key(&self) -> &str {
        &self.key
    }

    /// The request of `key` as the guest said it, made whole with `base`'s
    /// messages when it extends `base`; and what to hold for the next.
    pub(super) fn take(
        base: Option<&ModelBase>,
        key: &str,
        mut request: ModelRequest,
    ) -> Result<ModelBase, NotHeld> {
        let Some(extends) = request.extends.take() else {
            let prefix = messages_prefix(&request);
            return Ok(ModelBase {
                key: key.to_string(),
                request,
                prefix,
            });
        };
        let Some(base) = base.filter(|b| b.key == extends) else {
            return Err(NotHeld {
                key: key.to_string(),
                extends,
                held: base.map(|b| b.key.clone()),
            });
        };
        let added = std::mem::take(&mut request.messages);
        let mut messages = Vec::with_capacity(base.request.messages.len() + added.len());
        messages.extend(base.request.messages.iter().cloned());
        messages.extend(added);
        request.messages = messages;
        // The same model and system prompt: the JSON up to the base's last
        // message is the same, and its hash goes on from there.
        let prefix = if request.model == base.request.model && request.system == base.request.system
        {
            let mut prefix = base.prefix.clone();
            let first = base.request.messages.len();
            for (i, message) in request.messages[first..].iter().enumerate() {
                if first + i > 0 {
                    prefix.update(b",");
                }
                hash_json(&mut prefix, &**message);
            }
            prefix
        } else {
            messages_prefix(&request)
        };
        Ok(ModelBase {
            key: key.to_string(),
            request,
            prefix,
        })
    }

    /// The whole request.
    pub(super) fn request(&self) -> &ModelRequest {
        &self.request
    }

    /// [`ModelRequest::digest`] of the request, from the hash carried.
    pub(in crate::session) fn digest(&self) -> String {
        let mut hasher = self.prefix.clone();
        hasher.update(b"]");
        if !self.request.tools.is_empty() {
            hasher.update(b",\"tools\":");
            hash_json(&mut hasher, &self.request.tools);
        }
        if let Some(max) = self.request.max_tokens {
            hasher.update(b",\"max_tokens\":");
            hash_json(&mut hasher, &max);
        }
        hasher.update(b"}");
        format!("sha256:{}", hex::encode(hasher.finalize()))
    }
}

/// The SHA-256 state over `request`'s JSON up to the end of its last
/// message, field for field as serde writes [`ModelRequest`].
fn messages_prefix(request: &ModelRequest) -> Sha256 {
    let mut hasher = Sha256::new();
    hasher.update(b"{\"model\":");
    hash_json(&mut hasher, &request.model);
    if let Some(system) = &request.system {
        hasher.update(b",\"system\":");
        hash_json(&mut hasher, system);
    }
    hasher.update(b",\"messages\":[");
    for (i, message) in request.messages.iter().enumerate() {
        if i > 0 {
            hasher.update(b",");
        }
        hash_json(&mut hasher, &**message);
    }
    hasher
}

/// Hash `value`'s JSON, written straight into the hasher.
fn hash_json<T: serde::Serialize + ?Sized>(hasher: &mut Sha256, value: &T) {
    struct Into<'a>(&'a mut Sha256);
    impl std::io::Write for Into<'_> {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.update(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    // Writing a model request's parts as JSON cannot fail (string keys only),
    // and the hasher takes every byte.
    let _ = serde_json::to_writer(Into(hasher), value);
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::effects::{Message, Role};
    use crate::journal::{ContentBlock, ToolSpec};

    fn message(role: Role, text: &str) -> Arc<Message> {
        Arc::new(Message {
            role,
            content: vec![ContentBlock::text(text)],
        })
    }

    fn request(messages: Vec<Arc<Message>>) -> ModelRequest {
        ModelRequest {
            model: "default".into(),
            system: Some("be \"brief\"\n".into()),
            extends: None,
            messages,
            tools: vec![ToolSpec {
                name: "fs.read".into(),
                description: "read".into(),
                parameters: serde_json::json!({"type": "object"}),
            }],
            max_tokens: Some(100),
        }
    }

    #[test]
    fn a_whole_request_digests_as_its_json() {
        for messages in [vec![], vec![message(Role::User, "héllo")]] {
            let mut r = request(messages);
            for (system, tools, max) in [(true, true, true), (false, false, false)] {
                if !system {
                    r.system = None;
                }
                if !tools {
                    r.tools.clear();
                }
                if !max {
                    r.max_tokens = None;
                }
                let base = ModelBase::take(None, "model-1", r.clone()).unwrap();
                assert_eq!(base.digest(), r.digest());
                assert_eq!(base.request(), &r);
            }
        }
    }

    #[test]
    fn an_extended_request_is_the_whole_one() {
        let first = request(vec![message(Role::User, "a")]);
        let base = ModelBase::take(None, "model-1", first).unwrap();
        let mut said = request(vec![
            message(Role::Assistant, "b"),
            message(Role::User, "c"),
        ]);
        said.extends = Some("model-1".into());
        let next = ModelBase::take(Some(&base), "model-3", said).unwrap();
        let whole = request(vec![
            message(Role::User, "a"),
            message(Role::Assistant, "b"),
            message(Role::User, "c"),
        ]);
        assert_eq!(next.request(), &whole);
        assert_eq!(next.digest(), whole.digest());
        assert_eq!(next.key(), "model-3");
        // Another model: the hash starts over, to the same digest.
        let mut other = request(vec![message(Role::User, "d")]);
        other.model = "claude".into();
        other.extends = Some("model-3".into());
        let last = ModelBase::take(Some(&next), "model-5", other).unwrap();
        let mut whole = whole;
        whole.model = "claude".into();
        whole.messages.push(message(Role::User, "d"));
        assert_eq!(last.digest(), whole.digest());
        // From an empty base.
        let empty = ModelBase::take(None, "m", request(vec![])).unwrap();
        let mut said = request(vec![message(Role::User, "x")]);
        said.extends = Some("m".into());
        let after = ModelBase::take(Some(&empty), "n", said).unwrap();
        assert_eq!(
            after.digest(),
            request(vec![message(Role::User, "x")]).digest()
        );
    }

    #[test]
    fn a_request_that_extends_what_is_not_held_is_refused() {
        let base = ModelBase::take(None, "model-1", request(vec![])).unwrap();
        let mut said = request(vec![]);
        said.extends = Some("model-0".into());
        let Err(e) = ModelBase::take(Some(&base), "model-3", said.clone()) else {
            panic!("a request that extends a call not held is taken");
        };
        assert!(e.to_string().contains("model-0"), "{e}");
        assert!(ModelBase::take(None, "model-3", said).is_err());
    }
}
