//! What an `hls_live` request was, for the access log and the metrics.
//!
//! The handler notes each request ([`note`]); held requests are marked when held and
//! released; the log phase ([`super::metrics`]) counts the request and forgets it. The
//! same record backs the log variables:
//!
//! | variable | value |
//! |---|---|
//! | `$hls_live_stream` | the stream key |
//! | `$hls_live_kind` | `playlist`, `blocking`, `part`, `segment`, `init` or `multivariant` |
//! | `$hls_live_msn` | MSN asked for (`_HLS_msn`, or the segment / part's MSN) |
//! | `$hls_live_part` | part asked for (`_HLS_part`, or the part's number) |
//! | `$hls_live_wait` | seconds the request was held (`0.123`) |
//!
//! Not an `hls_live` request, or nothing to say: the variable is not found (`-` in logs).

use core::ffi::c_void;
use std::cell::RefCell;
use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use nginx_sys::{
    ngx_conf_t, ngx_http_add_variable, ngx_http_request_t, ngx_http_variable_value_t, ngx_int_t,
    ngx_pnalloc, ngx_pool_cleanup_add, ngx_str_t, ngx_uint_t, NGX_ERROR, NGX_HTTP_VAR_NOCACHEABLE,
    NGX_OK,
};

use super::mono_ms;
use crate::metrics::Kind;
use crate::store::names::MediaFile;

#[derive(Clone, Debug)]
pub struct Info {
    pub key: String,
    pub kind: Kind,
    pub msn: Option<u64>,
    pub part: Option<u32>,
    /// Monotonic ms when held (while held).
    held_since: Option<i64>,
    /// How long it was held, once released.
    waited_ms: Option<i64>,
    /// Finished while still counted as held (client gone): the log phase un-counts it.
    pub unreleased_hold: bool,
}

thread_local! {
    /// Requests of this worker being answered, by request address. An entry goes at the
    /// log phase, or with the request's pool if the log phase never runs.
    static LIVE: RefCell<HashMap<usize, Info>> = RefCell::new(HashMap::new());
}

/// Note an `hls_live` request for `key`/`media` (the query is read for blocking reloads).
pub unsafe fn note(r: *mut ngx_http_request_t, key: &str, media: &MediaFile, low_latency: bool) {
    let (kind, msn, part) = match *media {
        MediaFile::MediaPlaylist => {
            let args = String::from_utf8_lossy((*r).args.as_bytes());
            match low_latency.then(|| crate::playlist::parse_query(&args)) {
                Some(Ok(q)) if q.msn.is_some() => (Kind::BlockingPlaylist, q.msn, q.part),
                // A malformed blocking request (answered 400) is still one.
                Some(Err(_)) if args.contains("_HLS_msn") || args.contains("_HLS_part") => {
                    (Kind::BlockingPlaylist, None, None)
                }
                _ => (Kind::Playlist, None, None),
            }
        }
        MediaFile::MultivariantPlaylist => (Kind::Multivariant, None, None),
        MediaFile::Part { msn, part } => (Kind::Part, Some(msn), Some(part)),
        MediaFile::Segment { msn } | MediaFile::TsSegment { msn } => {
            (Kind::Segment, Some(msn), None)
        }
        _ => (Kind::Init, None, None),
    };
    let id = r as usize;
    let fresh = LIVE.with(|l| {
        l.borrow_mut()
            .insert(
                id,
                Info {
                    key: key.to_owned(),
                    kind,
                    msn,
                    part,
                    held_since: None,
                    waited_ms: None,
                    unreleased_hold: false,
                },
            )
            .is_none()
    });
    if fresh {
        let cln = ngx_pool_cleanup_add((*r).pool, 0);
        if cln.is_null() {
            LIVE.with(|l| l.borrow_mut().remove(&id));
            return;
        }
        (*cln).handler = Some(forget);
        (*cln).data = id as *mut c_void;
    }
}

unsafe extern "C" fn forget(data: *mut c_void) {
    LIVE.with(|l| l.borrow_mut().remove(&(data as usize)));
}

/// `r` is being held (blocking reload or preload hint).
pub fn held(r: *mut ngx_http_request_t, key: &str) {
    LIVE.with(|l| {
        if let Some(i) = l.borrow_mut().get_mut(&(r as usize)) {
            i.held_since = Some(mono_ms());
        }
    });
    // SAFETY: a plain read of this worker's number, set before any request is served.
    let worker = unsafe { nginx_sys::ngx_worker };
    super::metrics::with_table(|t| t.held(key, worker, 1));
}

/// `r` is answered after being held.
pub fn released(r: *mut ngx_http_request_t) {
    let key = LIVE.with(|l| {
        let mut l = l.borrow_mut();
        let i = l.get_mut(&(r as usize))?;
        let since = i.held_since.take()?;
        i.waited_ms = Some(mono_ms() - since);
        Some(i.key.clone())
    });
    if let Some(key) = key {
        // SAFETY: a plain read of this worker's number, set before any request is served.
        let worker = unsafe { nginx_sys::ngx_worker };
        super::metrics::with_table(|t| t.held(&key, worker, -1));
    }
}

/// The log phase: what `r` was (None if not an `hls_live` request); forgets it.
pub fn finish(r: *mut ngx_http_request_t) -> Option<Info> {
    let mut info = LIVE.with(|l| l.borrow().get(&(r as usize)).cloned())?;
    if let Some(since) = info.held_since.take() {
        info.waited_ms = Some(mono_ms() - since);
        info.unreleased_hold = true;
        // Written back so that `$hls_live_wait` (evaluated after us) has the value and
        // a second log phase call does not un-count again.
        LIVE.with(|l| {
            if let Some(i) = l.borrow_mut().get_mut(&(r as usize)) {
                i.held_since = None;
                i.waited_ms = info.waited_ms;
            }
        });
    }
    Some(info)
}

/// A viewer identity for the viewer estimate: client address and User-Agent.
pub unsafe fn client_hash(r: *mut ngx_http_request_t) -> u64 {
    let mut h = DefaultHasher::new();
    (*(*r).connection).addr_text.as_bytes().hash(&mut h);
    let ua = (*r).headers_in.user_agent;
    if !ua.is_null() {
        (*ua).value.as_bytes().hash(&mut h);
    }
    h.finish()
}

// ---- variables ---------------------------------------------------------------------

const STREAM: usize = 0;
const KIND: usize = 1;
const MSN: usize = 2;
const PART: usize = 3;
const WAIT: usize = 4;

const VARIABLES: [(&str, usize); 5] = [
    ("hls_live_stream", STREAM),
    ("hls_live_kind", KIND),
    ("hls_live_msn", MSN),
    ("hls_live_part", PART),
    ("hls_live_wait", WAIT),
];

/// Register the variables (http preconfiguration).
pub unsafe fn add_variables(cf: *mut ngx_conf_t) -> ngx_int_t {
    for (name, which) in VARIABLES {
        let mut n = ngx_str_t {
            len: name.len(),
            data: name.as_ptr().cast_mut(),
        };
        let v = ngx_http_add_variable(cf, &mut n, NGX_HTTP_VAR_NOCACHEABLE as ngx_uint_t);
        if v.is_null() {
            return NGX_ERROR as ngx_int_t;
        }
        (*v).get_handler = Some(get_variable);
        (*v).data = which;
    }
    NGX_OK as ngx_int_t
}

unsafe extern "C" fn get_variable(
    r: *mut ngx_http_request_t,
    v: *mut ngx_http_variable_value_t,
    data: usize,
) -> ngx_int_t {
    let text = LIVE.with(|l| {
        let l = l.borrow();
        let i = l
            .get(&((*r).main as usize))
            .or_else(|| l.get(&(r as usize)))?;
        match data {
            STREAM => Some(i.key.clone()),
            KIND => Some(i.kind.label().to_owned()),
            MSN => i.msn.map(|m| m.to_string()),
            PART => i.part.map(|p| p.to_string()),
            WAIT => i
                .waited_ms
                .or(i.held_since.map(|s| mono_ms() - s))
                .map(|ms| format!("{}.{:03}", ms / 1000, ms % 1000)),
            _ => None,
        }
    });
    let v = &mut *v;
    match text {
        Some(t) => {
            let p = ngx_pnalloc((*r).pool, t.len().max(1)) as *mut u8;
            if p.is_null() {
                return NGX_ERROR as ngx_int_t;
            }
            core::ptr::copy_nonoverlapping(t.as_ptr(), p, t.len());
            v.set_len(t.len() as u32);
            v.data = p;
            v.set_valid(1);
            v.set_no_cacheable(0);
            v.set_not_found(0);
        }
        None => v.set_not_found(1),
    }
    NGX_OK as ngx_int_t
}

/// http preconfiguration: the variables and the counters' zone.
pub unsafe extern "C" fn preconfiguration(cf: *mut ngx_conf_t) -> ngx_int_t {
    if add_variables(cf) != NGX_OK as ngx_int_t {
        return NGX_ERROR as ngx_int_t;
    }
    if !super::metrics::zone_add(cf) {
        return NGX_ERROR as ngx_int_t;
    }
    NGX_OK as ngx_int_t
}

/// http postconfiguration.
pub unsafe extern "C" fn postconfiguration(cf: *mut ngx_conf_t) -> ngx_int_t {
    super::metrics::postconfiguration(cf)
}
