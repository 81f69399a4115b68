use super::*;

fn q(s: &str) -> Result<String, ()> {
    canonical_query(s.as_bytes())
}

#[test]
fn query_is_canonical_like_edge_conf() {
    assert_eq!(q(""), Ok("".into()));
    assert_eq!(q("foo=1&bar"), Ok("".into()));
    assert_eq!(
        q("_HLS_skip=YES&x=1&_HLS_part=02&_HLS_msn=0007"),
        Ok("_HLS_msn=7&_HLS_part=2&_HLS_skip=YES".into())
    );
    assert_eq!(q("_HLS_msn=000"), Ok("_HLS_msn=0".into()));
    assert_eq!(q("_HLS_skip=v2"), Ok("_HLS_skip=v2".into()));
    // Names are exact and case-sensitive.
    assert_eq!(q("_hls_msn=1&x_HLS_msn=2&_HLS_msnx=3"), Ok("".into()));
    // 19 significant digits at most, leading zeros do not count.
    assert_eq!(
        q("_HLS_msn=0001234567890123456789"),
        Ok("_HLS_msn=1234567890123456789".into())
    );
    assert_eq!(q("_HLS_msn=12345678901234567890"), Err(()));
}

#[test]
fn malformed_queries_are_400() {
    for bad in [
        "_HLS_msn",
        "_HLS_msn=",
        "_HLS_msn=-1",
        "_HLS_msn=1x",
        "_HLS_part=+1",
        "_HLS_skip=yes",
        "_HLS_skip",
        "_HLS_msn=1&_HLS_msn=1",
        "_HLS_part=1&a=b&_HLS_part=2",
        "a&_HLS_skip=v2&_HLS_skip=YES",
    ] {
        assert_eq!(q(bad), Err(()), "{bad}");
    }
}

#[test]
fn key_joins_uri_and_query() {
    assert_eq!(cache_key(b"/live/a/index.m3u8", ""), b"/live/a/index.m3u8");
    assert_eq!(
        cache_key(b"/live/a/index.m3u8", "_HLS_msn=1"),
        b"/live/a/index.m3u8?_HLS_msn=1"
    );
}

fn table(n: usize) -> Vec<Slot> {
    vec![Slot::ZERO; n]
}

const STALE: i64 = 15_000;

#[test]
fn one_fetch_per_key_then_everybody_is_served() {
    let mut t = table(64);
    let k = b"/live/a/5.2.m4s";
    let (at, a) = acquire(&mut t, k, 100, STALE);
    let Acquire::Fetch { gen } = a else {
        panic!("{a:?}")
    };
    // Everybody else waits for that generation.
    for now in [101, 500, 4000] {
        assert_eq!(acquire(&mut t, k, now, STALE), (at, Acquire::Wait { gen }));
        assert_eq!(check(&t, at, gen, now, 10_000), Verdict::Wait);
    }
    // Another key has its own fetch.
    let (at2, a2) = acquire(&mut t, b"/live/a/5.3.m4s", 101, STALE);
    assert!(matches!(a2, Acquire::Fetch { .. }));
    assert_ne!(at, at2);
    assert!(finish(&mut t, at, gen, 200, 4100));
    assert_eq!(check(&t, at, gen, 4100, 10_000), Verdict::Serve);
    // Late arrivals go to the cache directly while the result is fresh …
    assert_eq!(
        acquire(&mut t, k, 4100 + LINGER_MS, STALE),
        (at, Acquire::Serve)
    );
    // … later ones start a new (coalesced) fetch of the same slot.
    assert_eq!(
        acquire(&mut t, k, 4101 + LINGER_MS, STALE),
        (at, Acquire::Fetch { gen: gen + 1 })
    );
    // The old generation's waiters are not confused by the new one.
    assert!(!finish(&mut t, at, gen, 200, 5200));
}

#[test]
fn failures_are_passed_on_then_retried() {
    let mut t = table(8);
    let k = b"/live/a/index.m3u8?_HLS_msn=9";
    let (at, Acquire::Fetch { gen }) = acquire(&mut t, k, 0, STALE) else {
        panic!()
    };
    assert!(finish(&mut t, at, gen, 503, 6000));
    assert_eq!(check(&t, at, gen, 6000, 10_000), Verdict::Error(503));
    // A new request does not get the old error: it fetches again.
    assert_eq!(
        acquire(&mut t, k, 6001, STALE),
        (at, Acquire::Fetch { gen: gen + 1 })
    );
    // 404 is an answer the cache holds: served.
    assert!(finish(&mut t, at, gen + 1, 404, 6002));
    assert_eq!(check(&t, at, gen + 1, 6002, 10_000), Verdict::Serve);
    // Answers the cache does not keep are passed on as they are.
    let (_, Acquire::Fetch { gen: g3 }) = acquire(&mut t, k, 6003 + LINGER_MS, STALE) else {
        panic!()
    };
    assert!(finish(&mut t, at, g3, 400, 6004));
    assert_eq!(check(&t, at, g3, 6004, 10_000), Verdict::Error(400));
}

#[test]
fn abandoned_or_lost_fetches_are_taken_over() {
    let mut t = table(8);
    let k = b"/live/a/1.0.m4s";
    let (at, Acquire::Fetch { gen }) = acquire(&mut t, k, 0, STALE) else {
        panic!()
    };
    // The fetching client went away: waiters decide again, one of them fetches.
    assert!(finish(&mut t, at, gen, 0, 10));
    assert_eq!(check(&t, at, gen, 10, 10_000), Verdict::Retry);
    let (_, a) = acquire(&mut t, k, 11, STALE);
    assert_eq!(a, Acquire::Fetch { gen: gen + 1 });
    assert_eq!(check(&t, at, gen, 12, 10_000), Verdict::Retry);
    // A fetch that never ends (its worker died) is taken over after `stale`.
    assert_eq!(
        acquire(&mut t, k, 11 + STALE, STALE).1,
        Acquire::Wait { gen: gen + 1 }
    );
    assert_eq!(
        acquire(&mut t, k, 12 + STALE, STALE).1,
        Acquire::Fetch { gen: gen + 2 }
    );
    // Deadlines.
    assert_eq!(check(&t, at, gen + 2, 20_000, 20_000), Verdict::TimedOut);
}

#[test]
fn bounded_table_and_keys() {
    let mut t = table(4);
    let long = vec![b'a'; MAX_KEY + 1];
    assert_eq!(acquire(&mut t, &long, 0, STALE).1, Acquire::Bypass);
    let mut fetching = 0;
    for i in 0..6 {
        let k = format!("/live/k/{i}.m4s");
        match acquire(&mut t, k.as_bytes(), 0, STALE).1 {
            Acquire::Fetch { .. } => fetching += 1,
            Acquire::Bypass => {}
            a => panic!("{a:?}"),
        }
    }
    assert_eq!(fetching, 4, "a full table serves without coalescing");
    // Finished entries are reused once they are old.
    for (i, s) in t.clone().iter().enumerate() {
        assert!(finish(&mut t, i, s.gen, 200, 10));
    }
    let (_, a) = acquire(&mut t, b"/live/k/new.m4s", 10 + LINGER_MS + 1, STALE);
    assert!(matches!(a, Acquire::Fetch { .. }));
    assert_eq!(acquire(&mut table(0), b"/x", 0, STALE).1, Acquire::Bypass);
}
