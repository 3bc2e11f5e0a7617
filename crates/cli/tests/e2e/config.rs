//! The settings, driven through the binary: defaults < file < environment < flags as
//! `config show` prints them, secrets redacted, `config check` naming the line and key at
//! fault, the example file complete and valid, the reference in docs/configuration.md current,
//! and settings from a file taking effect in `serve` (its address, its log levels).

use crate::common;

use common::{Env, Server};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

/// The binary with no `CARRIERHUB_…` variable of the test's own environment.
fn bare(env: &Env) -> Command {
    let mut command = env.command();
    for (name, _) in std::env::vars() {
        if name.starts_with("CARRIERHUB_") {
            command.env_remove(name);
        }
    }
    // The harness sets the log filter, which would replace the settings' levels.
    command.env_remove("CARRIERHUB_LOG").env_remove("RUST_LOG");
    command
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `config show --format json` with these arguments (after `show`) and variables.
fn show(env: &Env, config: Option<&Path>, vars: &[(&str, &str)], flags: &[&str]) -> Value {
    let mut command = bare(env);
    if let Some(config) = config {
        command.arg("--config").arg(config);
    }
    command.envs(vars.iter().copied());
    let out = command
        .args(["config", "show", "--format", "json"])
        .args(flags)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "config show failed: {stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[test]
fn file_then_environment_then_flags() {
    let env = Env::new();
    let file = env.write(
        "settings.toml",
        "[server]\nbind = \"127.0.0.1:7001\"\nread_cache_entries = 11\n\n\
         [worker]\nconcurrency = 3\n\n[query]\ntimeout_secs = 9\n",
    );
    let defaults = show(&env, None, &[], &[]);
    assert_eq!(defaults["worker"]["concurrency"], 2);
    assert_eq!(defaults["server"]["bind"], "127.0.0.1:8080");
    assert_eq!(defaults["database"]["migrate"], true);

    let from_file = show(&env, Some(&file), &[], &[]);
    assert_eq!(from_file["worker"]["concurrency"], 3);
    assert_eq!(from_file["server"]["bind"], "127.0.0.1:7001");
    assert_eq!(from_file["server"]["read_cache_entries"], 11);
    assert_eq!(from_file["query"]["timeout_secs"], 9);

    // The file named by CARRIERHUB_CONFIG, as with --config.
    let file_text = file.to_str().unwrap();
    let named = show(&env, None, &[("CARRIERHUB_CONFIG", file_text)], &[]);
    assert_eq!(named["worker"]["concurrency"], 3);

    let vars = [
        ("CARRIERHUB_WORKER_CONCURRENCY", "5"),
        ("CARRIERHUB_SERVER_BIND", "127.0.0.1:7002"),
        // The older name of server.bind loses to the new one when both are set.
        ("CARRIERHUB_BIND", "127.0.0.1:7999"),
        // Older names keep working, the inverted ones too.
        ("CARRIERHUB_NO_MIGRATE", "true"),
        ("CARRIERHUB_ROLES", "api,warehouse"),
        ("CARRIERHUB_QUERY_TIMEOUT_SECS", "8"),
        ("CARRIERHUB_LOG_MODULES", "ignored: a table is file-only"),
        ("CARRIERHUB_RATE_LIMITS_ANALYST_READS", "7/1m"),
    ];
    let from_env = show(&env, Some(&file), &vars, &[]);
    assert_eq!(from_env["worker"]["concurrency"], 5);
    assert_eq!(from_env["server"]["bind"], "127.0.0.1:7002");
    assert_eq!(from_env["database"]["migrate"], false);
    assert_eq!(
        from_env["server"]["roles"],
        serde_json::json!(["api", "warehouse"])
    );
    assert_eq!(from_env["query"]["timeout_secs"], 8);
    assert_eq!(from_env["rate_limits"]["analyst"]["reads"], "7/60s");
    // What the environment does not name stays as the file says.
    assert_eq!(from_env["server"]["read_cache_entries"], 11);

    let flags = [
        "--worker-concurrency",
        "7",
        "--bind",
        "127.0.0.1:7003",
        "--query-timeout-secs",
        "6",
        "--role",
        "api",
    ];
    let from_flags = show(&env, Some(&file), &vars, &flags);
    assert_eq!(from_flags["worker"]["concurrency"], 7);
    assert_eq!(from_flags["server"]["bind"], "127.0.0.1:7003");
    assert_eq!(from_flags["query"]["timeout_secs"], 6);
    assert_eq!(from_flags["server"]["roles"], serde_json::json!(["api"]));
    // A flag not given does not reset what the environment set.
    assert_eq!(from_flags["database"]["migrate"], false);
    assert_eq!(from_flags["server"]["read_cache_entries"], 11);

    // The legacy variable alone still sets server.bind.
    let legacy = show(&env, None, &[("CARRIERHUB_BIND", "127.0.0.1:7004")], &[]);
    assert_eq!(legacy["server"]["bind"], "127.0.0.1:7004");
}

#[test]
fn show_redacts_passwords_tokens_and_secrets() {
    let env = Env::new();
    let file = env.write(
        "settings.toml",
        "[database]\nurl = \"postgres://hub:pg-s3cret@db.internal:5432/hub\"\n\n\
         [broker]\nurl = \"nats://relay:nats-s3cret@nats.internal:4222\"\n\n\
         [rate_limits]\nredis_url = \"redis://:redis-s3cret@cache.internal:6379/0\"\n",
    );
    for format in ["toml", "json"] {
        let out = bare(&env)
            .arg("--config")
            .arg(&file)
            .args(["config", "show", "--format", format])
            .output()
            .unwrap();
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{stderr}");
        assert!(
            !stdout.contains("s3cret"),
            "{format} shows a secret:\n{stdout}"
        );
        assert!(
            stdout.contains("postgres://hub:***@db.internal:5432/hub"),
            "{stdout}"
        );
        assert!(
            stdout.contains("redis://:***@cache.internal:6379/0"),
            "{stdout}"
        );
        assert!(
            stdout.contains("nats://relay:***@nats.internal:4222"),
            "{stdout}"
        );
    }
    // A secret given on the command line or in the environment is redacted as well.
    let shown = show(
        &env,
        None,
        &[(
            "CARRIERHUB_DATABASE_URL",
            "postgres://hub:env-s3cret@db/hub",
        )],
        &["--redis-url", "redis://:flag-s3cret@cache:6379"],
    );
    let all = shown.to_string();
    assert!(!all.contains("s3cret"), "{all}");
    assert_eq!(shown["database"]["url"], "postgres://hub:***@db/hub");
    assert_eq!(shown["rate_limits"]["redis_url"], "redis://:***@cache:6379");
    // The TOML printed is itself a valid settings file.
    let out = bare(&env)
        .arg("--config")
        .arg(&file)
        .args(["config", "show"])
        .output()
        .unwrap();
    let printed = env.write("printed.toml", &out.stdout);
    let check = bare(&env)
        .args(["config", "check"])
        .arg(&printed)
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", text(&check).1);
}

/// `config check FILE`: its exit status and what it printed.
fn check(env: &Env, name: &str, body: &str) -> (bool, String) {
    let file = env.write(name, body);
    let out = bare(env)
        .args(["config", "check"])
        .arg(&file)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    (out.status.success(), format!("{stdout}{stderr}"))
}

#[test]
fn check_names_the_file_line_and_key_at_fault() {
    let env = Env::new();
    let (ok, said) = check(
        &env,
        "typo.toml",
        "[server]\nbind = \"127.0.0.1:8080\"\nread_cache_entires = 5\n",
    );
    assert!(!ok, "{said}");
    assert!(said.contains("typo.toml"), "{said}");
    assert!(said.contains("line 3"), "{said}");
    assert!(said.contains("read_cache_entires"), "{said}");

    let (ok, said) = check(&env, "section.toml", "[wokrer]\nconcurrency = 4\n");
    assert!(!ok);
    assert!(said.contains("line 1") && said.contains("wokrer"), "{said}");

    let (ok, said) = check(&env, "type.toml", "\n[worker]\nconcurrency = \"many\"\n");
    assert!(!ok);
    assert!(
        said.contains("type.toml") && said.contains("line 3"),
        "{said}"
    );
    assert!(said.contains("concurrency"), "{said}");

    let (ok, said) = check(&env, "addr.toml", "[server]\nbind = \"localhost\"\n");
    assert!(!ok);
    assert!(said.contains("line 2") && said.contains("bind"), "{said}");

    let (ok, said) = check(&env, "range.toml", "[server]\nidempotency_ttl_hours = 0\n");
    assert!(!ok);
    assert!(said.contains("server.idempotency_ttl_hours"), "{said}");

    let (ok, said) = check(
        &env,
        "level.toml",
        "[log.modules]\ncarrierhub_pipeline = \"loud\"\n",
    );
    assert!(!ok);
    assert!(said.contains("log.modules.carrierhub_pipeline"), "{said}");

    let (ok, said) = check(
        &env,
        "oidc.toml",
        "[auth.oidc]\nissuer = \"https://id\"\naudience = \"hub\"\njwks_url = \"http://id.example.com/keys\"\n",
    );
    assert!(!ok);
    assert!(
        said.contains("auth.oidc") && said.contains("https"),
        "{said}"
    );

    let (ok, said) = check(&env, "db.toml", "[database]\nurl = \"mysql://u:pw@h/db\"\n");
    assert!(!ok);
    assert!(said.contains("database.url"), "{said}");
    assert!(!said.contains("pw@"), "the password is shown: {said}");

    let (ok, said) = check(&env, "good.toml", "[worker]\nconcurrency = 4\n");
    assert!(ok, "{said}");
    assert!(said.contains("good.toml: valid"), "{said}");

    let missing = bare(&env)
        .args(["config", "check", "/nonexistent/carrierhub.toml"])
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(text(&missing).1.contains("/nonexistent/carrierhub.toml"));
}

#[test]
fn a_bad_environment_variable_is_named() {
    let env = Env::new();
    for (name, value, key) in [
        (
            "CARRIERHUB_WORKER_CONCURRENCY",
            "many",
            "worker.concurrency",
        ),
        ("CARRIERHUB_API_KEYS", "perhaps", "auth.api_keys"),
        (
            "CARRIERHUB_RATE_LIMITS_ON_BACKEND_ERROR",
            "maybe",
            "rate_limits.on_backend_error",
        ),
        ("CARRIERHUB_SERVER_ROLES", "api,cook", "server.roles"),
    ] {
        let out = bare(&env)
            .env(name, value)
            .args(["config", "show"])
            .output()
            .unwrap();
        let (_, stderr) = text(&out);
        assert!(!out.status.success(), "{name}={value} accepted");
        assert!(stderr.contains(name), "{name}: {stderr}");
        assert!(stderr.contains(key), "{name}: {stderr}");
    }
}

#[test]
fn the_example_file_is_valid_and_sets_every_setting() {
    let env = Env::new();
    let example = repo_file("examples/carrierhub.toml");
    let out = bare(&env)
        .args(["config", "check"])
        .arg(&example)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("valid"), "{stdout}");

    // The deployment's settings files are valid too.
    for file in ["deploy/carrierhub.toml", "deploy/k8s/base/carrierhub.toml"] {
        let out = bare(&env)
            .args(["config", "check"])
            .arg(repo_file(file))
            .output()
            .unwrap();
        assert!(out.status.success(), "{file}: {}", text(&out).1);
    }

    // Every documented setting appears in the example.
    let docs = bare(&env).args(["config", "docs"]).output().unwrap();
    let reference = text(&docs).0;
    let keys: Vec<&str> = reference
        .lines()
        .skip(2)
        .map(|row| row.split('`').nth(1).expect("a key"))
        .collect();
    assert!(keys.len() > 60, "{reference}");
    let shown = show(&env, Some(&example), &[], &[]);
    for key in &keys {
        let value = key.split('.').fold(&shown, |v, part| &v[part]);
        assert!(!value.is_null(), "the example does not set {key}");
        if value.is_object() {
            assert!(!value.as_object().unwrap().is_empty(), "{key} is empty");
        }
    }
    // And its secrets are not shown.
    assert!(!shown.to_string().contains("change-me"), "{shown}");

    // docs/configuration.md holds the reference as the binary prints it.
    let page = std::fs::read_to_string(repo_file("docs/configuration.md")).unwrap();
    assert!(
        page.contains(&reference),
        "docs/configuration.md is out of date: paste `carrierhub config docs` into it"
    );
}

/// A free port on the loopback interface.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `serve` with these settings and flags, its log in `log`.
fn serve_logging(env: &Env, file: &Path, flags: &[&str], log: &Path) -> Server {
    let mut command = bare(env);
    command.arg("--config").arg(file).arg("serve").args(flags);
    Server::start_logging_to(command, Stdio::from(std::fs::File::create(log).unwrap()))
}

/// The log's lines, each a JSON object.
fn json_lines(log: &Path) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: not JSON: {l}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_listens_where_the_file_says_and_logs_at_its_levels() {
    let env = Env::new();
    let port = free_port();
    let file = env.write(
        "settings.toml",
        format!(
            "[server]\nbind = \"127.0.0.1:{port}\"\nadmin_bind = \"127.0.0.1:0\"\n\n\
             [log]\nlevel = \"warn\"\nformat = \"json\"\n\n\
             [log.modules]\n\"carrierhub::serve\" = \"info\"\n"
        ),
    );
    let log = env.path("serve.log");
    let server = serve_logging(&env, &file, &[], &log);
    assert_eq!(server.base, format!("http://127.0.0.1:{port}"));
    let health = reqwest::get(server.url("/healthz")).await.unwrap();
    assert!(health.status().is_success());
    server.kill();
    // JSON lines, though not on a terminal anyway; the serve module's info lines pass, the
    // base level (warn) keeps every other module's info lines out.
    let events = json_lines(&log);
    assert!(
        events
            .iter()
            .any(|e| e["message"] == "starting" && e["level"] == "INFO"),
        "{events:?}"
    );
    for e in &events {
        if e["level"] == "INFO" {
            assert_eq!(e["target"], "carrierhub::serve", "{e}");
        }
    }

    // Without the module's level: no info line at all. And the flag beats the file's bind.
    let quiet = env.write(
        "quiet.toml",
        format!(
            "[server]\nbind = \"127.0.0.1:{port}\"\n\n[log]\nlevel = \"warn\"\nformat = \"json\"\n"
        ),
    );
    let other = free_port();
    let log = env.path("quiet.log");
    let server = serve_logging(
        &env,
        &quiet,
        &["--bind", &format!("127.0.0.1:{other}")],
        &log,
    );
    assert_eq!(server.base, format!("http://127.0.0.1:{other}"));
    server.kill();
    let events = json_lines(&log);
    assert!(events.iter().all(|e| e["level"] != "INFO"), "{events:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_from_the_file_take_effect() {
    let env = Env::new();
    let file = env.write("settings.toml", "[auth]\napi_keys = true\n");
    let server = env.serve_with(&["--config", file.to_str().unwrap()]);
    let response = reqwest::get(server.url("/v1/carriers")).await.unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::UNAUTHORIZED);
}
