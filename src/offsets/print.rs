//! What `duplex offsets` prints: a table per group, or one JSON object per group. Local
//! runs and `--remote` print the same, from the API's messages (a local run converts
//! its result as the service does).

use duplex_proto::v1 as pb;
use serde_json::{Value, json};

/// A partition's translation as JSON: `status` is `translated` (with `offset` and
/// `redelivered`) or `refused` (with `reason`, and `refusal` saying why in fields).
pub fn partition_json(p: &pb::PartitionTranslation) -> Value {
    let mut v = json!({
        "topic": p.topic,
        "partition": p.partition,
        "committed": p.committed,
    });
    let extra = if p.translated {
        json!({"status": "translated", "offset": p.offset, "redelivered": p.redelivered})
    } else {
        let origins: Vec<Value> = p
            .behind
            .iter()
            .map(|b| {
                json!({
                    "origin": b.origin,
                    "origin_partition": b.origin_partition,
                    "consumed": b.consumed,
                    "held": b.held,
                })
            })
            .collect();
        let mut refusal = json!({"kind": p.refusal});
        if p.refusal == "behind" {
            merge(&mut refusal, json!({"origins": origins}));
        }
        json!({"status": "refused", "reason": p.reason, "refusal": refusal})
    };
    merge(&mut v, extra);
    v
}

fn merge(v: &mut Value, extra: Value) {
    if let (Some(o), Value::Object(e)) = (v.as_object_mut(), extra) {
        o.extend(e);
    }
}

/// A translation as JSON.
pub fn translation_json(t: &pb::OffsetTranslation) -> Value {
    json!({
        "group": t.group,
        "from": t.from,
        "to": t.to,
        "complete": t.complete,
        "partitions": t.partitions.iter().map(partition_json).collect::<Vec<_>>(),
    })
}

/// Prints a translation.
pub fn translation(t: &pb::OffsetTranslation, as_json: bool) {
    if as_json {
        println!("{}", translation_json(t));
        return;
    }
    println!("group {}: {} -> {}", t.group, t.from, t.to);
    let rows: Vec<[String; 5]> = t
        .partitions
        .iter()
        .map(|p| {
            let (to, again) = if p.translated {
                (p.offset.to_string(), p.redelivered.to_string())
            } else {
                (format!("refused: {}", p.reason), "-".into())
            };
            [
                p.topic.clone(),
                p.partition.to_string(),
                p.committed.to_string(),
                again,
                to,
            ]
        })
        .collect();
    let head = [
        "topic".to_string(),
        "partition".into(),
        format!("committed on {}", t.from),
        "re-delivered".into(),
        format!("translated on {}", t.to),
    ];
    table(&head, &rows);
    let refused = t.partitions.iter().filter(|p| !p.translated).count();
    let again: u64 = t.partitions.iter().map(|p| p.redelivered).sum();
    println!(
        "{} partitions translated, {refused} refused; {again} records will be read again on {}",
        t.partitions.len() - refused,
        t.to
    );
}

fn table(head: &[String; 5], rows: &[[String; 5]]) {
    let mut w = head.each_ref().map(|h| h.len());
    for r in rows {
        for (i, c) in r.iter().enumerate().take(4) {
            w[i] = w[i].max(c.len());
        }
    }
    let line = |r: &[String; 5]| {
        println!(
            "{:<w0$}  {:>w1$}  {:>w2$}  {:>w3$}  {}",
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            w0 = w[0],
            w1 = w[1],
            w2 = w[2],
            w3 = w[3]
        );
    };
    line(head);
    for r in rows {
        line(r);
    }
}

fn action_name(a: i32) -> &'static str {
    match pb::SyncAction::try_from(a) {
        Ok(pb::SyncAction::Committed) => "committed",
        Ok(pb::SyncAction::Unchanged) => "unchanged",
        Ok(pb::SyncAction::KeptAhead) => "kept_ahead",
        Ok(pb::SyncAction::Refused) => "refused",
        Ok(pb::SyncAction::Skipped) => "skipped",
        Ok(pb::SyncAction::Failed) => "failed",
        _ => "unknown",
    }
}

fn action_text(p: &pb::PartitionSync) -> String {
    let t = p.translation.clone().unwrap_or_default();
    let before = p
        .before
        .map_or_else(|| "none".to_string(), |b| b.to_string());
    match pb::SyncAction::try_from(p.action) {
        Ok(pb::SyncAction::Committed) => format!("committed {} (was {before})", t.offset),
        Ok(pb::SyncAction::Unchanged) => format!("already at {}", t.offset),
        Ok(pb::SyncAction::KeptAhead) => format!(
            "left at {before}: translated {} is behind it (--allow-rewind moves it back)",
            t.offset
        ),
        Ok(pb::SyncAction::Skipped) => "skipped: the group has members there".to_string(),
        Ok(pb::SyncAction::Failed) => format!("the commit failed; still at {before}"),
        _ => format!("refused: {}", t.reason),
    }
}

/// Prints what a sync did.
pub fn sync(s: &pb::GroupOffsetsSync, as_json: bool) {
    let translations: Vec<pb::PartitionTranslation> = s
        .partitions
        .iter()
        .map(|p| p.translation.clone().unwrap_or_default())
        .collect();
    if as_json {
        let partitions: Vec<Value> = s
            .partitions
            .iter()
            .zip(&translations)
            .map(|(p, t)| {
                let mut v = partition_json(t);
                if s.members.is_empty() {
                    merge(
                        &mut v,
                        json!({"before": p.before, "action": action_name(p.action)}),
                    );
                }
                v
            })
            .collect();
        let members: Vec<Value> = s
            .members
            .iter()
            .map(|m| json!({"id": m.id, "client_id": m.client_id, "host": m.host}))
            .collect();
        let mut v = json!({
            "group": s.group,
            "from": s.from,
            "to": s.to,
            "members": members,
            "synced": s.synced,
            "partitions": partitions,
        });
        if s.sequence > 0 {
            merge(&mut v, json!({"sequence": s.sequence}));
        }
        if !s.error.is_empty() {
            merge(&mut v, json!({"error": s.error}));
        }
        println!("{v}");
        return;
    }
    if !s.members.is_empty() {
        let names: Vec<String> = s
            .members
            .iter()
            .map(|m| format!("{} ({} on {})", m.id, m.client_id, m.host))
            .collect();
        println!(
            "group {}: refused: it has {} active member(s) on {}: {}; nothing committed",
            s.group,
            names.len(),
            s.to,
            names.join(", ")
        );
        return;
    }
    let recorded = if s.sequence > 0 {
        format!(" (recorded as event {})", s.sequence)
    } else {
        String::new()
    };
    println!("group {}: {} -> {}{recorded}", s.group, s.from, s.to);
    if !s.error.is_empty() {
        println!("  the commit failed: {}", s.error);
    }
    for (p, t) in s.partitions.iter().zip(&translations) {
        let again = if t.translated {
            format!(", {} to be read again", t.redelivered)
        } else {
            String::new()
        };
        println!(
            "  {}/{} committed on {} {}: {}{again}",
            t.topic,
            t.partition,
            s.from,
            t.committed,
            action_text(p)
        );
    }
}
