//! Model providers: a trait, the registry of aliases, and `EchoModel`.
//!
//! A model request is never stored in the log, only its digest: it is rebuilt
//! from the log by the guest whenever it is needed. The response is stored whole.
//!
//! Invariant: no secret reaches the log through a model call. A
//! [`ModelError`]'s message is a [`ProviderText`], which only a
//! [`Redactor`](super::Redactor) builds (or a `&'static str` the host wrote);
//! a [`DeltaSink`] takes `ProviderText` too; and a provider passes its
//! response through the same redactor before answering.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::SetupError;
use super::redact::ProviderText;
use crate::config::ModelConfig;
use crate::journal::{ContentBlock, ErrorKind, ModelResponse, StopReason, ToolSpec, Usage};

/// Who said a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// The participants, and tool results.
    User,
    /// The model.
    Assistant,
}

/// One message of a model's context.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Who said it.
    pub role: Role,
    /// What was said.
    pub content: Vec<ContentBlock>,
}

/// A request to a model alias, provider-neutral.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelRequest {
    /// The alias the guest asked for; the host maps it to a provider.
    pub model: String,
    /// The system prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// Set only on a request as a guest said it: the key of the model call
    /// whose messages this one's follow (`model-request.extends`). The actor
    /// puts the whole context together before anything else sees the
    /// request (session::actor::context), so no provider, digest or check
    /// ever sees it set.
    #[serde(skip)]
    pub extends: Option<String>,
    /// The conversation. Shared, not copied, between the requests of one
    /// session's model calls: each extends the one before.
    pub messages: Vec<Arc<Message>>,
    /// Tools the model may call.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<ToolSpec>,
    /// Most tokens to generate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
}

impl ModelRequest {
    /// `sha256:` and the hex digest of the request's canonical JSON.
    pub fn digest(&self) -> String {
        let bytes = serde_json::to_vec(self).expect("model requests always serialize");
        crate::journal::digest_of(&bytes)
    }

    /// A short, readable line about the request, for the log.
    pub fn summary(&self) -> String {
        let last = self
            .messages
            .last()
            .map(|m| crate::journal::plain_text(&m.content))
            .unwrap_or_default();
        let mut last: String = last.chars().take(60).collect();
        if last.is_empty() {
            last = "(no text)".to_string();
        }
        format!("{} messages; last: {last}", self.messages.len())
    }
}

/// Why a model call failed.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ModelError {
    /// The kind of failure, as the log records it.
    pub kind: ErrorKind,
    /// A readable message, scrubbed of secrets.
    pub message: ProviderText,
    /// Whether trying again may succeed.
    pub retryable: bool,
    /// How long the provider asked us to wait (`Retry-After`).
    pub retry_after: Option<Duration>,
}

impl ModelError {
    /// A failure that trying again will not mend.
    pub fn fatal(kind: ErrorKind, message: ProviderText) -> ModelError {
        ModelError {
            kind,
            message,
            retryable: false,
            retry_after: None,
        }
    }

    /// A failure that may pass if tried again.
    pub fn transient(kind: ErrorKind, message: ProviderText) -> ModelError {
        ModelError {
            retryable: true,
            ..ModelError::fatal(kind, message)
        }
    }
}

/// A piece of a response as it streams in: ephemeral, never logged. The
/// final response is logged once, whole, in `completed`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelDelta {
    /// The key of the model effect it belongs to.
    pub key: String,
    /// What kind of text it adds to.
    pub kind: DeltaKind,
    /// The new text.
    pub text: String,
}

/// What a live observer of a session sees that is never logged: model text
/// as it streams in, and tool progress.
#[derive(Clone, Debug, PartialEq)]
pub enum Live {
    /// A piece of a model's answer.
    Delta(ModelDelta),
    /// How far a tool call has got.
    Progress(super::ToolProgress),
}

/// What a [`ModelDelta`] adds to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeltaKind {
    /// The answer's text.
    Text,
    /// Readable reasoning.
    Reasoning,
    /// A tool call's arguments, as the model writes them.
    ToolArguments,
    /// The attempt failed and will be tried again: drop what came so far.
    Restart,
}

/// Where a streaming provider sends its deltas: `(kind, text)`, the text
/// scrubbed (a [`StreamRedactor`](super::StreamRedactor) keeps a secret split
/// across deltas from going out in halves).
pub type DeltaSink = Arc<dyn Fn(DeltaKind, &ProviderText) + Send + Sync>;

/// How the host retries a provider's transient failures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts after the first.
    pub max_retries: u32,
    /// The first backoff; it doubles with each attempt.
    pub base: Duration,
    /// The longest wait, `Retry-After` included.
    pub max: Duration,
}

impl RetryPolicy {
    /// No retries.
    pub const NONE: RetryPolicy = RetryPolicy {
        max_retries: 0,
        base: Duration::ZERO,
        max: Duration::ZERO,
    };

    /// The wait before attempt `attempt + 1`: `Retry-After` when the provider
    /// said so, else exponential backoff with full jitter, both capped.
    pub fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(after) = retry_after {
            return after.min(self.max);
        }
        let exp = self
            .base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
            .min(self.max);
        // Full jitter: many sessions retrying one provider must not march in step.
        let ms = exp.as_millis() as u64;
        Duration::from_millis(ms / 2 + rand::random_range(0..=ms / 2))
    }
}

/// A boxed future of a model's answer.
pub type ModelFuture<'a> = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<ModelResponse, ModelError>> + Send + 'a>,
>;

/// A model provider: turns a neutral request into a neutral response.
pub trait ModelProvider: Send + Sync + 'static {
    /// The provider's name, as recorded in responses (`echo`, `openai`, ...).
    fn name(&self) -> &str;

    /// Call the model.
    fn complete(
        &self,
        request: ModelRequest,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<ModelResponse, ModelError>> + Send + '_>,
    >;

    /// Call the model, sending text to `deltas` as it streams in. Providers
    /// that do not stream answer as [`ModelProvider::complete`] does.
    fn complete_streaming(&self, request: ModelRequest, deltas: DeltaSink) -> ModelFuture<'_> {
        let _ = deltas;
        self.complete(request)
    }

    /// How the host retries this provider's transient failures.
    fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy::NONE
    }
}

/// A test double that needs no network: it answers `echo: <last user text>`.
///
/// When the last user text is `/tool NAME JSON` it answers with a call of tool
/// NAME with those arguments, and once the tool's result is in, it answers
/// `tool NAME returned: <result>`. `delay` holds each answer back (so that a
/// test can kill the host mid-call).
pub struct EchoModel {
    /// How long each answer takes.
    pub delay: Duration,
}

impl EchoModel {
    /// The answer to `request`, without the delay.
    pub fn answer(request: &ModelRequest) -> ModelResponse {
        let content = match request.messages.last() {
            Some(last) => echo_reply(request, last),
            None => vec![ContentBlock::text("echo: ")],
        };
        let stop_reason = if content
            .iter()
            .any(|b| matches!(b, ContentBlock::ToolCall(_)))
        {
            StopReason::ToolUse
        } else {
            StopReason::EndTurn
        };
        let input_tokens = request
            .messages
            .iter()
            .map(|m| {
                crate::journal::plain_text(&m.content)
                    .split_whitespace()
                    .count() as u64
            })
            .sum();
        let output_tokens = crate::journal::plain_text(&content)
            .split_whitespace()
            .count() as u64;
        ModelResponse {
            content,
            stop_reason,
            usage: Some(Usage {
                input_tokens,
                output_tokens,
            }),
            provider: "echo".to_string(),
            model: "echo".to_string(),
        }
    }
}

fn echo_reply(request: &ModelRequest, last: &Message) -> Vec<ContentBlock> {
    // A tool result answers the tool call of the previous assistant message.
    if let Some((call_id, content)) = last.content.iter().find_map(|b| match b {
        ContentBlock::ToolResult {
            call_id, content, ..
        } => Some((call_id, content)),
        _ => None,
    }) {
        let name = request
            .messages
            .iter()
            .flat_map(|m| &m.content)
            .find_map(|b| match b {
                ContentBlock::ToolCall(call) if &call.id == call_id => Some(call.name.as_str()),
                _ => None,
            })
            .unwrap_or("?");
        return vec![ContentBlock::text(format!(
            "tool {name} returned: {content}"
        ))];
    }
    let text = crate::journal::plain_text(&last.content);
    if let Some(rest) = text.strip_prefix("/tool ") {
        let (name, arguments) = rest.split_once(' ').unwrap_or((rest, "{}"));
        let id = format!("call-{}", request.messages.len());
        return vec![ContentBlock::ToolCall(crate::journal::ToolCall {
            id,
            name: name.to_string(),
            arguments: arguments.trim().to_string(),
        })];
    }
    vec![ContentBlock::text(format!("echo: {text}"))]
}

impl ModelProvider for EchoModel {
    fn name(&self) -> &str {
        "echo"
    }

    fn complete(
        &self,
        request: ModelRequest,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<ModelResponse, ModelError>> + Send + '_>,
    > {
        Box::pin(async move {
            if !self.delay.is_zero() {
                tokio::time::sleep(self.delay).await;
            }
            Ok(EchoModel::answer(&request))
        })
    }
}

/// Model aliases and the providers they map to, host-wide and per tenant.
#[derive(Clone)]
pub struct ModelRegistry {
    aliases: BTreeMap<String, Arc<dyn ModelProvider>>,
    tenants: BTreeMap<String, BTreeMap<String, Arc<dyn ModelProvider>>>,
    fallback: Arc<dyn ModelProvider>,
}

impl ModelRegistry {
    /// Build from configuration. `default` maps to [`EchoModel`] unless configured;
    /// `echo_delay` is `LOGBOOK_ECHO_DELAY_MS`, read by the caller.
    pub fn from_config(
        models: &BTreeMap<String, ModelConfig>,
        echo_delay: Option<Duration>,
    ) -> Result<ModelRegistry, SetupError> {
        Ok(ModelRegistry {
            aliases: build_aliases(models, echo_delay)?,
            tenants: BTreeMap::new(),
            fallback: Arc::new(EchoModel {
                delay: echo_delay.unwrap_or_default(),
            }),
        })
    }

    /// Every alias of the configuration, host-wide and per tenant.
    pub fn for_config(
        config: &crate::config::Config,
        echo_delay: Option<Duration>,
    ) -> Result<ModelRegistry, SetupError> {
        let mut registry = ModelRegistry::from_config(&config.models, echo_delay)?;
        for (tenant, settings) in &config.tenants {
            registry.add_tenant(tenant, &settings.models, echo_delay)?;
        }
        Ok(registry)
    }

    /// Add a tenant's aliases, which win over the host-wide ones for its sessions.
    pub fn add_tenant(
        &mut self,
        tenant: &str,
        models: &BTreeMap<String, ModelConfig>,
        echo_delay: Option<Duration>,
    ) -> Result<(), SetupError> {
        let aliases = build_aliases(models, echo_delay).map_err(|e| SetupError::Tenant {
            tenant: tenant.to_string(),
            source: Box::new(e),
        })?;
        self.tenants.insert(tenant.to_string(), aliases);
        Ok(())
    }

    /// The provider for a host-wide alias: configured ones, and `default` (EchoModel).
    pub fn get(&self, alias: &str) -> Option<Arc<dyn ModelProvider>> {
        match self.aliases.get(alias) {
            Some(p) => Some(p.clone()),
            None if alias == "default" => Some(self.fallback.clone()),
            None => None,
        }
    }

    /// The provider for an alias as `tenant` sees it: its own aliases first.
    pub fn get_for(&self, tenant: &str, alias: &str) -> Option<Arc<dyn ModelProvider>> {
        match self.tenants.get(tenant).and_then(|a| a.get(alias)) {
            Some(p) => Some(p.clone()),
            None => self.get(alias),
        }
    }
}

fn build_aliases(
    models: &BTreeMap<String, ModelConfig>,
    echo_delay: Option<Duration>,
) -> Result<BTreeMap<String, Arc<dyn ModelProvider>>, SetupError> {
    let mut aliases = BTreeMap::new();
    for (alias, config) in models {
        let in_alias = |e: SetupError| SetupError::ModelAlias {
            alias: alias.clone(),
            source: Box::new(e),
        };
        let provider: Arc<dyn ModelProvider> = match config.provider.as_str() {
            "echo" => Arc::new(EchoModel {
                delay: echo_delay
                    .or(config.delay_ms.map(Duration::from_millis))
                    .unwrap_or_default(),
            }),
            "openai" => Arc::new(super::providers::OpenAi::new(config).map_err(in_alias)?),
            "anthropic" => Arc::new(super::providers::Anthropic::new(config).map_err(in_alias)?),
            other => {
                return Err(in_alias(SetupError::UnknownProvider {
                    provider: other.to_string(),
                }));
            }
        };
        aliases.insert(alias.clone(), provider);
    }
    Ok(aliases)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(text: &str) -> Message {
        Message {
            role: Role::User,
            content: vec![ContentBlock::text(text)],
        }
    }

    fn request(messages: Vec<Message>) -> ModelRequest {
        ModelRequest {
            model: "default".into(),
            system: None,
            extends: None,
            messages: messages.into_iter().map(Arc::new).collect(),
            tools: vec![],
            max_tokens: None,
        }
    }

    #[test]
    fn echo_echoes_the_last_user_text() {
        let r = EchoModel::answer(&request(vec![user("hello")]));
        assert_eq!(r.content, vec![ContentBlock::text("echo: hello")]);
        assert_eq!(r.stop_reason, StopReason::EndTurn);
    }

    #[test]
    fn echo_calls_a_tool_and_reports_its_result() {
        let first = EchoModel::answer(&request(vec![user("/tool fs.read {\"path\":\"x\"}")]));
        let ContentBlock::ToolCall(call) = &first.content[0] else {
            panic!("expected a tool call: {first:?}");
        };
        assert_eq!(call.name, "fs.read");
        assert_eq!(call.arguments, "{\"path\":\"x\"}");
        let second = EchoModel::answer(&request(vec![
            user("/tool fs.read {\"path\":\"x\"}"),
            Message {
                role: Role::Assistant,
                content: first.content.clone(),
            },
            Message {
                role: Role::User,
                content: vec![ContentBlock::ToolResult {
                    call_id: call.id.clone(),
                    content: "hi".into(),
                    is_error: false,
                    parts: Vec::new(),
                }],
            },
        ]));
        assert_eq!(
            second.content,
            vec![ContentBlock::text("tool fs.read returned: hi")]
        );
    }

    #[test]
    fn a_tenants_aliases_win_and_default_falls_back_to_echo() {
        let mut config = crate::config::Config::default();
        let mut tenant = crate::config::TenantConfig::default();
        tenant.models.insert(
            "default".into(),
            ModelConfig {
                provider: "openai".into(),
                model: Some("m".into()),
                ..ModelConfig::default()
            },
        );
        config.tenants.insert("acme".into(), tenant);
        let registry = ModelRegistry::for_config(&config, None).unwrap();
        assert_eq!(
            registry.get_for("acme", "default").unwrap().name(),
            "openai"
        );
        assert_eq!(registry.get_for("other", "default").unwrap().name(), "echo");
        assert!(registry.get_for("acme", "missing").is_none());
        let mut bad = crate::config::Config::default();
        bad.models.insert(
            "x".into(),
            ModelConfig {
                provider: "nope".into(),
                ..ModelConfig::default()
            },
        );
        assert!(ModelRegistry::for_config(&bad, None).is_err());
    }

    #[test]
    fn digests_differ_with_content() {
        let a = request(vec![user("a")]);
        let b = request(vec![user("b")]);
        assert_ne!(a.digest(), b.digest());
        assert_eq!(a.digest(), a.clone().digest());
    }
}
