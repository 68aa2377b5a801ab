//! Load and slow-client tests against the real binary: many concurrent
//! scrapes while refreshes fail and succeed, slowloris, a client that never
//! reads, and the connection cap. Loopback only; every loop is bounded.

mod support;

use support::fake_cls::fixture;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::canned::Canned;
use support::exporter::{http, Exporter};
use support::fake_cls::FakeCls;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Whether the server closed the connection (EOF or reset) within `limit`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_scrapes_while_refreshes_fail_and_succeed() {
    let cls = FakeCls::start(fixture(), "test-key").await;
    let exporter = Exporter::start(&cls.base_url(), &[("CACHE_TTL", "500ms")]);
    exporter.metrics().await;
    let rss_before = rss_kib(exporter.pid());
    let started = Instant::now();
    // 600 at once: more than the connection cap (512), so the ones over it
    // wait for a slot and must still be answered 200.
    const WAVES: usize = 8;
    const PER_WAVE: usize = 600;
    let ok = Arc::new(AtomicUsize::new(0));
    for wave in 0..WAVES {
        // Every other half second the API fails (HTTP 400, not retried).
        if wave % 2 == 0 {
            cls.set_override("/virtual-groups", Canned::status(400));
        } else {
            cls.clear_overrides();
        }
        let mut tasks = Vec::with_capacity(PER_WAVE);
        for _ in 0..PER_WAVE {
            let addr = exporter.addr;
            let ok = ok.clone();
            tasks.push(tokio::spawn(async move {
                let r = http(addr, "GET", "/metrics", &[]).await;
                assert_eq!(r.status, 200);
                assert!(r.text().contains("nvidia_cls_up{org_name=\"lic-demo\"} "));
                ok.fetch_add(1, Ordering::Relaxed);
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let elapsed = started.elapsed();
    assert_eq!(
        ok.load(Ordering::Relaxed),
        WAVES * PER_WAVE,
        "every scrape answered 200"
    );
    let refreshes = cls.requests_ending_with("/virtual-groups");
    let ttl_periods = (elapsed.as_secs_f64() / 0.5).ceil() as usize + 1;
    assert!(
        refreshes <= ttl_periods + 1,
        "{refreshes} refreshes in {elapsed:?}: at most one per TTL"
    );
    assert!(
        refreshes >= WAVES / 2,
        "{refreshes} refreshes: the cache did refresh"
    );
    let text = exporter.metrics().await;
    let failures = support::exporter::value(
        &text,
        "nvidia_cls_refreshes_total{org_name=\"lic-demo\",result=\"failure\"} ",
    );
    assert!(
        failures.unwrap_or(0.0) >= 2.0,
        "some refreshes failed: {failures:?}"
    );
    let rss_after = rss_kib(exporter.pid());
    assert!(
        rss_after < 64 * 1024,
        "RSS {rss_after} KiB stays bounded (before: {rss_before} KiB)"
    );
    eprintln!(
        "load: {} scrapes in {:.1}s, {refreshes} refreshes, RSS {rss_before} -> {rss_after} KiB",
        WAVES * PER_WAVE,
        elapsed.as_secs_f64()
    );
}

/// Headers trickled one byte every 500 ms: cut off by the 10 s header read
/// timeout, while normal scrapes keep being served at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_is_cut_off_and_others_are_served() {
    let cls = FakeCls::start(fixture(), "test-key").await;
    let exporter = Exporter::start(&cls.base_url(), &[]);
    exporter.metrics().await;
    let addr = exporter.addr;
    let mut slow = Vec::new();
    for _ in 0..50 {
        slow.push(tokio::spawn(async move {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            let started = Instant::now();
            for byte in
                b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                    .iter()
            {
                if stream.write_all(&[*byte]).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
                if started.elapsed() > Duration::from_secs(14) {
                    break;
                }
            }
            (
                closed_within(&mut stream, Duration::from_secs(2)).await,
                started.elapsed(),
            )
        }));
    }
    for _ in 0..20 {
        let t = Instant::now();
        let r = http(addr, "GET", "/metrics", &[]).await;
        assert_eq!(r.status, 200);
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "a normal scrape waited {:?}",
            t.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for s in slow {
        let (closed, after) = s.await.unwrap();
        assert!(closed, "slowloris connection still open after {after:?}");
        assert!(after < Duration::from_secs(14), "cut off after {after:?}");
    }
}

/// A client that pipelines requests and never reads its responses is cut
/// off once the exporter's writes stall for 10 s; others are served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_cut_off() {
    let cls = FakeCls::start(fixture(), "test-key").await;
    let exporter = Exporter::start(&cls.base_url(), &[]);
    let one_response = exporter.metrics().await.len();
    const PIPELINED: usize = 1000;
    let mut stream = TcpStream::connect(exporter.addr).await.unwrap();
    // About 1,000 responses of ~20 KB: far more than the socket buffers hold.
    let request = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".repeat(PIPELINED);
    tokio::time::timeout(Duration::from_secs(5), stream.write_all(&request))
        .await
        .expect("requests sent")
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let t = Instant::now();
    assert_eq!(
        http(exporter.addr, "GET", "/metrics", &[]).await.status,
        200
    );
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "another client waited {:?}",
        t.elapsed()
    );
    // Past the stall timeout, read what the exporter had sent: it must end
    // (closed) well before all the responses asked for.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let mut received = 0usize;
    let mut buf = vec![0u8; 256 * 1024];
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await {
            Err(_) => break false,
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => received += n,
        }
    };
    assert!(closed, "the connection stayed open");
    assert!(
        received < PIPELINED * one_response / 2,
        "received {received} bytes: the exporter kept writing instead of cutting the client off"
    );
}

/// More connections than the cap (512) wait for a slot: with 512 idle
/// connections open, a new scrape is answered only once the idle ones are
/// cut off by the header read timeout (10 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_cap_is_enforced() {
    let cls = FakeCls::start(fixture(), "test-key").await;
    let exporter = Exporter::start(&cls.base_url(), &[]);
    exporter.metrics().await;
    let addr: SocketAddr = exporter.addr;
    let mut idle = Vec::new();
    for _ in 0..512 {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(20), http(addr, "GET", "/healthz", &[]))
        .await
        .expect("served once a slot frees");
    assert_eq!(r.status, 200);
    let waited = started.elapsed();
    assert!(
        waited > Duration::from_secs(5),
        "answered after {waited:?}: the cap did not hold it back"
    );
    drop(idle);
}
