//! The shared-memory zone that holds every stream's index.
//!
//! Layout: nginx puts an `ngx_slab_pool_t` at the start of every shared zone; we allocate
//! one [`Header`] and a table of [`StreamIndex`] slots from it once, and keep them across
//! `nginx -s reload` (nginx hands the old zone's `data` to `init` when the zone is reused).
//! Every access takes the slab pool's mutex.
//!
//! As nginx's limit_req module keeps its zone code together, this file is the zone's one
//! home: its tag, the `hls_live_zone NAME SIZE;` directive, [`add`] (used by every
//! directive that names a zone), `init`, the carry-over on reload, the lookup of a
//! cycle's vid zones, and the [`Zone`] handle.

use core::ffi::{c_char, c_void};
use core::{mem, ptr, slice};

use nginx_sys::{
    ngx_command_t, ngx_conf_t, ngx_cycle_t, ngx_int_t, ngx_list_part_t, ngx_parse_size,
    ngx_shared_memory_add, ngx_shm_zone_t, ngx_shmtx_lock, ngx_shmtx_unlock, ngx_slab_alloc,
    ngx_slab_calloc, ngx_slab_pool_t, ngx_str_t, NGX_ERROR, NGX_LOG_ALERT, NGX_LOG_EMERG,
    NGX_LOG_NOTICE, NGX_OK,
};
use ngx::ngx_conf_log_error;

use super::{NGX_CONF_ERROR, NGX_CONF_OK};

use std::cell::RefCell;
use std::collections::HashMap;

use crate::store::{StreamIndex, StreamState, Table};

/// "vid_zon4": bumped whenever `Header` changes, so a reload never reuses an old layout.
const MAGIC: u64 = 0x7669_645f_7a6f_6e34;

#[repr(C)]
struct Header {
    magic: u64,
    index_size: usize,
    nslots: usize,
    slots: *mut StreamIndex,
    /// When some worker last swept the table: one sweep per interval per zone, whatever
    /// the number of workers.
    last_sweep_ms: i64,
    /// Slots ever used (they are taken lowest first): lookups and sweeps stop here.
    high_water: usize,
    /// 1 once a reload replaced this zone by one of another size and carried its streams
    /// over: the workers of the old configuration no longer read or write it.
    retired: usize,
}

/// Its address is the tag of vid's index zones, shared by the stream and http sides
/// (a zone named by both is one zone).
static TAG: u8 = 0;

/// The tag that marks vid's index zones.
pub fn tag() -> *mut c_void {
    (&raw const TAG).cast_mut().cast()
}

/// `hls_live_zone NAME SIZE;` (stream main level): defines the zone.
pub unsafe extern "C" fn set_zone(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    _conf: *mut c_void,
) -> *mut c_char {
    let args = (*(*cf).args).as_slice_mut::<ngx_str_t>();
    let mut name = args[1];
    let size = ngx_parse_size(&mut args[2]);
    if size == NGX_ERROR as isize || size < 64 * 1024 {
        ngx_conf_log_error!(
            NGX_LOG_EMERG,
            cf,
            "invalid zone size \"{}\" (at least 64k)",
            args[2]
        );
        return NGX_CONF_ERROR;
    }
    if add(cf, &mut name, size as usize).is_null() {
        return NGX_CONF_ERROR;
    }
    NGX_CONF_OK
}

/// Look up (or forward-declare, with size 0) the vid zone `name`.
pub unsafe fn add(cf: *mut ngx_conf_t, name: &mut ngx_str_t, size: usize) -> *mut ngx_shm_zone_t {
    let z = ngx_shared_memory_add(cf, name, size, tag());
    if !z.is_null() {
        (*z).init = Some(init);
    }
    z
}

/// The vid zones of `cycle` (none for a null cycle), in the order they were added.
pub unsafe fn vid_zones(cycle: *const ngx_cycle_t) -> Vec<*mut ngx_shm_zone_t> {
    let mut out = Vec::new();
    if cycle.is_null() {
        return out;
    }
    // SAFETY (caller): `cycle` is a cycle whose shared memory list nginx built.
    let mut part: *const ngx_list_part_t = &(*cycle).shared_memory.part;
    while !part.is_null() {
        let zones: *mut ngx_shm_zone_t = (*part).elts.cast();
        for i in 0..(*part).nelts {
            let z = zones.add(i);
            if (*z).tag == tag() {
                out.push(z);
            }
        }
        part = (*part).next;
    }
    out
}

/// Zones of the configuration being loaded whose previous incarnation (same name, other
/// size) is to be carried over once the configuration is committed: (new, old).
static mut PENDING: Vec<(*mut ngx_shm_zone_t, *mut ngx_shm_zone_t)> = Vec::new();

/// `ngx_shm_zone_t.init` for vid zones.
pub unsafe extern "C" fn init(shm_zone: *mut ngx_shm_zone_t, data: *mut c_void) -> ngx_int_t {
    let zone = &mut *shm_zone;
    let log = ngx::log::ngx_cycle_log().as_ptr();
    if reuse(zone, data, |old: &Header| {
        old.magic == MAGIC && old.index_size == mem::size_of::<StreamIndex>()
    }) {
        return NGX_OK as ngx_int_t;
    }
    if let Some(old) = previous_incarnation(zone) {
        // A resize: nginx gives us a new, empty zone. Its streams are carried over in
        // `commit` (once the whole configuration is accepted), not now: a reload that
        // fails later must leave the old zone untouched.
        let pending = &raw mut PENDING;
        (*pending).push((shm_zone, old));
    }
    let sp = zone.shm.addr as *mut ngx_slab_pool_t;
    let hdr = ngx_slab_calloc(sp, mem::size_of::<Header>()) as *mut Header;
    if hdr.is_null() {
        return NGX_ERROR as ngx_int_t;
    }
    // Not zeroed, and so not touched: slots above the high-water mark are never read, and
    // a slot is written whole (zeroed) when first claimed.
    let (slots, n) = alloc_largest::<StreamIndex>(sp, zone.shm.size);
    if slots.is_null() {
        ngx::ngx_log_error!(
            NGX_LOG_EMERG,
            log,
            "hls_live_zone \"{}\" is too small for one stream ({} bytes needed)",
            zone_name(zone),
            mem::size_of::<StreamIndex>()
        );
        return NGX_ERROR as ngx_int_t;
    }
    *hdr = Header {
        magic: MAGIC,
        index_size: mem::size_of::<StreamIndex>(),
        nslots: n,
        slots,
        last_sweep_ms: 0,
        high_water: 0,
        retired: 0,
    };
    (*sp).data = hdr.cast();
    zone.data = hdr.cast();
    ngx::ngx_log_error!(
        NGX_LOG_NOTICE,
        log,
        "hls_live_zone \"{}\": room for {} streams",
        zone_name(zone),
        n
    );
    NGX_OK as ngx_int_t
}

/// `init` of a zone that nginx kept across a reload (same name, tag and size): the old
/// zone's `data` is taken over when `same_layout` says its header `H` is this build's.
pub(super) unsafe fn reuse<H>(
    zone: &mut ngx_shm_zone_t,
    data: *mut c_void,
    same_layout: impl FnOnce(&H) -> bool,
) -> bool {
    // SAFETY (caller): `data` is null or the header this zone's `init` wrote before.
    match (data as *const H).as_ref() {
        Some(old) if same_layout(old) => {
            zone.data = data;
            true
        }
        _ => false,
    }
}

/// The largest table of `T` that fits in the slab pool `sp` (of a zone of `room` bytes),
/// not initialized: (table, number of entries); null when not even one fits.
pub(super) unsafe fn alloc_largest<T>(sp: *mut ngx_slab_pool_t, room: usize) -> (*mut T, usize) {
    let mut n = room / mem::size_of::<T>();
    let mut table = ptr::null_mut();
    // Failed tries are expected, not worth a log line.
    (*sp).set_log_nomem(0);
    while n > 0 {
        table = ngx_slab_alloc(sp, n * mem::size_of::<T>()) as *mut T;
        if !table.is_null() {
            break;
        }
        n = n * 15 / 16;
    }
    (*sp).set_log_nomem(1);
    (table, n)
}

/// The running configuration's vid zone of the same name as `zone`, if it has another size
/// (nginx reuses a zone only when name, tag and size match) and the same layout.
unsafe fn previous_incarnation(zone: &ngx_shm_zone_t) -> Option<*mut ngx_shm_zone_t> {
    let z = find_zone(nginx_sys::ngx_cycle, zone.shm.name.as_bytes())?;
    let old = ((*z).data as *mut Header).as_ref()?;
    let same_layout = old.magic == MAGIC && old.index_size == mem::size_of::<StreamIndex>();
    (same_layout && (*z).shm.size != zone.shm.size && old.retired == 0).then_some(z)
}

/// The vid zone of `cycle` named `name`.
unsafe fn find_zone(cycle: *const ngx_cycle_t, name: &[u8]) -> Option<*mut ngx_shm_zone_t> {
    vid_zones(cycle)
        .into_iter()
        .find(|&z| (*z).shm.name.as_bytes() == name)
}

/// `init_module` (in the master, once a configuration is accepted, before the zones it no
/// longer uses are unmapped): carry the streams of resized zones into their new zone and
/// retire the old one, so that two writers never share a stream or its folder.
pub unsafe fn commit(cycle: *mut nginx_sys::ngx_cycle_t) {
    let log = (*cycle).log;
    let pending = &raw mut PENDING;
    let pending = core::mem::take(&mut *pending);
    for (n, &(new, old)) in pending.iter().enumerate() {
        // Entries left by a configuration that failed to load are stale: keep only pairs
        // that are (still) this configuration's zone and the running one's, once each.
        let Some(nz) = new.as_ref() else { continue };
        let name = nz.shm.name.as_bytes();
        if pending[..n].iter().any(|&(p, _)| p == new)
            || find_zone(cycle, name) != Some(new)
            || find_zone(nginx_sys::ngx_cycle, name) != Some(old)
        {
            continue;
        }
        let Some(oz) = old.as_ref() else { continue };
        let (Some(nh), Some(oh)) = (
            (nz.data as *mut Header).as_mut(),
            (oz.data as *mut Header).as_mut(),
        ) else {
            continue;
        };
        if oh.retired != 0 || nz.shm.size == oz.shm.size {
            continue;
        }
        let osp = oz.shm.addr as *mut ngx_slab_pool_t;
        let nsp = nz.shm.addr as *mut ngx_slab_pool_t;
        ngx_shmtx_lock(&mut (*osp).mutex);
        let _unlock_old = Unlock(osp);
        ngx_shmtx_lock(&mut (*nsp).mutex);
        let _unlock_new = Unlock(nsp);
        let mut old_hw = oh.high_water;
        let old_slots = slice::from_raw_parts_mut(oh.slots, oh.nslots);
        let old_table = Table::with_high_water(old_slots, &mut old_hw);
        let new_slots = slice::from_raw_parts_mut(nh.slots, nh.nslots);
        let mut table = Table::with_high_water(new_slots, &mut nh.high_water);
        let (carried, dropped) = table.carry_over(&old_table, super::mono_ms());
        oh.retired = 1;
        ngx::ngx_log_error!(
            if dropped > 0 { NGX_LOG_ALERT } else { NGX_LOG_NOTICE },
            log,
            "hls_live_zone \"{}\" changed size ({} -> {} bytes): {} streams carried over, {} did not fit; their publishers are disconnected and continue the stream if they reconnect within hls_live_grace",
            zone_name(nz),
            oz.shm.size,
            nz.shm.size,
            carried,
            dropped
        );
    }
}

fn zone_name(zone: &ngx_shm_zone_t) -> &str {
    core::str::from_utf8(zone.shm.name.as_bytes()).unwrap_or("?")
}

/// A handle on one vid zone in this worker.
#[derive(Clone, Copy)]
pub struct Zone(*mut ngx_shm_zone_t);

struct Unlock(*mut ngx_slab_pool_t);

impl Drop for Unlock {
    fn drop(&mut self) {
        // SAFETY: an `Unlock` is made right after its pool's mutex was locked, and the
        // zone's slab pool lives as long as the zone.
        unsafe { ngx_shmtx_unlock(&mut (*self.0).mutex) };
    }
}

impl Zone {
    /// A handle on `zone`.
    ///
    /// # Safety
    /// `zone` is null (a handle that finds nothing) or a vid zone ([`add`]) of a
    /// configuration that outlives the handle; every method dereferences it.
    pub unsafe fn new(zone: *mut ngx_shm_zone_t) -> Zone {
        Zone(zone)
    }

    /// Tells zones apart (as a map key); the same for every handle on one zone.
    pub fn id(&self) -> usize {
        self.0 as usize
    }

    /// Run `f` on the zone's table with the zone locked. `None` if the zone is not ready.
    pub fn with_table<R>(&self, f: impl FnOnce(&mut Table) -> R) -> Option<R> {
        self.with_header(|_, t| f(t))
    }

    /// Sweep the table unless another worker did within `interval_ms` (monotonic clock).
    pub fn sweep(
        &self,
        now_ms: i64,
        interval_ms: i64,
        stale_ms: i64,
        owner_alive: &mut dyn FnMut(u32) -> bool,
    ) -> Vec<String> {
        self.locked(true, |last_sweep_ms, t| {
            // `last_sweep_ms` in the future: written by another clock (a zone carried
            // over a restart of the machine is impossible, but be safe).
            if now_ms - *last_sweep_ms < interval_ms && *last_sweep_ms <= now_ms {
                return Vec::new();
            }
            *last_sweep_ms = now_ms;
            t.sweep_with(now_ms, stale_ms, owner_alive)
        })
        .unwrap_or_default()
    }

    fn with_header<R>(&self, f: impl FnOnce(&mut i64, &mut Table) -> R) -> Option<R> {
        self.locked(false, f)
    }

    /// `f` on the table with the zone locked. A `writer` is refused (None) once a reload
    /// carried the zone's streams into a resized zone: the old configuration's workers may
    /// still read its last state until they exit, nobody writes or sweeps it.
    fn locked<R>(&self, writer: bool, f: impl FnOnce(&mut i64, &mut Table) -> R) -> Option<R> {
        // SAFETY: `self.0` is null or a vid zone that outlives the handle ([`Zone::new`]);
        // its `data` is null or the header `init` wrote, whose slots are touched only
        // under the slab pool's mutex (released by `Unlock`, also on a panic).
        unsafe {
            let zone = self.0.as_ref()?;
            let hdr = (zone.data as *mut Header).as_mut()?;
            let sp = zone.shm.addr as *mut ngx_slab_pool_t;
            ngx_shmtx_lock(&mut (*sp).mutex);
            let _unlock = Unlock(sp);
            if writer && hdr.retired != 0 {
                return None;
            }
            let slots = slice::from_raw_parts_mut(hdr.slots, hdr.nslots);
            let mut table = Table::with_high_water(slots, &mut hdr.high_water);
            Some(f(&mut hdr.last_sweep_ms, &mut table))
        }
    }

    /// Run `f` on the slot of `key` with the zone locked. Each worker remembers where a
    /// key's slot is, so a lookup is one key comparison instead of a table scan.
    pub fn with_stream<R>(&self, key: &str, f: impl FnOnce(&mut StreamIndex) -> R) -> Option<R> {
        let zone = self.id();
        let cached = SLOTS.with(|c| c.borrow().get(&(zone, key.to_owned())).copied());
        self.with_table(|t| {
            let slot = match cached.filter(|&i| {
                t.slot(i)
                    .is_some_and(|s| s.state() != StreamState::Free && s.key() == key)
            }) {
                Some(i) => i,
                None => {
                    let i = t.find_slot(key)?;
                    SLOTS.with(|c| {
                        let mut c = c.borrow_mut();
                        if c.len() > 4096 {
                            c.clear();
                        }
                        c.insert((zone, key.to_owned()), i);
                    });
                    i
                }
            };
            t.slot_mut(slot).map(f)
        })
        .flatten()
    }

    /// Copy one stream's index out of the zone.
    pub fn snapshot(&self, key: &str, out: &mut StreamIndex) -> bool {
        self.with_stream(key, |idx| *out = *idx).is_some()
    }

    /// Copy one stream's index out of the zone if its generation differs from `seen`.
    pub fn snapshot_if_changed(
        &self,
        key: &str,
        seen: Option<u64>,
        out: &mut StreamIndex,
    ) -> Lookup {
        self.with_stream(key, |idx| {
            let g = idx.generation();
            if seen == Some(g) {
                Lookup::Unchanged
            } else {
                *out = *idx;
                Lookup::Changed(g)
            }
        })
        .unwrap_or(Lookup::Missing)
    }
}

/// Result of [`Zone::snapshot_if_changed`].
pub enum Lookup {
    Missing,
    Unchanged,
    Changed(u64),
}

thread_local! {
    /// (zone, key) → slot index, verified under the lock on every use.
    static SLOTS: RefCell<HashMap<(usize, String), usize>> = RefCell::new(HashMap::new());
}

impl crate::ingest::SharedIndex for Zone {
    /// Writers' access: refused once the zone is retired (see [`Zone::locked`]).
    fn with_table(&mut self, f: &mut dyn FnMut(&mut Table)) -> bool {
        self.locked(true, |_, t| f(t)).is_some()
    }
}
