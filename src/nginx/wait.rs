//! Held HTTP requests: blocking playlist reloads (`_HLS_msn`/`_HLS_part`) and GETs of a
//! preload-hinted part that is not complete yet.
//!
//! A held request costs one small registry entry; the worker never sleeps or spins. The
//! registry groups held requests by stream (zone, key); each stream keeps the index
//! generation it last saw and its own copy of that index, so every decision about a
//! request (ready, gone, timed out, and the cache lifetime of its error) is taken on its
//! own stream's index ([`crate::playlist::held`]).
//!
//! Wake-ups:
//! - the worker that holds the publisher calls [`wake`] after it wrote to the stream's
//!   index: that stream's held requests of this worker are checked at once (a posted
//!   event, run before the worker goes back to waiting for I/O);
//! - one per-worker timer (armed only while something is held) looks at each stream's
//!   generation every [`TICK_MS`], for parts written by other workers. A stream that did
//!   not change costs one lookup; its requests are looked at only when the earliest of
//!   their deadlines has passed.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use nginx_sys::{
    ngx_event_t, ngx_http_cleanup_add, ngx_http_cleanup_t, ngx_http_finalize_request,
    ngx_http_request_t, ngx_http_run_posted_requests, ngx_http_test_reading, ngx_int_t, NGX_DONE,
    NGX_HTTP_NOT_FOUND, NGX_HTTP_SERVICE_UNAVAILABLE,
};

use super::mono_ms;
use super::respond;
use super::timer::WorkerEvent;
use super::zone::{Lookup, Zone};
use crate::playlist::held::{self, Held, Verdict};
use crate::playlist::MediaRequest;
use crate::store::StreamIndex;

/// How often waited-on streams are re-checked.
pub const TICK_MS: usize = 3;

/// What a held request waits for, with what its answer needs.
pub enum Want {
    /// A blocking playlist reload; `siblings`: the other renditions to report.
    Playlist {
        req: MediaRequest,
        siblings: Vec<String>,
    },
    Part {
        msn: u64,
        part: u32,
        path: String,
        content_type: &'static str,
    },
}

impl Want {
    fn held(&self) -> Held<'_> {
        match self {
            Want::Playlist { req, .. } => Held::Playlist(req),
            Want::Part { msn, part, .. } => Held::Part {
                msn: *msn,
                part: *part,
            },
        }
    }
}

struct Waiter {
    r: *mut ngx_http_request_t,
    cleanup: *mut ngx_http_cleanup_t,
    want: Want,
    deadline_ms: i64,
}

/// The held requests of one stream.
struct Stream {
    zone: Zone,
    /// Shared with each look at the stream (every tick), which must not hold the registry.
    key: Rc<str>,
    /// Index generation of `snap`; `None` until the first look.
    seen: Option<u64>,
    /// This stream's index as last seen (`None`: not in the zone, or lent out while its
    /// requests are answered).
    snap: Option<Box<StreamIndex>>,
    waiters: HashMap<usize, Waiter>,
    /// Earliest deadline of `waiters`.
    next_deadline_ms: i64,
    /// [`wake`] asked for a look at the next posted event.
    woken: bool,
}

#[derive(Default)]
struct Registry {
    next_id: usize,
    /// Stream of each held request (its cleanup handler knows only the id).
    stream_of: HashMap<usize, usize>,
    next_stream: usize,
    streams: HashMap<usize, Stream>,
    /// (zone, key) → stream id; looked up by `&str` on every write of a publisher.
    by_key: HashMap<usize, HashMap<String, usize>>,
    armed: bool,
}

impl Registry {
    fn held(&self) -> usize {
        self.stream_of.len()
    }

    fn stream_id(&self, zone: Zone, key: &str) -> Option<usize> {
        self.by_key.get(&(zone.id()))?.get(key).copied()
    }

    /// Remove waiter `id`; the stream goes with its last waiter.
    fn remove(&mut self, id: usize) -> Option<Waiter> {
        let sid = self.stream_of.remove(&id)?;
        let st = self.streams.get_mut(&sid)?;
        let w = st.waiters.remove(&id);
        if st.waiters.is_empty() {
            self.drop_stream(sid);
        }
        w
    }

    fn drop_stream(&mut self, sid: usize) {
        if let Some(st) = self.streams.remove(&sid) {
            let zone = st.zone.id();
            if let Some(keys) = self.by_key.get_mut(&zone) {
                keys.remove(&*st.key);
                if keys.is_empty() {
                    self.by_key.remove(&zone);
                }
            }
        }
    }
}

thread_local! {
    static REGISTRY: RefCell<Registry> = RefCell::new(Registry::default());
    static TIMER: WorkerEvent = WorkerEvent::new();
    static WAKE: WorkerEvent = WorkerEvent::new();
}

/// Hold `r` until `want` is satisfied or `deadline_ms` passes; `max`: the location's
/// `hls_live_max_held`. Returns what the content handler returns.
pub unsafe fn hold(
    r: *mut ngx_http_request_t,
    zone: Zone,
    key: &str,
    want: Want,
    deadline_ms: i64,
    max: usize,
) -> ngx_int_t {
    // hls_live_max_held: held requests cost memory; past the cap, 503 at once.
    let held = REGISTRY.with(|reg| reg.borrow().held());
    if held >= max {
        ngx::ngx_log_error!(
            nginx_sys::NGX_LOG_WARN,
            (*(*r).connection).log,
            "hls_live: {} requests already held in this worker (hls_live_max_held), 503 for \"{}\"",
            held,
            key
        );
        return respond::error(r, NGX_HTTP_SERVICE_UNAVAILABLE, 1);
    }
    let cln = ngx_http_cleanup_add(r, 0);
    if cln.is_null() {
        return nginx_sys::NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
    }
    let id = REGISTRY.with(|reg| {
        let mut reg = reg.borrow_mut();
        let reg = &mut *reg;
        reg.next_id = reg.next_id.wrapping_add(1);
        let id = reg.next_id;
        let sid = match reg.stream_id(zone, key) {
            Some(sid) => sid,
            None => {
                reg.next_stream = reg.next_stream.wrapping_add(1);
                let sid = reg.next_stream;
                reg.streams.insert(
                    sid,
                    Stream {
                        zone,
                        key: Rc::from(key),
                        seen: None,
                        snap: None,
                        waiters: HashMap::new(),
                        next_deadline_ms: i64::MAX,
                        woken: false,
                    },
                );
                reg.by_key
                    .entry(zone.id())
                    .or_default()
                    .insert(key.to_owned(), sid);
                sid
            }
        };
        let st = reg.streams.get_mut(&sid).expect("stream just found");
        st.next_deadline_ms = st.next_deadline_ms.min(deadline_ms);
        st.waiters.insert(
            id,
            Waiter {
                r,
                cleanup: cln,
                want,
                deadline_ms,
            },
        );
        reg.stream_of.insert(id, sid);
        id
    });
    (*cln).handler = Some(cleanup);
    (*cln).data = id as *mut core::ffi::c_void;
    super::vars::held(r, key);
    // Notice a client that goes away while it waits.
    (*r).read_event_handler = Some(ngx_http_test_reading);
    let main = (*r).main;
    (*main).set_count((*main).count() + 1);
    arm();
    NGX_DONE as ngx_int_t
}

/// The request ended while held (client closed, worker shutdown): forget it.
unsafe extern "C" fn cleanup(data: *mut core::ffi::c_void) {
    let id = data as usize;
    REGISTRY.with(|reg| reg.borrow_mut().remove(id));
}

/// This worker wrote to `key`'s index (a part, a segment, the end): check that stream's
/// held requests right after the current event instead of at the next tick.
pub fn wake(zone: Zone, key: &str) {
    let found = REGISTRY.with(|reg| {
        let mut reg = reg.borrow_mut();
        let Some(sid) = reg.stream_id(zone, key) else {
            return false;
        };
        reg.streams
            .get_mut(&sid)
            .map(|st| st.woken = true)
            .is_some()
    });
    if !found {
        return;
    }
    WAKE.with(|w| w.post(woken));
}

fn arm() {
    let already = REGISTRY.with(|reg| std::mem::replace(&mut reg.borrow_mut().armed, true));
    if already {
        return;
    }
    // Not cancelable: a worker that shuts down (reload) answers its held requests
    // first; none waits longer than 3 × TD.
    TIMER.with(|t| t.arm(tick, TICK_MS as _, false));
}

unsafe extern "C" fn tick(ev: *mut ngx_event_t) {
    run(ev, false);
}

unsafe extern "C" fn woken(ev: *mut ngx_event_t) {
    run(ev, true);
}

unsafe fn run(ev: *mut ngx_event_t, only_woken: bool) {
    if std::panic::catch_unwind(|| check(only_woken)).is_err() {
        ngx::ngx_log_error!(
            nginx_sys::NGX_LOG_ALERT,
            (*ev).log,
            "hls_live: internal error in held requests"
        );
    }
    if only_woken {
        return;
    }
    let more = REGISTRY.with(|reg| {
        let mut reg = reg.borrow_mut();
        reg.armed = reg.held() > 0;
        reg.armed
    });
    if more {
        TIMER.with(|t| t.arm(tick, TICK_MS as _, false));
    }
}

/// Look at every stream with held requests (`only_woken`: those [`wake`] named).
unsafe fn check(only_woken: bool) {
    let now = mono_ms();
    let sids: Vec<usize> = REGISTRY.with(|reg| {
        let mut reg = reg.borrow_mut();
        reg.streams
            .iter_mut()
            .filter(|(_, st)| !only_woken || st.woken)
            .map(|(sid, st)| {
                st.woken = false;
                *sid
            })
            .collect()
    });
    for sid in sids {
        check_stream(sid, now);
    }
}

/// Look at one stream: copy its index if it changed, decide its held requests (all of
/// them when it changed or vanished; otherwise only once the earliest deadline passed),
/// and answer those decided.
unsafe fn check_stream(sid: usize, now: i64) {
    // Take what is needed out of the registry: answering a request runs nginx code that
    // may hold a new request (a pipelined one) and so enter the registry again.
    let Some((zone, key, seen, mut snap, next_deadline)) = REGISTRY.with(|reg| {
        let mut reg = reg.borrow_mut();
        let st = reg.streams.get_mut(&sid)?;
        Some((
            st.zone,
            st.key.clone(),
            st.seen,
            st.snap.take(),
            st.next_deadline_ms,
        ))
    }) else {
        return;
    };
    let mut buf = snap.take().unwrap_or_else(|| Box::new(StreamIndex::ZERO));
    let (present, changed, seen) = match zone.snapshot_if_changed(&key, seen, &mut buf) {
        Lookup::Missing => (false, true, None),
        Lookup::Unchanged => (true, false, seen),
        Lookup::Changed(g) => (true, true, Some(g)),
    };
    let idx: Option<&StreamIndex> = present.then_some(&*buf);
    let mut done: Vec<(Waiter, Verdict)> = Vec::new();
    if changed || now >= next_deadline {
        REGISTRY.with(|reg| {
            let mut reg = reg.borrow_mut();
            let reg = &mut *reg;
            let Some(st) = reg.streams.get_mut(&sid) else {
                return;
            };
            let mut decided: Vec<(usize, Verdict)> = Vec::new();
            let mut next = i64::MAX;
            for (id, w) in &st.waiters {
                match held::judge(idx, w.want.held(), now, w.deadline_ms) {
                    Verdict::Wait => next = next.min(w.deadline_ms),
                    v => decided.push((*id, v)),
                }
            }
            st.next_deadline_ms = next;
            for (id, v) in decided {
                if let Some(w) = st.waiters.remove(&id) {
                    reg.stream_of.remove(&id);
                    done.push((w, v));
                }
            }
        });
    }
    for (w, verdict) in done {
        release(w, verdict, zone, idx);
    }
    // Put the copy back (a stream not in the zone keeps none); the stream goes with its
    // last request.
    REGISTRY.with(|reg| {
        let mut reg = reg.borrow_mut();
        let Some(st) = reg.streams.get_mut(&sid) else {
            return;
        };
        if st.waiters.is_empty() {
            reg.drop_stream(sid);
            return;
        }
        st.seen = seen;
        st.snap = present.then_some(buf);
    });
}

unsafe fn release(w: Waiter, verdict: Verdict, zone: Zone, idx: Option<&StreamIndex>) {
    let r = w.r;
    (*w.cleanup).handler = None;
    super::vars::released(r);
    let c = (*r).connection;
    let rc = match (verdict, idx) {
        (Verdict::Ready, Some(idx)) => match &w.want {
            // Only LL-HLS (fMP4) locations hold playlist requests.
            Want::Playlist { req, siblings } => {
                let reports = respond::rendition_reports(zone, siblings);
                respond::send_media_playlist(
                    r,
                    idx,
                    req,
                    true,
                    crate::playlist::Format::Fmp4,
                    &reports,
                )
            }
            Want::Part {
                msn,
                part,
                path,
                content_type,
            } => match idx.part_range(*msn, *part) {
                Some(range) => respond::send_file(r, path, content_type, Some(range)),
                None => NGX_HTTP_NOT_FOUND as ngx_int_t,
            },
        },
        (Verdict::TimedOut, _) => respond::error(
            r,
            NGX_HTTP_SERVICE_UNAVAILABLE,
            held::error_max_age(idx, w.want.held(), verdict),
        ),
        // Gone (or a stream that vanished): 404 with its own stream's error lifetime.
        _ => respond::error(
            r,
            NGX_HTTP_NOT_FOUND,
            held::error_max_age(idx, w.want.held(), Verdict::Gone),
        ),
    };
    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}
