//! `carrierhub keys create|list|revoke`: API keys, managed by whoever has the database.
//!
//! A key's text (`chk_<id>_<secret>`) is printed once, when it is created: the store keeps
//! only its SHA-256, so nobody can show it again. Every change is written to the audit log
//! (actor `cli`).

use crate::app::{App, Location};
use anyhow::Context;
use carrierhub_model::CarrierId;
use carrierhub_store::{
    parse_as_of, parse_token, ApiKey, ApiKeySecret, NewApiKey, NewAuditEntry, RateLimit, Role,
    Scope, Store,
};
use chrono::{DateTime, SecondsFormat, Utc};
use clap::{Args, Subcommand};
use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;

/// The audit log's actor for changes made here.
const ACTOR: &str = "cli";

/// The route classes a key may have its own rate limit for.
const LIMIT_CLASSES: [&str; 4] = ["reads", "writes", "uploads", "queries"];

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Create an API key and print it, once: CarrierHub keeps only its hash.
    Create(CreateArgs),
    /// List API keys with their role, scope and status (never their secrets).
    List {
        /// Print JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke an API key at once. Revoking it again keeps the first revocation.
    Revoke {
        /// The key's id (as `keys list` shows it), or the key itself.
        id: String,
    },
}

#[derive(Args)]
pub struct CreateArgs {
    /// What the key may do: admin, operator, analyst or carrier.
    #[arg(long)]
    role: Role,
    /// Only this carrier's data (repeat for several). Required for the carrier role.
    #[arg(long = "carrier", value_name = "CARRIER", value_parser = parse_carrier)]
    carriers: Vec<String>,
    /// Only policies of this book, i.e. producer code (repeat for several).
    #[arg(long = "book", value_name = "BOOK", value_parser = parse_book)]
    books: Vec<String>,
    /// When the key stops working: an RFC 3339 instant, a date (midnight UTC), or a span
    /// from now such as `30d`, `12h` or `2w`. Default: never.
    #[arg(long, value_name = "WHEN", value_parser = parse_expiry)]
    expires: Option<DateTime<Utc>>,
    /// What the key is for, shown by `keys list`.
    #[arg(long)]
    description: Option<String>,
    /// The key's own rate limit for a route class (reads, writes, uploads, queries), such as
    /// `uploads=10/1m` (repeat for several classes).
    #[arg(long = "limit", value_name = "CLASS=N/WINDOW", value_parser = parse_limit)]
    limits: Vec<(String, RateLimit)>,
    /// Print {id, token, role, scope, expires_at} as JSON.
    #[arg(long)]
    json: bool,
}

fn parse_carrier(text: &str) -> Result<String, String> {
    CarrierId::parse(text.trim())
        .map(|c| c.as_str().to_owned())
        .map_err(|e| e.to_string())
}

fn parse_book(text: &str) -> Result<String, String> {
    let book = text.trim();
    if book.is_empty() {
        return Err("a book (producer code) cannot be empty".into());
    }
    Ok(book.to_owned())
}

/// `30d`, `12h`, `2w` from now, or an instant (`parse_as_of`); it must be in the future.
fn parse_expiry(text: &str) -> Result<DateTime<Utc>, String> {
    let now = Utc::now();
    let text = text.trim();
    let span = text
        .char_indices()
        .last()
        .and_then(|(i, unit)| {
            let n: i64 = text[..i].parse().ok()?;
            match unit {
                'h' => chrono::Duration::try_hours(n),
                'd' => chrono::Duration::try_days(n),
                'w' => chrono::Duration::try_weeks(n),
                _ => None,
            }
        })
        .filter(|_| text.starts_with(|c: char| c.is_ascii_digit()));
    let at = match span {
        Some(span) => now
            .checked_add_signed(span)
            .ok_or_else(|| format!("'{text}' is too far in the future"))?,
        None => parse_as_of(text)
            .map_err(|e| format!("{e}; or a span from now such as 30d, 12h or 2w"))?,
    };
    if at <= now {
        return Err(format!(
            "'{text}' ({}) is not in the future",
            at.to_rfc3339_opts(SecondsFormat::Secs, true)
        ));
    }
    Ok(at)
}

/// `CLASS=N/WINDOW`, such as `uploads=10/1m`.
fn parse_limit(text: &str) -> Result<(String, RateLimit), String> {
    let (class, limit) = text
        .split_once('=')
        .ok_or_else(|| format!("'{text}' is not CLASS=N/WINDOW, such as uploads=10/1m"))?;
    let class = class.trim().to_ascii_lowercase();
    if !LIMIT_CLASSES.contains(&class.as_str()) {
        return Err(format!(
            "unknown route class '{class}'; the classes are {}",
            LIMIT_CLASSES.join(", ")
        ));
    }
    Ok((class, limit.parse()?))
}

/// The key `args` describe, checked as a whole, with fresh key material.
fn new_key(args: &CreateArgs) -> anyhow::Result<(NewApiKey, String)> {
    if args.role == Role::Carrier && args.carriers.is_empty() {
        anyhow::bail!(
            "a key with the carrier role needs the carriers it acts for: add --carrier ID"
        );
    }
    let mut rate_limits = BTreeMap::new();
    for (class, limit) in &args.limits {
        if rate_limits.insert(class.clone(), *limit).is_some() {
            anyhow::bail!("--limit {class}=… is given more than once");
        }
    }
    let set = |items: &[String]| {
        (!items.is_empty()).then(|| items.iter().cloned().collect::<BTreeSet<_>>())
    };
    let generated = ApiKeySecret::generate();
    let key = NewApiKey {
        id: generated.id,
        secret_sha256: generated.secret_sha256,
        role: args.role,
        scope: Scope {
            carriers: set(&args.carriers),
            books: set(&args.books),
        },
        description: args
            .description
            .as_deref()
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .map(str::to_owned),
        expires_at: args.expires,
        rate_limits,
        created_by: ACTOR.to_owned(),
    };
    Ok((key, generated.token))
}

fn audit(action: &str, id: &str, status: u16, detail: Option<String>) -> NewAuditEntry {
    NewAuditEntry {
        actor: ACTOR.to_owned(),
        role: None,
        action: action.to_owned(),
        target: Some(format!("key:{id}")),
        status,
        client: None,
        request_id: None,
        detail,
    }
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn limits_text(limits: &BTreeMap<String, RateLimit>) -> String {
    limits
        .iter()
        .map(|(class, limit)| format!("{class}={limit}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn status(key: &ApiKey, now: DateTime<Utc>) -> &'static str {
    if key.revoked_at.is_some() {
        "revoked"
    } else if key.is_active(now) {
        "active"
    } else {
        "expired"
    }
}

pub async fn run(location: &Location, command: KeysCommand) -> anyhow::Result<ExitCode> {
    let app = App::open(location).await?;
    let store = app.store.as_ref();
    match command {
        KeysCommand::Create(args) => create(store, args).await,
        KeysCommand::List { json } => list(store, json).await,
        KeysCommand::Revoke { id } => revoke(store, &id).await,
    }
}

async fn create(store: &dyn Store, args: CreateArgs) -> anyhow::Result<ExitCode> {
    let (new, token) = new_key(&args)?;
    let key = store
        .create_api_key(&new)
        .await
        .context("cannot create the key")?;
    let detail = format!(
        "role={} {}{}{}",
        key.role,
        key.scope,
        key.expires_at
            .map(|t| format!(" expires={}", time(t)))
            .unwrap_or_default(),
        if key.rate_limits.is_empty() {
            String::new()
        } else {
            format!(" limits={}", limits_text(&key.rate_limits))
        }
    );
    // No key without its audit entry: one that cannot be recorded is revoked again.
    if let Err(e) = store
        .record_audit(&audit("key.create", &key.id, 201, Some(detail)))
        .await
    {
        let undone = store.revoke_api_key(&key.id).await;
        return Err(anyhow::Error::new(e).context(match undone {
            Ok(_) => format!(
                "cannot write the audit entry of key {}; the key was revoked",
                key.id
            ),
            Err(_) => format!(
                "cannot write the audit entry of key {}; revoke it with `carrierhub keys revoke {}`",
                key.id, key.id
            ),
        }));
    }
    if args.json {
        let shown = serde_json::json!({
            "id": key.id,
            "token": token,
            "role": key.role,
            "scope": key.scope,
            "expires_at": key.expires_at,
        });
        println!("{}", serde_json::to_string_pretty(&shown)?);
        eprintln!(
            "warning: the token is shown only this once and cannot be recovered; store it now"
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "created API key {} (role {}; {})",
        key.id, key.role, key.scope
    );
    match key.expires_at {
        Some(t) => println!("  expires {}", time(t)),
        None => println!(
            "  never expires (revoke it with `carrierhub keys revoke {}`)",
            key.id
        ),
    }
    if !key.rate_limits.is_empty() {
        println!("  rate limits {}", limits_text(&key.rate_limits));
    }
    println!();
    println!("  {token}");
    println!();
    println!(
        "WARNING: this key will not be shown again. CarrierHub keeps only its hash: store it \
         now (in a secret manager); a lost key cannot be recovered, only revoked and replaced."
    );
    Ok(ExitCode::SUCCESS)
}

async fn list(store: &dyn Store, json: bool) -> anyhow::Result<ExitCode> {
    let keys = store.list_api_keys().await?;
    let now = Utc::now();
    if json {
        for key in &keys {
            // `ApiKey` serialises without its hash.
            let mut shown = serde_json::to_value(key)?;
            shown["status"] = status(key, now).into();
            println!("{}", serde_json::to_string(&shown)?);
        }
        return Ok(ExitCode::SUCCESS);
    }
    if keys.is_empty() {
        println!("no API keys (create one with `carrierhub keys create --role ROLE`)");
        return Ok(ExitCode::SUCCESS);
    }
    let opt_time = |t: Option<DateTime<Utc>>| t.map(time).unwrap_or_else(|| "-".into());
    println!(
        "{:<12}  {:<8}  {:<7}  {:<20}  {:<20}  {:<20}  {:<30}  DESCRIPTION",
        "ID", "ROLE", "STATUS", "CREATED", "EXPIRES", "REVOKED", "SCOPE"
    );
    for key in &keys {
        let line = format!(
            "{:<12}  {:<8}  {:<7}  {:<20}  {:<20}  {:<20}  {:<30}  {}",
            key.id,
            // `as_str`: `Role`'s `Display` ignores the width.
            key.role.as_str(),
            status(key, now),
            time(key.created_at),
            opt_time(key.expires_at),
            opt_time(key.revoked_at),
            key.scope.to_string(),
            key.description.as_deref().unwrap_or("")
        );
        println!("{}", line.trim_end());
    }
    Ok(ExitCode::SUCCESS)
}

async fn revoke(store: &dyn Store, id: &str) -> anyhow::Result<ExitCode> {
    // The key itself names its id; it is never printed or recorded.
    let id = parse_token(id.trim()).unwrap_or(id.trim()).to_owned();
    let before = store.get_api_key(&id).await?;
    let Some(before) = before else {
        store
            .record_audit(&audit("key.revoke", &id, 404, Some("no such key".into())))
            .await?;
        anyhow::bail!("no API key '{id}' (`carrierhub keys list` shows them)");
    };
    let Some(key) = store.revoke_api_key(&id).await? else {
        anyhow::bail!("no API key '{id}'");
    };
    let at = key
        .revoked_at
        .map(time)
        .context("the store did not revoke the key")?;
    match before.revoked_at {
        Some(_) => {
            store
                .record_audit(&audit(
                    "key.revoke",
                    &id,
                    200,
                    Some(format!("already revoked at {at}")),
                ))
                .await?;
            println!("API key {id} was already revoked at {at}");
        }
        None => {
            store
                .record_audit(&audit("key.revoke", &id, 200, None))
                .await?;
            println!("revoked API key {id} at {at}; it is refused from now on");
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiries_are_spans_dates_or_instants_in_the_future() {
        let now = Utc::now();
        let in_30d = parse_expiry("30d").unwrap();
        assert!(in_30d > now + chrono::Duration::days(30) - chrono::Duration::seconds(5));
        assert!(in_30d <= Utc::now() + chrono::Duration::days(30));
        assert!(parse_expiry("12h").unwrap() < in_30d);
        assert_eq!(
            parse_expiry("2999-01-31").unwrap(),
            "2999-01-31T00:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert!(parse_expiry("2999-01-31T10:00:00+01:00").is_ok());
        for past in ["2001-01-01", "2001-01-01T00:00:00Z", "0d"] {
            let err = parse_expiry(past).unwrap_err();
            assert!(err.contains("not in the future"), "{past}: {err}");
        }
        for bad in ["", "d", "30x", "soon", "-3d", "99999999999999d"] {
            assert!(parse_expiry(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn limits_name_a_known_class() {
        let (class, limit) = parse_limit("Uploads=10/1m").unwrap();
        assert_eq!(
            (class.as_str(), limit.limit, limit.window_secs),
            ("uploads", 10, 60)
        );
        assert!(parse_limit("downloads=10/1m")
            .unwrap_err()
            .contains("unknown route class"));
        assert!(parse_limit("reads").is_err());
        assert!(parse_limit("reads=lots").is_err());
    }
}
