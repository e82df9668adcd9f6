//! Huge declared array counts over a real socket, in its own test binary so the process RSS
//! it measures is not disturbed by other tests: the connection is closed, nothing is touched,
//! and the broker keeps serving.

mod common;

use common::{start_broker, Client};
use josefine::server::RunningBroker;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};

async fn closes_then_serves(broker: &RunningBroker, body: &[u8]) {
    let mut frame = (body.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(body);
    let mut c = Client::connect(broker).await;
    c.send_raw(&frame).await;
    assert!(c.is_closed().await, "connection stayed open");
    let mut c = Client::connect(broker).await;
    let id = c
        .send(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())
        .await;
    let (got, r): (i32, ApiVersionsResponse) = c.recv(ApiKey::ApiVersions, 3).await;
    assert_eq!((got, r.error_code), (id, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_array_count_closes_without_touching_memory() {
    let (broker, _dir) = start_broker(&[]).await;
    let rss_before = josefine::alloc_guard::resident_bytes().unwrap();
    // Metadata v0 (header v1: key, version, correlation id, client id null) + body 7f ff ff ff.
    let body = [0, 3, 0, 0, 0, 0, 0, 1, 0xff, 0xff, 0x7f, 0xff, 0xff, 0xff];
    closes_then_serves(&broker, &body).await;
    // Flexible: Metadata v12 (header v2 adds an empty tagged-field section) + varint 0xffffffff.
    let body = [
        0, 3, 0, 12, 0, 0, 0, 1, 0xff, 0xff, 0, 0xff, 0xff, 0xff, 0xff, 0x0f,
    ];
    closes_then_serves(&broker, &body).await;
    let rss_after = josefine::alloc_guard::resident_bytes().unwrap();
    println!("RSS before {rss_before} bytes, after {rss_after} bytes");
    assert!(
        rss_after < rss_before + (64 << 20),
        "RSS grew {rss_before} -> {rss_after}"
    );
    assert_eq!(
        josefine::alloc_guard::guarded_bytes_mapped(),
        0,
        "guarded mappings were released"
    );
    broker.shutdown().await;
}
