//! What `duplex offsets` prints: a table per group, or one JSON object per group.

use duplex_sync::offsets::{Action, Applied, GroupSync, Partition, Translation};
use serde_json::{Value, json};

/// A partition's translation as JSON: `status` is `translated` (with `offset` and
/// `redelivered`) or `refused` (with `reason`, and `refusal` saying why in fields).
pub fn partition_json(p: &Partition) -> Value {
    let mut v = json!({
        "topic": p.topic,
        "partition": p.partition,
        "committed": p.committed,
    });
    let extra = match &p.outcome {
        Ok(t) => json!({"status": "translated", "offset": t.offset, "redelivered": t.redelivered}),
        Err(r) => json!({"status": "refused", "reason": r.to_string(), "refusal": r}),
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
pub fn translation_json(t: &Translation) -> Value {
    json!({
        "group": t.group,
        "from": t.from,
        "to": t.to,
        "complete": t.complete(),
        "partitions": t.partitions.iter().map(partition_json).collect::<Vec<_>>(),
    })
}

/// Prints a translation.
pub fn translation(t: &Translation, as_json: bool) {
    if as_json {
        println!("{}", translation_json(t));
        return;
    }
    println!("group {}: {} -> {}", t.group, t.from, t.to);
    let rows: Vec<[String; 5]> = t
        .partitions
        .iter()
        .map(|p| {
            let (to, again) = match &p.outcome {
                Ok(x) => (x.offset.to_string(), x.redelivered.to_string()),
                Err(r) => (format!("refused: {r}"), "-".into()),
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
    let refused = t.partitions.iter().filter(|p| p.outcome.is_err()).count();
    let again: u64 = t
        .partitions
        .iter()
        .filter_map(|p| p.outcome.as_ref().ok())
        .map(|x| x.redelivered)
        .sum();
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

fn action_text(a: &Applied, p: &Partition) -> String {
    let before = a
        .before
        .map_or_else(|| "none".to_string(), |b| b.to_string());
    match (&a.action, &p.outcome) {
        (Action::Committed, Ok(t)) => format!("committed {} (was {before})", t.offset),
        (Action::Unchanged, Ok(t)) => format!("already at {}", t.offset),
        (Action::KeptAhead, Ok(t)) => format!(
            "left at {before}: translated {} is behind it (--allow-rewind moves it back)",
            t.offset
        ),
        (_, Err(r)) => format!("refused: {r}"),
        (_, Ok(_)) => "?".into(),
    }
}

/// Prints what a sync did.
pub fn sync(s: &GroupSync, as_json: bool) {
    let t = &s.translation;
    if as_json {
        let mut v = translation_json(t);
        let applied: Vec<Value> = s
            .applied
            .iter()
            .zip(&t.partitions)
            .map(|(a, p)| {
                let mut v = partition_json(p);
                merge(&mut v, json!({"before": a.before, "action": a.action}));
                v
            })
            .collect();
        merge(
            &mut v,
            json!({"members": s.members, "synced": s.complete(), "partitions": if s.members.is_empty() { applied } else { t.partitions.iter().map(partition_json).collect() }}),
        );
        println!("{v}");
        return;
    }
    if !s.members.is_empty() {
        let names: Vec<String> = s.members.iter().map(|m| m.to_string()).collect();
        println!(
            "group {}: refused: it has {} active member(s) on {}: {}; nothing committed",
            t.group,
            names.len(),
            t.to,
            names.join(", ")
        );
        return;
    }
    println!("group {}: {} -> {}", t.group, t.from, t.to);
    for (a, p) in s.applied.iter().zip(&t.partitions) {
        let again = p
            .outcome
            .as_ref()
            .map(|x| format!(", {} to be read again", x.redelivered))
            .unwrap_or_default();
        println!(
            "  {}/{} committed on {} {}: {}{again}",
            p.topic,
            p.partition,
            t.from,
            p.committed,
            action_text(a, p)
        );
    }
}
