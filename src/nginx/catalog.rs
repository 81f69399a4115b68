//! The catalog's glue: `hls_live_catalog` (stream main context), the per-worker writer
//! thread, and handing publish sessions to it.
//!
//! The event loop never touches the database. `submit` drops each row into the spool (one
//! small file, like a media file) and wakes the writer thread with a non-blocking send on
//! a bounded channel; the thread (`crate::catalog::writer::run`) does all SQL. It is
//! spawned in `init_process` with every asynchronous signal blocked, as nginx's own thread
//! pools do, so signals keep going to the event loop. At exit it is told to stop and not
//! waited for: whatever it had not committed is still in the spool for the next worker.

use core::ffi::{c_char, c_void};
use core::ptr;
use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Mutex;
use std::time::Duration;

use nginx_sys::{
    ngx_conf_t, ngx_cycle_t, ngx_int_t, ngx_pcalloc, ngx_pool_cleanup_add, ngx_str_t,
    ngx_stream_conf_ctx_t, ngx_stream_module, NGX_LOG_EMERG, NGX_LOG_ERR, NGX_LOG_NOTICE, NGX_OK,
};
use ngx::{ngx_conf_log_error, ngx_log_error};

use super::stream::ngx_stream_vid_module;
use super::{NGX_CONF_ERROR, NGX_CONF_OK};
use crate::catalog::spool::Spool;
use crate::catalog::writer::{self, Msg, WriterConfig};
use crate::catalog::{parse_target, Event, Target};
use crate::record::retention::Policy;
use crate::record::session::wall_ms;
use crate::record::Summary;

/// `stream {}` main configuration of the catalog.
#[repr(C)]
pub struct MainConf {
    /// `hls_live_catalog`: "off", `sqlite:PATH`, a path, or a PostgreSQL connection string.
    catalog: ngx_str_t,
    state: *mut State,
}

/// What the servers tell the main configuration while being merged.
#[derive(Default)]
struct State {
    /// The first server's `hls_live_path`: the default catalog and the spool live there.
    media_path: Option<String>,
    /// Recording folders with a retention policy.
    retention: Vec<(PathBuf, Policy)>,
}

pub unsafe extern "C" fn create_main_conf(cf: *mut ngx_conf_t) -> *mut c_void {
    let conf = ngx_pcalloc((*cf).pool, core::mem::size_of::<MainConf>()) as *mut MainConf;
    if conf.is_null() {
        return ptr::null_mut();
    }
    let cln = ngx_pool_cleanup_add((*cf).pool, 0);
    if cln.is_null() {
        return ptr::null_mut();
    }
    let state = Box::into_raw(Box::<State>::default());
    (*conf).state = state;
    (*cln).handler = Some(free_state);
    (*cln).data = state.cast();
    conf.cast()
}

unsafe extern "C" fn free_state(data: *mut c_void) {
    drop(Box::from_raw(data as *mut State));
}

/// `hls_live_catalog off | sqlite:PATH | PATH | postgresql://… | postgresql:KEY=VALUE…;`
pub unsafe extern "C" fn set_catalog(
    cf: *mut ngx_conf_t,
    _cmd: *mut nginx_sys::ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    let conf = &mut *(conf as *mut MainConf);
    if !conf.catalog.data.is_null() {
        return c"is duplicate".as_ptr().cast_mut();
    }
    let args = (*(*cf).args).as_slice_mut::<ngx_str_t>();
    let v = args[1];
    let text = String::from_utf8_lossy(v.as_bytes()).into_owned();
    if text != "off" {
        if let Err(e) = parse_target(&text) {
            ngx_conf_log_error!(NGX_LOG_EMERG, cf, "\"hls_live_catalog\": {}", e);
            return NGX_CONF_ERROR;
        }
        if let Ok(Target::Sqlite(p)) = parse_target(&text) {
            if !p.starts_with('/') {
                ngx_conf_log_error!(
                    NGX_LOG_EMERG,
                    cf,
                    "\"hls_live_catalog\": the SQLite path must be absolute"
                );
                return NGX_CONF_ERROR;
            }
        }
    }
    conf.catalog = v;
    NGX_CONF_OK
}

unsafe fn main_conf_of_cf(cf: *mut ngx_conf_t) -> *mut MainConf {
    let ctx = (*cf).ctx as *mut ngx_stream_conf_ctx_t;
    *(*ctx).main_conf.add(ngx_stream_vid_module.ctx_index) as *mut MainConf
}

/// Called by each RTMP server's merge: its media path and, when it records with a
/// retention policy, its recording folder.
pub unsafe fn note_server(
    cf: *mut ngx_conf_t,
    media_path: &str,
    retention: Option<(PathBuf, Policy)>,
) {
    let mc = main_conf_of_cf(cf);
    if mc.is_null() || (*mc).state.is_null() {
        return;
    }
    let state = &mut *(*mc).state;
    if state.media_path.is_none() {
        state.media_path = Some(media_path.to_string());
    }
    if let Some((root, policy)) = retention {
        if !policy.is_off() && !state.retention.iter().any(|(r, _)| *r == root) {
            state.retention.push((root, policy));
        }
    }
}

struct Writer {
    spool: Spool,
    tx: SyncSender<Msg>,
    origin: String,
}

static WRITER: Mutex<Option<Writer>> = Mutex::new(None);

/// Hands publish-session rows to the catalog (no-op when it is off). Event loop: one
/// small file per row and a non-blocking wake-up.
pub fn submit(rows: Vec<Summary>, log: *mut nginx_sys::ngx_log_t) {
    if rows.is_empty() {
        return;
    }
    let Ok(mut guard) = WRITER.lock() else { return };
    let Some(w) = guard.as_mut() else { return };
    for summary in rows {
        let ev = Event::Session {
            origin: w.origin.clone(),
            summary: Box::new(summary),
        };
        if let Err(e) = w.spool.put(&ev, wall_ms()) {
            ngx_log_error!(
                NGX_LOG_ERR,
                log,
                "hls_live_catalog: spooling a row in \"{}\" failed: {}",
                w.spool.dir().display(),
                e
            );
        }
    }
    match w.tx.try_send(Msg::Wake) {
        // Full: the thread has wake-ups pending and will see the new files anyway.
        Ok(()) | Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {}
    }
}

unsafe fn main_conf_of_cycle(cycle: *mut ngx_cycle_t) -> *mut MainConf {
    let ctx = *(*cycle).conf_ctx.add(ngx_stream_module.index) as *mut ngx_stream_conf_ctx_t;
    if ctx.is_null() {
        return ptr::null_mut();
    }
    *(*ctx).main_conf.add(ngx_stream_vid_module.ctx_index) as *mut MainConf
}

/// The stream module's `init_process`: housekeeping timer, then the catalog writer.
pub unsafe extern "C" fn init_process(cycle: *mut ngx_cycle_t) -> ngx_int_t {
    let rc = super::sweeper::init_process(cycle);
    if rc != NGX_OK as ngx_int_t {
        return rc;
    }
    let mc = main_conf_of_cycle(cycle);
    if mc.is_null() || (*mc).state.is_null() {
        return rc;
    }
    let state = &*(*mc).state;
    let Some(media) = state.media_path.clone() else {
        return rc; // no RTMP server
    };
    let value = if (*mc).catalog.data.is_null() {
        format!("sqlite:{media}/catalog.sqlite")
    } else {
        String::from_utf8_lossy((*mc).catalog.as_bytes()).into_owned()
    };
    if value == "off" {
        return rc;
    }
    let Ok(target) = parse_target(&value) else {
        return rc;
    };
    let spool_dir = PathBuf::from(format!("{media}/catalog.spool"));
    let pid = std::process::id();
    // One worker runs retention (any would do; files and rows are shared).
    let retention = if nginx_sys::ngx_worker == 0 {
        state.retention.clone()
    } else {
        Vec::new()
    };
    let interval = retention
        .iter()
        .map(|(_, p)| {
            if p.max_age_ms > 0 {
                (p.max_age_ms / 10).clamp(1_000, 10_000)
            } else {
                10_000
            }
        })
        .min()
        .unwrap_or(10_000);
    let cfg = WriterConfig {
        target,
        spool_dir: spool_dir.clone(),
        retention,
        retention_interval: Duration::from_millis(interval as u64),
        pid,
        retry: Duration::from_secs(1),
        batch: 256,
    };
    let (tx, rx) = sync_channel(1024);
    let origin = String::from_utf8_lossy((*cycle).hostname.as_bytes()).into_owned();

    // Block every asynchronous signal while spawning: the thread inherits the mask, so
    // nginx's signals (reload, quit, child exits…) keep going to the event loop.
    let mut all: nginx_sys::sigset_t = core::mem::zeroed();
    let mut old: nginx_sys::sigset_t = core::mem::zeroed();
    nginx_sys::sigfillset(&mut all);
    for sig in [
        nginx_sys::SIGILL,
        nginx_sys::SIGFPE,
        nginx_sys::SIGSEGV,
        nginx_sys::SIGBUS,
    ] {
        nginx_sys::sigdelset(&mut all, sig as i32);
    }
    nginx_sys::pthread_sigmask(nginx_sys::SIG_BLOCK as i32, &all, &mut old);
    let spawned = std::thread::Builder::new()
        .name("vid-catalog".into())
        .spawn(move || {
            writer::run(cfg, rx, &mut |error, line| {
                let log = ngx::log::ngx_cycle_log().as_ptr();
                let level = if error { NGX_LOG_ERR } else { NGX_LOG_NOTICE };
                ngx_log_error!(level, log, "{}", line);
            })
        });
    nginx_sys::pthread_sigmask(nginx_sys::SIG_SETMASK as i32, &old, ptr::null_mut());
    match spawned {
        Ok(_) => {
            if let Ok(mut g) = WRITER.lock() {
                *g = Some(Writer {
                    spool: Spool::new(&spool_dir, pid),
                    tx,
                    origin,
                });
            }
        }
        Err(e) => {
            ngx_log_error!(
                NGX_LOG_ERR,
                (*cycle).log,
                "hls_live_catalog: cannot start the writer thread: {}",
                e
            );
        }
    }
    rc
}

pub unsafe extern "C" fn exit_process(_cycle: *mut ngx_cycle_t) {
    if let Ok(mut g) = WRITER.lock() {
        if let Some(w) = g.take() {
            let _ = w.tx.try_send(Msg::Stop);
        }
    }
}

/// The recording directives of an RTMP server (`hls_live_record*`).
#[repr(C)]
pub struct RecordConf {
    pub on: nginx_sys::ngx_flag_t,
    pub path: ngx_str_t,
    pub url: ngx_str_t,
    pub max_age: nginx_sys::ngx_msec_t,
    pub max_size: nginx_sys::off_t,
}

impl RecordConf {
    pub fn init(c: &mut RecordConf) {
        c.on = super::NGX_CONF_UNSET as nginx_sys::ngx_flag_t;
        c.max_age = super::NGX_CONF_UNSET_MSEC;
        c.max_size = super::NGX_CONF_UNSET as nginx_sys::off_t;
    }

    /// Merges with the enclosing level and reports the server to the main configuration;
    /// false (after logging) on a bad value.
    pub unsafe fn merge(
        cf: *mut ngx_conf_t,
        c: &mut RecordConf,
        prev: &RecordConf,
        media: &ngx_str_t,
    ) -> bool {
        let unset = super::NGX_CONF_UNSET;
        super::merge(&mut c.on, prev.on, unset as nginx_sys::ngx_flag_t, 0);
        super::merge(&mut c.max_age, prev.max_age, super::NGX_CONF_UNSET_MSEC, 0);
        super::merge(&mut c.max_size, prev.max_size, unset as nginx_sys::off_t, 0);
        let media_s = String::from_utf8_lossy(media.as_bytes()).into_owned();
        if c.path.data.is_null() {
            c.path = if prev.path.data.is_null() {
                match pool_str(
                    cf,
                    &format!("{}/.recordings", media_s.trim_end_matches('/')),
                ) {
                    Some(s) => s,
                    None => return false,
                }
            } else {
                prev.path
            };
        }
        if nginx_sys::ngx_conf_full_name((*cf).cycle, &mut c.path, 0) != NGX_OK as ngx_int_t {
            return false;
        }
        if c.url.data.is_null() {
            c.url = if prev.url.data.is_null() {
                ngx::ngx_string!("/recordings")
            } else {
                prev.url
            };
        }
        let path_s = String::from_utf8_lossy(c.path.as_bytes()).into_owned();
        if path_s.trim_end_matches('/') == media_s.trim_end_matches('/') {
            ngx_conf_log_error!(
                NGX_LOG_EMERG,
                cf,
                "\"hls_live_record_path\" must differ from \"hls_live_path\""
            );
            return false;
        }
        if !c.url.as_bytes().starts_with(b"/") {
            ngx_conf_log_error!(
                NGX_LOG_EMERG,
                cf,
                "\"hls_live_record_url\" must start with \"/\""
            );
            return false;
        }
        let retention = (c.on == 1).then(|| {
            (
                PathBuf::from(&path_s),
                Policy {
                    max_age_ms: c.max_age as i64,
                    max_bytes: c.max_size.max(0) as u64,
                },
            )
        });
        note_server(cf, &media_s, retention);
        true
    }

    pub fn config(&self) -> Option<crate::record::RecordConfig> {
        (self.on == 1).then(|| crate::record::RecordConfig {
            root: PathBuf::from(String::from_utf8_lossy(self.path.as_bytes()).into_owned()),
            url_prefix: String::from_utf8_lossy(self.url.as_bytes()).into_owned(),
        })
    }
}

/// A copy of `s` in the configuration pool.
unsafe fn pool_str(cf: *mut ngx_conf_t, s: &str) -> Option<ngx_str_t> {
    let p = nginx_sys::ngx_pnalloc((*cf).pool, s.len()) as *mut u8;
    if p.is_null() {
        return None;
    }
    ptr::copy_nonoverlapping(s.as_ptr(), p, s.len());
    Some(ngx_str_t {
        len: s.len(),
        data: p,
    })
}
