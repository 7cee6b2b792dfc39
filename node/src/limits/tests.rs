//! The in-memory limiter: what a client over its rate or stream cap gets,
//! and that clients without limits are not touched.

use super::*;
use http::StatusCode;

fn client(
    name: &str,
    rate: Option<&str>,
    burst: Option<u32>,
    streams: Option<u32>,
) -> ClientConfig {
    ClientConfig {
        name: name.into(),
        key: Some(rhizome_proto::Secret::inline("k")),
        rate: rate.map(|r| r.parse().expect("rate")),
        burst,
        max_streams: streams,
        ..ClientConfig::default()
    }
}

fn limiter() -> Limiter {
    let clients = [
        client("slow", Some("2/m"), Some(3), None),
        client("streamer", None, None, Some(2)),
        client("free", None, None, None),
    ];
    Limiter::new(&clients, OnStoreError::Open, None, "n1")
}

#[tokio::test]
async fn over_the_rate_is_429_with_retry_after_and_ratelimit_fields() {
    let l = limiter();
    for remaining in [2, 1, 0] {
        let h = l
            .check_rate("slow")
            .await
            .expect("admitted")
            .expect("headers");
        let mut map = HeaderMap::new();
        h.apply(&mut map);
        assert_eq!(map[RATELIMIT_POLICY], "\"rate\";q=2;w=60");
        let state = map[RATELIMIT].to_str().expect("ascii").to_string();
        assert!(
            state.starts_with(&format!("\"rate\";r={remaining};t=")),
            "{state}"
        );
    }
    let err = l.check_rate("slow").await.expect_err("over the rate");
    assert_eq!(err.code, ErrorCode::RateLimited);
    assert_eq!(err.status(), StatusCode::TOO_MANY_REQUESTS);
    let resp = err.to_response("r1");
    assert_eq!(resp.headers()["retry-after"], "30", "one interval of 2/m");
    assert_eq!(resp.headers()[RATELIMIT], "\"rate\";r=0;t=30");
    assert!(l.check_rate("free").await.expect("free").is_none());
    assert!(l.check_rate("streamer").await.expect("no rate").is_none());
    assert!(l.check_rate("unknown").await.expect("none").is_none());
}

#[tokio::test]
async fn a_stream_slot_frees_when_dropped() {
    let l = limiter();
    let a = l.open_stream("streamer").await.expect("1").expect("slot");
    let _b = l.open_stream("streamer").await.expect("2").expect("slot");
    let err = l.open_stream("streamer").await.expect_err("third");
    assert_eq!(err.code, ErrorCode::TooManyStreams);
    assert_eq!(err.status(), StatusCode::TOO_MANY_REQUESTS);
    drop(a);
    assert!(l.open_stream("streamer").await.expect("freed").is_some());
    assert!(l.open_stream("slow").await.expect("no cap").is_none());
    assert!(l.limits_streams("streamer") && !l.limits_streams("free"));
}

#[test]
fn only_event_stream_requests_ask_for_a_stream() {
    let mut h = HeaderMap::new();
    assert!(!wants_stream(&h));
    h.insert(
        ACCEPT,
        HeaderValue::from_static("application/json, text/event-stream"),
    );
    assert!(wants_stream(&h));
}
