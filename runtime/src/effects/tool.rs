//! Tools: a trait, and the registry that knows each tool's policy.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use super::SetupError;
use super::mcp::McpServers;
use crate::config::{Config, Policy, ToolsConfig};
use crate::journal::{ToolPart, ToolSpec};

/// Why a tool could not run. The model reads the message as an error result.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ToolError(pub String);

/// What a tool answered: the text the model reads, and typed parts beside it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ToolAnswer {
    /// The answer as text.
    pub text: String,
    /// Images, sounds and resources, sent to the model in its native form.
    pub parts: Vec<ToolPart>,
    /// A structured result, as JSON text.
    pub structured: Option<String>,
}

impl From<String> for ToolAnswer {
    fn from(text: String) -> ToolAnswer {
        ToolAnswer {
            text,
            ..ToolAnswer::default()
        }
    }
}

/// How far a running tool has got, as its server reports it: shown to live
/// observers, never logged.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ToolProgress {
    /// The tool call's key.
    pub key: String,
    /// Progress so far (it only grows).
    pub progress: f64,
    /// The total, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<f64>,
    /// What the tool says it is doing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Where a tool reports progress.
pub type ProgressSink = Arc<dyn Fn(ToolProgress) + Send + Sync>;

/// What a tool runs in: the session's own workspace directory, and where it
/// reports progress.
#[derive(Clone)]
pub struct ToolContext {
    /// The per-log directory the `fs.*` tools are confined to.
    pub workspace: PathBuf,
    /// The key of the call (its id).
    pub key: String,
    /// Progress goes here, when anyone is watching.
    pub progress: Option<ProgressSink>,
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
    /// Whether it works in the session's workspace: then the host brings the
    /// workspace up to date with the log before it runs (session::workspace),
    /// and runs such calls of a session one at a time.
    fn uses_workspace(&self) -> bool {
        false
    }
    /// Run it with JSON arguments; the answer is what the model reads.
    fn call(
        &self,
        cx: ToolContext,
        arguments: serde_json::Value,
    ) -> Pin<Box<dyn Future<Output = Result<ToolAnswer, ToolError>> + Send + '_>>;
}

/// The tools a host offers, each with its policy, host-wide and per tenant.
/// The tools of MCP servers are known once the servers have been started
/// ([`ToolRegistry::start_mcp`]); until then they are unknown here.
#[derive(Clone)]
pub struct ToolRegistry {
    tools: BTreeMap<String, Arc<dyn Tool>>,
    mcp: Arc<McpServers>,
    policy: BTreeMap<String, Policy>,
    tenants: BTreeMap<String, BTreeMap<String, Policy>>,
}

impl ToolRegistry {
    /// The built-in tools with the configured policies.
    pub fn builtin(config: &ToolsConfig) -> ToolRegistry {
        let max_read = config.max_read_bytes.unwrap_or(1 << 20);
        let mut registry = ToolRegistry {
            tools: BTreeMap::new(),
            mcp: Arc::new(McpServers::default()),
            policy: config.policy.clone(),
            tenants: BTreeMap::new(),
        };
        registry.add(Arc::new(super::FsRead {
            max_bytes: max_read,
        }));
        registry.add(Arc::new(super::FsWrite));
        registry
    }

    /// Everything the configuration offers: the built-ins, `http.fetch` when
    /// hosts are allowed, the tools of every MCP server, and each tenant's
    /// policies. MCP servers are not started here: see [`ToolRegistry::start_mcp`].
    pub fn for_config(config: &Config) -> Result<ToolRegistry, SetupError> {
        let mut registry = ToolRegistry::builtin(&config.tools);
        for (tenant, settings) in &config.tenants {
            registry
                .tenants
                .insert(tenant.clone(), settings.tools.policy.clone());
        }
        if !config.http_fetch.allow_hosts.is_empty() {
            registry.add(Arc::new(super::HttpFetch::new(&config.http_fetch)?));
        }
        registry.mcp = Arc::new(McpServers::new(&config.mcp)?);
        Ok(registry)
    }

    /// Start the MCP servers, if that has not been done, and learn their
    /// tools. Whatever creates or wakes a session calls this first: before
    /// it, the servers' tools are unknown (and so denied). A failure is not
    /// kept; the next call tries again.
    pub async fn start_mcp(&self) -> Result<(), SetupError> {
        if self.mcp.is_empty() {
            return Ok(());
        }
        self.mcp.start().await.map(|_| ())
    }

    /// Every tool known now.
    fn all(&self) -> Vec<Arc<dyn Tool>> {
        let mut all: Vec<Arc<dyn Tool>> = self.tools.values().cloned().collect();
        if let Some(mcp) = self.mcp.started() {
            all.extend(mcp.values().cloned());
        }
        all
    }

    /// A tool known now, by name.
    fn find(&self, name: &str) -> Option<Arc<dyn Tool>> {
        self.tools
            .get(name)
            .cloned()
            .or_else(|| self.mcp.started().and_then(|m| m.get(name).cloned()))
    }

    /// Offer another tool.
    pub fn add(&mut self, tool: Arc<dyn Tool>) {
        self.tools.insert(tool.spec().name, tool);
    }

    /// A tool by name.
    pub fn get(&self, name: &str) -> Option<Arc<dyn Tool>> {
        self.find(name)
    }

    /// The host-wide policy for a tool: configured (exactly, else by the most
    /// specific glob), else the tool's own default; unknown tools are denied.
    pub fn policy(&self, name: &str) -> Policy {
        let Some(tool) = self.find(name) else {
            return Policy::Deny;
        };
        lookup(&self.policy, name).unwrap_or_else(|| tool.default_policy())
    }

    /// The policy for a tool in a session of `tenant`: the tenant's entries
    /// first, then the host-wide ones.
    pub fn policy_for(&self, tenant: &str, name: &str) -> Policy {
        if self.find(name).is_none() {
            return Policy::Deny;
        }
        match self.tenants.get(tenant).and_then(|p| lookup(p, name)) {
            Some(policy) => policy,
            None => self.policy(name),
        }
    }

    /// The specs of every tool that is not denied host-wide.
    pub fn specs(&self) -> Vec<ToolSpec> {
        let mut specs: Vec<ToolSpec> = self
            .all()
            .iter()
            .map(|t| t.spec())
            .filter(|s| self.policy(&s.name) != Policy::Deny)
            .collect();
        specs.sort_by(|a, b| a.name.cmp(&b.name));
        specs
    }

    /// The specs of every tool `tenant` may use, for its sessions' `created` event.
    pub fn specs_for(&self, tenant: &str) -> Vec<ToolSpec> {
        let mut specs: Vec<ToolSpec> = self
            .all()
            .iter()
            .map(|t| t.spec())
            .filter(|s| self.policy_for(tenant, &s.name) != Policy::Deny)
            .collect();
        specs.sort_by(|a, b| a.name.cmp(&b.name));
        specs
    }
}

/// A policy by exact name, else by the longest glob that matches.
fn lookup(policies: &BTreeMap<String, Policy>, name: &str) -> Option<Policy> {
    if let Some(policy) = policies.get(name) {
        return Some(*policy);
    }
    policies
        .iter()
        .filter(|(pattern, _)| pattern.contains(['*', '?']) && glob_match(pattern, name))
        .max_by_key(|(pattern, _)| pattern.len())
        .map(|(_, policy)| *policy)
}

/// `*` matches any run of characters (dots too), `?` any one character.
pub(crate) fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            // Backtrack: let the last star take one more character.
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_as_documented() {
        assert!(glob_match("github.*", "github.create_issue"));
        assert!(glob_match("*", "anything.at.all"));
        assert!(glob_match("fs.?ead", "fs.read"));
        assert!(!glob_match("github.*", "gitlab.x"));
        assert!(glob_match("*.delete_*", "db.delete_row"));
        assert!(!glob_match("*.delete_*", "db.select"));
    }

    #[test]
    fn exact_beats_glob_and_longer_globs_win() {
        let mut policies = BTreeMap::new();
        policies.insert("*".to_string(), Policy::Deny);
        policies.insert("fs.*".to_string(), Policy::Ask);
        policies.insert("fs.read".to_string(), Policy::Allow);
        assert_eq!(lookup(&policies, "fs.read"), Some(Policy::Allow));
        assert_eq!(lookup(&policies, "fs.write"), Some(Policy::Ask));
        assert_eq!(lookup(&policies, "http.fetch"), Some(Policy::Deny));
    }

    #[test]
    fn a_tenant_policy_wins_over_the_host_wide_one() {
        let mut config = Config::default();
        config
            .tools
            .policy
            .insert("fs.write".to_string(), Policy::Allow);
        let mut tenant = crate::config::TenantConfig::default();
        tenant.tools.policy.insert("fs.*".to_string(), Policy::Deny);
        config.tenants.insert("acme".to_string(), tenant);
        let registry = ToolRegistry::for_config(&config).expect("no MCP servers to start");
        assert_eq!(registry.policy_for("other", "fs.write"), Policy::Allow);
        assert_eq!(registry.policy_for("acme", "fs.write"), Policy::Deny);
        assert!(registry.specs_for("acme").is_empty());
        assert_eq!(registry.policy_for("other", "no.such.tool"), Policy::Deny);
    }
}
