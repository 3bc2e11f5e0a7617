//! OIDC bearer tokens against a real key server: an HTTP server on a loopback port publishes
//! the public halves of the test keys in `fixtures/` as a JWKS and counts its fetches.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use carrierhub_api::oidc::{OidcConfig, OidcVerifier, TokenError};
use carrierhub_api::{AuthMethod, Caller};
use carrierhub_store::{Role, Scope};
use jsonwebtoken::jwk::{Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, EncodingKey, Header};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const ISSUER: &str = "https://sso.example.test/realms/carrierhub";
const AUDIENCE: &str = "carrierhub-api";

const KEY_A: &[u8] = include_bytes!("../fixtures/test-only-rsa-a.pem");
const KEY_A_PUBLIC: &[u8] = include_bytes!("../fixtures/test-only-rsa-a.pub.pem");
const KEY_B: &[u8] = include_bytes!("../fixtures/test-only-rsa-b.pem");
/// Never published: an attacker's key.
const KEY_C: &[u8] = include_bytes!("../fixtures/test-only-rsa-c.pem");
const KEY_EC: &[u8] = include_bytes!("../fixtures/test-only-ec-p256.pem");

fn encoding_key(pem: &[u8], alg: Algorithm) -> EncodingKey {
    match alg.family() {
        AlgorithmFamily::Ec => EncodingKey::from_ec_pem(pem).unwrap(),
        _ => EncodingKey::from_rsa_pem(pem).unwrap(),
    }
}

/// The public JWK of a test key.
fn jwk(pem: &[u8], kid: &str, alg: Algorithm) -> Value {
    let mut jwk = Jwk::from_encoding_key(&encoding_key(pem, alg), alg).unwrap();
    jwk.common.key_id = Some(kid.into());
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    serde_json::to_value(jwk).unwrap()
}

fn sign(pem: &[u8], alg: Algorithm, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(Into::into);
    jsonwebtoken::encode(&header, claims, &encoding_key(pem, alg)).unwrap()
}

fn rs256(pem: &[u8], kid: &str, claims: &Value) -> String {
    sign(pem, Algorithm::RS256, Some(kid), claims)
}

fn now() -> i64 {
    jsonwebtoken::get_current_timestamp() as i64
}

/// A valid token's claims for `user-1`, with `changes` applied (a `null` removes a claim).
fn claims(changes: Value) -> Value {
    let mut claims = json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "user-1",
        "iat": now(),
        "exp": now() + 300,
        "carrierhub_role": "analyst",
    });
    for (name, value) in changes.as_object().unwrap() {
        if value.is_null() {
            claims.as_object_mut().unwrap().remove(name);
        } else {
            claims[name] = value.clone();
        }
    }
    claims
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn invalid(reason: &str) -> Result<Caller, TokenError> {
    Err(TokenError::Invalid(reason.into()))
}

/// The identity provider's key server.
struct Idp {
    url: String,
    state: Arc<IdpState>,
}

#[derive(Default)]
struct IdpState {
    keys: Mutex<Vec<Value>>,
    fetches: AtomicUsize,
    /// Answers 503 while set.
    down: AtomicBool,
}

async fn serve_jwks(State(state): State<Arc<IdpState>>) -> Response {
    state.fetches.fetch_add(1, Ordering::SeqCst);
    if state.down.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let keys = state.keys.lock().unwrap().clone();
    Json(json!({ "keys": keys })).into_response()
}

impl Idp {
    async fn start(keys: Vec<Value>) -> Idp {
        let state = Arc::new(IdpState::default());
        *state.keys.lock().unwrap() = keys;
        let app = Router::new()
            .route("/jwks", get(serve_jwks))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Idp {
            url: format!("http://{addr}/jwks"),
            state,
        }
    }

    fn publish(&self, keys: Vec<Value>) {
        *self.state.keys.lock().unwrap() = keys;
    }

    fn fetches(&self) -> usize {
        self.state.fetches.load(Ordering::SeqCst)
    }

    fn config(&self) -> OidcConfig {
        OidcConfig::new(ISSUER, AUDIENCE, &self.url)
    }

    fn verifier(&self) -> OidcVerifier {
        OidcVerifier::new(self.config()).unwrap()
    }
}

async fn idp_with_key_a() -> Idp {
    Idp::start(vec![jwk(KEY_A, "a", Algorithm::RS256)]).await
}

#[tokio::test]
async fn a_valid_token_becomes_its_caller() {
    let idp = idp_with_key_a().await;
    let mut config = idp.config();
    config.role_claim = "realm_access.roles".into();
    config.roles = BTreeMap::from([
        ("carrierhub-operators".to_owned(), Role::Operator),
        ("carrierhub-readers".to_owned(), Role::Analyst),
    ]);
    let verifier = OidcVerifier::new(config).unwrap();
    let token = rs256(
        KEY_A,
        "a",
        &claims(json!({
            "aud": ["account", AUDIENCE],
            "carrierhub_role": null,
            "realm_access": {"roles": ["offline_access", "carrierhub-readers", "carrierhub-operators"]},
            "carrierhub_carriers": ["acme", "zenith"],
            "carrierhub_books": "AB12",
        })),
    );
    let caller = verifier.authenticate(&token).await.unwrap();
    assert_eq!(
        caller,
        Caller {
            subject: "user-1".into(),
            role: Role::Operator,
            scope: Scope::carriers(["acme", "zenith"]).with_books(["AB12"]),
            method: AuthMethod::Oidc,
            rate_limits: BTreeMap::new(),
        }
    );
    // The keys are kept: a second token, from a clone, fetches nothing.
    let unrestricted = rs256(
        KEY_A,
        "a",
        &claims(json!({"sub": "user-2", "realm_access": {"roles": ["carrierhub-readers"]}})),
    );
    let caller = verifier.clone().authenticate(&unrestricted).await.unwrap();
    assert_eq!(
        (caller.subject.as_str(), caller.role, caller.scope),
        ("user-2", Role::Analyst, Scope::all())
    );
    assert_eq!(idp.fetches(), 1);
}

#[tokio::test]
async fn the_most_privileged_role_wins_and_roles_may_default() {
    let idp = idp_with_key_a().await;
    let verifier = idp.verifier();
    let role = |value: Value| {
        let verifier = verifier.clone();
        async move {
            let token = rs256(KEY_A, "a", &claims(json!({ "carrierhub_role": value })));
            verifier.authenticate(&token).await.map(|c| c.role)
        }
    };
    // Without a mapping the values are role names; the ones that are not are ignored.
    assert_eq!(
        role(json!(["analyst", "root", "admin", "carrier"])).await,
        Ok(Role::Admin)
    );
    assert_eq!(role(json!("Operator")).await, Ok(Role::Operator));
    assert_eq!(
        role(json!(null)).await,
        Err(TokenError::Invalid(
            "token carries no CarrierHub role (claim carrierhub_role)".into()
        ))
    );
    assert_eq!(
        role(json!(["root"])).await,
        Err(TokenError::Invalid(
            "token carries no CarrierHub role (claim carrierhub_role)".into()
        ))
    );
    assert_eq!(
        role(json!({"admin": true})).await,
        Err(TokenError::Invalid(
            "claim carrierhub_role is not a string or a list of strings".into()
        ))
    );

    // A default role, and a claim whose name has dots (as some providers require).
    let mut config = idp.config();
    config.role_claim = "https://carrierhub.example/role".into();
    config.default_role = Some(Role::Analyst);
    let verifier = OidcVerifier::new(config).unwrap();
    let token = rs256(
        KEY_A,
        "a",
        &claims(json!({"https://carrierhub.example/role": "operator"})),
    );
    assert_eq!(
        verifier.authenticate(&token).await.map(|c| c.role),
        Ok(Role::Operator)
    );
    let token = rs256(KEY_A, "a", &claims(json!({})));
    assert_eq!(
        verifier.authenticate(&token).await.map(|c| c.role),
        Ok(Role::Analyst)
    );
}

#[tokio::test]
async fn role_carrier_must_be_pinned_to_its_carriers() {
    let idp = idp_with_key_a().await;
    let verifier = idp.verifier();
    let refused = "role carrier needs the carriers it may see (claim carrierhub_carriers)";
    for carriers in [json!(null), json!([])] {
        let token = rs256(
            KEY_A,
            "a",
            &claims(json!({"carrierhub_role": "carrier", "carrierhub_carriers": carriers})),
        );
        assert_eq!(verifier.authenticate(&token).await, invalid(refused));
    }
    let token = rs256(
        KEY_A,
        "a",
        &claims(json!({"carrierhub_role": "carrier", "carrierhub_carriers": "acme"})),
    );
    let caller = verifier.authenticate(&token).await.unwrap();
    assert_eq!(
        (caller.role, caller.scope),
        (Role::Carrier, Scope::carriers(["acme"]))
    );
    let token = rs256(KEY_A, "a", &claims(json!({"carrierhub_carriers": 7})));
    assert_eq!(
        verifier.authenticate(&token).await,
        invalid("claim carrierhub_carriers is not a string or a list of strings")
    );
}

#[tokio::test]
async fn expired_tokens_are_refused() {
    let idp = idp_with_key_a().await;
    let verifier = idp.verifier();
    let token = rs256(KEY_A, "a", &claims(json!({"exp": now() - 120})));
    assert_eq!(
        verifier.authenticate(&token).await,
        invalid("token expired")
    );
    let token = rs256(KEY_A, "a", &claims(json!({"exp": null})));
    assert_eq!(
        verifier.authenticate(&token).await,
        invalid("token lacks the claim exp")
    );
}

#[tokio::test]
async fn tokens_not_yet_valid_are_refused() {
    let idp = idp_with_key_a().await;
    let verifier = idp.verifier();
    let token = rs256(KEY_A, "a", &claims(json!({"nbf": now() + 120})));
    assert_eq!(
        verifier.authenticate(&token).await,
        invalid("token not yet valid")
    );
    let token = rs256(KEY_A, "a", &claims(json!({"iat": now() + 120})));
    assert_eq!(
        verifier.authenticate(&token).await,
        invalid("token issued in the future")
    );
}

#[tokio::test]
async fn the_leeway_tolerates_clock_skew() {
    let idp = idp_with_key_a().await;
    let verifier = idp.verifier();
    let skewed = claims(json!({"exp": now() - 30, "nbf": now() + 30, "iat": now() + 30}));
    let token = rs256(KEY_A, "a", &skewed);
    assert!(verifier.authenticate(&token).await.is_ok());
    // Without leeway the same token is refused.
    let mut config = idp.config();
    config.leeway_secs = 0;
    let strict = OidcVerifier::new(config).unwrap();
    assert_eq!(strict.authenticate(&token).await, invalid("token expired"));
}

#[tokio::test]
async fn a_token_signed_by_another_key_under_a_known_kid_is_refused() {
    let idp = idp_with_key_a().await;
    let verifier = idp.verifier();
    let forged = rs256(KEY_C, "a", &claims(json!({"carrierhub_role": "admin"})));
    assert_eq!(
        verifier.authenticate(&forged).await,
        invalid("token signature is invalid")
    );
    // The kid is known: no refetch.
    assert_eq!(idp.fetches(), 1);
}

#[tokio::test]
async fn unsigned_tokens_are_refused() {
    let idp = idp_with_key_a().await;
    let verifier = idp.verifier();
    let body = b64(claims(json!({"carrierhub_role": "admin"}))
        .to_string()
        .as_bytes());
    for alg in ["none", "None", "NONE"] {
        let header = b64(json!({"alg": alg, "kid": "a", "typ": "JWT"})
            .to_string()
            .as_bytes());
        let token = format!("{header}.{body}.");
        assert_eq!(
            verifier.authenticate(&token).await,
            invalid("algorithm none is not accepted")
        );
    }
    assert_eq!(idp.fetches(), 0);
}

#[tokio::test]
async fn hmac_signed_with_the_public_key_is_refused() {
    let idp = idp_with_key_a().await;
    let verifier = idp.verifier();
    // Algorithm confusion: HS256 "signed" with the published RSA key as the shared secret.
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("a".into());
    let claims = claims(json!({"carrierhub_role": "admin"}));
    for secret in [
        KEY_A_PUBLIC.to_vec(),
        jwk(KEY_A, "a", Algorithm::RS256)["n"]
            .to_string()
            .into_bytes(),
    ] {
        let token =
            jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(&secret)).unwrap();
        assert_eq!(
            verifier.authenticate(&token).await,
            invalid("algorithm HS256 is not accepted")
        );
    }
    assert_eq!(idp.fetches(), 0);
}

#[tokio::test]
async fn a_rotated_key_is_fetched_once() {
    let idp = idp_with_key_a().await;
    let verifier = idp.verifier();
    let token = rs256(KEY_A, "a", &claims(json!({})));
    assert!(verifier.authenticate(&token).await.is_ok());
    assert_eq!(idp.fetches(), 1);

    idp.publish(vec![
        jwk(KEY_A, "a", Algorithm::RS256),
        jwk(KEY_B, "b", Algorithm::RS256),
    ]);
    let token = rs256(KEY_B, "b", &claims(json!({"sub": "rotated"})));
    let caller = verifier.authenticate(&token).await.unwrap();
    assert_eq!(caller.subject, "rotated");
    assert_eq!(idp.fetches(), 2);
    // Now known: no more fetches, for either key.
    assert!(verifier.authenticate(&token).await.is_ok());
    let token = rs256(KEY_A, "a", &claims(json!({})));
    assert!(verifier.authenticate(&token).await.is_ok());
    assert_eq!(idp.fetches(), 2);
}

#[tokio::test]
async fn concurrent_requests_share_one_refetch() {
    let idp = idp_with_key_a().await;
    let verifier = idp.verifier();
    let token = rs256(KEY_A, "a", &claims(json!({})));
    assert!(verifier.authenticate(&token).await.is_ok());
    idp.publish(vec![
        jwk(KEY_A, "a", Algorithm::RS256),
        jwk(KEY_B, "b", Algorithm::RS256),
    ]);
    let token = rs256(KEY_B, "b", &claims(json!({})));
    let requests: Vec<_> = (0..16)
        .map(|_| {
            let verifier = verifier.clone();
            let token = token.clone();
            tokio::spawn(async move { verifier.authenticate(&token).await })
        })
        .collect();
    for request in requests {
        assert!(request.await.unwrap().is_ok());
    }
    assert_eq!(idp.fetches(), 2);
}

#[tokio::test]
async fn unknown_kids_refetch_at_most_once_per_interval() {
    let idp = idp_with_key_a().await;
    let mut config = idp.config();
    config.min_refetch_secs = 2;
    let verifier = OidcVerifier::new(config).unwrap();
    let ghost = rs256(KEY_C, "ghost", &claims(json!({})));
    assert_eq!(
        verifier.authenticate(&ghost).await,
        invalid("token signed with an unknown key")
    );
    // The first fetch, and one refetch for the unknown kid.
    assert_eq!(idp.fetches(), 2);
    // Another made-up kid right after: refused without asking the provider.
    let ghost = rs256(KEY_C, "ghost-2", &claims(json!({})));
    assert_eq!(
        verifier.authenticate(&ghost).await,
        invalid("token signed with an unknown key")
    );
    assert_eq!(idp.fetches(), 2);
    // Once the interval has passed, an unknown kid is looked up again: a rotation is found.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    idp.publish(vec![jwk(KEY_B, "b", Algorithm::RS256)]);
    let token = rs256(KEY_B, "b", &claims(json!({})));
    assert!(verifier.authenticate(&token).await.is_ok());
    assert_eq!(idp.fetches(), 3);
}

#[tokio::test]
async fn without_a_refetch_interval_each_unknown_kid_refetches_once() {
    let idp = idp_with_key_a().await;
    let mut config = idp.config();
    config.min_refetch_secs = 0;
    let verifier = OidcVerifier::new(config).unwrap();
    for (kid, fetches) in [("ghost", 2), ("ghost-2", 3)] {
        let ghost = rs256(KEY_C, kid, &claims(json!({})));
        let answer = tokio::time::timeout(Duration::from_secs(10), verifier.authenticate(&ghost))
            .await
            .expect("an unknown kid is looked up once, not over and over");
        assert_eq!(answer, invalid("token signed with an unknown key"));
        assert_eq!(idp.fetches(), fetches);
    }
}

#[tokio::test]
async fn tokens_for_another_issuer_or_audience_are_refused() {
    let idp = idp_with_key_a().await;
    let verifier = idp.verifier();
    let cases = [
        (
            json!({"iss": "https://evil.example.test"}),
            "token issued by another issuer",
        ),
        (json!({"iss": null}), "token lacks the claim iss"),
        (
            json!({"aud": "another-api"}),
            "token intended for another audience",
        ),
        (
            json!({"aud": ["another-api", "account"]}),
            "token intended for another audience",
        ),
        (json!({"aud": null}), "token lacks the claim aud"),
        (json!({"sub": null}), "token has no subject (claim sub)"),
    ];
    for (changes, reason) in cases {
        let token = rs256(KEY_A, "a", &claims(changes.clone()));
        assert_eq!(
            verifier.authenticate(&token).await,
            invalid(reason),
            "{changes}"
        );
    }
}

#[tokio::test]
async fn tokens_without_kid_need_a_single_fitting_key() {
    let idp = idp_with_key_a().await;
    let verifier = idp.verifier();
    let token = sign(KEY_A, Algorithm::RS256, None, &claims(json!({})));
    assert!(verifier.authenticate(&token).await.is_ok());

    let idp = Idp::start(vec![
        jwk(KEY_A, "a", Algorithm::RS256),
        jwk(KEY_B, "b", Algorithm::RS256),
    ])
    .await;
    let verifier = idp.verifier();
    assert_eq!(
        verifier.authenticate(&token).await,
        invalid("the token names no key (kid), and the identity provider has several")
    );
}

#[tokio::test]
async fn elliptic_curve_keys_verify_and_keys_are_bound_to_their_algorithm() {
    let idp = Idp::start(vec![
        jwk(KEY_EC, "ec", Algorithm::ES256),
        jwk(KEY_A, "a", Algorithm::RS256),
    ])
    .await;
    let verifier = idp.verifier();
    let token = sign(KEY_EC, Algorithm::ES256, Some("ec"), &claims(json!({})));
    assert_eq!(
        verifier.authenticate(&token).await.map(|c| c.subject),
        Ok("user-1".into())
    );
    // An RSA signature claiming the EC key, and PS256 with a key published for RS256.
    let token = rs256(KEY_A, "ec", &claims(json!({})));
    assert_eq!(
        verifier.authenticate(&token).await,
        invalid("the token's algorithm does not match its key")
    );
    let token = sign(KEY_A, Algorithm::PS256, Some("a"), &claims(json!({})));
    assert_eq!(
        verifier.authenticate(&token).await,
        invalid("the token's algorithm does not match its key")
    );
}

#[tokio::test]
async fn malformed_tokens_are_refused() {
    let idp = idp_with_key_a().await;
    let verifier = idp.verifier();
    let cases = [
        ("", "token is not a JWT (three dot-separated parts)"),
        ("abc", "token is not a JWT (three dot-separated parts)"),
        ("a.b.c.d", "token is not a JWT (three dot-separated parts)"),
        ("!!.b.c", "token header is malformed"),
    ];
    for (token, reason) in cases {
        assert_eq!(
            verifier.authenticate(token).await,
            invalid(reason),
            "{token}"
        );
    }
    let header = b64(br#"{"alg":"XS999","kid":"a"}"#);
    assert_eq!(
        verifier.authenticate(&format!("{header}.e30.sig")).await,
        invalid("the token's algorithm is not supported")
    );
    let valid = rs256(KEY_A, "a", &claims(json!({})));
    let (head, _) = valid.rsplit_once('.').unwrap();
    assert_eq!(
        verifier.authenticate(&format!("{head}.AAAA")).await,
        invalid("token signature is invalid")
    );
    let huge = rs256(KEY_A, "a", &claims(json!({"padding": "x".repeat(20_000)})));
    assert_eq!(
        verifier.authenticate(&huge).await,
        invalid("token too large")
    );
}

#[tokio::test]
async fn an_unreachable_identity_provider_is_a_server_side_error() {
    // Nothing listens on a port just released.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let verifier = OidcVerifier::new(OidcConfig::new(
        ISSUER,
        AUDIENCE,
        format!("http://{addr}/jwks"),
    ))
    .unwrap();
    let token = rs256(KEY_A, "a", &claims(json!({})));
    let error = verifier.authenticate(&token).await.unwrap_err();
    assert_eq!(error, TokenError::KeysUnavailable);
    assert_eq!(
        error.to_string(),
        "the identity provider's keys could not be fetched"
    );

    // A provider that answers 503: refused without asking it again until min_refetch_secs
    // have passed, then it is asked again and has recovered.
    let idp = idp_with_key_a().await;
    idp.state.down.store(true, Ordering::SeqCst);
    let mut config = idp.config();
    config.min_refetch_secs = 1;
    let verifier = OidcVerifier::new(config).unwrap();
    assert_eq!(
        verifier.authenticate(&token).await,
        Err(TokenError::KeysUnavailable)
    );
    assert_eq!(
        verifier.authenticate(&token).await,
        Err(TokenError::KeysUnavailable)
    );
    assert_eq!(idp.fetches(), 1);
    idp.state.down.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(verifier.authenticate(&token).await.is_ok());
    assert_eq!(idp.fetches(), 2);
}

#[tokio::test]
async fn an_unreachable_provider_during_a_refetch_is_a_server_side_error_too() {
    let idp = idp_with_key_a().await;
    let verifier = idp.verifier();
    let token = rs256(KEY_A, "a", &claims(json!({})));
    assert!(verifier.authenticate(&token).await.is_ok());
    idp.state.down.store(true, Ordering::SeqCst);
    // A new kid could not be checked: 503, not 401.
    let rotated = rs256(KEY_B, "b", &claims(json!({})));
    assert_eq!(
        verifier.authenticate(&rotated).await,
        Err(TokenError::KeysUnavailable)
    );
    // Tokens signed with the keys already fetched still pass.
    assert!(verifier.authenticate(&token).await.is_ok());
    assert_eq!(idp.fetches(), 2);
}

#[test]
fn the_configuration_has_defaults_and_refuses_what_cannot_be_safe() {
    let config: OidcConfig = serde_json::from_value(json!({
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "jwks_url": "https://sso.example.test/realms/carrierhub/protocol/openid-connect/certs",
    }))
    .unwrap();
    assert_eq!(
        config,
        OidcConfig::new(
            ISSUER,
            AUDIENCE,
            "https://sso.example.test/realms/carrierhub/protocol/openid-connect/certs"
        )
    );
    assert_eq!(
        (
            config.leeway_secs,
            config.jwks_refresh_secs,
            config.min_refetch_secs
        ),
        (60, 3600, 30)
    );
    assert_eq!(
        config.algorithms,
        ["RS256", "RS384", "RS512", "PS256", "ES256", "ES384"]
    );
    assert_eq!(
        (
            config.subject_claim.as_str(),
            config.role_claim.as_str(),
            config.carriers_claim.as_str(),
            config.books_claim.as_str()
        ),
        (
            "sub",
            "carrierhub_role",
            "carrierhub_carriers",
            "carrierhub_books"
        )
    );
    assert!(config.roles.is_empty() && config.default_role.is_none());
    assert!(OidcVerifier::new(config.clone()).is_ok());

    let typo = serde_json::from_value::<OidcConfig>(json!({
        "issuer": ISSUER, "audience": AUDIENCE, "jwks_url": "https://x.test/jwks", "leway_secs": 5,
    }));
    assert!(typo
        .unwrap_err()
        .to_string()
        .contains("unknown field `leway_secs`"));
    let mapped: OidcConfig = serde_json::from_value(json!({
        "issuer": ISSUER, "audience": AUDIENCE, "jwks_url": "https://x.test/jwks",
        "roles": {"ops": "operator"}, "default_role": "analyst",
    }))
    .unwrap();
    assert_eq!(mapped.roles["ops"], Role::Operator);

    let refused = |change: &dyn Fn(&mut OidcConfig)| {
        let mut config = config.clone();
        change(&mut config);
        OidcVerifier::new(config).unwrap_err().to_string()
    };
    assert!(
        refused(&|c| c.algorithms = vec!["RS256".into(), "none".into()])
            .contains("algorithm none is never accepted")
    );
    assert!(refused(&|c| c.algorithms = vec!["HS256".into()])
        .contains("algorithm HS256 is never accepted"));
    assert!(refused(&|c| c.algorithms = vec!["RS257".into()]).contains("unknown algorithm"));
    assert!(refused(&|c| c.algorithms = vec![]).contains("at least one algorithm"));
    assert!(
        refused(&|c| c.jwks_url = "http://sso.example.test/jwks".into()).contains("must be https")
    );
    assert!(refused(&|c| c.jwks_url = "not a url".into()).contains("is not a URL"));
    assert!(refused(&|c| c.audience = " ".into()).contains("audience must not be empty"));
    assert!(refused(&|c| c.jwks_refresh_secs = 0).contains("jwks_refresh_secs"));
    // Plain http on this machine is fine (a provider beside the API, and these tests).
    for url in [
        "http://127.0.0.1:8080/jwks",
        "http://localhost/jwks",
        "http://[::1]/jwks",
    ] {
        let mut local = config.clone();
        local.jwks_url = url.into();
        assert!(OidcVerifier::new(local).is_ok(), "{url}");
    }
}
