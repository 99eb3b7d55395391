//! Bearer tokens to tenants.
//!
//! Invariants: tokens come from environment variables named in the config and
//! are kept only as SHA-256 digests, so they never reach a log, an error or a
//! trace; a request without a known token is refused before it touches any
//! session; with no tokens configured every request is the default tenant and
//! the server refuses to listen beyond loopback.

use std::collections::HashMap;

use axum::http::{HeaderMap, StatusCode, header};
use sha2::{Digest, Sha256};

use super::error::ApiError;
use crate::config::Config;
use crate::journal::DEFAULT_TENANT;

/// Why the server refuses to start: its tokens or where it listens.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// A tenant's token variable is unset or empty.
    #[error("tenant {tenant:?}: environment variable {var} (a bearer token) is not set")]
    TokenUnset {
        /// The tenant.
        tenant: String,
        /// The variable its config names.
        var: String,
    },
    /// An address beyond loopback with no tokens configured.
    #[error(
        "refusing to listen on {addr} with no bearer tokens configured: anyone could reach every session. Configure [tenants.NAME] token_envs, or listen on 127.0.0.1"
    )]
    Exposed {
        /// The address.
        addr: std::net::SocketAddr,
    },
}

/// Who may call, as which tenant.
#[derive(Clone, Debug)]
pub struct Tenants {
    by_digest: HashMap<[u8; 32], String>,
}

impl Tenants {
    /// Read every tenant's tokens from the environment variables its config
    /// names. A named variable that is unset or empty is an error.
    pub fn from_config(config: &Config) -> Result<Tenants, ServeError> {
        let mut by_digest = HashMap::new();
        for (tenant, settings) in &config.tenants {
            for var in &settings.token_envs {
                let token = std::env::var(var).unwrap_or_default();
                if token.is_empty() {
                    return Err(ServeError::TokenUnset {
                        tenant: tenant.clone(),
                        var: var.clone(),
                    });
                }
                by_digest.insert(digest(&token), tenant.clone());
            }
        }
        Ok(Tenants { by_digest })
    }

    /// Whether any token is configured.
    pub fn enabled(&self) -> bool {
        !self.by_digest.is_empty()
    }

    /// The tenant of a request.
    pub fn tenant(&self, headers: &HeaderMap) -> Result<String, ApiError> {
        if !self.enabled() {
            return Ok(DEFAULT_TENANT.to_string());
        }
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        let Some(token) = token else {
            return Err(unauthorized("a bearer token is required"));
        };
        self.by_digest
            .get(&digest(token))
            .cloned()
            .ok_or_else(|| unauthorized("unknown token"))
    }
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}
