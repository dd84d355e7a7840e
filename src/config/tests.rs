//! Unit tests of the config: defaults, the engine spec, and one test per refusal.

use std::time::Duration;

use duplex_sync::spec::StartPosition;

use super::*;

const TWO: &str = r#"
[[clusters]]
id = "a"
bootstrap_servers = "a1:9092"

[[clusters]]
id = "b"
bootstrap_servers = "b1:9092,b2:9092"

[[links]]
clusters = ["a", "b"]
"#;

/// Parses `text` and returns the error message, failing if it parses.
fn err(text: &str) -> String {
    match Config::parse(text) {
        Ok(c) => panic!("parsed, expected an error: {c:?}"),
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.contains('\n'), "one line: {msg}");
            msg
        }
    }
}

fn assert_starts(msg: &str, prefix: &str) {
    assert!(
        msg.starts_with(prefix),
        "expected {prefix:?}..., got {msg:?}"
    );
}

#[test]
fn minimal_config_gets_the_defaults() {
    let c = Config::parse(TWO).unwrap();
    assert_eq!(c.metrics_listen(), None);
    let spec = c.engine_spec();
    assert_eq!(spec.clusters.len(), 2);
    assert_eq!(spec.clusters[1].bootstrap_servers, "b1:9092,b2:9092");
    let link = &spec.links[0];
    assert_eq!(link.name, "a-b");
    assert_eq!(link.clusters, [0, 1]);
    assert_eq!(link.start, StartPosition::Earliest);
    assert_eq!(link.in_flight_bytes, 64 << 20);
    assert!(link.topics.selects("orders"));
    assert!(!link.topics.selects("__consumer_offsets"));
    assert_eq!(spec.limits.refresh_interval, Duration::from_secs(5));
    assert_eq!(spec.limits.commit_interval, Duration::from_secs(1));
    assert_eq!(spec.limits.request_timeout, Duration::from_secs(10));
}

#[test]
fn every_key_reaches_the_engine_spec() {
    let text = r#"
[limits]
in_flight_bytes = "512KiB"
refresh_interval = "250ms"
commit_interval = "2s"
request_timeout = "1m"

[metrics]
listen = "127.0.0.1:9464"

[[clusters]]
id = "onprem"
bootstrap_servers = "k1:9092"
[clusters.options]
"security.protocol" = "SASL_SSL"
"sasl.password" = "hunter2"
[clusters.producer]
"linger.ms" = 5
"socket.keepalive.enable" = true
[clusters.consumer]
"fetch.max.bytes" = 1048576

[[clusters]]
id = "msk"
bootstrap_servers = "b-1.msk:9096"

[[links]]
clusters = ["msk", "onprem"]
name = "cloud"
start = "latest"
in_flight_bytes = 1000
[links.topics]
include = ["orders", "pay\\..*"]
exclude = ["pay\\.tmp"]
"#;
    let c = Config::parse(text).unwrap();
    assert_eq!(c.metrics_listen(), Some("127.0.0.1:9464".parse().unwrap()));
    let spec = c.engine_spec();
    let onprem = &spec.clusters[0];
    assert_eq!(onprem.options["sasl.password"], "hunter2");
    assert_eq!(onprem.producer["linger.ms"], "5");
    assert_eq!(onprem.producer["socket.keepalive.enable"], "true");
    assert_eq!(onprem.consumer["fetch.max.bytes"], "1048576");
    let link = &spec.links[0];
    assert_eq!((link.name.as_str(), link.clusters), ("cloud", [1, 0]));
    assert_eq!(link.start, StartPosition::Latest);
    assert_eq!(link.in_flight_bytes, 1000);
    assert!(link.topics.selects("orders") && link.topics.selects("pay.eu"));
    assert!(!link.topics.selects("orders-dlq") && !link.topics.selects("pay.tmp"));
    assert_eq!(spec.limits.refresh_interval, Duration::from_millis(250));
    assert_eq!(spec.limits.request_timeout, Duration::from_secs(60));
    // Debug output is safe to log.
    let debug = format!("{c:?} {spec:?}");
    assert!(!debug.contains("hunter2"), "{debug}");
}

#[test]
fn unknown_keys_are_named_with_their_path() {
    assert_starts(
        &err(&format!("[limits]\nrefresh = \"5s\"\n{TWO}")),
        "limits.refresh: unknown field `refresh`",
    );
    assert_starts(
        &err(&format!("{TWO}\n[links.topics]\nincludes = []")),
        "links[0].topics.includes: unknown field",
    );
    let e = err(&TWO.replace("id = \"b\"", "id = \"b\"\nbootstrap = \"x\""));
    assert_starts(&e, "clusters[1].bootstrap: unknown field `bootstrap`");
    assert!(e.contains("(line "), "{e}");
    assert_starts(
        &err(&format!("[limit]\n{TWO}")),
        "limit: unknown field `limit`",
    );
}

#[test]
fn wrong_types_and_missing_keys_are_named() {
    assert_starts(
        &err(&TWO.replace("id = \"a\"", "id = 5")),
        "clusters[0].id: invalid type: integer `5`",
    );
    assert_starts(
        &err(&TWO.replace("bootstrap_servers = \"a1:9092\"\n", "")),
        "clusters[0]: missing field `bootstrap_servers`",
    );
    assert_starts(
        &err(&format!("{TWO}start = \"middle\"")),
        "links[0].start: unknown variant `middle`",
    );
    assert_starts(
        &err(&format!("limits = 3\n{TWO}")),
        "limits: invalid type: integer `3`, expected a table",
    );
}

#[test]
fn option_values_must_be_scalars_and_are_never_echoed() {
    let e = err(&format!(
        "{TWO}\n[clusters.options]\n\"sasl.password\" = 1.25"
    ));
    assert_starts(
        &e,
        "clusters[1].options.\"sasl.password\": expected a string, integer or boolean",
    );
    assert!(!e.contains("1.25"), "{e}");
    let e = err(&format!("{TWO}\n[clusters.producer]\n\"x\" = [\"secret\"]"));
    assert_starts(
        &e,
        "clusters[1].producer.x: expected a string, integer or boolean, got an array",
    );
}

#[test]
fn reserved_options_are_refused() {
    let e = err(&format!(
        "{TWO}\n[clusters.producer]\n\"enable.idempotence\" = false"
    ));
    assert_starts(
        &e,
        "clusters[1].producer.\"enable.idempotence\": cannot be set here",
    );
    let e = err(&format!(
        "{TWO}\n[clusters.options]\n\"bootstrap.servers\" = \"x:1\""
    ));
    assert_starts(
        &e,
        "clusters[1].options.\"bootstrap.servers\": cannot be set here: set `bootstrap_servers`",
    );
}

#[test]
fn bad_sizes_and_durations_name_the_key() {
    let e = err(&format!(
        "[limits]\nrefresh_interval = \"5 parsecs\"\n{TWO}"
    ));
    assert_starts(
        &e,
        "limits.refresh_interval: invalid duration \"5 parsecs\": ",
    );
    assert_starts(
        &err(&format!("[limits]\ncommit_interval = \"0s\"\n{TWO}")),
        "limits.commit_interval: invalid duration \"0s\": must be greater than zero",
    );
    assert_starts(
        &err(&format!("[limits]\nrequest_timeout = 10\n{TWO}")),
        "limits.request_timeout: invalid type: integer `10`, expected a duration string",
    );
    assert_starts(
        &err(&format!("[limits]\nin_flight_bytes = \"lots\"\n{TWO}")),
        "limits.in_flight_bytes: invalid size \"lots\": ",
    );
    assert_starts(
        &err(&format!("[limits]\nin_flight_bytes = 0\n{TWO}")),
        "limits.in_flight_bytes: invalid size 0: must be greater than zero",
    );
    assert_starts(
        &err(&format!("{TWO}in_flight_bytes = \"0MiB\"")),
        "links[0].in_flight_bytes: invalid size \"0MiB\": must be greater than zero",
    );
    assert_starts(
        &err(&format!("[limits]\nin_flight_bytes = -5\n{TWO}")),
        "limits.in_flight_bytes: invalid size -5",
    );
}

#[test]
fn bad_regex_names_the_array_element() {
    let e = err(&format!("{TWO}[links.topics]\ninclude = [\"ok\", \"(\"]"));
    assert_starts(
        &e,
        "links[0].topics.include[1]: invalid regular expression \"(\": ",
    );
    assert!(e.contains("unclosed group"), "{e}");
    assert_starts(
        &err(&format!("{TWO}[links.topics]\ninclude = []")),
        "links[0].topics.include: empty",
    );
}

#[test]
fn bad_metrics_address_is_named() {
    let e = err(&format!("[metrics]\nlisten = \"localhost\"\n{TWO}"));
    assert_starts(&e, "metrics.listen: invalid socket address \"localhost\"");
}

#[test]
fn clusters_are_checked() {
    assert_starts(
        &err("[[links]]\nclusters = [\"a\", \"b\"]"),
        "clusters: no clusters configured",
    );
    assert_starts(
        &err(&TWO.replace("id = \"b\"", "id = \"a\"")),
        "clusters[1].id: duplicate cluster id \"a\"",
    );
    assert_starts(
        &err(&TWO.replace("id = \"b\"", "id = \"b c\"")),
        "clusters[1].id: invalid cluster id \"b c\": use 1 to 64 characters",
    );
    assert_starts(
        &err(&TWO.replace("id = \"b\"", "id = \"\"")),
        "clusters[1].id: invalid cluster id \"\"",
    );
    let long = "x".repeat(65);
    assert_starts(
        &err(&TWO.replace("id = \"b\"", &format!("id = \"{long}\""))),
        "clusters[1].id: invalid cluster id",
    );
    assert_starts(
        &err(&TWO.replace("\"a1:9092\"", "\"  \"")),
        "clusters[0].bootstrap_servers: empty",
    );
    assert_starts(
        &err(&TWO.replace("\"a1:9092\"", "\"a1:9092,,a2:9092\"")),
        "clusters[0].bootstrap_servers: empty entry",
    );
}

#[test]
fn links_are_checked() {
    let no_links = TWO.replace("[[links]]\nclusters = [\"a\", \"b\"]\n", "");
    assert_starts(&err(&no_links), "links: no links configured");
    assert_starts(
        &err(&TWO.replace("[\"a\", \"b\"]", "[\"a\", \"zz\"]")),
        "links[0].clusters: unknown cluster \"zz\" (known: a, b)",
    );
    assert_starts(
        &err(&TWO.replace("[\"a\", \"b\"]", "[\"a\", \"a\"]")),
        "links[0].clusters: a link needs two different clusters, got \"a\" twice",
    );
    assert_starts(
        &err(&TWO.replace("[\"a\", \"b\"]", "[\"a\"]")),
        "links[0].clusters: a link names exactly two clusters, got 1",
    );
    let again = format!("{TWO}\n[[links]]\nclusters = [\"b\", \"a\"]\nname = \"other\"");
    assert_starts(
        &err(&again),
        "links[1].clusters: clusters \"b\" and \"a\" are already linked by links[0]",
    );
    let bad_name = format!("{TWO}name = \"a/b\"");
    assert_starts(&err(&bad_name), "links[0].name: invalid link name \"a/b\"");
}

#[test]
fn duplicate_link_names_are_named() {
    let three = format!(
        "{TWO}name = \"x\"\n[[clusters]]\nid = \"c\"\nbootstrap_servers = \"c:1\"\n[[links]]\nclusters = [\"b\", \"c\"]\nname = \"x\""
    );
    assert_starts(
        &err(&three),
        "links[1].name: duplicate link name \"x\" (also links[0])",
    );
}

#[test]
fn disconnected_clusters_are_named() {
    let text = format!("{TWO}\n[[clusters]]\nid = \"c\"\nbootstrap_servers = \"c:1\"");
    assert_eq!(
        err(&text),
        "links: cluster \"c\" is not connected to \"a\", \"b\" (every cluster must reach every other through links)"
    );
    let four = format!(
        "{text}\n[[clusters]]\nid = \"d\"\nbootstrap_servers = \"d:1\"\n[[links]]\nclusters = [\"c\", \"d\"]"
    );
    assert_starts(
        &err(&four),
        "links: clusters \"c\", \"d\" are not connected to \"a\", \"b\"",
    );
}

#[test]
fn syntax_errors_give_a_position() {
    let e = err("[[clusters]\nid = 1");
    assert_starts(&e, "invalid TOML at line 1, column ");
    let e = err(&format!("{TWO}\nclusters = [\"a\", \"b\"]"));
    assert!(e.contains("line"), "{e}");
}

#[test]
fn missing_file_names_the_path() {
    let e = Config::load(Path::new("/nonexistent/duplex.toml")).unwrap_err();
    assert_starts(
        &e.to_string(),
        "cannot read config file /nonexistent/duplex.toml: ",
    );
}

const TOKENS: &str = r#"
[api]
listen = "0.0.0.0:9465"
[[api.tokens]]
name = "dashboard"
role = "read"
token = "read-token-0123456789"
[[api.tokens]]
name = "release-bot"
role = "operate"
token_file = "bot.token"
"#;

#[test]
fn api_tokens_are_read_and_never_shown() {
    let c = Config::parse(&format!("{TOKENS}{TWO}")).unwrap();
    assert_eq!(c.api_listen().to_string(), "0.0.0.0:9465");
    assert_eq!(c.api.tokens[0].role, Role::Read);
    let shown = format!("{c:?}");
    assert!(!shown.contains("read-token-0123456789"), "{shown}");
    // A token file is read when the service starts; its problems name the key.
    let dir = tempfile::tempdir().unwrap();
    let mut c = c;
    c.api.resolve_paths(dir.path());
    let e = c.api.tokens().unwrap_err().to_string();
    assert_starts(&e, "api.tokens[1].token_file: cannot read ");
    std::fs::write(dir.path().join("bot.token"), "short\n").unwrap();
    let e = c.api.tokens().unwrap_err().to_string();
    assert!(
        e.contains("at least 16 characters") && !e.contains("short"),
        "{e}"
    );
    std::fs::write(dir.path().join("bot.token"), "operate-token-0123456789\n").unwrap();
    let tokens = c.api.tokens().unwrap();
    assert_eq!(tokens[1].secret.expose(), "operate-token-0123456789");
    std::fs::write(dir.path().join("bot.token"), "read-token-0123456789").unwrap();
    let e = c.api.tokens().unwrap_err().to_string();
    assert!(e.contains("same value as token \"dashboard\""), "{e}");
    assert!(!e.contains("read-token-0123456789"), "{e}");
}

#[test]
fn api_without_tokens_listens_on_loopback_only() {
    let e = err(&format!("[api]\nlisten = \"0.0.0.0:9465\"\n{TWO}"));
    assert_starts(&e, "api.listen: 0.0.0.0:9465 is not a loopback address");
    for ok in ["127.0.0.1:9465", "[::1]:9465"] {
        Config::parse(&format!("[api]\nlisten = \"{ok}\"\n{TWO}")).unwrap();
    }
}

#[test]
fn api_tokens_are_checked() {
    let token = |body: &str| err(&format!("[[api.tokens]]\n{body}\n{TWO}"));
    assert_starts(
        &token("name = \"x\"\nrole = \"read\"\ntoken = \"too-short\""),
        "api.tokens[0].token: a token must be at least 16 characters long (it has 9)",
    );
    assert_starts(
        &token("name = \"x\"\nrole = \"read\"\ntoken = \"has a space in it, long\""),
        "api.tokens[0].token: a token may hold only visible ASCII",
    );
    assert_starts(
        &token("name = \"x\"\nrole = \"read\""),
        "api.tokens[0]: missing token",
    );
    assert_starts(
        &token("name = \"x\"\nrole = \"read\"\ntoken = \"0123456789abcdef\"\ntoken_file = \"f\""),
        "api.tokens[0]: give either token or token_file",
    );
    assert_starts(
        &token("name = \"x y\"\nrole = \"read\"\ntoken = \"0123456789abcdef\""),
        "api.tokens[0].name: invalid token name",
    );
    let e = token("name = \"x\"\nrole = \"admin\"\ntoken = \"0123456789abcdef\"");
    assert!(
        e.contains("api.tokens[0].role") && e.contains("read") && e.contains("operate"),
        "{e}"
    );
    let e = err(&format!(
        "[[api.tokens]]\nname = \"x\"\nrole = \"read\"\ntoken = \"0123456789abcdef\"\n\
         [[api.tokens]]\nname = \"x\"\nrole = \"read\"\ntoken = \"0123456789abcdeg\"\n{TWO}"
    ));
    assert_starts(&e, "api.tokens[1].name: duplicate token name \"x\"");
}

#[test]
fn topic_config_sync_reaches_the_engine_spec_and_an_unknown_owner_is_named() {
    let spec = Config::parse(&format!(
        "[topic_configs]\nowner = \"b\"\nexclude = [\"retention\\\\..*\"]\n{TWO}[links.topic_configs]\nsync = false\nexclude = [\"segment.ms\"]\n"
    ))
    .unwrap()
    .engine_spec();
    assert_eq!(spec.topic_configs.owner.as_deref(), Some("b"));
    assert!(spec.topic_configs.enabled);
    assert!(spec.topic_configs.exclude[0].is_match("retention.ms"));
    assert!(!spec.links[0].topic_configs.enabled);
    assert_eq!(spec.links[0].topic_configs.exclude.len(), 1);
    // Defaults: on, no owner named, nothing excluded beyond the built-in list.
    let spec = Config::parse(TWO).unwrap().engine_spec();
    assert!(spec.topic_configs.enabled && spec.topic_configs.owner.is_none());
    assert!(!spec.topic_configs.acls, "ACL sync is off by default");
    assert!(
        !Config::parse(TWO).unwrap().offsets.index,
        "the index is off by default"
    );
    assert!(
        Config::parse(&format!("[offsets]\nindex = true\n{TWO}"))
            .unwrap()
            .offsets
            .index
    );
    assert!(spec.links[0].topic_configs.enabled);

    let msg = err(&format!("[topic_configs]\nowner = \"c\"\n{TWO}"));
    assert_starts(&msg, "topic_configs.owner");
    assert!(msg.contains(r#"unknown cluster "c""#), "{msg}");
    let msg = err(&format!("[topic_configs]\nexclude = [\"(\"]\n{TWO}"));
    assert_starts(&msg, "topic_configs.exclude[0]");
}
