//! Large results stream through: a COPY TO STDOUT of a few hundred MB, read slowly by the client,
//! must not grow pgproxy's memory by more than a few MB (nothing is buffered whole).

mod common;

use common::*;
use futures_util::TryStreamExt;

fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_out_of_hundreds_of_mb_streams_in_bounded_memory() {
    within(300, "test", async {
        let (_node, proxy) = node_and_proxy(|c| c.pool_mode("transaction")).await;
        let client = connect_app(proxy.port()).await;
        assert_eq!(scalar(&client, "select 1").await, "1");
        let before = rss_kb(proxy.pid());
        // About 300 MB of text: 3 million rows of ~100 bytes.
        let stream = client
            .copy_out(
                "COPY (SELECT i, repeat('x', 90) FROM generate_series(1, 3000000) i) TO STDOUT",
            )
            .await
            .expect("copy out");
        let mut stream = std::pin::pin!(stream);
        let (mut bytes, mut peak, mut chunks) = (0usize, before, 0u64);
        while let Some(chunk) = stream.try_next().await.expect("copy data") {
            bytes += chunk.len();
            chunks += 1;
            if chunks % 20_000 == 0 {
                peak = peak.max(rss_kb(proxy.pid()));
                // A slow reader: the proxy must wait, not buffer.
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        }
        assert!(bytes > 250_000_000, "only {bytes} bytes arrived");
        let grown_mb = (peak.saturating_sub(before)) as f64 / 1024.0;
        assert!(
            grown_mb < 16.0,
            "pgproxy RSS grew by {grown_mb:.1} MB while streaming {bytes} bytes"
        );
        assert_eq!(scalar(&client, "select 'after'").await, "after");
    })
    .await
}
