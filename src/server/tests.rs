//! The listener through real sockets.

use super::*;
use crate::cache::{RefreshFn, RenderFn};
use crate::metrics::exposition::Rendered;
use crate::metrics::family::{Kind, Labels, Metric, Unit};
use crate::metrics::text::Format;
use crate::snapshot::Snapshot;
use std::io::Read;

struct Row {
    server: String,
    feature: String,
}

impl Labels<2> for Row {
    const NAMES: &'static [&'static str; 2] = &["server", "feature"];
    fn values(&self) -> [&str; 2] {
        [&self.server, &self.feature]
    }
}

static BIG: Metric<Row, 2> = Metric::new("x_licenses", Kind::Gauge, Unit::Licenses, "X.");

/// Through the real listener, a large body (sent with sendfile and a
/// corked socket) arrives whole, twice on one connection, plain and
/// gzip, and the response after it is framed right.
#[tokio::test]
async fn large_bodies_arrive_whole_on_a_kept_alive_connection() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rows: Vec<Row> = (0..5000)
        .map(|i| Row {
            server: format!("server-{i:05}"),
            feature: format!("feature-{}", i % 7),
        })
        .collect();
    let families = vec![BIG.family(rows.iter().zip(0..).map(|(row, i)| (row, f64::from(i))))];
    let rendered = Rendered::new(&families, "o");
    assert!(rendered.text.plain.len() > super::bodies::SENDFILE_MIN_BYTES);
    assert!(
        Bodies::new(rendered.clone())
            .file_backed(Format::Text004)
            .is_some(),
        "memfds work here"
    );
    let render: RenderFn<Bodies> = Arc::new(move |_| Bodies::new(rendered.clone()));
    let refresh: RefreshFn = Arc::new(|_| Box::pin(async { Ok(Snapshot::default()) }));
    let state = Arc::new(AppState::new(
        Cache::new(
            refresh,
            render,
            Duration::from_secs(3600),
            Duration::from_secs(5),
        ),
        "/metrics".to_owned(),
        "o".to_owned(),
        None,
        None,
        None,
        true,
    ));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, state.clone(), async {
        let _ = stopped.await;
    }));

    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(
        b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n\
          GET /metrics HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n\
          GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n\
          GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let mut all = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), conn.read_to_end(&mut all))
        .await
        .expect("the server answers within 20 s")
        .unwrap();

    let mut bodies = Vec::new();
    let mut rest = &all[..];
    while !rest.is_empty() {
        let end = rest.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let head = std::str::from_utf8(&rest[..end])
            .unwrap()
            .to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        bodies.push((
            head.contains("content-encoding: gzip"),
            rest[end..end + length].to_vec(),
        ));
        rest = &rest[end + length..];
    }
    assert_eq!(bodies.len(), 4);
    // The process values may differ if the requests were more than
    // LIVE_MAX_AGE apart (a very slow machine): compare without them.
    let text = |body: &[u8]| {
        let body = String::from_utf8(body.to_vec()).unwrap();
        body.lines()
            .filter(|l| !l.starts_with("process_"))
            .map(|l| format!("{l}\n"))
            .collect::<String>()
    };
    let first = text(&bodies[0].1);
    assert!(first.starts_with("# HELP x_licenses X.\n"));
    assert!(first.contains(
        "x_licenses{org_name=\"o\",server=\"server-04999\",feature=\"feature-1\"} 4999\n"
    ));
    assert!(String::from_utf8_lossy(&bodies[0].1).contains("\nprocess_open_fds "));
    assert!(!bodies[0].0 && bodies[1].0 && !bodies[2].0);
    let mut unzipped = Vec::new();
    flate2::read::GzDecoder::new(&bodies[1].1[..])
        .read_to_end(&mut unzipped)
        .unwrap();
    assert_eq!(text(&unzipped), first);
    assert_eq!(text(&bodies[2].1), first);
    assert_eq!(text(&bodies[3].1), "ok\n");
    let _ = stop.send(());
    server.await.unwrap();
}
