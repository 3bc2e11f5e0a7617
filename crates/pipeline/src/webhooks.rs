//! Webhook deliveries: the [`Deliverer`] sends the store's queued deliveries, signed as the
//! Standard Webhooks specification describes, retries failures with exponential backoff and
//! jitter for a day, and records every attempt.
//!
//! - **Signatures.** `webhook-id` is the event's id (`event-<outbox id>`, the same on every
//!   attempt and redelivery: receivers deduplicate by it), `webhook-timestamp` the Unix time of
//!   the attempt, `webhook-signature` `v1,` + base64 of HMAC-SHA256 over
//!   `id.timestamp.body`, keyed with the base64-decoded part of the `whsec_…` secret.
//! - **At least once.** A delivery is claimed with a lease longer than a request may take; a
//!   process killed mid-delivery leaves it to be claimed again when the lease runs out.
//! - **Outbound addresses.** Unless allowed, a receiver on a private, loopback, link-local
//!   (cloud metadata included), shared or otherwise special address is refused: when the
//!   webhook is created ([`check_url`]) and at every delivery, where the client resolves names
//!   through [`GuardedResolver`], which checks each address it would connect to (so a name
//!   that later resolves elsewhere is caught), and follows no redirects.

use base64::Engine as _;
use carrierhub_store::{trace, AttemptOutcome, AttemptResult, DueDelivery, Store};
use chrono::Utc;
use hmac::{Hmac, Mac};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tracing::Instrument;

/// How deliveries are made.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Deliver to private, loopback and link-local addresses too (development and tests).
    pub allow_private: bool,
    /// How long one attempt may take.
    pub timeout: Duration,
    /// The first retry's delay; each further one doubles it, up to `backoff_max`, with jitter.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// How long a delivery is retried before it is given up.
    pub retry_for: Duration,
    /// A webhook whose deliveries fail this long without a success is disabled.
    pub disable_after: Duration,
    /// Deliveries sent at once by one process.
    pub concurrency: usize,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            allow_private: false,
            timeout: Duration::from_secs(10),
            backoff_base: Duration::from_secs(5),
            backoff_max: Duration::from_secs(3600),
            retry_for: Duration::from_secs(24 * 3600),
            disable_after: Duration::from_secs(24 * 3600),
            concurrency: 16,
        }
    }
}

/// A new signing secret: `whsec_` and 32 random bytes in base64.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the OS gives random bytes");
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// The `webhook-signature` value of a message: `v1,<base64 HMAC-SHA256 of id.timestamp.body>`.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Result<String, String> {
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap_or(secret))
        .map_err(|e| format!("the webhook secret is not base64: {e}"))?;
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).expect("HMAC takes any key");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Ok(format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    ))
}

/// Why an address may not receive webhooks; `None` when it may.
pub fn forbidden_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_reason(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return v4_reason(v4);
            }
            let s = v6.segments();
            if v6.is_loopback() {
                Some("a loopback address")
            } else if v6.is_unspecified() {
                Some("the unspecified address")
            } else if s[0] & 0xfe00 == 0xfc00 {
                Some("a private (unique local) address")
            } else if s[0] & 0xffc0 == 0xfe80 || s[0] & 0xffc0 == 0xfec0 {
                Some("a link-local address")
            } else if v6.is_multicast() {
                Some("a multicast address")
            } else if s[0] == 0x64 && s[1] == 0xff9b {
                // NAT64: the IPv4 address inside decides.
                v4_reason(Ipv4Addr::new(
                    (s[6] >> 8) as u8,
                    s[6] as u8,
                    (s[7] >> 8) as u8,
                    s[7] as u8,
                ))
            } else if s[0] == 0 && s[1] == 0 && s[2] == 0 && s[3] == 0 && s[4] == 0 && s[5] == 0 {
                Some("an IPv4-compatible address")
            } else {
                None
            }
        }
    }
}

fn v4_reason(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    if ip == Ipv4Addr::new(169, 254, 169, 254) {
        Some("a cloud metadata address")
    } else if ip.is_loopback() {
        Some("a loopback address")
    } else if ip.is_private() {
        Some("a private address")
    } else if ip.is_link_local() {
        Some("a link-local address")
    } else if o[0] == 0 {
        Some("an unspecified address")
    } else if o[0] == 100 && (64..128).contains(&o[1]) {
        Some("a shared (carrier-grade NAT) address")
    } else if o[0] == 192 && o[1] == 0 && o[2] == 0 {
        Some("an IETF protocol address")
    } else if o[0] == 198 && (o[1] == 18 || o[1] == 19) {
        Some("a benchmarking address")
    } else if ip.is_multicast() || o[0] >= 240 || ip.is_broadcast() {
        Some("a multicast or reserved address")
    } else {
        None
    }
}

/// Why a webhook URL is refused.
#[derive(Debug, thiserror::Error)]
pub enum UrlError {
    #[error("'{0}' is not an absolute http or https URL")]
    Invalid(String),
    #[error("the host of {url} cannot be resolved: {error}")]
    Unresolvable { url: String, error: String },
    #[error(
        "{url} resolves to {ip}, {reason}; webhooks are not delivered to private, loopback, \
         link-local or metadata addresses (serve --webhooks-allow-private allows them)"
    )]
    Forbidden {
        url: String,
        ip: IpAddr,
        reason: &'static str,
    },
}

/// How long resolving a webhook's host may take, when it is created and when a delivery
/// connects: the system resolver has no bound of its own worth relying on.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);

/// Checks a webhook URL: http or https, a host that resolves, and (unless `allow_private`)
/// only to addresses that may receive webhooks. Every address the name resolves to is
/// checked, not the host's text.
pub async fn check_url(url: &str, allow_private: bool) -> Result<reqwest::Url, UrlError> {
    let parsed = reqwest::Url::parse(url).map_err(|_| UrlError::Invalid(url.to_owned()))?;
    if !matches!(parsed.scheme(), "http" | "https")
        || parsed.host().is_none()
        || !parsed.username().is_empty()
        || parsed.password().is_some()
    {
        return Err(UrlError::Invalid(url.to_owned()));
    }
    let port = parsed.port_or_known_default().unwrap_or(443);
    let addrs: Vec<IpAddr> = match parsed.host().expect("checked") {
        url::Host::Ipv4(ip) => vec![IpAddr::V4(ip)],
        url::Host::Ipv6(ip) => vec![IpAddr::V6(ip)],
        url::Host::Domain(name) => {
            tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((name, port)))
                .await
                .map_err(|_| UrlError::Unresolvable {
                    url: url.to_owned(),
                    error: format!("no answer within {} s", RESOLVE_TIMEOUT.as_secs()),
                })?
                .map_err(|e| UrlError::Unresolvable {
                    url: url.to_owned(),
                    error: e.to_string(),
                })?
                .map(|a| a.ip())
                .collect()
        }
    };
    if addrs.is_empty() {
        return Err(UrlError::Unresolvable {
            url: url.to_owned(),
            error: "no address".into(),
        });
    }
    if !allow_private {
        if let Some((ip, reason)) = addrs
            .iter()
            .find_map(|ip| forbidden_reason(*ip).map(|r| (*ip, r)))
        {
            return Err(UrlError::Forbidden {
                url: url.to_owned(),
                ip,
                reason,
            });
        }
    }
    Ok(parsed)
}

/// The delivery client's resolver: the system's, with every address checked. A name with
/// any forbidden address is refused whole (it could be rebound to it).
#[derive(Debug, Clone, Copy)]
pub struct GuardedResolver;

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((host.as_str(), 0)))
                    .await
                    .map_err(|_| {
                        format!("{host}: no answer within {} s", RESOLVE_TIMEOUT.as_secs())
                    })??
                    .collect();
            if let Some((ip, reason)) = addrs
                .iter()
                .find_map(|a| forbidden_reason(a.ip()).map(|r| (a.ip(), r)))
            {
                return Err(format!("{host} resolves to {ip}, {reason}").into());
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The envelope every subscriber receives (the same as on the broker).
pub fn event_body(event: &carrierhub_store::OutboxEvent) -> serde_json::Value {
    serde_json::json!({
        "id": format!("event-{}", event.id),
        "type": event.event_type,
        "carrier": event.carrier,
        "subject_id": event.subject_id,
        "occurred_at": event.created_at,
        "data": event.payload,
    })
}

/// Sends the store's due deliveries.
#[derive(Clone)]
pub struct Deliverer {
    store: Arc<dyn Store>,
    client: reqwest::Client,
    config: WebhookConfig,
    owner: String,
    /// Changes when the relay in this process published events.
    wake: Option<watch::Receiver<u64>>,
}

impl Deliverer {
    pub fn new(
        store: Arc<dyn Store>,
        config: WebhookConfig,
        wake: Option<watch::Receiver<u64>>,
    ) -> Self {
        let mut builder = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("CarrierHub-Webhooks/", env!("CARGO_PKG_VERSION")));
        if !config.allow_private {
            builder = builder.dns_resolver(Arc::new(GuardedResolver));
        }
        Self {
            store,
            client: builder.build().expect("an HTTP client"),
            config,
            owner: format!(
                "webhooks-{}-{}",
                std::process::id(),
                Utc::now().timestamp_micros()
            ),
            wake,
        }
    }

    /// How long a claimed delivery stays this process's: longer than an attempt may take.
    fn lease(&self) -> Duration {
        self.config.timeout + Duration::from_secs(5)
    }

    /// Sends what is due now, a batch at a time; returns how many attempts were made.
    pub async fn deliver_due(&self) -> Result<usize, carrierhub_store::StoreError> {
        let mut total = 0;
        loop {
            let due = self
                .store
                .claim_deliveries(&self.owner, self.config.concurrency.max(1), self.lease())
                .await?;
            if due.is_empty() {
                return Ok(total);
            }
            total += due.len();
            let mut tasks = tokio::task::JoinSet::new();
            for delivery in due {
                let this = self.clone();
                tasks.spawn(async move { this.attempt(delivery).await });
            }
            while let Some(done) = tasks.join_next().await {
                match done {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return Err(e),
                    Err(e) => tracing::error!(error = %e, "a webhook delivery task failed"),
                }
            }
        }
    }

    async fn attempt(&self, delivery: DueDelivery) -> Result<(), carrierhub_store::StoreError> {
        let started = Instant::now();
        // A child of the span that wrote the event: the delivery joins the trace of the
        // upload that caused it, and the receiver gets the context as `traceparent`.
        let span = tracing::info_span!(
            "deliver_webhook",
            otel.kind = "client",
            webhook = delivery.webhook_id,
            delivery = delivery.id,
            event = delivery.event.id,
            attempt = delivery.attempts + 1,
        );
        trace::set_parent(&span, delivery.event.traceparent.as_deref());
        let traceparent = trace::forward(&span, delivery.event.traceparent.as_deref());
        let (status_code, error) = self
            .send(&delivery, traceparent.as_deref())
            .instrument(span)
            .await;
        let elapsed = started.elapsed();
        let delivered = error.is_none();
        let outcome = if delivered {
            AttemptOutcome::Delivered
        } else {
            let age = (Utc::now() - delivery.created_at)
                .to_std()
                .unwrap_or_default();
            if age >= self.config.retry_for {
                AttemptOutcome::GiveUp
            } else {
                let delay = carrierhub_broker::backoff(
                    delivery.attempts + 1,
                    self.config.backoff_base,
                    self.config.backoff_max,
                );
                AttemptOutcome::RetryAt(
                    Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default(),
                )
            }
        };
        let label = match outcome {
            AttemptOutcome::Delivered => "delivered",
            AttemptOutcome::RetryAt(_) => "retry",
            AttemptOutcome::GiveUp => "failed",
        };
        metrics::counter!("carrierhub_webhook_deliveries_total", "outcome" => label).increment(1);
        metrics::histogram!("carrierhub_webhook_delivery_seconds", "outcome" => label)
            .record(elapsed.as_secs_f64());
        if let Some(error) = &error {
            tracing::info!(
                webhook = delivery.webhook_id,
                delivery = delivery.id,
                event = delivery.event.id,
                attempt = delivery.attempts + 1,
                %error,
                outcome = label,
                "webhook delivery failed"
            );
        }
        self.store
            .record_delivery_attempt(&AttemptResult {
                delivery_id: delivery.id,
                owner: self.owner.clone(),
                status_code,
                error,
                duration_ms: elapsed.as_millis() as u64,
                outcome,
                disable_after: self.config.disable_after,
            })
            .await
    }

    /// One attempt: the receiver's status, and the error when it is not a success.
    async fn send(
        &self,
        delivery: &DueDelivery,
        traceparent: Option<&str>,
    ) -> (Option<u16>, Option<String>) {
        let url = match reqwest::Url::parse(&delivery.url) {
            Ok(url) => url,
            Err(e) => return (None, Some(format!("invalid URL: {e}"))),
        };
        // Names are checked by the resolver; an address in the URL is checked here.
        if !self.config.allow_private {
            let ip = match url.host() {
                Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
                Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
                _ => None,
            };
            if let Some((ip, reason)) = ip.and_then(|ip| forbidden_reason(ip).map(|r| (ip, r))) {
                return (None, Some(format!("refused: {ip} is {reason}")));
            }
        }
        let id = format!("event-{}", delivery.event.id);
        let body = event_body(&delivery.event).to_string();
        let timestamp = Utc::now().timestamp();
        let signature = match sign(&delivery.secret, &id, timestamp, body.as_bytes()) {
            Ok(s) => s,
            Err(e) => return (None, Some(e)),
        };
        let mut request = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature);
        if let Some(traceparent) = traceparent {
            request = request.header(trace::TRACEPARENT, traceparent);
        }
        let response = request.body(body).send().await;
        match response {
            Ok(r) if r.status().is_success() => (Some(r.status().as_u16()), None),
            Ok(r) => (
                Some(r.status().as_u16()),
                Some(format!("the receiver answered {}", r.status())),
            ),
            Err(e) => (None, Some(error_chain(&e))),
        }
    }

    /// Delivers as deliveries fall due; never returns.
    pub async fn run(self) {
        self.run_until(tokio_util::sync::CancellationToken::new())
            .await
    }

    /// As [`Deliverer::run`], until `stop` is cancelled: the deliveries under way finish
    /// (and are logged), then it returns.
    pub async fn run_until(mut self, stop: tokio_util::sync::CancellationToken) {
        let mut failures = 0u32;
        while !stop.is_cancelled() {
            match self.deliver_due().await {
                Ok(_) => failures = 0,
                Err(e) => {
                    failures += 1;
                    let delay = carrierhub_broker::backoff(
                        failures,
                        Duration::from_millis(200),
                        Duration::from_secs(30),
                    );
                    tracing::warn!(error = %e, retry_in = ?delay, "cannot deliver webhooks");
                    let _ = tokio::time::timeout(delay, stop.cancelled()).await;
                    continue;
                }
            }
            // Retries fall due by the clock, so look again within a short while.
            let pause = Duration::from_millis(500);
            let wait = async {
                match &mut self.wake {
                    Some(wake) => {
                        let _ = tokio::time::timeout(pause, wake.changed()).await;
                    }
                    None => tokio::time::sleep(pause).await,
                }
            };
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = wait => {}
            }
        }
        tracing::info!("webhook deliveries stopped");
    }
}

/// An error with its causes (reqwest's own message says little: "error sending request").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_addresses_are_forbidden_and_public_ones_allowed() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "169.254.1.1",
            "0.0.0.0",
            "100.64.0.1",
            "224.0.0.1",
            "::1",
            "::",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert!(
                forbidden_reason(ip.parse().unwrap()).is_some(),
                "{ip} is allowed"
            );
        }
        for ip in ["93.184.216.34", "8.8.8.8", "2606:4700::1111"] {
            assert_eq!(forbidden_reason(ip.parse().unwrap()), None, "{ip}");
        }
    }

    #[test]
    fn signatures_follow_the_standard_webhooks_example() {
        // The example of the specification's reference libraries.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body).unwrap(),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        assert!(new_secret().starts_with("whsec_"));
        assert_ne!(new_secret(), new_secret());
    }
}
