//! Held HTTP requests: blocking playlist reloads (`_HLS_msn`/`_HLS_part`) and GETs of a
//! preload-hinted part that is not complete yet.
//!
//! A held request costs one small registry entry; the worker never sleeps or spins. One
//! per-worker timer (armed only while something waits) looks at each waited-on stream's
//! index generation every [`TICK_MS`]; when it moved, the stream is snapshotted once and
//! every waiter on it is re-checked. The part is written by whichever worker holds the
//! publisher; the shared index is how the others learn of it.

use std::cell::RefCell;
use std::collections::HashMap;

use nginx_sys::{
    ngx_event_t, ngx_http_cleanup_add, ngx_http_cleanup_t, ngx_http_finalize_request,
    ngx_http_request_t, ngx_http_run_posted_requests, ngx_http_test_reading, ngx_int_t, NGX_DONE,
    NGX_HTTP_NOT_FOUND, NGX_HTTP_SERVICE_UNAVAILABLE,
};

use super::http;
use super::mono_ms;
use super::zone::{Lookup, Zone};
use crate::playlist::{self, Blocking, MediaRequest};
use crate::store::StreamIndex;

/// How often waited-on streams are re-checked.
pub const TICK_MS: usize = 3;

/// What a held request waits for.
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

struct Waiter {
    r: *mut ngx_http_request_t,
    cleanup: *mut ngx_http_cleanup_t,
    zone: Zone,
    key: String,
    want: Want,
    deadline_ms: i64,
}

#[derive(Default)]
struct Registry {
    next_id: usize,
    waiters: HashMap<usize, Waiter>,
    /// Last index generation seen per stream, to skip streams that did not change.
    seen: HashMap<String, u64>,
    armed: bool,
}

thread_local! {
    static REGISTRY: RefCell<Registry> = RefCell::new(Registry::default());
    static TIMER: RefCell<Box<ngx_event_t>> = RefCell::new(Box::new(unsafe { core::mem::zeroed() }));
    static SNAP: RefCell<Box<StreamIndex>> = RefCell::new(Box::new(StreamIndex::ZERO));
}

/// Hold `r` until `want` is satisfied or `deadline_ms` passes. Returns what the content
/// handler returns.
pub unsafe fn hold(
    r: *mut ngx_http_request_t,
    zone: Zone,
    key: &str,
    want: Want,
    deadline_ms: i64,
    generation: u64,
) -> ngx_int_t {
    // hls_live_max_held: held requests cost memory; past the cap, 503 at once.
    let max = http::max_held(r);
    let held = REGISTRY.with(|reg| reg.borrow().waiters.len());
    if held >= max {
        ngx::ngx_log_error!(
            nginx_sys::NGX_LOG_WARN,
            (*(*r).connection).log,
            "hls_live: {} requests already held in this worker (hls_live_max_held), 503 for \"{}\"",
            held,
            key
        );
        return http::error(r, NGX_HTTP_SERVICE_UNAVAILABLE, 1);
    }
    let cln = ngx_http_cleanup_add(r, 0);
    if cln.is_null() {
        return nginx_sys::NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
    }
    let id = REGISTRY.with(|reg| {
        let mut reg = reg.borrow_mut();
        reg.next_id = reg.next_id.wrapping_add(1);
        let id = reg.next_id;
        reg.waiters.insert(
            id,
            Waiter {
                r,
                cleanup: cln,
                zone,
                key: key.to_owned(),
                want,
                deadline_ms,
            },
        );
        reg.seen.entry(key.to_owned()).or_insert(generation);
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
    REGISTRY.with(|reg| reg.borrow_mut().waiters.remove(&id));
}

fn arm() {
    let already = REGISTRY.with(|reg| std::mem::replace(&mut reg.borrow_mut().armed, true));
    if already {
        return;
    }
    TIMER.with(|t| unsafe {
        let mut t = t.borrow_mut();
        let ev: *mut ngx_event_t = &mut **t;
        if (*ev).handler.is_none() {
            (*ev).handler = Some(tick);
            (*ev).log = ngx::log::ngx_cycle_log().as_ptr();
            // Not cancelable: a worker that shuts down (reload) answers its held
            // requests first; none waits longer than 3 × TD.
        }
        nginx_sys::ngx_add_timer(ev, TICK_MS as _);
    });
}

unsafe extern "C" fn tick(ev: *mut ngx_event_t) {
    if std::panic::catch_unwind(|| check_waiters()).is_err() {
        ngx::ngx_log_error!(
            nginx_sys::NGX_LOG_ALERT,
            (*ev).log,
            "hls_live: internal error in held requests"
        );
    }
}

unsafe fn check_waiters() {
    let now = mono_ms();
    // Streams with waiters, each checked once.
    let streams: Vec<(String, Zone)> = REGISTRY.with(|reg| {
        let reg = reg.borrow();
        let mut v: Vec<(String, Zone)> = Vec::new();
        for w in reg.waiters.values() {
            if !v.iter().any(|(k, z)| k == &w.key && z.0 == w.zone.0) {
                v.push((w.key.clone(), w.zone));
            }
        }
        v
    });
    for (key, zone) in streams {
        SNAP.with(|snap| {
            let mut snap = snap.borrow_mut();
            let seen = REGISTRY.with(|reg| reg.borrow().seen.get(&key).copied());
            // Copy the index only when it changed since the last look.
            let (present, changed) = match zone.snapshot_if_changed(&key, seen, &mut snap) {
                Lookup::Missing => (false, false),
                Lookup::Unchanged => (true, false),
                Lookup::Changed(generation) => {
                    REGISTRY.with(|reg| reg.borrow_mut().seen.insert(key.clone(), generation));
                    (true, true)
                }
            };
            let ids: Vec<usize> = REGISTRY.with(|reg| {
                reg.borrow()
                    .waiters
                    .iter()
                    .filter(|(_, w)| w.key == key && w.zone.0 == zone.0)
                    .map(|(id, _)| *id)
                    .collect()
            });
            for id in ids {
                let verdict = REGISTRY.with(|reg| {
                    let reg = reg.borrow();
                    let w = reg.waiters.get(&id)?;
                    Some(if !present {
                        Verdict::Gone
                    } else if changed {
                        judge(&snap, &w.want, now, w.deadline_ms)
                    } else if now >= w.deadline_ms {
                        Verdict::TimedOut
                    } else {
                        Verdict::Wait
                    })
                });
                let Some(verdict) = verdict else { continue };
                if matches!(verdict, Verdict::Wait) {
                    continue;
                }
                let Some(w) = REGISTRY.with(|reg| reg.borrow_mut().waiters.remove(&id)) else {
                    continue;
                };
                release(w, verdict, &snap);
            }
        });
    }
    let more = REGISTRY.with(|reg| {
        let mut reg = reg.borrow_mut();
        let keys: Vec<String> = reg.seen.keys().cloned().collect();
        for k in keys {
            if !reg.waiters.values().any(|w| w.key == k) {
                reg.seen.remove(&k);
            }
        }
        reg.armed = !reg.waiters.is_empty();
        reg.armed
    });
    if more {
        TIMER.with(|t| nginx_sys::ngx_add_timer(&mut **t.borrow_mut(), TICK_MS as _));
    }
}

enum Verdict {
    Wait,
    Ready,
    Gone,
    TimedOut,
}

fn judge(idx: &StreamIndex, want: &Want, now: i64, deadline: i64) -> Verdict {
    let v = match want {
        Want::Playlist { req, .. } => match playlist::blocking_state(idx, req) {
            Blocking::Wait => Verdict::Wait,
            // The first segment decides TARGETDURATION: nothing is rendered before it.
            _ if idx.target_duration_decided() => Verdict::Ready,
            _ if idx.state() == crate::store::StreamState::Live => Verdict::Wait,
            _ => Verdict::Gone,
        },
        Want::Part { msn, part, .. } => {
            if idx.part(*msn, *part).is_some() {
                Verdict::Ready
            } else if idx.next_part() == Some((*msn, *part)) {
                Verdict::Wait
            } else {
                // The segment closed before this part, or the stream ended.
                Verdict::Gone
            }
        }
    };
    match v {
        Verdict::Wait if now >= deadline => Verdict::TimedOut,
        v => v,
    }
}

unsafe fn release(w: Waiter, verdict: Verdict, idx: &StreamIndex) {
    let r = w.r;
    (*w.cleanup).handler = None;
    super::vars::released(r);
    let c = (*r).connection;
    let rc = match verdict {
        Verdict::Ready => match &w.want {
            // Only LL-HLS (fMP4) locations hold playlist requests.
            Want::Playlist { req, siblings } => {
                let reports = http::rendition_reports(w.zone, siblings);
                http::send_media_playlist(
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
                Some(range) => http::send_file(r, path, content_type, Some(range)),
                None => NGX_HTTP_NOT_FOUND as ngx_int_t,
            },
        },
        // Error lifetimes per the delivery rules: a blocking playlist 404 is cached
        // 4 × TD, any other blocking error 1 × TD.
        Verdict::Gone => {
            let blocking_playlist = matches!(w.want, Want::Playlist { .. });
            http::error(
                r,
                NGX_HTTP_NOT_FOUND,
                playlist::max_age_error(idx, blocking_playlist),
            )
        }
        Verdict::TimedOut => http::error(
            r,
            NGX_HTTP_SERVICE_UNAVAILABLE,
            playlist::max_age_error(idx, false),
        ),
        Verdict::Wait => unreachable!(),
    };
    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}
