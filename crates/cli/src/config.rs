//! The settings file (`--config FILE`, TOML): authentication, rate limits. Flags and
//! environment variables given to `serve` override what it says.
//!
//! ```toml
//! [auth]
//! api_keys = true          # accept keys made with `carrierhub keys create`
//! key_cache_secs = 5       # a revoked key stops working within this time
//!
//! [auth.oidc]              # accept bearer tokens of an identity provider
//! issuer = "https://id.example.com/realms/hub"
//! audience = "carrierhub"
//! jwks_url = "https://id.example.com/realms/hub/protocol/openid-connect/certs"
//!
//! [rate_limits]
//! redis_url = "redis://127.0.0.1:6379"   # shared by every API replica
//! [rate_limits.analyst]
//! reads = "600/60s"
//! ```

use anyhow::Context;
use carrierhub_api::oidc::OidcConfig;
use carrierhub_api::RateLimitConfig;
use serde::Deserialize;
use std::path::Path;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub auth: AuthSettings,
    pub rate_limits: RateLimitConfig,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    /// Accept API keys (`Authorization: Bearer chk_…` or `X-Api-Key`).
    pub api_keys: bool,
    /// How long a key read from the store is trusted before it is read again, in seconds:
    /// the longest a revoked key keeps working.
    pub key_cache_secs: u64,
    /// Accept OIDC bearer tokens of this identity provider.
    pub oidc: Option<OidcConfig>,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            api_keys: false,
            key_cache_secs: 5,
            oidc: None,
        }
    }
}

impl Config {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the settings file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("settings file {}", path.display()))
    }
}
