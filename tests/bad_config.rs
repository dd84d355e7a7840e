//! A bad config stops `duplex check-config` and `duplex run` with exit code 2 and one
//! `error:` line naming the key and the problem, before any cluster is contacted
//! (DESIGN.md rule 6); a good one prints its flows and routing table, secrets masked.
//!
//! The clusters below point at port 1 on loopback, where nothing listens: a test that
//! passed by reaching a broker would be testing the wrong thing.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_duplex");

/// Two clusters and one link: each bad case below breaks one thing in it.
const BASE: &str = r#"
[[clusters]]
id = "a"
bootstrap_servers = "127.0.0.1:1"

[[clusters]]
id = "b"
bootstrap_servers = "127.0.0.1:1"

[[links]]
clusters = ["a", "b"]
"#;

fn write_config(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new()
        .suffix(".toml")
        .tempfile()
        .expect("temp file");
    f.write_all(text.as_bytes()).expect("write config");
    f
}

fn duplex(args: &[&str]) -> Output {
    // RUST_LOG=off: stderr must hold the error and nothing else.
    Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "off")
        .output()
        .expect("run duplex")
}

fn check_config(path: &Path) -> Output {
    duplex(&["check-config", path.to_str().expect("utf-8 temp path")])
}

/// Asserts exit 2, an empty stdout, and a first stderr line `error: ...` containing
/// every fragment.
fn assert_refused(out: &Output, fragments: &[&str]) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "exit code; stderr: {stderr}");
    assert!(
        out.stdout.is_empty(),
        "nothing on stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let first = stderr.lines().next().unwrap_or_default().to_owned();
    assert!(
        first.starts_with("error: "),
        "first line starts with `error: `: {stderr}"
    );
    for f in fragments {
        assert!(
            first.contains(f),
            "first stderr line should contain {f:?}: {stderr}"
        );
    }
    first
}

fn refused(text: &str, fragments: &[&str]) -> String {
    let file = write_config(text);
    assert_refused(&check_config(file.path()), fragments)
}

#[test]
fn base_config_is_valid() {
    let file = write_config(BASE);
    let out = check_config(file.path());
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // No tokens: check-config says the API is open, and loopback only.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("api: http://127.0.0.1:9465")
            && stdout.contains("tokens: none: every caller may read and change the mesh, so the API listens on loopback only"),
        "{stdout}"
    );
}

#[test]
fn an_open_api_beyond_loopback_is_refused() {
    refused(
        &format!("[api]\nlisten = \"0.0.0.0:9465\"\n{BASE}"),
        &[
            "api.listen: 0.0.0.0:9465 is not a loopback address",
            "[[api.tokens]]",
        ],
    );
}

#[test]
fn unknown_key_is_named() {
    let text = BASE.replace("id = \"b\"", "id = \"b\"\nbootstrap = \"typo\"");
    refused(
        &text,
        &["clusters[1].bootstrap", "unknown field `bootstrap`"],
    );
    refused(
        &format!("[limits]\nrefresh = \"5s\"\n{BASE}"),
        &["limits.refresh", "unknown field `refresh`"],
    );
    refused(
        &format!("{BASE}[links.topics]\nincludes = [\"x\"]\n"),
        &["links[0].topics.includes", "unknown field"],
    );
    refused(
        &format!("[limit]\n{BASE}"),
        &["error: limit: unknown field `limit`"],
    );
}

#[test]
fn duplicate_cluster_id() {
    refused(
        &BASE.replace("id = \"b\"", "id = \"a\""),
        &["clusters[1].id: duplicate cluster id \"a\""],
    );
}

#[test]
fn unknown_cluster_in_link() {
    refused(
        &BASE.replace("[\"a\", \"b\"]", "[\"a\", \"zz\"]"),
        &["links[0].clusters: unknown cluster \"zz\""],
    );
}

#[test]
fn link_to_itself() {
    refused(
        &BASE.replace("[\"a\", \"b\"]", "[\"a\", \"a\"]"),
        &["links[0].clusters: a link needs two different clusters, got \"a\" twice"],
    );
}

#[test]
fn link_with_three_clusters() {
    refused(
        &BASE.replace("[\"a\", \"b\"]", "[\"a\", \"b\", \"a\"]"),
        &["links[0].clusters", "exactly two clusters"],
    );
}

#[test]
fn unconnected_cluster() {
    let text = format!("{BASE}\n[[clusters]]\nid = \"c\"\nbootstrap_servers = \"127.0.0.1:1\"\n");
    refused(
        &text,
        &["links: ", "\"c\" is not connected to \"a\", \"b\""],
    );
}

#[test]
fn invalid_regex() {
    let text = format!("{BASE}[links.topics]\ninclude = [\"orders\", \"(\"]\n");
    refused(
        &text,
        &[
            "links[0].topics.include[1]: invalid regular expression \"(\": ",
            "unclosed group",
        ],
    );
}

#[test]
fn invalid_duration() {
    let text = format!("[limits]\nrefresh_interval = \"5 parsecs\"\n{BASE}");
    refused(
        &text,
        &["limits.refresh_interval: invalid duration \"5 parsecs\": "],
    );
}

#[test]
fn zero_duration() {
    let text = format!("[limits]\ncommit_interval = \"0s\"\n{BASE}");
    refused(
        &text,
        &["limits.commit_interval: invalid duration \"0s\": must be greater than zero"],
    );
}

#[test]
fn invalid_size() {
    let text = format!("[limits]\nin_flight_bytes = \"lots\"\n{BASE}");
    refused(&text, &["limits.in_flight_bytes: invalid size \"lots\": "]);
}

#[test]
fn zero_size() {
    refused(
        &format!("{BASE}in_flight_bytes = 0\n"),
        &["links[0].in_flight_bytes: invalid size 0: must be greater than zero"],
    );
    refused(
        &format!("[limits]\nin_flight_bytes = \"0MiB\"\n{BASE}"),
        &["limits.in_flight_bytes: invalid size \"0MiB\""],
    );
}

#[test]
fn empty_bootstrap_servers() {
    let text = BASE.replacen(
        "bootstrap_servers = \"127.0.0.1:1\"",
        "bootstrap_servers = \"\"",
        1,
    );
    refused(&text, &["clusters[0].bootstrap_servers: empty"]);
}

#[test]
fn bad_cluster_id_characters() {
    refused(
        &BASE.replace("id = \"b\"", "id = \"b/c\""),
        &["clusters[1].id: invalid cluster id \"b/c\""],
    );
}

#[test]
fn no_clusters() {
    refused(
        "[[links]]\nclusters = [\"a\", \"b\"]\n",
        &["clusters: no clusters configured"],
    );
    refused("", &["clusters: no clusters configured"]);
}

#[test]
fn no_links() {
    refused(
        &BASE.replace("[[links]]\nclusters = [\"a\", \"b\"]\n", ""),
        &["links: no links configured"],
    );
}

#[test]
fn duplicate_link() {
    let text = format!("{BASE}\n[[links]]\nclusters = [\"b\", \"a\"]\nname = \"again\"\n");
    refused(
        &text,
        &["links[1].clusters: clusters \"b\" and \"a\" are already linked by links[0]"],
    );
}

#[test]
fn duplicate_link_name() {
    let text = format!(
        "{BASE}name = \"x\"\n[[clusters]]\nid = \"c\"\nbootstrap_servers = \"127.0.0.1:1\"\n\
         [[links]]\nclusters = [\"b\", \"c\"]\nname = \"x\"\n"
    );
    refused(&text, &["links[1].name: duplicate link name \"x\""]);
}

#[test]
fn option_value_of_wrong_type_is_named_and_not_echoed() {
    let text = format!("{BASE}[clusters.options]\n\"sasl.password\" = [\"do-not-print-me\"]\n");
    let line = refused(
        &text,
        &[
            "clusters[1].options.\"sasl.password\"",
            "expected a string, integer or boolean",
        ],
    );
    assert!(!line.contains("do-not-print-me"), "{line}");
}

#[test]
fn not_toml() {
    refused("[[clusters]\nid = \"a\"\n", &["invalid TOML at line 1"]);
}

#[test]
fn missing_file_names_the_path() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("absent.toml");
    assert_refused(
        &check_config(&path),
        &["cannot read config file", path.to_str().unwrap()],
    );
    // A directory is not a readable file either.
    assert_refused(
        &check_config(dir.path()),
        &["cannot read config file", dir.path().to_str().unwrap()],
    );
}

#[test]
fn run_refuses_a_bad_config_the_same_way() {
    let file = write_config(&BASE.replace("id = \"b\"", "id = \"a\""));
    let path = file.path().to_str().unwrap();
    let checked = assert_refused(
        &check_config(file.path()),
        &["clusters[1].id: duplicate cluster id \"a\""],
    );
    let ran = assert_refused(
        &duplex(&["run", "--config", path]),
        &["clusters[1].id: duplicate cluster id \"a\""],
    );
    assert_eq!(checked, ran);
}

/// Three clusters in a chain onprem - msk - dr: msk relays between the other two.
const GOOD: &str = r#"
[limits]
in_flight_bytes = "32MiB"

[api]
listen = "0.0.0.0:9465"
[[api.tokens]]
name = "dashboard"
role = "read"
token = "API-TOKEN-SECRET-0123"

[[clusters]]
id = "onprem"
bootstrap_servers = "127.0.0.1:1"
[clusters.options]
"security.protocol" = "SASL_SSL"
"sasl.mechanism" = "SCRAM-SHA-512"
"sasl.username" = "duplex"
"sasl.password" = "TOP-SECRET-PASSWORD"

[[clusters]]
id = "msk"
bootstrap_servers = "127.0.0.1:1"
[clusters.producer]
"ssl.key.password" = "ANOTHER-SECRET"

[[clusters]]
id = "dr"
bootstrap_servers = "127.0.0.1:1"

[[links]]
clusters = ["onprem", "msk"]
[links.topics]
include = ["orders.*"]

[[links]]
clusters = ["msk", "dr"]
name = "cloud-dr"
start = "latest"
"#;

#[test]
fn good_config_prints_flows_and_routing_without_secrets() {
    let file = write_config(GOOD);
    // The links select different topics, so routing is printed per named topic.
    let out = duplex(&[
        "check-config",
        file.path().to_str().expect("utf-8 temp path"),
        "--topic",
        "orders.eu",
        "--topic",
        "audit",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
    for line in [
        "onprem -> msk (link onprem-msk)",
        "msk -> onprem (link onprem-msk)",
        "msk -> dr (link cloud-dr)",
        "dr -> msk (link cloud-dr)",
        "onprem -> msk forwards origins: onprem",
        "msk -> onprem forwards origins: dr, msk",
        "msk -> dr forwards origins: msk, onprem",
        "dr -> msk forwards origins: dr",
        "routing of topic \"orders.eu\" (links onprem-msk, cloud-dr):",
        "routing of topic \"audit\" (links cloud-dr):",
        "sasl.username = duplex",
        "sasl.password = ***",
        "ssl.key.password = ***",
        "include: \"orders.*\"",
        "start: latest",
        "in_flight_bytes: 32MiB",
        "api: http://0.0.0.0:9465",
        "dashboard (role read): token ***",
        "warning: tokens over plain HTTP/2 on a non-loopback address",
    ] {
        assert!(
            stdout.lines().any(|l| l.trim() == line || l.contains(line)),
            "missing {line:?} in:\n{stdout}"
        );
    }
    // audit is selected by cloud-dr only: msk relays nothing of onprem for it.
    let audit: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("routing of topic \"audit\""))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .map(str::trim)
        .collect();
    assert_eq!(
        audit,
        [
            "msk -> dr forwards origins: msk",
            "dr -> msk forwards origins: dr"
        ],
        "{stdout}"
    );
    for secret in [
        "TOP-SECRET-PASSWORD",
        "ANOTHER-SECRET",
        "API-TOKEN-SECRET-0123",
    ] {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "secret printed:\n{stdout}\n{stderr}"
        );
    }
}

/// Links that select different topics: `check-config` routes each topic over the links
/// that select it, and names the parts of a topic whose links do not meet.
const PER_TOPIC: &str = r#"
[[clusters]]
id = "a"
bootstrap_servers = "127.0.0.1:1"

[[clusters]]
id = "b"
bootstrap_servers = "127.0.0.1:1"

[[clusters]]
id = "c"
bootstrap_servers = "127.0.0.1:1"

[[clusters]]
id = "d"
bootstrap_servers = "127.0.0.1:1"

[[links]]
clusters = ["a", "b"]
[links.topics]
include = ["orders", "events"]

[[links]]
clusters = ["b", "c"]
[links.topics]
include = ["orders"]

[[links]]
clusters = ["c", "d"]
[links.topics]
include = ["orders", "events"]

[[links]]
clusters = ["a", "d"]
[links.topics]
include = ["payments\\.eu"]
"#;

#[test]
fn links_with_different_topics_are_routed_per_topic() {
    let file = write_config(PER_TOPIC);
    let out = Command::new(BIN)
        .args(["check-config"])
        .arg(file.path())
        .args(["--topic", "audit"])
        .env("RUST_LOG", "off")
        .output()
        .expect("run duplex");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let section = |topic: &str| -> Vec<String> {
        let head = format!("routing of topic \"{topic}\"");
        stdout
            .lines()
            .skip_while(|l| !l.starts_with(&head))
            .skip(1)
            .take_while(|l| l.starts_with("  "))
            .map(|l| l.trim().to_owned())
            .collect()
    };
    // orders: the chain a-b-c-d (a-d does not select it), so b and c relay.
    assert_eq!(
        section("orders"),
        [
            "a -> b forwards origins: a",
            "b -> a forwards origins: b, c, d",
            "b -> c forwards origins: a, b",
            "c -> b forwards origins: c, d",
            "c -> d forwards origins: a, b, c",
            "d -> c forwards origins: d",
        ],
        "{stdout}"
    );
    // events: a-b and c-d only, with nothing between them.
    assert_eq!(
        section("events"),
        [
            "a -> b forwards origins: a",
            "b -> a forwards origins: b",
            "c -> d forwards origins: c",
            "d -> c forwards origins: d",
            "note: replicated within separate parts only: a, b | c, d (no link that selects \"events\" connects them)",
        ],
        "{stdout}"
    );
    // A literal name with an escaped dot is a topic name too.
    assert_eq!(
        section("payments.eu"),
        ["a -> d forwards origins: a", "d -> a forwards origins: d",],
        "{stdout}"
    );
    assert!(
        stdout.contains("routing of topic \"audit\": no link selects it"),
        "{stdout}"
    );
}

#[test]
fn api_files_are_read_by_check_config_as_by_run() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[[api.tokens]]\nname = \"bot\"\nrole = \"operate\"\ntoken_file = \"missing.token\"\n{BASE}"
    );
    let path = dir.path().join("duplex.toml");
    std::fs::write(&path, &text).unwrap();
    let checked = assert_refused(
        &check_config(&path),
        &["api.tokens[0].token_file: cannot read ", "missing.token"],
    );
    let ran = assert_refused(
        &duplex(&["run", "--config", path.to_str().unwrap()]),
        &["api.tokens[0].token_file: cannot read ", "missing.token"],
    );
    assert_eq!(checked, ran);
    // A short token in the file: refused without showing it.
    std::fs::write(dir.path().join("missing.token"), "tiny-secret\n").unwrap();
    let e = assert_refused(&check_config(&path), &["at least 16 characters"]);
    assert!(!e.contains("tiny-secret"), "{e}");

    let text = format!("[api.tls]\ncert = \"api.crt\"\nkey = \"api.key\"\n{BASE}");
    std::fs::write(&path, &text).unwrap();
    assert_refused(
        &check_config(&path),
        &["api.tls.cert: cannot read ", "api.crt"],
    );
    std::fs::write(dir.path().join("api.crt"), "not a certificate").unwrap();
    std::fs::write(dir.path().join("api.key"), "not a key").unwrap();
    assert_refused(
        &check_config(&path),
        &["api.tls.cert: ", "is not a PEM file"],
    );
}
