//! Running `duplex verify` from tests: configs, the command, and the report it wrote.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use duplex_sync::provenance::{Hop, PATH_HEADER, encode_origin};
use duplex_verifier::Report;

use super::{Rec, TestCluster};

/// A `duplex` config naming these clusters (with the harness's client options) and one
/// link between the first two, written into `dir`.
pub fn write_config(dir: &Path, clusters: &[&TestCluster]) -> PathBuf {
    let mut s = super::clusters_toml(clusters, |_| {});
    for pair in clusters.windows(2) {
        s += &format!(
            "[[links]]\nclusters = [\"{}\", \"{}\"]\n",
            pair[0].id, pair[1].id
        );
    }
    let path = dir.join("duplex.toml");
    std::fs::write(&path, s).expect("write config");
    path
}

/// `duplex verify --config CONFIG --report DIR/report --store DIR/store ARGS...`.
pub fn command(config: &Path, dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_duplex"));
    cmd.arg("verify")
        .arg("--config")
        .arg(config)
        .arg("--report")
        .arg(dir.join("report"))
        .arg("--store")
        .arg(dir.join("store"))
        .args(args)
        .env("RUST_LOG", "warn,librdkafka=error");
    cmd
}

/// Runs `duplex verify` to the end (from a blocking thread, so that in-process mock
/// clusters keep serving) and returns its output.
pub async fn run(config: &Path, dir: &Path, args: &[&str]) -> Output {
    let mut cmd = command(config, dir, args);
    tokio::task::spawn_blocking(move || cmd.output().expect("run duplex verify"))
        .await
        .expect("join")
}

/// [`run`], asserting its exit code (0 PASS, 1 FAIL, 2 a refused request), with the
/// run's output in the message when it differs.
pub async fn run_expecting(config: &Path, dir: &Path, args: &[&str], code: i32) -> Output {
    let out = run(config, dir, args).await;
    assert_eq!(out.status.code(), Some(code), "{}", describe(&out));
    out
}

/// The `parity.json` a run wrote into `dir/report`. With `DUPLEX_TEST_KEEP_REPORTS=DIR`
/// the report files are also copied to `DIR/<n>-parity.{json,html}` to look at.
pub fn report(dir: &Path) -> Report {
    if let Ok(keep) = std::env::var("DUPLEX_TEST_KEEP_REPORTS") {
        let keep = Path::new(&keep);
        std::fs::create_dir_all(keep).expect("create DUPLEX_TEST_KEEP_REPORTS");
        let n = super::unique("report");
        for ext in ["json", "html"] {
            let _ = std::fs::copy(
                dir.join(format!("report/parity.{ext}")),
                keep.join(format!("{n}-parity.{ext}")),
            );
        }
    }
    let text =
        std::fs::read_to_string(dir.join("report/parity.json")).expect("parity.json written");
    serde_json::from_str(&text).expect("parity.json parses as a duplex.parity/1 report")
}

/// Says what a run printed, for assertion messages.
pub fn describe(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `duplex verify` between every one of `clusters` on `topic` and asserts PASS:
/// every record on every cluster once, unaltered, and each origin partition in order
/// (nothing missing, extra, altered, duplicated, misplaced or reordered), `records`
/// matched per pair compared. Returns the report's totals.
#[allow(dead_code)] // not every test binary verifies
pub async fn assert_pass(
    clusters: &[&TestCluster],
    topic: &str,
    records: u64,
) -> duplex_verifier::report::Counts {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), clusters);
    let between: Vec<&str> = clusters.iter().map(|c| c.id.as_str()).collect();
    let between = between.join(",");
    let out = run(
        &config,
        dir.path(),
        &["--between", &between, "--topics", topic],
    )
    .await;
    let describe = describe(&out);
    let t = report(dir.path()).totals;
    eprintln!("verify: {} matched, {} reordered", t.matched, t.reordered);
    assert_eq!(out.status.code(), Some(0), "PASS: {describe}");
    assert_eq!(
        (
            t.missing,
            t.extra,
            t.altered,
            t.duplicated,
            t.wrong_partition,
            t.reordered
        ),
        (0, 0, 0, 0, 0, 0),
        "{describe}"
    );
    let pairs = clusters.len() as u64 - 1;
    assert_eq!(t.matched, pairs * records, "{describe}");
    t
}

/// A copy of `rec` carrying the provenance of `(origin, partition, offset)`, as Duplex
/// would write it to a target.
pub fn replica(rec: &Rec, origin: &str, partition: i32, offset: i64) -> Rec {
    let mut path = Vec::new();
    encode_origin(
        Hop {
            cluster: origin.as_bytes(),
            partition,
            offset,
        },
        &mut path,
    )
    .expect("encode provenance");
    let mut r = rec.clone();
    r.headers.push((PATH_HEADER.to_string(), Some(path)));
    r
}
