//! Tools: a trait, and the registry that knows each tool's policy.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use crate::config::{Policy, ToolsConfig};
use crate::journal::ToolSpec;

/// Why a tool could not run. The model reads the message as an error result.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ToolError(pub String);

/// What a tool runs in: the session's own workspace directory.
#[derive(Clone, Debug)]
pub struct ToolContext {
    /// The per-log directory the `fs.*` tools are confined to.
    pub workspace: PathBuf,
}

/// A tool the host performs for guests.
pub trait Tool: Send + Sync + 'static {
    /// Its name, its description and its arguments' JSON Schema.
    fn spec(&self) -> ToolSpec;
    /// Its policy when the configuration says nothing.
    fn default_policy(&self) -> Policy;
    /// Whether running it twice is harmless (so it may be re-run after a crash).
    fn idempotent(&self) -> bool {
        false
    }
    /// Run it with JSON arguments; the text returned is what the model reads.
    fn call(
        &self,
        cx: ToolContext,
        arguments: serde_json::Value,
    ) -> Pin<Box<dyn Future<Output = Result<String, ToolError>> + Send + '_>>;
}

/// The tools a host offers, each with its policy.
#[derive(Clone)]
pub struct ToolRegistry {
    tools: BTreeMap<String, Arc<dyn Tool>>,
    policy: BTreeMap<String, Policy>,
}

impl ToolRegistry {
    /// The built-in tools with the configured policies.
    pub fn builtin(config: &ToolsConfig) -> ToolRegistry {
        let max_read = config.max_read_bytes.unwrap_or(1 << 20);
        let mut registry = ToolRegistry {
            tools: BTreeMap::new(),
            policy: config.policy.clone(),
        };
        registry.add(Arc::new(super::FsRead {
            max_bytes: max_read,
        }));
        registry.add(Arc::new(super::FsWrite));
        registry
    }

    /// Offer another tool.
    pub fn add(&mut self, tool: Arc<dyn Tool>) {
        self.tools.insert(tool.spec().name, tool);
    }

    /// A tool by name.
    pub fn get(&self, name: &str) -> Option<Arc<dyn Tool>> {
        self.tools.get(name).cloned()
    }

    /// The policy for a tool: configured, else the tool's own default; unknown
    /// tools are denied.
    pub fn policy(&self, name: &str) -> Policy {
        match (self.policy.get(name), self.tools.get(name)) {
            (Some(policy), _) => *policy,
            (None, Some(tool)) => tool.default_policy(),
            (None, None) => Policy::Deny,
        }
    }

    /// The specs of every tool that is not denied, for a session's `created` event.
    pub fn specs(&self) -> Vec<ToolSpec> {
        self.tools
            .values()
            .map(|t| t.spec())
            .filter(|s| self.policy(&s.name) != Policy::Deny)
            .collect()
    }
}
