//! The sender against a scripted collector, in paused time: the backlog's
//! order, what leaves it and when, the spool, the stop.

use super::*;
use crate::metrics::live::PushCounts;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::ResourceMetrics;

/// Answers from a script, then accepts; records the batches of each request
/// (a request's resource metrics carry their batch's name as schema URL).
#[derive(Default)]
struct Scripted {
    answers: Mutex<Vec<Result<Accepted, Failure>>>,
    requests: Mutex<Vec<Vec<String>>>,
    /// Takes gzip as stored; such requests are recorded with a `gz:` prefix.
    gzip: bool,
}

impl Scripted {
    fn new(answers: Vec<Result<Accepted, Failure>>) -> Scripted {
        Scripted {
            answers: Mutex::new(answers.into_iter().rev().collect()),
            ..Scripted::default()
        }
    }

    fn requests(&self) -> Vec<Vec<String>> {
        self.requests.lock().unwrap().clone()
    }
}

impl Export for Arc<Scripted> {
    async fn export(&self, body: Body, _: Duration) -> Result<Accepted, Failure> {
        use prost::Message;
        use std::io::Read;
        let (prefix, body) = match body {
            Body::Encoded(body) => ("", body),
            Body::Gzipped(gzipped) => {
                assert!(self.gzip, "gzip only to a transport that takes it");
                let mut out = Vec::new();
                flate2::read::GzDecoder::new(&gzipped[..])
                    .read_to_end(&mut out)
                    .unwrap();
                ("gz:", Bytes::from(out))
            }
        };
        let request = ExportMetricsServiceRequest::decode(body).unwrap();
        let names = request
            .resource_metrics
            .into_iter()
            .map(|r| format!("{prefix}{}", r.schema_url))
            .collect();
        self.requests.lock().unwrap().push(names);
        self.answers
            .lock()
            .unwrap()
            .pop()
            .unwrap_or(Ok(Accepted::default()))
    }

    fn takes_gzip(&self) -> bool {
        self.gzip
    }
}

fn down() -> Result<Accepted, Failure> {
    Err(Failure::Retryable {
        reason: "Unavailable".into(),
        delay: None,
    })
}

fn refused() -> Result<Accepted, Failure> {
    Err(Failure::Permanent("InvalidArgument".into()))
}

/// A batch named `name`: one resource metrics whose schema URL is the name.
fn batch(name: &str) -> (u64, Vec<u8>) {
    use prost::Message;
    let request = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            schema_url: name.into(),
            ..ResourceMetrics::default()
        }],
    };
    let encoded = request.encode_to_vec();
    (encoded.len() as u64, backlog::compress(&encoded))
}

struct Test {
    collector: Arc<Scripted>,
    sender: Arc<Sender<Arc<Scripted>>>,
    stats: Arc<PushStats>,
}

fn sender(answers: Vec<Result<Accepted, Failure>>, spool: Option<Spool>, max_bytes: u64) -> Test {
    let collector = Arc::new(Scripted::new(answers));
    let stats = Arc::new(PushStats::new(spool.is_some()));
    let sender = Arc::new(Sender::new(
        collector.clone(),
        spool,
        stats.clone(),
        (Duration::from_secs(1), 1 << 20),
        (Duration::from_secs(24 * 3600), max_bytes),
        "test".into(),
    ));
    Test {
        collector,
        sender,
        stats,
    }
}

impl Test {
    async fn add(&self, time: f64, name: &str) {
        let (raw, payload) = batch(name);
        self.sender.enqueue(time, raw, payload).await;
    }

    fn counts(&self) -> PushCounts {
        self.stats.counts()
    }
}

fn now() -> f64 {
    unix_now()
}

#[tokio::test(start_paused = true)]
async fn batches_not_accepted_wait_and_go_out_oldest_first_in_one_request() {
    let t = sender(vec![down(), down()], None, 1 << 30);
    let run = tokio::spawn({
        let s = t.sender.clone();
        async move { s.run().await }
    });
    let start = now() - 100.0;
    t.add(start, "a").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    t.add(start + 1.0, "b").await;
    t.add(start + 2.0, "c").await;
    assert_eq!(t.counts().backlog.batches, 3);
    tokio::time::sleep(Duration::from_secs(10)).await;
    // a (down), a+b+c (down), a+b+c (accepted).
    assert_eq!(
        t.collector.requests(),
        [vec!["a"], vec!["a", "b", "c"], vec!["a", "b", "c"]]
    );
    let counts = t.counts();
    assert_eq!((counts.success, counts.failure), (1, 2));
    assert_eq!((counts.backlog.batches, counts.backlog.bytes), (0, 0));
    assert_eq!(counts.backlog.oldest, None);
    t.add(start + 3.0, "d").await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(t.collector.requests().last().unwrap(), &["d"]);
    run.abort();
}

#[tokio::test(start_paused = true)]
async fn a_refused_merge_is_retried_one_batch_a_request_and_only_the_bad_one_dropped() {
    let t = sender(
        vec![down(), refused(), Ok(Accepted::default()), refused()],
        None,
        1 << 30,
    );
    let start = now() - 100.0;
    t.add(start, "a").await;
    t.add(start + 1.0, "b").await;
    t.add(start + 2.0, "c").await;
    let run = tokio::spawn({
        let s = t.sender.clone();
        async move { s.run().await }
    });
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(
        t.collector.requests(),
        [
            vec!["a", "b", "c"],
            vec!["a", "b", "c"],
            vec!["a"],
            vec!["b"],
            vec!["c"]
        ]
    );
    let counts = t.counts();
    assert_eq!(counts.backlog.dropped, [0, 0, 1, 0], "b alone is rejected");
    assert_eq!(counts.backlog.batches, 0);
    run.abort();
}

#[tokio::test(start_paused = true)]
async fn one_batch_goes_as_stored_to_a_transport_that_takes_gzip_several_merged() {
    let mut t = sender(vec![down()], None, 1 << 30);
    let collector = Arc::new(Scripted {
        gzip: true,
        answers: Mutex::new(vec![down()]),
        ..Scripted::default()
    });
    t.sender = Arc::new(Sender::new(
        collector.clone(),
        None,
        t.stats.clone(),
        (Duration::from_secs(1), 1 << 20),
        (Duration::from_secs(3600), 1 << 30),
        "test".into(),
    ));
    t.collector = collector;
    let start = now() - 100.0;
    t.add(start, "a").await;
    let run = tokio::spawn({
        let s = t.sender.clone();
        async move { s.run().await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    t.add(start + 1.0, "b").await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(t.collector.requests(), [vec!["gz:a"], vec!["a", "b"]]);
    run.abort();
}

#[tokio::test(start_paused = true)]
async fn the_size_cap_drops_the_oldest_and_counts_them() {
    let (_, one) = batch("a");
    let each = (spool::HEADER_LEN + one.len()) as u64;
    let t = sender(vec![], None, 2 * each + 1);
    let start = now() - 100.0;
    for (i, name) in ["a", "b", "c", "d"].iter().enumerate() {
        t.add(start + i as f64, name).await;
    }
    let counts = t.counts().backlog;
    assert_eq!((counts.batches, counts.bytes), (2, 2 * each));
    assert_eq!(counts.dropped, [0, 2, 0, 0]);
    assert_eq!(counts.oldest, Some(start + 2.0));
}

#[tokio::test(start_paused = true)]
async fn a_stop_makes_one_last_attempt_and_reports_the_loss() {
    let t = sender(vec![], None, 1 << 30);
    *t.collector.answers.lock().unwrap() = (0..100).map(|_| down()).collect();
    let run = tokio::spawn({
        let s = t.sender.clone();
        async move { s.run().await }
    });
    t.add(now(), "a").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let before = t.collector.requests().len();
    t.sender.stop(Instant::now() + Duration::from_secs(2));
    tokio::time::timeout(Duration::from_secs(3), run)
        .await
        .expect("the sender returns after its last attempt")
        .unwrap();
    assert_eq!(t.collector.requests().len(), before + 1, "one last attempt");
    assert_eq!(t.sender.state().backlog.len(), 1);
    t.sender.finish().await;
}

fn temp_spool(name: &str) -> (std::path::PathBuf, Spool) {
    let dir = std::env::temp_dir().join(format!("sender-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let spool = Spool::open(&dir).unwrap();
    (dir, spool)
}

fn files(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".otlp"))
        .collect();
    names.sort();
    names
}

// Real time: the spool's writes run on the blocking pool.
#[tokio::test]
async fn in_an_outage_batches_go_to_the_spool_and_a_new_start_sends_them() {
    let (dir, spool) = temp_spool("outage");
    let t = sender((0..1000).map(|_| down()).collect(), Some(spool), 1 << 30);
    let run = tokio::spawn({
        let s = t.sender.clone();
        async move { s.run().await }
    });
    let start = now() - 100.0;
    for (i, name) in ["a", "b", "c"].iter().enumerate() {
        t.add(start + i as f64, name).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while files(&dir).len() < 3 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(files(&dir).len(), 3, "every waiting batch is on disk");
    assert!(
        t.sender.state().backlog.unwritten().is_empty(),
        "and out of memory"
    );
    run.abort();

    // The next start: a collector that accepts.
    let t = sender(vec![], Some(Spool::open(&dir).unwrap()), 1 << 30);
    t.sender.load().await;
    assert_eq!(t.counts().backlog.batches, 3);
    t.add(now(), "live").await;
    let run = tokio::spawn({
        let s = t.sender.clone();
        async move { s.run().await }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while t.counts().backlog.batches > 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(t.collector.requests(), [vec!["a", "b", "c", "live"]]);
    assert!(files(&dir).is_empty(), "delivered batches leave the spool");
    run.abort();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_batch_damaged_on_disk_is_set_aside_and_the_rest_delivered() {
    let (dir, spool) = temp_spool("damaged");
    for (i, name) in ["a", "b", "c"].iter().enumerate() {
        let (raw_len, payload) = batch(name);
        let meta = Meta {
            time: now() - 100.0 + i as f64,
            seq: i as u64,
            raw_len,
            stored_len: (spool::HEADER_LEN + payload.len()) as u64,
        };
        spool.write(&meta, &payload).unwrap();
    }
    let t = sender(vec![], Some(spool), 1 << 30);
    t.sender.load().await;
    // Damaged after the start read it: found when it is sent.
    let victim = dir.join(&files(&dir)[1]);
    let mut bytes = std::fs::read(&victim).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&victim, bytes).unwrap();
    let run = tokio::spawn({
        let s = t.sender.clone();
        async move { s.run().await }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while t.counts().backlog.batches > 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(t.collector.requests(), [vec!["a", "c"]]);
    assert_eq!(t.counts().backlog.dropped, [0, 0, 0, 1]);
    assert!(dir
        .join("corrupt")
        .join(victim.file_name().unwrap())
        .is_file());
    run.abort();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_spool_that_fails_keeps_batches_in_memory_says_so_once_and_counts() {
    let (dir, spool) = temp_spool("full");
    let t = sender((0..1000).map(|_| down()).collect(), Some(spool), 1 << 30);
    // The directory goes away under the exporter: every write fails, as
    // on a full disk.
    std::fs::remove_dir_all(&dir).unwrap();
    let run = tokio::spawn({
        let s = t.sender.clone();
        async move { s.run().await }
    });
    let start = now() - 100.0;
    t.add(start, "a").await;
    t.add(start + 1.0, "b").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while t.counts().backlog.spool_write_failures < Some(2) && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(t.counts().backlog.spool_write_failures >= Some(2));
    assert_eq!(
        t.sender.state().backlog.unwritten().len(),
        2,
        "kept in memory"
    );
    assert!(t.sender.state().spool_failing, "logged once, then at debug");

    // The disk takes batches again: they are written.
    std::fs::create_dir_all(&dir).unwrap();
    t.add(start + 2.0, "c").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while files(&dir).len() < 3 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(files(&dir).len(), 3);
    assert!(!t.sender.state().spool_failing);
    assert_eq!(t.counts().backlog.batches, 3, "nothing was lost");
    run.abort();
    let _ = std::fs::remove_dir_all(&dir);
}
