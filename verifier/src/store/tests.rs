//! The store through RocksDB: layout versions, and runs written in batches.

use super::*;

#[test]
fn a_version_1_store_is_read_and_marked_version_2_and_another_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let sig = "clusters a,b";
    {
        let store = Store::open(dir.path(), sig).unwrap();
        let v1 = format!("{STORE_VERSION_1}\n{sig}");
        store
            .db
            .put_cf(store.cf(META), b"signature", v1.as_bytes())
            .unwrap();
    }
    let store = Store::open(dir.path(), sig).unwrap();
    let marked = store.db.get_cf(store.cf(META), b"signature").unwrap();
    assert_eq!(
        marked.unwrap(),
        format!("{STORE_VERSION}\n{sig}").as_bytes()
    );
    store
        .db
        .put_cf(
            store.cf(META),
            b"signature",
            format!("duplex-verify-store/3\n{sig}"),
        )
        .unwrap();
    drop(store);
    let err = Store::open(dir.path(), sig).unwrap_err().to_string();
    assert!(err.contains("duplex-verify-store/3"), "{err}");
}

/// Through the batch and RocksDB: runs written, closed at the end of a batch, and
/// read back record by record, a misplaced copy at the same offsets as a placed run's
/// first record included.
#[test]
fn runs_written_in_batches_read_back_record_by_record() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), "runs").unwrap();
    let group = keys::group(1, "t", 0, "a");
    let entry = |x: u64, own: u64, p: i32| RecordEntry {
        origin_offset: x,
        own_offset: own,
        own_partition: p,
        fp: (x * 1000 + own) as u128,
    };
    let mut written = Vec::new();
    let mut run = Run::default();
    for batch_records in [0..40u64, 40..70] {
        let mut batch = Batch::new();
        for x in batch_records {
            let e = entry(x, x, 0);
            batch.put_record(&store, &group, 0, e, false, &mut run);
            written.push(e);
            if x == 0 {
                // A copy of origin 0 held at offset 0 of partition 1.
                let m = entry(0, 0, 1);
                batch.put_record(&store, &group, 0, m, false, &mut run);
                written.push(m);
            }
        }
        batch.end_run(&store, &group, &mut run);
        store.write(batch).unwrap();
    }
    let read: Vec<RecordEntry> = store
        .records(1, "t", 0, "a", 0)
        .collect::<Result<_, _>>()
        .unwrap();
    written.sort_by_key(|e| (e.origin_offset, e.own_offset, e.own_partition));
    assert_eq!(read, written);
    let from_33: Vec<u64> = store
        .records(1, "t", 0, "a", 33)
        .map(|e| e.unwrap().origin_offset)
        .collect();
    assert_eq!(from_33, (33..70).collect::<Vec<_>>());
    let digest: RangeDigest = store.ranges(1, "t", 0, "a").map(|r| r.unwrap().1).fold(
        RangeDigest::default(),
        |mut d, r| {
            d.merge(&r);
            d
        },
    );
    assert_eq!(digest.count, 71);
}
