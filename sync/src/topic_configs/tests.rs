use rdkafka::admin::{ConfigEntry, ConfigSource};
use regex::Regex;

use super::*;

fn entry(name: &str, value: &str, source: ConfigSource) -> ConfigEntry {
    let is_default = matches!(source, ConfigSource::Default);
    ConfigEntry {
        name: name.into(),
        value: Some(value.into()),
        source,
        is_read_only: false,
        is_default,
        is_sensitive: false,
    }
}

/// A Kafka broker's answer: every key, each with its source.
fn kafka(own: &[(&str, &str)], defaults: &[(&str, &str)]) -> Settings {
    let mut e: Vec<ConfigEntry> = own
        .iter()
        .map(|(k, v)| entry(k, v, ConfigSource::DynamicTopic))
        .collect();
    e.extend(
        defaults
            .iter()
            .map(|(k, v)| entry(k, v, ConfigSource::StaticBroker)),
    );
    Settings::from_entries(&e)
}

/// Tansu 0.6's answer: only the topic's own keys, each labelled a default.
fn tansu(own: &[(&str, &str)]) -> Settings {
    let e: Vec<ConfigEntry> = own
        .iter()
        .map(|(k, v)| entry(k, v, ConfigSource::Default))
        .collect();
    Settings::from_entries(&e)
}

fn set(k: &str, v: &str) -> Change {
    Change::Set(k.into(), v.into())
}

#[test]
fn a_kafka_answer_names_the_topic_s_own_keys_by_their_source() {
    let s = kafka(
        &[("retention.ms", "1000")],
        &[("segment.bytes", "1073741824")],
    );
    assert_eq!(s.own, ["retention.ms".to_string()].into());
    assert_eq!(s.values.len(), 2);
    // Tansu labels its own keys as defaults and lists nothing else: all are its own.
    let t = tansu(&[("cleanup.policy", "compact"), ("retention.ms", "5")]);
    assert_eq!(t.own.len(), 2);
}

#[test]
fn the_plan_sets_what_differs_and_removes_what_the_owner_does_not_set() {
    let p = Policy::default();
    let owner = kafka(
        &[("retention.ms", "1000"), ("cleanup.policy", "compact")],
        &[
            ("segment.bytes", "1073741824"),
            ("max.message.bytes", "1048588"),
        ],
    );
    let target = kafka(
        &[
            ("cleanup.policy", "compact"),
            ("max.message.bytes", "2000000"),
        ],
        &[
            ("retention.ms", "604800000"),
            ("segment.bytes", "1073741824"),
        ],
    );
    assert_eq!(
        plan(&owner, &target, &p),
        vec![
            set("retention.ms", "1000"),
            Change::Delete("max.message.bytes".into())
        ]
    );
    // Once applied, nothing is left to do.
    let applied = kafka(
        &[("retention.ms", "1000"), ("cleanup.policy", "compact")],
        &[
            ("segment.bytes", "1073741824"),
            ("max.message.bytes", "1048588"),
        ],
    );
    assert_eq!(plan(&owner, &applied, &p), vec![]);
}

#[test]
fn excluded_keys_are_neither_set_nor_removed() {
    let engine = TopicConfigSync {
        exclude: vec![Regex::new(r"retention\..*").unwrap()],
        ..Default::default()
    };
    let link = LinkTopicConfigs {
        exclude: vec![Regex::new("segment.ms").unwrap()],
        ..Default::default()
    };
    let p = Policy::new(&engine, &link);
    let owner = tansu(&[
        ("min.insync.replicas", "2"),
        ("retention.ms", "1"),
        ("segment.ms", "5"),
        ("segment.bytes", "1000"),
    ]);
    let target = tansu(&[
        ("unclean.leader.election.enable", "true"),
        ("retention.bytes", "7"),
        ("segment.ms", "9"),
    ]);
    assert_eq!(
        plan(&owner, &target, &p),
        vec![set("segment.bytes", "1000")]
    );
    // Whole names only: a pattern does not match inside a longer key.
    assert!(p.copies("xsegment.ms"));
    assert!(!Policy::default().copies("local.retention.ms"));
    assert!(Policy::default().copies("message.timestamp.type"));
}

#[test]
fn a_key_the_owner_lists_as_a_default_equal_to_the_target_s_value_is_left() {
    let p = Policy::default();
    let owner = kafka(&[], &[("retention.ms", "1000")]);
    let target = kafka(&[("retention.ms", "1000")], &[]);
    assert_eq!(plan(&owner, &target, &p), vec![]);
    let target = kafka(&[("retention.ms", "5")], &[]);
    assert_eq!(
        plan(&owner, &target, &p),
        vec![Change::Delete("retention.ms".into())]
    );
}

#[test]
fn unreadable_and_read_only_keys_are_not_copied() {
    let mut secret = entry("sasl.secret", "x", ConfigSource::DynamicTopic);
    secret.value = None;
    let mut fixed = entry("fixed", "1", ConfigSource::DynamicTopic);
    fixed.is_read_only = true;
    let owner = Settings::from_entries(&[secret, fixed]);
    assert_eq!(
        plan(&owner, &Settings::default(), &Policy::default()),
        vec![]
    );
}

#[test]
fn a_link_or_the_engine_can_turn_sync_off() {
    let off = LinkTopicConfigs {
        enabled: false,
        exclude: vec![],
    };
    assert!(!Policy::new(&TopicConfigSync::default(), &off).enabled);
    let off = TopicConfigSync {
        enabled: false,
        ..Default::default()
    };
    assert!(!Policy::new(&off, &LinkTopicConfigs::default()).enabled);
}
