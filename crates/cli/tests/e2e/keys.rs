//! `carrierhub keys`: API keys created, listed and revoked through the binary, on SQLite and
//! on PostgreSQL (a fresh database; without a server that half skips with a notice, except
//! under `CI=true`, where it fails). What the commands printed is checked against the store.

use crate::common;

use carrierhub_store::testing::TestDatabase;
use carrierhub_store::{open_store, verify_token, AuditFilter, Role};
use common::Env;
use std::process::Output;

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs `args`, which must succeed; returns stdout.
fn ok(env: &Env, args: &[&str]) -> String {
    let out = env.run(args);
    assert!(
        out.status.success(),
        "{args:?} failed:\n{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

/// Runs `args`, which must fail; returns stderr.
fn fails(env: &Env, args: &[&str]) -> String {
    let out = env.run(args);
    assert!(
        !out.status.success(),
        "{args:?} succeeded:\n{}",
        stdout(&out)
    );
    stderr(&out)
}

fn line_of<'a>(text: &'a str, id: &str) -> &'a str {
    text.lines()
        .find(|l| l.starts_with(id))
        .unwrap_or_else(|| panic!("no line for {id} in:\n{text}"))
}

/// The whole life of two keys, with the store at `locator` (what the binary uses).
fn keys_are_created_listed_and_revoked(env: &Env, locator: &str) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    assert!(ok(env, &["keys", "list"]).contains("no API keys"));

    // A carrier's key, printed once with a warning.
    let out = ok(
        env,
        &[
            "keys",
            "create",
            "--role",
            "carrier",
            "--carrier",
            "acme",
            "--book",
            "AB12",
            "--expires",
            "30d",
            "--description",
            "acme uploads",
            "--limit",
            "uploads=10/1m",
            "--limit",
            "reads=100/60s",
        ],
    );
    assert!(out.contains("will not be shown again"), "{out}");
    let token = out
        .split_whitespace()
        .find(|w| w.starts_with("chk_"))
        .unwrap_or_else(|| panic!("no key in:\n{out}"))
        .to_owned();
    let id = carrierhub_store::parse_token(&token)
        .expect("a key of the documented form")
        .to_owned();
    assert!(out.contains(&format!("created API key {id}")), "{out}");
    assert_eq!(out.matches(&token).count(), 1, "{out}");

    // An analyst's, as JSON.
    let out = env.run(&["keys", "create", "--role", "analyst", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("shown only this once"),
        "{}",
        stderr(&out)
    );
    let created: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let analyst_token = created["token"].as_str().unwrap().to_owned();
    let analyst = created["id"].as_str().unwrap().to_owned();
    assert_eq!(
        carrierhub_store::parse_token(&analyst_token),
        Some(analyst.as_str())
    );
    assert_eq!(created["role"], "analyst");
    assert_eq!(created["scope"], serde_json::json!({}));
    assert!(created["expires_at"].is_null());

    // The store holds what was printed: the hash of the key, not the key.
    let store = runtime.block_on(open_store(locator)).unwrap();
    let key = runtime.block_on(store.get_api_key(&id)).unwrap().unwrap();
    assert!(verify_token(&key, &token));
    assert!(!verify_token(&key, &analyst_token));
    assert_eq!(key.role, Role::Carrier);
    assert_eq!(key.scope.carrier_list(), Some(vec!["acme".to_owned()]));
    assert_eq!(key.scope.book_list(), Some(vec!["AB12".to_owned()]));
    assert_eq!(key.rate_limits["uploads"].limit, 10);
    assert_eq!(key.rate_limits["reads"].window_secs, 60);
    assert_eq!(key.created_by, "cli");
    let days = (key.expires_at.unwrap() - chrono::Utc::now()).num_hours();
    assert!((29 * 24..=30 * 24).contains(&days), "{days} hours");
    let analyst_key = runtime
        .block_on(store.get_api_key(&analyst))
        .unwrap()
        .unwrap();
    assert!(verify_token(&analyst_key, &analyst_token));
    assert!(analyst_key.scope.is_unrestricted() && analyst_key.expires_at.is_none());

    // Listed without secrets or hashes.
    // `chk_<id>_<secret>`: the secret is base64url and may itself hold `_`, so it is what
    // follows the id, not what follows the last `_` (which can be a few characters that the
    // listing holds by chance).
    let secret = token
        .strip_prefix(&format!("chk_{id}_"))
        .expect("chk_<id>_<secret>");
    assert_eq!(secret.len(), 43, "{token}");
    let forbidden = [
        token.as_str(),
        secret,
        analyst_token.as_str(),
        &key.secret_sha256,
        &analyst_key.secret_sha256,
    ];
    let listed = ok(env, &["keys", "list"]);
    let listed_json = ok(env, &["keys", "list", "--json"]);
    for text in [&listed, &listed_json] {
        for f in forbidden {
            assert!(!text.contains(f), "a secret in:\n{text}");
        }
        assert!(!text.contains("secret"), "{text}");
    }
    let line = line_of(&listed, &id);
    for part in [
        "carrier",
        "active",
        "carriers=acme books=AB12",
        "acme uploads",
    ] {
        assert!(line.contains(part), "{part} not in {line}");
    }
    assert!(line_of(&listed, &analyst).contains("carriers=all books=all"));
    let rows: Vec<serde_json::Value> = listed_json
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON lines"))
        .collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(
        (rows[0]["id"].as_str(), rows[1]["id"].as_str()),
        (Some(id.as_str()), Some(analyst.as_str()))
    );
    assert_eq!(rows[0]["status"], "active");
    assert_eq!(rows[0]["rate_limits"]["uploads"]["limit"], 10);
    assert!(rows[0]["revoked_at"].is_null());

    // Revoked: listed as such, refused by verification's caller (not active), once.
    let out = ok(env, &["keys", "revoke", &id]);
    assert!(out.contains(&format!("revoked API key {id}")), "{out}");
    let listed = ok(env, &["keys", "list"]);
    assert!(line_of(&listed, &id).contains("revoked"), "{listed}");
    assert!(line_of(&listed, &analyst).contains("active"), "{listed}");
    let revoked = runtime.block_on(store.get_api_key(&id)).unwrap().unwrap();
    assert!(!revoked.is_active(chrono::Utc::now()));
    let out = ok(env, &["keys", "revoke", &id]);
    assert!(out.contains("already revoked"), "{out}");
    let again = runtime.block_on(store.get_api_key(&id)).unwrap().unwrap();
    assert_eq!(again.revoked_at, revoked.revoked_at);
    let rows: Vec<serde_json::Value> = ok(env, &["keys", "list", "--json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows[0]["status"], "revoked");
    assert!(rows[0]["revoked_at"].is_string());
    let err = fails(env, &["keys", "revoke", "nosuchkey234"]);
    assert!(err.contains("no API key 'nosuchkey234'"), "{err}");

    // Clear refusals, and no key made by any of them.
    let err = fails(env, &["keys", "create", "--role", "root"]);
    assert!(
        err.contains("unknown role 'root'") && err.contains("admin, operator"),
        "{err}"
    );
    let err = fails(env, &["keys", "create", "--role", "carrier"]);
    assert!(
        err.contains("carrier role") && err.contains("--carrier"),
        "{err}"
    );
    let err = fails(
        env,
        &[
            "keys",
            "create",
            "--role",
            "analyst",
            "--limit",
            "downloads=1/1m",
        ],
    );
    assert!(err.contains("unknown route class 'downloads'"), "{err}");
    let err = fails(
        env,
        &[
            "keys",
            "create",
            "--role",
            "analyst",
            "--limit",
            "reads=lots",
        ],
    );
    assert!(err.contains("not a rate limit"), "{err}");
    let err = fails(
        env,
        &[
            "keys",
            "create",
            "--role",
            "analyst",
            "--expires",
            "2001-01-01",
        ],
    );
    assert!(err.contains("not in the future"), "{err}");
    let err = fails(
        env,
        &[
            "keys",
            "create",
            "--role",
            "analyst",
            "--carrier",
            "Not A Slug!",
        ],
    );
    assert!(err.contains("--carrier"), "{err}");
    assert_eq!(runtime.block_on(store.list_api_keys()).unwrap().len(), 2);

    // Every change is in the audit log, newest first.
    let audit = runtime
        .block_on(store.list_audit(&AuditFilter {
            actor: Some("cli".into()),
            ..AuditFilter::default()
        }))
        .unwrap();
    let entries: Vec<(String, Option<String>, u16)> = audit
        .items
        .iter()
        .map(|e| {
            (
                e.entry.action.clone(),
                e.entry.target.clone(),
                e.entry.status,
            )
        })
        .collect();
    let target = |id: &str| Some(format!("key:{id}"));
    assert_eq!(
        entries,
        [
            ("key.revoke".to_owned(), target("nosuchkey234"), 404),
            ("key.revoke".to_owned(), target(&id), 200),
            ("key.revoke".to_owned(), target(&id), 200),
            ("key.create".to_owned(), target(&analyst), 201),
            ("key.create".to_owned(), target(&id), 201),
        ]
    );
    let create = &audit.items[4].entry;
    let detail = create.detail.as_deref().unwrap();
    assert!(
        detail.contains("role=carrier") && detail.contains("carriers=acme"),
        "{detail}"
    );
    for entry in &audit.items {
        let shown = serde_json::to_string(entry).unwrap();
        for f in forbidden {
            assert!(!shown.contains(f), "a secret in the audit log: {shown}");
        }
    }
}

#[test]
fn keys_on_sqlite() {
    let env = Env::new();
    let locator = env.data_dir().join("carrierhub.db");
    keys_are_created_listed_and_revoked(&env, locator.to_str().unwrap());
}

#[test]
fn keys_on_postgres() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let Some(database) = runtime.block_on(TestDatabase::create_or_skip("postgres::keys")) else {
        return;
    };
    let env = Env::with_database(database.url());
    keys_are_created_listed_and_revoked(&env, database.url());
}
