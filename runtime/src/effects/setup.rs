//! [`SetupError`]: why the model providers and tools a configuration names
//! cannot be set up when a host starts.
//!
//! Invariant: these errors are made before any request is performed, from
//! configuration alone; none carries a key or a token (a provider's key is
//! read per request, and its failures are [`ProviderText`](super::ProviderText)).

/// Why the effects a configuration names cannot be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    /// A model alias that cannot be set up.
    #[error("model alias {alias:?}: {source}")]
    ModelAlias {
        /// The alias.
        alias: String,
        /// Why.
        #[source]
        source: Box<SetupError>,
    },
    /// A tenant's models that cannot be set up.
    #[error("tenant {tenant:?}: {source}")]
    Tenant {
        /// The tenant.
        tenant: String,
        /// Why.
        #[source]
        source: Box<SetupError>,
    },
    /// A provider alias without the provider's model name.
    #[error("`model` (the provider's model name) is required")]
    NoModelName,
    /// A provider this build does not know.
    #[error("unknown provider {provider:?} (known: echo, openai, anthropic)")]
    UnknownProvider {
        /// The provider as configured.
        provider: String,
    },
    /// A model provider's HTTP client cannot be built.
    #[error("cannot build an HTTP client: {0}")]
    HttpClient(#[source] reqwest::Error),
    /// The `http.fetch` tool's HTTP client cannot be built.
    #[error("http.fetch: cannot build an HTTP client: {0}")]
    HttpFetchClient(#[source] reqwest::Error),
    /// An MCP server that cannot be started, reached or listed.
    #[error("MCP server {server:?}: {why}")]
    Mcp {
        /// The server's name in the configuration.
        server: String,
        /// What failed, as its client said.
        why: String,
    },
}
