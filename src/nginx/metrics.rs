//! `hls_live_metrics;` — Prometheus metrics — and the status API's operating data.
//!
//! The counters ([`crate::metrics::Table`]) live in their own shared-memory zone,
//! `vid_metrics`, added by the http module whenever vid is loaded with an `http{}` block;
//! every worker adds to it under the zone's lock, and it is kept across `nginx -s reload`
//! (same name, size and tag: nginx hands the old zone to `init`). The hooks the rest of
//! the glue calls are one-liners into this file and do nothing when the zone is absent.

use core::ffi::{c_char, c_void};
use core::{mem, ptr};
use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};

use nginx_sys::{
    ngx_array_push, ngx_command_t, ngx_conf_t, ngx_connection_t, ngx_http_conf_ctx_t,
    ngx_http_core_main_conf_t, ngx_http_core_module, ngx_http_handler_pt,
    ngx_http_phases_NGX_HTTP_LOG_PHASE, ngx_http_request_t, ngx_int_t, ngx_shm_zone_t,
    ngx_shmtx_lock, ngx_shmtx_unlock, ngx_slab_calloc, ngx_slab_pool_t, ngx_str_t, ngx_uint_t,
    NGX_ERROR, NGX_OK,
};

use super::http::ngx_http_vid_module;
use super::{mono_ms, NGX_CONF_ERROR, NGX_CONF_OK};
use crate::ingest::{Connection, IngestError};
use crate::metrics::{self, Refusal, Table, ZoneSlots};
use crate::playlist::StreamSummary;

/// Name of the counters' zone.
const ZONE_NAME: &str = "vid_metrics";
/// "vid_met1": bumped whenever `Table` changes shape.
const MAGIC: u64 = 0x7669_645f_6d65_7431;

#[repr(C)]
struct Header {
    magic: u64,
    size: usize,
    table: *mut Table,
}

/// Zone size: the table, its header and the slab allocator's own pages.
fn zone_size() -> usize {
    let need = mem::size_of::<Table>() + mem::size_of::<Header>() + 64 * 1024;
    need.next_multiple_of(64 * 1024)
}

/// Declare the counters' zone (http preconfiguration).
pub unsafe fn zone_add(cf: *mut ngx_conf_t) -> bool {
    let mut name = ngx_str_t {
        len: ZONE_NAME.len(),
        data: ZONE_NAME.as_ptr().cast_mut(),
    };
    let z = nginx_sys::ngx_shared_memory_add(
        cf,
        &mut name,
        zone_size(),
        (&raw mut ngx_http_vid_module).cast(),
    );
    if z.is_null() {
        return false;
    }
    (*z).init = Some(init);
    true
}

unsafe extern "C" fn init(shm_zone: *mut ngx_shm_zone_t, data: *mut c_void) -> ngx_int_t {
    let zone = &mut *shm_zone;
    if super::zone::reuse(zone, data, |old: &Header| {
        old.magic == MAGIC && old.size == mem::size_of::<Table>()
    }) {
        return NGX_OK as ngx_int_t;
    }
    let sp = zone.shm.addr as *mut ngx_slab_pool_t;
    let hdr = ngx_slab_calloc(sp, mem::size_of::<Header>()) as *mut Header;
    let table = ngx_slab_calloc(sp, mem::size_of::<Table>()) as *mut Table;
    if hdr.is_null() || table.is_null() {
        return NGX_ERROR as ngx_int_t;
    }
    ptr::write(table, Table::ZERO);
    *hdr = Header {
        magic: MAGIC,
        size: mem::size_of::<Table>(),
        table,
    };
    (*sp).data = hdr.cast();
    zone.data = hdr.cast();
    NGX_OK as ngx_int_t
}

thread_local! {
    /// This worker's counters zone, found on first use (null: none).
    static ZONE: Cell<Option<*mut ngx_shm_zone_t>> = const { Cell::new(None) };
}

/// The counters' zone of the running cycle.
unsafe fn zone() -> *mut ngx_shm_zone_t {
    if let Some(z) = ZONE.get() {
        return z;
    }
    let mut found = ptr::null_mut();
    let cycle = nginx_sys::ngx_cycle;
    if !cycle.is_null() {
        let mut part: *mut nginx_sys::ngx_list_part_t = &mut (*cycle).shared_memory.part;
        'outer: while !part.is_null() {
            let elts = (*part).elts as *mut ngx_shm_zone_t;
            for i in 0..(*part).nelts {
                let z = elts.add(i);
                if (*z).shm.name.as_bytes() == ZONE_NAME.as_bytes()
                    && (*z).tag == (&raw mut ngx_http_vid_module).cast()
                {
                    found = z;
                    break 'outer;
                }
            }
            part = (*part).next;
        }
    }
    // Only a worker's answer is final (the master's cycle changes on reload).
    if nginx_sys::ngx_process == nginx_sys::NGX_PROCESS_WORKER as ngx_uint_t {
        ZONE.set(Some(found));
    }
    found
}

/// Run `f` on the shared counters with the zone locked; `None` without a zone.
pub fn with_table<R>(f: impl FnOnce(&mut Table) -> R) -> Option<R> {
    // SAFETY: `zone()` is null or the counters' zone of the running configuration, whose
    // `data` is null or the header `init` wrote; the table is touched only under the
    // zone's mutex, which is released even if `f` panics.
    unsafe {
        let z = zone().as_ref()?;
        let hdr = (z.data as *mut Header).as_mut()?;
        let sp = z.shm.addr as *mut ngx_slab_pool_t;
        ngx_shmtx_lock(&mut (*sp).mutex);
        let r = catch_unwind(AssertUnwindSafe(|| f(&mut *hdr.table)));
        ngx_shmtx_unlock(&mut (*sp).mutex);
        r.ok()
    }
}

// ---- hooks -------------------------------------------------------------------------

/// An RTMP connection was accepted.
pub fn rtmp_connected() {
    with_table(|t| t.origin.rtmp_connections += 1);
}

/// After each read of an ingest connection (and at its close, with a null `c`): add what
/// it reported; `err`: the error it is being closed with.
pub unsafe fn ingest(c: *mut ngx_connection_t, conn: &mut Connection, err: Option<&IngestError>) {
    let stats = conn.take_stats();
    let software = conn.publisher_software().unwrap_or("").to_owned();
    if stats.is_none() && err.is_none() {
        return;
    }
    let addr = if c.is_null() {
        String::new()
    } else {
        String::from_utf8_lossy((*c).addr_text.as_bytes()).into_owned()
    };
    let now = mono_ms();
    with_table(|t| {
        if let Some((key, d)) = &stats {
            if d.published {
                t.publisher(key, &addr, &software, now);
            }
            t.ingest(key, d, now);
        }
        if let Some(e) = err {
            t.refusal(Refusal::of(e));
        }
    });
}

thread_local! {
    /// Render cache (hits, misses) not yet added to the shared counters: they go in with
    /// the request's log phase, which takes the lock anyway.
    static RENDER: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

/// A media playlist was served from the per-worker rendering cache (`hit`) or rendered.
pub fn render_cache(hit: bool) {
    RENDER.with(|c| {
        let (h, m) = c.get();
        c.set(if hit { (h + 1, m) } else { (h, m + 1) });
    });
}

// ---- the log phase: every hls_live request, once, with its final status ----------

/// Count `r` if `hls_live` noted it (see [`super::vars`]).
unsafe extern "C" fn log_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        let Some(info) = super::vars::finish(r) else {
            return;
        };
        let status = if (*r).err_status != 0 {
            (*r).err_status
        } else {
            (*r).headers_out.status
        } as u16;
        let c = (*r).connection;
        let body = ((*c).sent - (*r).header_size as i64).max(0) as u64;
        let client = super::vars::client_hash(r);
        let now = mono_ms();
        let worker = nginx_sys::ngx_worker;
        let (hits, misses) = RENDER.with(|c| c.replace((0, 0)));
        with_table(|t| {
            t.origin.render_hits += hits;
            t.origin.render_misses += misses;
            if info.unreleased_hold {
                t.held(&info.key, worker, -1);
            }
            t.request(&info.key, info.kind, status, body);
            if status == 200
                && matches!(
                    info.kind,
                    metrics::Kind::Playlist | metrics::Kind::BlockingPlaylist
                )
            {
                t.viewer(&info.key, client, now);
            }
        });
    }));
    NGX_OK as ngx_int_t
}

/// http postconfiguration: count requests in the log phase.
pub unsafe fn postconfiguration(cf: *mut ngx_conf_t) -> ngx_int_t {
    let ctx = (*cf).ctx as *mut ngx_http_conf_ctx_t;
    let cmcf =
        *(*ctx).main_conf.add(ngx_http_core_module.ctx_index) as *mut ngx_http_core_main_conf_t;
    let h =
        ngx_array_push(&mut (*cmcf).phases[ngx_http_phases_NGX_HTTP_LOG_PHASE as usize].handlers)
            as *mut ngx_http_handler_pt;
    if h.is_null() {
        return NGX_ERROR as ngx_int_t;
    }
    *h = Some(log_handler);
    NGX_OK as ngx_int_t
}

// ---- hls_live_metrics; -------------------------------------------------------------

pub unsafe extern "C" fn set_hls_live_metrics(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    _conf: *mut c_void,
) -> *mut c_char {
    if (*super::core_loc_conf(cf)).handler.is_some() {
        return c"is duplicate".as_ptr().cast_mut();
    }
    super::set_content_handler(cf, metrics_handler);
    if zone_add(cf) {
        NGX_CONF_OK
    } else {
        NGX_CONF_ERROR
    }
}

/// Occupancy of every vid index zone of the cycle.
unsafe fn zone_slots() -> Option<ZoneSlots> {
    let cycle = nginx_sys::ngx_cycle;
    let mut out: Option<ZoneSlots> = None;
    for z in super::zone::vid_zones(cycle) {
        // SAFETY: a vid zone of the running cycle, whose zones outlive this call.
        let counted = super::zone::Zone::new(z).with_table(|t| {
            let used = t
                .iter()
                .filter(|s| s.state() != crate::store::StreamState::Free)
                .count() as u64;
            (used, t.capacity() as u64)
        });
        if let Some((used, cap)) = counted {
            let o = out.get_or_insert_with(ZoneSlots::default);
            o.used += used;
            o.free += cap.saturating_sub(used);
        }
    }
    out
}

unsafe extern "C" fn metrics_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    super::respond::serve(r, "hls_live_metrics", || {
        // Copy out under the lock, render after it.
        let snap = with_table(|t| {
            let mut b: Box<Table> = Box::new(Table::ZERO);
            *b = *t;
            b
        })
        .unwrap_or_else(|| Box::new(Table::ZERO));
        let slots = zone_slots();
        let workers = worker_processes();
        let body = metrics::render(&snap, mono_ms(), slots, workers);
        super::respond::send_text(r, metrics::CONTENT_TYPE, body.as_bytes(), 0)
    })
}

unsafe fn worker_processes() -> usize {
    let cycle = nginx_sys::ngx_cycle;
    let ccf = *(*cycle).conf_ctx.add(nginx_sys::ngx_core_module.index)
        as *const nginx_sys::ngx_core_conf_t;
    if ccf.is_null() {
        1
    } else {
        (*ccf).worker_processes.max(1) as usize
    }
}

// ---- the status API ----------------------------------------------------------------

/// The body of `hls_live_streams;`: the listing plus each stream's operating state.
pub fn status_body(list: Vec<StreamSummary>) -> String {
    let now = mono_ms();
    let rows = with_table(|t| {
        list.iter()
            .map(|s| {
                t.find(&s.key)
                    .map(|c| metrics::status::StreamStatus::of(c, now))
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
    })
    .unwrap_or_else(|| vec![Default::default(); list.len()]);
    metrics::status::status_json(list.into_iter().zip(rows).collect())
}
