//! `hls_live_edge PREFIX;` — the vid edge: coalesced origin fetches, woken at once.
//!
//! A request for key K (normalised URI + canonical `_HLS_*` query, as `edge.conf` builds
//! its cache key) looks K up in the `hls_live_edge` shared zone (`crate::edge`'s table):
//! - nobody fetches K: this request starts a *background subrequest* to `PREFIX$uri?query`
//!   (an `internal` location with `proxy_pass` + `proxy_cache`, cache lock off). Its
//!   response is not sent anywhere; it fills the cache (nginx's own background-update
//!   mechanism). Then the request waits like the others;
//! - somebody (any worker) fetches K: the request is held in this worker's registry;
//! - when the fetch ends, the fetching worker marks K done in the zone and wakes its own
//!   held requests at once (a posted event); the other workers notice within [`TICK_MS`]
//!   (one timer per worker, armed only while something is held, that reads one counter
//!   of finished fetches and looks at the table only when it moved, or every
//!   [`FULL_CHECK_TICKS`] ticks for deadlines). Every held request is
//!   then internally redirected to `PREFIX$uri?query`, which is a cache hit; if the fetch
//!   failed (5xx, no answer) they get its status; past `hls_live_edge_timeout`, 504.
//!
//! The table is bounded (zone size); a key that finds no room is served without
//! coalescing. At most [`MAX_HELD`] requests are held per worker (more: 503).

use core::ffi::{c_char, c_void};
use core::{mem, ptr, slice};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::panic::catch_unwind;
use std::sync::atomic::{AtomicU64, Ordering};

use nginx_sys::{
    ngx_command_t, ngx_conf_set_msec_slot, ngx_conf_t, ngx_event_t, ngx_flag_t,
    ngx_http_cleanup_add, ngx_http_cleanup_t, ngx_http_conf_ctx_t, ngx_http_finalize_request,
    ngx_http_internal_redirect, ngx_http_module_t, ngx_http_post_subrequest_t, ngx_http_request_t,
    ngx_http_run_posted_requests, ngx_http_subrequest, ngx_http_test_reading, ngx_int_t,
    ngx_msec_t, ngx_palloc, ngx_parse_size, ngx_pcalloc, ngx_pnalloc, ngx_shared_memory_add,
    ngx_shm_zone_t, ngx_shmtx_lock, ngx_shmtx_unlock, ngx_slab_calloc, ngx_slab_pool_t, ngx_str_t,
    ngx_uint_t, NGX_CONF_TAKE1, NGX_DONE, NGX_ERROR, NGX_HTTP_BAD_REQUEST,
    NGX_HTTP_GATEWAY_TIME_OUT, NGX_HTTP_INTERNAL_SERVER_ERROR, NGX_HTTP_LOC_CONF,
    NGX_HTTP_LOC_CONF_OFFSET, NGX_HTTP_MAIN_CONF, NGX_HTTP_MAIN_CONF_OFFSET, NGX_HTTP_MODULE,
    NGX_HTTP_SERVICE_UNAVAILABLE, NGX_HTTP_SRV_CONF, NGX_HTTP_SUBREQUEST_BACKGROUND, NGX_LOG_ALERT,
    NGX_LOG_EMERG, NGX_LOG_NOTICE, NGX_LOG_WARN, NGX_OK,
};

use super::timer::WorkerEvent;
use super::{command, mono_ms, NGX_CONF_ERROR, NGX_CONF_OK, NGX_CONF_UNSET_MSEC};
use crate::edge::{self, Acquire, Slot, Verdict};

/// How often a worker with held requests looks at the zone.
pub const TICK_MS: ngx_msec_t = 1;
/// Held requests are checked against the table (deadlines, taken-over fetches) at least
/// every this many ticks even when no fetch finished.
pub const FULL_CHECK_TICKS: u32 = 25;
/// Held requests per worker.
pub const MAX_HELD: usize = 65536;
const DEFAULT_ZONE: usize = 1 << 20;
const DEFAULT_TIMEOUT: ngx_msec_t = 10_000;

#[repr(C)]
pub struct MainConf {
    zone_size: usize,
    used: ngx_flag_t,
    zone: *mut ngx_shm_zone_t,
}

#[repr(C)]
pub struct LocConf {
    /// `hls_live_edge`: the internal location prefix; `len == 0`: off.
    prefix: ngx_str_t,
    timeout: ngx_msec_t,
}

static mut COMMANDS: [ngx_command_t; 4] = [
    command(
        ngx::ngx_string!("hls_live_edge"),
        NGX_HTTP_LOC_CONF | NGX_CONF_TAKE1,
        set_edge,
        NGX_HTTP_LOC_CONF_OFFSET,
        0,
    ),
    command(
        ngx::ngx_string!("hls_live_edge_zone"),
        NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1,
        set_zone_size,
        NGX_HTTP_MAIN_CONF_OFFSET,
        0,
    ),
    command(
        ngx::ngx_string!("hls_live_edge_timeout"),
        NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF | NGX_CONF_TAKE1,
        ngx_conf_set_msec_slot,
        NGX_HTTP_LOC_CONF_OFFSET,
        mem::offset_of!(LocConf, timeout),
    ),
    ngx_command_t::empty(),
];

static CTX: ngx_http_module_t = ngx_http_module_t {
    preconfiguration: None,
    postconfiguration: Some(postconfiguration),
    create_main_conf: Some(create_main_conf),
    init_main_conf: None,
    create_srv_conf: None,
    merge_srv_conf: None,
    create_loc_conf: Some(create_loc_conf),
    merge_loc_conf: Some(<EdgeModule as ngx::http::HttpModule>::merge_loc_conf),
};

nginx_module!(ngx_http_vid_edge_module, NGX_HTTP_MODULE);

unsafe extern "C" fn create_main_conf(cf: *mut ngx_conf_t) -> *mut c_void {
    ngx_pcalloc((*cf).pool, mem::size_of::<MainConf>())
}

unsafe extern "C" fn create_loc_conf(cf: *mut ngx_conf_t) -> *mut c_void {
    let conf = ngx_pcalloc((*cf).pool, mem::size_of::<LocConf>()) as *mut LocConf;
    if !conf.is_null() {
        (*conf).timeout = NGX_CONF_UNSET_MSEC;
    }
    conf.cast()
}

http_location_merge!(EdgeModule, ngx_http_vid_edge_module, LocConf);

impl ngx::http::Merge for LocConf {
    fn merge(&mut self, prev: &Self) -> Result<(), ngx::http::MergeConfigError> {
        super::merge(
            &mut self.timeout,
            prev.timeout,
            NGX_CONF_UNSET_MSEC,
            DEFAULT_TIMEOUT,
        );
        Ok(())
    }
}

unsafe fn main_conf_of_cf(cf: *mut ngx_conf_t) -> *mut MainConf {
    let ctx = (*cf).ctx as *mut ngx_http_conf_ctx_t;
    *(*ctx).main_conf.add(ngx_http_vid_edge_module.ctx_index) as *mut MainConf
}

unsafe extern "C" fn set_edge(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    let conf = &mut *(conf as *mut LocConf);
    if !conf.prefix.data.is_null() {
        return c"is duplicate".as_ptr().cast_mut();
    }
    let arg = (*(*cf).args).as_slice::<ngx_str_t>()[1];
    if arg.as_bytes() == b"off" {
        conf.prefix = ngx::ngx_string!("");
        return NGX_CONF_OK;
    }
    let b = arg.as_bytes();
    if b.first() != Some(&b'/') || b.len() > 128 || b.iter().any(|&c| c <= b' ' || c == b'?') {
        ngx::ngx_conf_log_error!(
            NGX_LOG_EMERG,
            cf,
            "\"hls_live_edge\" wants \"off\" or the URI prefix of an internal location, not \"{}\"",
            arg
        );
        return NGX_CONF_ERROR;
    }
    // A trailing slash is the location's, not ours: "/_edge/" + "/live/…" would be "//".
    let mut prefix = arg;
    if prefix.len > 1 && b.last() == Some(&b'/') {
        prefix.len -= 1;
    }
    conf.prefix = prefix;
    (*main_conf_of_cf(cf)).used = 1;
    super::set_content_handler(cf, handler);
    NGX_CONF_OK
}

unsafe extern "C" fn set_zone_size(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    let conf = &mut *(conf as *mut MainConf);
    if conf.zone_size != 0 {
        return c"is duplicate".as_ptr().cast_mut();
    }
    let mut arg = (*(*cf).args).as_slice::<ngx_str_t>()[1];
    let size = ngx_parse_size(&mut arg);
    if size < 65536 {
        ngx::ngx_conf_log_error!(
            NGX_LOG_EMERG,
            cf,
            "\"hls_live_edge_zone\" wants a size of at least 64k, not \"{}\"",
            arg
        );
        return NGX_CONF_ERROR;
    }
    conf.zone_size = size as usize;
    NGX_CONF_OK
}

unsafe extern "C" fn postconfiguration(cf: *mut ngx_conf_t) -> ngx_int_t {
    let mc = &mut *main_conf_of_cf(cf);
    if mc.used == 0 {
        return NGX_OK as ngx_int_t;
    }
    let mut name = ngx::ngx_string!("hls_live_edge");
    let size = if mc.zone_size == 0 {
        DEFAULT_ZONE
    } else {
        mc.zone_size
    };
    mc.zone = ngx_shared_memory_add(
        cf,
        &mut name,
        size,
        (&raw mut ngx_http_vid_edge_module).cast(),
    );
    if mc.zone.is_null() {
        return NGX_ERROR as ngx_int_t;
    }
    (*mc.zone).init = Some(zone_init);
    NGX_OK as ngx_int_t
}

// --- the shared table ----------------------------------------------------------------

/// "vid_edg2": bumped whenever `Header` or `Slot` changes.
const MAGIC: u64 = 0x7669_645f_6564_6732;

#[repr(C)]
struct Header {
    magic: u64,
    slot_size: usize,
    nslots: usize,
    slots: *mut Slot,
    /// Fetches finished so far: read without the lock by every worker's tick.
    finished: AtomicU64,
}

unsafe extern "C" fn zone_init(shm_zone: *mut ngx_shm_zone_t, data: *mut c_void) -> ngx_int_t {
    let zone = &mut *shm_zone;
    if super::zone::reuse(zone, data, |old: &Header| {
        old.magic == MAGIC && old.slot_size == mem::size_of::<Slot>()
    }) {
        return NGX_OK as ngx_int_t;
    }
    let sp = zone.shm.addr as *mut ngx_slab_pool_t;
    let hdr = ngx_slab_calloc(sp, mem::size_of::<Header>()) as *mut Header;
    if hdr.is_null() {
        return NGX_ERROR as ngx_int_t;
    }
    let (slots, n) = super::zone::alloc_largest::<Slot>(sp, zone.shm.size);
    if slots.is_null() {
        return NGX_ERROR as ngx_int_t;
    }
    for i in 0..n {
        slots.add(i).write(Slot::ZERO);
    }
    *hdr = Header {
        magic: MAGIC,
        slot_size: mem::size_of::<Slot>(),
        nslots: n,
        slots,
        finished: AtomicU64::new(0),
    };
    (*sp).data = hdr.cast();
    zone.data = hdr.cast();
    ngx::ngx_log_error!(
        NGX_LOG_NOTICE,
        ngx::log::ngx_cycle_log().as_ptr(),
        "hls_live_edge: zone \"hls_live_edge\" holds {} keys in flight",
        n
    );
    NGX_OK as ngx_int_t
}

struct Unlock(*mut ngx_slab_pool_t);

impl Drop for Unlock {
    fn drop(&mut self) {
        // SAFETY: locked by `with_slots`, which owns this guard.
        unsafe { ngx_shmtx_unlock(&mut (*self.0).mutex) };
    }
}

/// Run `f` on the table with the zone locked. `None` if there is no zone.
fn with_slots<R>(f: impl FnOnce(&mut [Slot]) -> R) -> Option<R> {
    // SAFETY: the zone pointer is set at configuration time and the zone lives as long as
    // the cycle; the table is only touched under the slab pool's mutex.
    unsafe {
        let zone = ZONE.with(|z| *z.borrow()).as_ref()?;
        let hdr = (zone.data as *mut Header).as_mut()?;
        let sp = zone.shm.addr as *mut ngx_slab_pool_t;
        ngx_shmtx_lock(&mut (*sp).mutex);
        let _unlock = Unlock(sp);
        Some(f(slice::from_raw_parts_mut(hdr.slots, hdr.nslots)))
    }
}

fn header() -> Option<&'static Header> {
    // SAFETY: see `with_slots`; `finished` is atomic, the rest is written once at init.
    unsafe {
        let zone = ZONE.with(|z| *z.borrow()).as_ref()?;
        (zone.data as *const Header).as_ref()
    }
}

/// Generation `gen` of slot `at` finished with `status` (0: abandoned): record it and
/// let every worker know.
fn finish_fetch(at: usize, gen: u32, status: u16) {
    let now = mono_ms();
    with_slots(|s| edge::finish(s, at, gen, status, now));
    if let Some(h) = header() {
        h.finished.fetch_add(1, Ordering::Release);
    }
}

fn finished_count() -> u64 {
    header().map_or(0, |h| h.finished.load(Ordering::Acquire))
}

// --- requests ------------------------------------------------------------------------

/// A request on its way: where it goes once the object is in the cache.
struct Req {
    r: *mut ngx_http_request_t,
    target: ngx_str_t,
    args: ngx_str_t,
    key: Vec<u8>,
    deadline: i64,
    stale: i64,
}

struct Held {
    req: Req,
    cleanup: *mut ngx_http_cleanup_t,
    at: usize,
    gen: u32,
}

/// The fetch a request started (request pool memory).
#[repr(C)]
struct Fetch {
    at: usize,
    gen: u32,
    done: bool,
}

#[derive(Default)]
struct Registry {
    next_id: usize,
    /// By arrival: woken requests are answered first come, first served.
    held: BTreeMap<usize, Held>,
    armed: bool,
    /// `finished` of the zone when the table was last looked at, and ticks since.
    seen: u64,
    ticks: u32,
}

thread_local! {
    static ZONE: RefCell<*mut ngx_shm_zone_t> = const { RefCell::new(ptr::null_mut()) };
    static REGISTRY: RefCell<Registry> = RefCell::new(Registry::default());
    static TIMER: WorkerEvent = WorkerEvent::new();
    static WAKE: WorkerEvent = WorkerEvent::new();
}

unsafe extern "C" fn handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    super::respond::serve(r, "hls_live_edge", || start(r))
}

unsafe fn pool_str(r: *mut ngx_http_request_t, parts: &[&[u8]]) -> Option<ngx_str_t> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let data = ngx_pnalloc((*r).pool, len.max(1)) as *mut u8;
    if data.is_null() {
        return None;
    }
    let mut at = 0;
    for p in parts {
        ptr::copy_nonoverlapping(p.as_ptr(), data.add(at), p.len());
        at += p.len();
    }
    Some(ngx_str_t { len, data })
}

unsafe fn start(r: *mut ngx_http_request_t) -> ngx_int_t {
    let lc = &*(*(*r).loc_conf.add(ngx_http_vid_edge_module.ctx_index) as *const LocConf);
    let mc = &*(*(*r).main_conf.add(ngx_http_vid_edge_module.ctx_index) as *const MainConf);
    ZONE.with(|z| *z.borrow_mut() = mc.zone);
    let Ok(query) = edge::canonical_query((*r).args.as_bytes()) else {
        return NGX_HTTP_BAD_REQUEST as ngx_int_t;
    };
    let uri = (*r).uri.as_bytes();
    let (Some(target), Some(args)) = (
        pool_str(r, &[lc.prefix.as_bytes(), uri]),
        pool_str(r, &[query.as_bytes()]),
    ) else {
        return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
    };
    let now = mono_ms();
    let req = Req {
        r,
        target,
        args,
        key: edge::cache_key(uri, &query),
        deadline: now + lc.timeout as i64,
        // A fetch the origin may hold up to the timeout, plus the fetch's own margins.
        stale: lc.timeout as i64 + 5000,
    };
    decide(req, false)
}

/// Look the key up and act: serve, or hold (and maybe start the fetch). `held`: the
/// request is held already (its count was raised by an earlier [`hold`]).
unsafe fn decide(req: Req, held: bool) -> ngx_int_t {
    let now = mono_ms();
    let (at, a) =
        with_slots(|s| edge::acquire(s, &req.key, now, req.stale)).unwrap_or((0, Acquire::Bypass));
    match a {
        Acquire::Serve | Acquire::Bypass => redirect(req, held),
        Acquire::Fetch { gen } => {
            if !fetch(req.r, &req, at, gen) {
                // Not even a subrequest: give up coalescing for this one.
                finish_fetch(at, gen, 0);
                return redirect(req, held);
            }
            hold(req, at, gen, held)
        }
        Acquire::Wait { gen } => hold(req, at, gen, held),
    }
}

/// Start the background subrequest that fills the cache with the object.
unsafe fn fetch(r: *mut ngx_http_request_t, req: &Req, at: usize, gen: u32) -> bool {
    let f = ngx_pcalloc((*r).pool, mem::size_of::<Fetch>()) as *mut Fetch;
    let ps = ngx_palloc((*r).pool, mem::size_of::<ngx_http_post_subrequest_t>())
        as *mut ngx_http_post_subrequest_t;
    let cln = ngx_http_cleanup_add(r, 0);
    if f.is_null() || ps.is_null() || cln.is_null() {
        return false;
    }
    f.write(Fetch {
        at,
        gen,
        done: false,
    });
    ps.write(ngx_http_post_subrequest_t {
        handler: Some(fetched),
        data: f.cast(),
    });
    let mut uri = req.target;
    let mut args = req.args;
    let mut sr: *mut ngx_http_request_t = ptr::null_mut();
    let rc = ngx_http_subrequest(
        r,
        &mut uri,
        &mut args,
        &mut sr,
        ps,
        NGX_HTTP_SUBREQUEST_BACKGROUND as ngx_uint_t,
    );
    if rc != NGX_OK as ngx_int_t || sr.is_null() {
        (*f).done = true;
        return false;
    }
    // Nothing is sent from it: the upstream still reads the whole response into the
    // cache (as for proxy_cache_background_update).
    (*sr).set_header_only(1);
    (*cln).handler = Some(abandoned);
    (*cln).data = f.cast();
    true
}

/// The fetch ended (`post_subrequest`): record its status and wake the waiters.
unsafe extern "C" fn fetched(
    sr: *mut ngx_http_request_t,
    data: *mut c_void,
    rc: ngx_int_t,
) -> ngx_int_t {
    let f = &mut *(data as *mut Fetch);
    if f.done {
        return rc;
    }
    f.done = true;
    let hs = (*sr).headers_out.status as i64;
    let failed = rc == NGX_ERROR as ngx_int_t || rc >= 300;
    let status = if failed && !(300..600).contains(&hs) {
        if (300..600).contains(&(rc as i64)) {
            rc as i64
        } else {
            502
        }
    } else if (100..600).contains(&hs) {
        hs
    } else {
        502
    };
    finish_fetch(f.at, f.gen, status as u16);
    wake();
    rc
}

/// The fetching request ended before its fetch did (client gone): let a waiter take over.
unsafe extern "C" fn abandoned(data: *mut c_void) {
    let f = &mut *(data as *mut Fetch);
    if !f.done {
        f.done = true;
        finish_fetch(f.at, f.gen, 0);
        wake();
    }
}

unsafe fn redirect(req: Req, held: bool) -> ngx_int_t {
    let r = req.r;
    let mut uri = req.target;
    let mut args = req.args;
    let rc = ngx_http_internal_redirect(r, &mut uri, &mut args);
    if held {
        ngx_http_finalize_request(r, NGX_DONE as ngx_int_t);
    }
    rc
}

unsafe fn hold(req: Req, at: usize, gen: u32, held: bool) -> ngx_int_t {
    let r = req.r;
    let full = REGISTRY.with(|reg| reg.borrow().held.len() >= MAX_HELD);
    if full {
        ngx::ngx_log_error!(
            NGX_LOG_WARN,
            (*(*r).connection).log,
            "hls_live_edge: {} requests held in this worker already",
            MAX_HELD
        );
        return end(r, NGX_HTTP_SERVICE_UNAVAILABLE as ngx_int_t, held);
    }
    let cln = ngx_http_cleanup_add(r, 0);
    if cln.is_null() {
        return end(r, NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t, held);
    }
    let id = REGISTRY.with(|reg| {
        let mut reg = reg.borrow_mut();
        reg.next_id = reg.next_id.wrapping_add(1);
        let id = reg.next_id;
        reg.held.insert(
            id,
            Held {
                req,
                cleanup: cln,
                at,
                gen,
            },
        );
        id
    });
    (*cln).handler = Some(forget);
    (*cln).data = id as *mut c_void;
    if !held {
        // Notice a client that goes away while it waits.
        (*r).read_event_handler = Some(ngx_http_test_reading);
        let main = (*r).main;
        (*main).set_count((*main).count() + 1);
    }
    arm();
    NGX_DONE as ngx_int_t
}

/// Answer `rc`: from the content handler by returning it, for a held request here.
unsafe fn end(r: *mut ngx_http_request_t, rc: ngx_int_t, held: bool) -> ngx_int_t {
    if held {
        ngx_http_finalize_request(r, rc);
        NGX_DONE as ngx_int_t
    } else {
        rc
    }
}

/// The request ended while held (client closed, worker shutdown): forget it.
unsafe extern "C" fn forget(data: *mut c_void) {
    let id = data as usize;
    REGISTRY.with(|reg| reg.borrow_mut().held.remove(&id));
}

fn arm() {
    let already = REGISTRY.with(|reg| mem::replace(&mut reg.borrow_mut().armed, true));
    if already {
        return;
    }
    // Not cancelable: a worker that shuts down answers its held requests first.
    TIMER.with(|t| t.arm(tick, TICK_MS, false));
}

/// Check the held requests now (after the current event): a fetch of this worker ended.
fn wake() {
    WAKE.with(|w| w.post(woken));
}

unsafe extern "C" fn tick(ev: *mut ngx_event_t) {
    run_check(ev, false);
}

unsafe extern "C" fn woken(ev: *mut ngx_event_t) {
    run_check(ev, true);
}

unsafe fn run_check(ev: *mut ngx_event_t, force: bool) {
    if catch_unwind(|| check_held(force)).is_err() {
        ngx::ngx_log_error!(
            NGX_LOG_ALERT,
            (*ev).log,
            "hls_live_edge: internal error in held requests"
        );
    }
}

/// `force`: a fetch of this worker finished; otherwise look at the table only when some
/// fetch finished since the last look, or for deadlines every [`FULL_CHECK_TICKS`].
unsafe fn check_held(force: bool) {
    let count = finished_count();
    let look = REGISTRY.with(|reg| {
        let mut reg = reg.borrow_mut();
        reg.ticks += 1;
        let look = force || count != reg.seen || reg.ticks >= FULL_CHECK_TICKS;
        if look {
            reg.seen = count;
            reg.ticks = 0;
        }
        look
    });
    if look {
        check_table();
    }
    let more = REGISTRY.with(|reg| {
        let mut reg = reg.borrow_mut();
        reg.armed = !reg.held.is_empty();
        reg.armed
    });
    if more {
        TIMER.with(|t| t.arm(tick, TICK_MS, false));
    }
}

unsafe fn check_table() {
    let now = mono_ms();
    let ids: Vec<(usize, usize, u32, i64)> = REGISTRY.with(|reg| {
        reg.borrow()
            .held
            .iter()
            .map(|(id, h)| (*id, h.at, h.gen, h.req.deadline))
            .collect()
    });
    let verdicts: Vec<(usize, Verdict)> = with_slots(|s| {
        ids.iter()
            .map(|&(id, at, gen, deadline)| (id, edge::check(s, at, gen, now, deadline)))
            .filter(|(_, v)| *v != Verdict::Wait)
            .collect()
    })
    .unwrap_or_default();
    for (id, v) in verdicts {
        let Some(h) = REGISTRY.with(|reg| reg.borrow_mut().held.remove(&id)) else {
            continue;
        };
        (*h.cleanup).handler = None;
        let r = h.req.r;
        let c = (*r).connection;
        match v {
            Verdict::Serve => {
                redirect(h.req, true);
            }
            Verdict::Retry => {
                decide(h.req, true);
            }
            Verdict::Error(status) => ngx_http_finalize_request(r, status as ngx_int_t),
            Verdict::TimedOut => {
                ngx_http_finalize_request(r, NGX_HTTP_GATEWAY_TIME_OUT as ngx_int_t)
            }
            Verdict::Wait => {}
        }
        ngx_http_run_posted_requests(c);
    }
}
