//! The batches the collector has not accepted yet, oldest first: kept
//! encoded and gzip-compressed (not as message trees), bounded by age and
//! by stored size, and grouped into replay requests. Pure: no I/O, no
//! clock; the push brings the time and does the file work (`spool`).
//!
//! Time order is the invariant: a batch is sent only when every older one
//! still here goes with it or before it, so a backend without out-of-order
//! ingestion takes every series in order.

use bytes::Bytes;
use std::collections::VecDeque;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;

/// What is known of a batch without its payload.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Meta {
    /// The snapshot's collection time, unix seconds: the order of batches.
    pub time: f64,
    /// Tells apart batches of one collection time; unique in a spool.
    pub seq: u64,
    /// The encoded request's length before compression.
    pub raw_len: u64,
    /// What the batch costs to keep: the compressed payload and the spool
    /// header (counted whether or not the batch is on disk, so that the
    /// cap means the same with a spool and without).
    pub stored_len: u64,
}

/// One batch: its payload in memory, in a spool file, or both.
#[derive(Debug)]
pub(crate) struct Entry {
    pub meta: Meta,
    /// Dropped from memory once the batch is safely on disk.
    pub payload: Option<Bytes>,
    pub file: Option<PathBuf>,
}

#[derive(Debug)]
pub(crate) struct Backlog {
    /// Sorted by (time, seq).
    entries: VecDeque<Entry>,
    bytes: u64,
    max_age: Duration,
    max_bytes: u64,
    next_seq: u64,
}

impl Backlog {
    pub(crate) fn new(max_age: Duration, max_bytes: u64) -> Backlog {
        Backlog {
            entries: VecDeque::new(),
            bytes: 0,
            max_age,
            max_bytes,
            next_seq: 0,
        }
    }

    /// A sequence number no batch here or in the spool has.
    pub(crate) fn next_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    pub(crate) fn oldest(&self) -> Option<f64> {
        self.entries.front().map(|e| e.meta.time)
    }

    pub(crate) fn newest(&self) -> Option<f64> {
        self.entries.back().map(|e| e.meta.time)
    }

    /// Adds a batch in time order, then drops the oldest while the stored
    /// size is over the cap; those dropped are returned (their files are
    /// the caller's to remove). The newest batch is never dropped for size:
    /// it is the live data, and one batch must be able to go out.
    pub(crate) fn insert(&mut self, entry: Entry) -> Vec<Entry> {
        self.next_seq = self.next_seq.max(entry.meta.seq + 1);
        self.bytes += entry.meta.stored_len;
        let key = |m: &Meta| (m.time, m.seq);
        let at = self.entries.partition_point(|e| {
            key(&e.meta)
                .partial_cmp(&key(&entry.meta))
                .is_some_and(|o| o.is_le())
        });
        self.entries.insert(at, entry);
        let mut dropped = Vec::new();
        while self.bytes > self.max_bytes && self.entries.len() > 1 {
            dropped.extend(self.pop_front());
        }
        dropped
    }

    /// Drops the batches collected more than the maximum age before `now`,
    /// but never the newest.
    pub(crate) fn expire(&mut self, now: f64) -> Vec<Entry> {
        let limit = now - self.max_age.as_secs_f64();
        let mut dropped = Vec::new();
        while self.entries.len() > 1 && self.oldest().is_some_and(|t| t < limit) {
            dropped.extend(self.pop_front());
        }
        dropped
    }

    fn pop_front(&mut self) -> Option<Entry> {
        let entry = self.entries.pop_front()?;
        self.bytes -= entry.meta.stored_len;
        Some(entry)
    }

    /// The next request: the oldest batches whose encoded sizes add up to
    /// at most `limit`, and at least one (a batch larger than the limit goes
    /// alone), at most `most`.
    pub(crate) fn head(&self, limit: u64, most: usize) -> Vec<Meta> {
        let mut total = 0u64;
        let mut out = Vec::new();
        for entry in self.entries.iter().take(most.max(1)) {
            total = total.saturating_add(entry.meta.raw_len);
            if !out.is_empty() && total > limit {
                break;
            }
            out.push(entry.meta);
        }
        out
    }

    pub(crate) fn get(&self, seq: u64) -> Option<&Entry> {
        self.entries.iter().find(|e| e.meta.seq == seq)
    }

    /// Records that a batch is on disk: its payload leaves memory. False
    /// when the batch is no longer here.
    pub(crate) fn written(&mut self, seq: u64, file: PathBuf) -> bool {
        match self.entries.iter_mut().find(|e| e.meta.seq == seq) {
            Some(entry) => {
                entry.file = Some(file);
                entry.payload = None;
                true
            }
            None => false,
        }
    }

    /// The batches only in memory, oldest first, with their payloads.
    pub(crate) fn unwritten(&self) -> Vec<(Meta, Bytes)> {
        self.entries
            .iter()
            .filter(|e| e.file.is_none())
            .filter_map(|e| Some((e.meta, e.payload.clone()?)))
            .collect()
    }

    /// Takes out the batches of `seqs` that are still here.
    pub(crate) fn remove(&mut self, seqs: &[u64]) -> Vec<Entry> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < self.entries.len() {
            if seqs.contains(&self.entries[i].meta.seq) {
                if let Some(entry) = self.entries.remove(i) {
                    self.bytes -= entry.meta.stored_len;
                    out.push(entry);
                }
            } else {
                i += 1;
            }
        }
        out
    }
}

/// A batch's payload: the encoded request, gzip-compressed.
pub(crate) fn compress(encoded: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(encoded.len() / 8 + 64),
        flate2::Compression::default(),
    );
    // Writing to a Vec cannot fail.
    let _ = encoder.write_all(encoded);
    encoder.finish().unwrap_or_default()
}

/// One request from several batches, oldest first. Encoded protobuf
/// messages concatenate into their merge, and `resource_metrics` is a
/// repeated field: the bytes of the batches end to end are one
/// `ExportMetricsServiceRequest` holding each batch's resource metrics in
/// order. A payload that does not inflate to its recorded length is an
/// error (a damaged batch), never more than that length read.
pub fn merge<P: AsRef<[u8]>>(batches: &[(Meta, P)]) -> Result<Bytes, (u64, String)> {
    /// Reserved up front at most: the lengths come from files, and a
    /// request is a few megabytes.
    const MAX_RESERVE: u64 = 64 << 20;
    let total: u64 = batches.iter().map(|(m, _)| m.raw_len).sum();
    let mut out = Vec::with_capacity(usize::try_from(total.min(MAX_RESERVE)).unwrap_or(0));
    for (meta, payload) in batches {
        let before = out.len() as u64;
        let mut inflate = flate2::read::GzDecoder::new(payload.as_ref()).take(meta.raw_len + 1);
        let read = inflate.read_to_end(&mut out);
        let got = out.len() as u64 - before;
        match read {
            Ok(_) if got == meta.raw_len => {}
            Ok(_) => {
                return Err((
                    meta.seq,
                    format!("inflates to {got} bytes, not {}", meta.raw_len),
                ))
            }
            Err(e) => return Err((meta.seq, format!("does not inflate: {e}"))),
        }
    }
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::metrics::v1::ResourceMetrics;
    use prost::Message;

    fn entry(time: f64, seq: u64, stored: u64) -> Entry {
        Entry {
            meta: Meta {
                time,
                seq,
                raw_len: stored * 10,
                stored_len: stored,
            },
            payload: Some(Bytes::from_static(b"x")),
            file: None,
        }
    }

    fn seqs(backlog: &Backlog) -> Vec<u64> {
        backlog.entries.iter().map(|e| e.meta.seq).collect()
    }

    #[test]
    fn batches_are_kept_in_time_order_whatever_order_they_come_in() {
        let mut b = Backlog::new(Duration::from_secs(3600), 1000);
        for (time, seq) in [(20.0, 2), (10.0, 1), (30.0, 3), (20.0, 4)] {
            assert!(b.insert(entry(time, seq, 10)).is_empty());
        }
        assert_eq!(seqs(&b), [1, 2, 4, 3]);
        assert_eq!((b.len(), b.bytes(), b.oldest()), (4, 40, Some(10.0)));
        assert_eq!(b.next_seq(), 5, "after every seq seen");
    }

    #[test]
    fn past_the_size_cap_the_oldest_go_but_never_the_newest() {
        let mut b = Backlog::new(Duration::from_secs(3600), 25);
        assert!(b.insert(entry(1.0, 1, 10)).is_empty());
        assert!(b.insert(entry(2.0, 2, 10)).is_empty());
        let dropped = b.insert(entry(3.0, 3, 10));
        assert_eq!(dropped.iter().map(|e| e.meta.seq).collect::<Vec<_>>(), [1]);
        assert_eq!((seqs(&b), b.bytes()), (vec![2, 3], 20));
        let dropped = b.insert(entry(4.0, 4, 100));
        assert_eq!(dropped.len(), 2);
        assert_eq!(
            (seqs(&b), b.bytes()),
            (vec![4], 100),
            "alone over the cap, kept"
        );
    }

    #[test]
    fn past_the_age_cap_the_oldest_go_but_never_the_newest() {
        let mut b = Backlog::new(Duration::from_secs(60), 1000);
        for (time, seq) in [(100.0, 1), (130.0, 2), (170.0, 3)] {
            b.insert(entry(time, seq, 10));
        }
        assert!(b.expire(160.0).is_empty());
        let gone: Vec<u64> = b.expire(191.0).iter().map(|e| e.meta.seq).collect();
        assert_eq!(gone, [1, 2]);
        assert_eq!(b.bytes(), 10);
        assert!(b.expire(10_000.0).is_empty(), "the newest stays");
        assert_eq!(seqs(&b), [3]);
    }

    #[test]
    fn a_request_takes_the_oldest_batches_up_to_the_limit_and_at_least_one() {
        let mut b = Backlog::new(Duration::from_secs(3600), 10_000);
        for seq in 1..=5 {
            b.insert(entry(seq as f64, seq, 10)); // raw 100 each
        }
        let head = |limit, most| {
            b.head(limit, most)
                .iter()
                .map(|m| m.seq)
                .collect::<Vec<_>>()
        };
        assert_eq!(head(250, 100), [1, 2]);
        assert_eq!(head(300, 100), [1, 2, 3]);
        assert_eq!(head(50, 100), [1], "alone over the limit");
        assert_eq!(head(10_000, 2), [1, 2]);
        assert_eq!(head(10_000, 0), [1]);
    }

    #[test]
    fn removing_and_writing_keep_the_byte_count() {
        let mut b = Backlog::new(Duration::from_secs(3600), 10_000);
        for seq in 1..=3 {
            b.insert(entry(seq as f64, seq, 10));
        }
        assert!(b.written(2, PathBuf::from("/spool/2")));
        assert!(!b.written(9, PathBuf::from("/spool/9")));
        assert_eq!(b.bytes(), 30);
        assert!(b.get(2).unwrap().payload.is_none());
        let unwritten: Vec<u64> = b.unwritten().iter().map(|(m, _)| m.seq).collect();
        assert_eq!(unwritten, [1, 3]);
        let removed = b.remove(&[2, 3, 9]);
        assert_eq!(removed.len(), 2);
        assert_eq!((seqs(&b), b.bytes()), (vec![1], 10));
    }

    fn request(name: &str) -> Vec<u8> {
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                schema_url: name.into(),
                ..ResourceMetrics::default()
            }],
        }
        .encode_to_vec()
    }

    #[test]
    fn merged_batches_are_one_request_of_their_resource_metrics_in_order() {
        let batches: Vec<(Meta, Bytes)> = ["a", "b", "c"]
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let encoded = request(name);
                let meta = Meta {
                    time: i as f64,
                    seq: i as u64,
                    raw_len: encoded.len() as u64,
                    stored_len: 0,
                };
                (meta, Bytes::from(compress(&encoded)))
            })
            .collect();
        let merged = merge(&batches).unwrap();
        let decoded = ExportMetricsServiceRequest::decode(merged).unwrap();
        let names: Vec<&str> = decoded
            .resource_metrics
            .iter()
            .map(|rm| rm.schema_url.as_str())
            .collect();
        assert_eq!(names, ["a", "b", "c"]);
    }

    #[test]
    fn a_payload_that_does_not_inflate_to_its_length_names_its_batch() {
        let encoded = request("a");
        let good = Bytes::from(compress(&encoded));
        let meta = |seq, raw_len| Meta {
            time: 0.0,
            seq,
            raw_len,
            stored_len: 0,
        };
        let len = encoded.len() as u64;
        let err = merge(&[
            (meta(1, len), good.clone()),
            (meta(2, len - 1), good.clone()),
        ]);
        assert_eq!(err.unwrap_err().0, 2);
        let err = merge(&[(meta(3, len), Bytes::from_static(b"not gzip"))]);
        assert_eq!(err.unwrap_err().0, 3);
    }
}
