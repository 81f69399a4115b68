//! RTMP ingest as an nginx `stream` content handler.
//!
//! `rtmp_live ZONE;` in a `stream { server { ... } }` sets this module's handler as the
//! server's content handler (the shape of nginx's own stream return module). The handler
//! owns the TCP connection: read events feed bytes to the sans-IO [`Connection`], its
//! queued output is flushed on write events, and a timer closes idle connections.

use core::ffi::{c_char, c_void};
use core::ptr;
use std::panic::{catch_unwind, AssertUnwindSafe};

use nginx_sys::{
    ngx_command_t, ngx_conf_full_name, ngx_conf_set_flag_slot, ngx_conf_set_msec_slot,
    ngx_conf_set_num_slot, ngx_conf_set_size_slot, ngx_conf_set_str_slot, ngx_conf_t,
    ngx_connection_t, ngx_event_t, ngx_flag_t, ngx_handle_read_event, ngx_handle_write_event,
    ngx_int_t, ngx_msec_t, ngx_pcalloc, ngx_pool_cleanup_add, ngx_shm_zone_t, ngx_str_t,
    ngx_stream_conf_ctx_t, ngx_stream_core_module, ngx_stream_core_srv_conf_t,
    ngx_stream_finalize_session, ngx_stream_module_t, ngx_stream_session_t, ngx_uint_t, NGX_AGAIN,
    NGX_CONF_FLAG, NGX_CONF_TAKE1, NGX_CONF_TAKE2, NGX_LOG_EMERG, NGX_LOG_ERR, NGX_LOG_INFO,
    NGX_LOG_NOTICE, NGX_OK, NGX_STREAM_INTERNAL_SERVER_ERROR, NGX_STREAM_MAIN_CONF,
    NGX_STREAM_MODULE, NGX_STREAM_OK, NGX_STREAM_SRV_CONF, NGX_STREAM_SRV_CONF_OFFSET,
};
use ngx::{ngx_conf_log_error, ngx_log_error};

use super::zone::{self, Zone};
use super::{
    command, merge, mono_ms, now, NGX_CONF_ERROR, NGX_CONF_OK, NGX_CONF_UNSET, NGX_CONF_UNSET_MSEC,
    NGX_CONF_UNSET_SIZE, NGX_CONF_UNSET_UINT,
};
use crate::ingest::{Connection, IngestConfig, IngestError, LogLevel};
use crate::store::{Lifecycle, Takeover};

/// Per-server configuration (`stream { server { ... } }`).
#[repr(C)]
pub struct SrvConf {
    zone: *mut ngx_shm_zone_t,
    path: ngx_str_t,
    segment: ngx_msec_t,
    part: ngx_msec_t,
    window: ngx_uint_t,
    timeout: ngx_msec_t,
    max_message: usize,
    /// `hls_live_ts`: also write MPEG-TS segments (H.264/AAC streams).
    ts: ngx_flag_t,
    /// `hls_live_grace`: how long a stream whose publisher's connection was lost stays live.
    grace: ngx_msec_t,
    /// `rtmp_live_takeover`: a new publisher of a live key takes it over.
    takeover: ngx_flag_t,
    /// `rtmp_live_handshake_timeout`: from accept to an accepted publish, at most.
    handshake_timeout: ngx_msec_t,
    /// `rtmp_live_secret`: ngx_str_t secrets publish keys are signed with, or null.
    secrets: *mut nginx_sys::ngx_array_t,
    /// `rtmp_live_on_publish`, `rtmp_live_on_publish_done`: parsed URLs, or null.
    on_publish: *mut nginx_sys::ngx_url_t,
    on_publish_done: *mut nginx_sys::ngx_url_t,
    callback_timeout: ngx_msec_t,
    /// `rtmp_live_max_bitrate`: bits per second, 0 = no cap, u64::MAX = unset.
    max_bitrate: u64,
    /// `hls_live_record*`: recordings (see `super::catalog::RecordConf`).
    record: super::catalog::RecordConf,
}

static mut COMMANDS: [ngx_command_t; 24] = [
    command(
        ngx::ngx_string!("hls_live_zone"),
        NGX_STREAM_MAIN_CONF | NGX_CONF_TAKE2,
        zone::set_zone,
        0,
        0,
    ),
    command(
        ngx::ngx_string!("rtmp_live"),
        NGX_STREAM_SRV_CONF | NGX_CONF_TAKE1,
        set_rtmp_live,
        NGX_STREAM_SRV_CONF_OFFSET,
        0,
    ),
    command(
        ngx::ngx_string!("hls_live_path"),
        NGX_STREAM_MAIN_CONF | NGX_STREAM_SRV_CONF | NGX_CONF_TAKE1,
        ngx_conf_set_str_slot,
        NGX_STREAM_SRV_CONF_OFFSET,
        core::mem::offset_of!(SrvConf, path),
    ),
    command(
        ngx::ngx_string!("hls_live_segment"),
        NGX_STREAM_MAIN_CONF | NGX_STREAM_SRV_CONF | NGX_CONF_TAKE1,
        ngx_conf_set_msec_slot,
        NGX_STREAM_SRV_CONF_OFFSET,
        core::mem::offset_of!(SrvConf, segment),
    ),
    command(
        ngx::ngx_string!("hls_live_part"),
        NGX_STREAM_MAIN_CONF | NGX_STREAM_SRV_CONF | NGX_CONF_TAKE1,
        ngx_conf_set_msec_slot,
        NGX_STREAM_SRV_CONF_OFFSET,
        core::mem::offset_of!(SrvConf, part),
    ),
    command(
        ngx::ngx_string!("hls_live_window"),
        NGX_STREAM_MAIN_CONF | NGX_STREAM_SRV_CONF | NGX_CONF_TAKE1,
        ngx_conf_set_num_slot,
        NGX_STREAM_SRV_CONF_OFFSET,
        core::mem::offset_of!(SrvConf, window),
    ),
    command(
        ngx::ngx_string!("rtmp_live_timeout"),
        NGX_STREAM_MAIN_CONF | NGX_STREAM_SRV_CONF | NGX_CONF_TAKE1,
        ngx_conf_set_msec_slot,
        NGX_STREAM_SRV_CONF_OFFSET,
        core::mem::offset_of!(SrvConf, timeout),
    ),
    command(
        ngx::ngx_string!("rtmp_live_max_message"),
        NGX_STREAM_MAIN_CONF | NGX_STREAM_SRV_CONF | NGX_CONF_TAKE1,
        ngx_conf_set_size_slot,
        NGX_STREAM_SRV_CONF_OFFSET,
        core::mem::offset_of!(SrvConf, max_message),
    ),
    command(
        ngx::ngx_string!("hls_live_ts"),
        NGX_STREAM_MAIN_CONF | NGX_STREAM_SRV_CONF | NGX_CONF_FLAG,
        ngx_conf_set_flag_slot,
        NGX_STREAM_SRV_CONF_OFFSET,
        core::mem::offset_of!(SrvConf, ts),
    ),
    command(
        ngx::ngx_string!("hls_live_grace"),
        NGX_STREAM_MAIN_CONF | NGX_STREAM_SRV_CONF | NGX_CONF_TAKE1,
        ngx_conf_set_msec_slot,
        NGX_STREAM_SRV_CONF_OFFSET,
        core::mem::offset_of!(SrvConf, grace),
    ),
    command(
        ngx::ngx_string!("rtmp_live_takeover"),
        NGX_STREAM_MAIN_CONF | NGX_STREAM_SRV_CONF | NGX_CONF_FLAG,
        ngx_conf_set_flag_slot,
        NGX_STREAM_SRV_CONF_OFFSET,
        core::mem::offset_of!(SrvConf, takeover),
    ),
    command(
        ngx::ngx_string!("rtmp_live_handshake_timeout"),
        NGX_STREAM_MAIN_CONF | NGX_STREAM_SRV_CONF | NGX_CONF_TAKE1,
        ngx_conf_set_msec_slot,
        NGX_STREAM_SRV_CONF_OFFSET,
        core::mem::offset_of!(SrvConf, handshake_timeout),
    ),
    command(
        ngx::ngx_string!("rtmp_live_secret"),
        NGX_STREAM_MAIN_CONF | NGX_STREAM_SRV_CONF | NGX_CONF_TAKE1,
        super::auth::set_secret,
        NGX_STREAM_SRV_CONF_OFFSET,
        core::mem::offset_of!(SrvConf, secrets),
    ),
    command(
        ngx::ngx_string!("rtmp_live_on_publish"),
        NGX_STREAM_MAIN_CONF | NGX_STREAM_SRV_CONF | NGX_CONF_TAKE1,
        super::callback::set_url,
        NGX_STREAM_SRV_CONF_OFFSET,
        core::mem::offset_of!(SrvConf, on_publish),
    ),
    command(
        ngx::ngx_string!("rtmp_live_on_publish_done"),
        NGX_STREAM_MAIN_CONF | NGX_STREAM_SRV_CONF | NGX_CONF_TAKE1,
        super::callback::set_url,
        NGX_STREAM_SRV_CONF_OFFSET,
        core::mem::offset_of!(SrvConf, on_publish_done),
    ),
    command(
        ngx::ngx_string!("rtmp_live_callback_timeout"),
        NGX_STREAM_MAIN_CONF | NGX_STREAM_SRV_CONF | NGX_CONF_TAKE1,
        ngx_conf_set_msec_slot,
        NGX_STREAM_SRV_CONF_OFFSET,
        core::mem::offset_of!(SrvConf, callback_timeout),
    ),
    command(
        ngx::ngx_string!("rtmp_live_max_bitrate"),
        NGX_STREAM_MAIN_CONF | NGX_STREAM_SRV_CONF | NGX_CONF_TAKE1,
        super::auth::set_bitrate,
        NGX_STREAM_SRV_CONF_OFFSET,
        core::mem::offset_of!(SrvConf, max_bitrate),
    ),
    command(
        ngx::ngx_string!("hls_live_catalog"),
        NGX_STREAM_MAIN_CONF | NGX_CONF_TAKE1,
        super::catalog::set_catalog,
        nginx_sys::NGX_STREAM_MAIN_CONF_OFFSET,
        0,
    ),
    command(
        ngx::ngx_string!("hls_live_record"),
        NGX_STREAM_MAIN_CONF | NGX_STREAM_SRV_CONF | NGX_CONF_FLAG,
        ngx_conf_set_flag_slot,
        NGX_STREAM_SRV_CONF_OFFSET,
        core::mem::offset_of!(SrvConf, record)
            + core::mem::offset_of!(super::catalog::RecordConf, on),
    ),
    command(
        ngx::ngx_string!("hls_live_record_path"),
        NGX_STREAM_MAIN_CONF | NGX_STREAM_SRV_CONF | NGX_CONF_TAKE1,
        ngx_conf_set_str_slot,
        NGX_STREAM_SRV_CONF_OFFSET,
        core::mem::offset_of!(SrvConf, record)
            + core::mem::offset_of!(super::catalog::RecordConf, path),
    ),
    command(
        ngx::ngx_string!("hls_live_record_url"),
        NGX_STREAM_MAIN_CONF | NGX_STREAM_SRV_CONF | NGX_CONF_TAKE1,
        ngx_conf_set_str_slot,
        NGX_STREAM_SRV_CONF_OFFSET,
        core::mem::offset_of!(SrvConf, record)
            + core::mem::offset_of!(super::catalog::RecordConf, url),
    ),
    command(
        ngx::ngx_string!("hls_live_record_max_age"),
        NGX_STREAM_MAIN_CONF | NGX_STREAM_SRV_CONF | NGX_CONF_TAKE1,
        ngx_conf_set_msec_slot,
        NGX_STREAM_SRV_CONF_OFFSET,
        core::mem::offset_of!(SrvConf, record)
            + core::mem::offset_of!(super::catalog::RecordConf, max_age),
    ),
    command(
        ngx::ngx_string!("hls_live_record_max_size"),
        NGX_STREAM_MAIN_CONF | NGX_STREAM_SRV_CONF | NGX_CONF_TAKE1,
        nginx_sys::ngx_conf_set_off_slot,
        NGX_STREAM_SRV_CONF_OFFSET,
        core::mem::offset_of!(SrvConf, record)
            + core::mem::offset_of!(super::catalog::RecordConf, max_size),
    ),
    ngx_command_t::empty(),
];

static CTX: ngx_stream_module_t = ngx_stream_module_t {
    preconfiguration: None,
    postconfiguration: None,
    create_main_conf: Some(super::catalog::create_main_conf),
    init_main_conf: None,
    create_srv_conf: Some(create_srv_conf),
    merge_srv_conf: Some(merge_srv_conf),
};

nginx_module!(
    ngx_stream_vid_module,
    NGX_STREAM_MODULE,
    init_module: Some(init_module),
    init_process: Some(super::catalog::init_process),
    exit_process: Some(super::catalog::exit_process),
);

/// A configuration was accepted (master): carry streams into resized zones.
unsafe extern "C" fn init_module(cycle: *mut nginx_sys::ngx_cycle_t) -> ngx_int_t {
    zone::commit(cycle);
    NGX_OK as ngx_int_t
}

unsafe extern "C" fn create_srv_conf(cf: *mut ngx_conf_t) -> *mut c_void {
    let conf = ngx_pcalloc((*cf).pool, core::mem::size_of::<SrvConf>()) as *mut SrvConf;
    if conf.is_null() {
        return ptr::null_mut();
    }
    (*conf).segment = NGX_CONF_UNSET_MSEC;
    (*conf).part = NGX_CONF_UNSET_MSEC;
    (*conf).window = NGX_CONF_UNSET_UINT;
    (*conf).timeout = NGX_CONF_UNSET_MSEC;
    (*conf).max_message = NGX_CONF_UNSET_SIZE;
    (*conf).ts = NGX_CONF_UNSET as ngx_flag_t;
    (*conf).grace = NGX_CONF_UNSET_MSEC;
    (*conf).takeover = NGX_CONF_UNSET as ngx_flag_t;
    (*conf).handshake_timeout = NGX_CONF_UNSET_MSEC;
    (*conf).callback_timeout = NGX_CONF_UNSET_MSEC;
    (*conf).max_bitrate = u64::MAX;
    super::catalog::RecordConf::init(&mut (*conf).record);
    conf.cast()
}

impl ngx::http::Merge for SrvConf {
    /// What a server inherits from the stream{} level, with the defaults.
    fn merge(&mut self, prev: &Self) -> Result<(), ngx::http::MergeConfigError> {
        if self.zone.is_null() {
            self.zone = prev.zone;
        }
        if self.secrets.is_null() {
            self.secrets = prev.secrets;
        }
        if self.on_publish.is_null() {
            self.on_publish = prev.on_publish;
        }
        if self.on_publish_done.is_null() {
            self.on_publish_done = prev.on_publish_done;
        }
        merge(&mut self.max_bitrate, prev.max_bitrate, u64::MAX, 0);
        merge(
            &mut self.callback_timeout,
            prev.callback_timeout,
            NGX_CONF_UNSET_MSEC,
            5000,
        );
        if self.path.data.is_null() {
            self.path = if prev.path.data.is_null() {
                ngx::ngx_string!("/var/lib/vid")
            } else {
                prev.path
            };
        }
        merge(&mut self.segment, prev.segment, NGX_CONF_UNSET_MSEC, 2000);
        merge(&mut self.part, prev.part, NGX_CONF_UNSET_MSEC, 200);
        merge(&mut self.window, prev.window, NGX_CONF_UNSET_UINT, 12);
        merge(&mut self.timeout, prev.timeout, NGX_CONF_UNSET_MSEC, 30_000);
        merge(
            &mut self.max_message,
            prev.max_message,
            NGX_CONF_UNSET_SIZE,
            8 * 1024 * 1024,
        );
        merge(&mut self.ts, prev.ts, NGX_CONF_UNSET as ngx_flag_t, 0);
        let grace = crate::store::lifecycle::default_grace_ms(self.segment as u32) as ngx_msec_t;
        merge(&mut self.grace, prev.grace, NGX_CONF_UNSET_MSEC, grace);
        merge(
            &mut self.takeover,
            prev.takeover,
            NGX_CONF_UNSET as ngx_flag_t,
            1,
        );
        merge(
            &mut self.handshake_timeout,
            prev.handshake_timeout,
            NGX_CONF_UNSET_MSEC,
            5_000,
        );
        Ok(())
    }
}

/// The settings inherited ([`ngx::http::Merge`]), then what needs the cycle: the media
/// path made absolute, recordings, and the checks of the values.
unsafe extern "C" fn merge_srv_conf(
    cf: *mut ngx_conf_t,
    parent: *mut c_void,
    child: *mut c_void,
) -> *mut c_char {
    let prev = &*(parent as *const SrvConf);
    let conf = &mut *(child as *mut SrvConf);
    if ngx::http::Merge::merge(conf, prev).is_err() {
        return NGX_CONF_ERROR;
    }
    if ngx_conf_full_name((*cf).cycle, &mut conf.path, 0) != NGX_OK as ngx_int_t {
        return NGX_CONF_ERROR;
    }
    if conf.grace > 600_000 {
        ngx_conf_log_error!(NGX_LOG_EMERG, cf, "\"hls_live_grace\" must be at most 10m");
        return NGX_CONF_ERROR;
    }
    if conf.handshake_timeout < 100 {
        ngx_conf_log_error!(
            NGX_LOG_EMERG,
            cf,
            "\"rtmp_live_handshake_timeout\" must be at least 100ms"
        );
        return NGX_CONF_ERROR;
    }
    if !super::catalog::RecordConf::merge(cf, &mut conf.record, &prev.record, &conf.path) {
        return NGX_CONF_ERROR;
    }

    if conf.segment < 1000 || conf.segment > 60_000 {
        ngx_conf_log_error!(
            NGX_LOG_EMERG,
            cf,
            "\"hls_live_segment\" must be between 1s and 60s"
        );
        return NGX_CONF_ERROR;
    }
    if conf.part < 50 || conf.part * 2 > conf.segment {
        ngx_conf_log_error!(
            NGX_LOG_EMERG,
            cf,
            "\"hls_live_part\" must be at least 50ms and at most half of \"hls_live_segment\""
        );
        return NGX_CONF_ERROR;
    }
    if !(3..=crate::store::index::MAX_WINDOW as ngx_uint_t).contains(&conf.window) {
        ngx_conf_log_error!(
            NGX_LOG_EMERG,
            cf,
            "\"hls_live_window\" must be between 3 and {}",
            crate::store::index::MAX_WINDOW
        );
        return NGX_CONF_ERROR;
    }
    if conf.path.len >= crate::store::index::MAX_DIR_LEN - 70 {
        ngx_conf_log_error!(NGX_LOG_EMERG, cf, "\"hls_live_path\" is too long");
        return NGX_CONF_ERROR;
    }
    if conf.callback_timeout < 100 {
        ngx_conf_log_error!(
            NGX_LOG_EMERG,
            cf,
            "\"rtmp_live_callback_timeout\" must be at least 100ms"
        );
        return NGX_CONF_ERROR;
    }
    if conf.max_message < 64 * 1024 || conf.max_message > 64 * 1024 * 1024 {
        ngx_conf_log_error!(
            NGX_LOG_EMERG,
            cf,
            "\"rtmp_live_max_message\" must be between 64k and 64m"
        );
        return NGX_CONF_ERROR;
    }
    NGX_CONF_OK
}

unsafe extern "C" fn set_rtmp_live(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    let conf = &mut *(conf as *mut SrvConf);
    if !conf.zone.is_null() {
        return c"is duplicate".as_ptr().cast_mut();
    }
    let args = (*(*cf).args).as_slice_mut::<ngx_str_t>();
    let mut name = args[1];
    conf.zone = zone::add(cf, &mut name, 0);
    if conf.zone.is_null() {
        return NGX_CONF_ERROR;
    }
    let ctx = (*cf).ctx as *mut ngx_stream_conf_ctx_t;
    let cscf =
        *(*ctx).srv_conf.add(ngx_stream_core_module.ctx_index) as *mut ngx_stream_core_srv_conf_t;
    (*cscf).handler = Some(handler);
    NGX_CONF_OK
}

/// Per-connection state, owned by the connection's pool (freed by a pool cleanup).
struct Session {
    conn: Connection,
    zone: Zone,
    timeout: ngx_msec_t,
    handshake_timeout: ngx_msec_t,
    /// Monotonic instants: accepted, last read.
    accepted_ms: i64,
    last_read_ms: i64,
    /// Publish callbacks of this session (src/nginx/callback.rs).
    calls: super::callback::Calls,
    /// `rtmp_live_max_bitrate`.
    rate: Option<crate::auth::limits::RateCap>,
    /// The server closes the connection on purpose: its stream ends at once (no grace).
    end_on_close: bool,
}

/// Bytes taken per read before the publish is accepted: an unauthenticated client's
/// input is consumed in small steps.
const PRE_PUBLISH_READ: usize = 4 * 1024;
/// Bytes taken per read once publishing.
const PUBLISH_READ: usize = 64 * 1024;

thread_local! {
    /// The worker's one read buffer. A session consumes all it reads before the next read
    /// (its RTMP parser keeps what belongs to incomplete messages), so no connection keeps
    /// a buffer of its own: an idle or unauthenticated socket costs none, a publisher 16
    /// KiB less than with a buffer each.
    static READ_BUF: core::cell::RefCell<Vec<u8>> = const { core::cell::RefCell::new(Vec::new()) };
}

/// The worker's read buffer while a read handler runs; given back when dropped.
struct ReadBuf(Vec<u8>);

impl ReadBuf {
    fn take() -> Self {
        let mut b = READ_BUF.with_borrow_mut(core::mem::take);
        // Empty when this is the first read, or (never expected) a nested one.
        b.resize(PUBLISH_READ, 0);
        ReadBuf(b)
    }
}

impl Drop for ReadBuf {
    fn drop(&mut self) {
        let b = core::mem::take(&mut self.0);
        READ_BUF.with_borrow_mut(|r| {
            if r.is_empty() {
                *r = b;
            }
        });
    }
}
/// The connection timer's period: idle and handshake limits, takeover checks.
const TICK_MS: ngx_msec_t = 1000;

unsafe fn session_of(c: *mut ngx_connection_t) -> *mut Session {
    let s = (*c).data as *mut ngx_stream_session_t;
    *(*s).ctx.add(ngx_stream_vid_module.ctx_index) as *mut Session
}

/// The ingest settings of a `rtmp_live` server.
unsafe fn ingest_config(conf: &SrvConf) -> IngestConfig {
    let path = String::from_utf8_lossy(conf.path.as_bytes()).into_owned();
    IngestConfig {
        root: path.into(),
        segment_target_ms: conf.segment as u32,
        part_target_ms: conf.part as u32,
        window: conf.window as u32,
        max_message_size: conf.max_message,
        owner: std::process::id(),
        ts: conf.ts == 1,
        lifecycle: Lifecycle {
            grace_ms: conf.grace as u32,
            takeover: if conf.takeover == 1 {
                Takeover::Newest
            } else {
                Takeover::Refuse
            },
        },
        publish_secrets: crate::auth::publish::Secrets(super::auth::secrets(conf.secrets)),
        publish_callback: !conf.on_publish.is_null(),
        record: conf.record.config(),
    }
}

/// A server's publish callbacks.
fn callback_settings(conf: &SrvConf) -> super::callback::Settings {
    super::callback::Settings {
        on_publish: conf.on_publish,
        on_done: conf.on_publish_done,
        timeout: conf.callback_timeout,
    }
}

/// What a publish without RTMP (WHIP) takes from the `rtmp_live ZONE` server of its zone.
pub(super) struct DirectIngest {
    pub cfg: IngestConfig,
    /// `rtmp_live_timeout`.
    pub timeout: ngx_msec_t,
    pub calls: super::callback::Settings,
}

/// The ingest settings of the first `rtmp_live ZONE` server of the running configuration
/// for `zone` (WHIP publishes use them too).
pub(super) unsafe fn ingest_config_for(zone: *mut ngx_shm_zone_t) -> Option<DirectIngest> {
    let cycle = nginx_sys::ngx_cycle;
    // SAFETY: the running cycle's configuration; its stream{} context, when there is one,
    // holds the core module's main configuration with the list of servers.
    let ctx =
        *(*cycle).conf_ctx.add(nginx_sys::ngx_stream_module.index) as *mut ngx_stream_conf_ctx_t;
    if ctx.is_null() {
        return None;
    }
    let cmcf = *(*ctx).main_conf.add(ngx_stream_core_module.ctx_index)
        as *mut nginx_sys::ngx_stream_core_main_conf_t;
    for &cscf in (*cmcf)
        .servers
        .as_slice::<*mut ngx_stream_core_srv_conf_t>()
    {
        let conf =
            &*(*(*(*cscf).ctx).srv_conf.add(ngx_stream_vid_module.ctx_index) as *const SrvConf);
        if conf.zone == zone {
            return Some(DirectIngest {
                cfg: ingest_config(conf),
                timeout: conf.timeout,
                calls: callback_settings(conf),
            });
        }
    }
    None
}

unsafe extern "C" fn handler(s: *mut ngx_stream_session_t) {
    let c = (*s).connection;
    let conf = &*(*(*s).srv_conf.add(ngx_stream_vid_module.ctx_index) as *const SrvConf);
    let cfg = ingest_config(conf);
    let cln = ngx_pool_cleanup_add((*c).pool, 0);
    if cln.is_null() {
        ngx_stream_finalize_session(s, NGX_STREAM_INTERNAL_SERVER_ERROR as ngx_uint_t);
        return;
    }
    let session = Box::into_raw(Box::new(Session {
        conn: Connection::new(cfg),
        // SAFETY: `conf.zone` is the vid zone `set_rtmp_live` added (the handler is
        // installed only with it); it lives as long as this configuration.
        zone: Zone::new(conf.zone),
        timeout: conf.timeout,
        handshake_timeout: conf.handshake_timeout,
        accepted_ms: mono_ms(),
        last_read_ms: mono_ms(),
        calls: super::callback::Calls::new(callback_settings(conf), c),
        rate: super::auth::rate_cap(conf.max_bitrate),
        end_on_close: false,
    }));
    (*cln).handler = Some(cleanup);
    (*cln).data = session.cast();
    *(*s).ctx.add(ngx_stream_vid_module.ctx_index) = session.cast();

    ngx_log_error!(NGX_LOG_INFO, (*c).log, "rtmp: client connected");
    super::metrics::rtmp_connected();
    (*(*c).read).handler = Some(read_handler);
    (*(*c).write).handler = Some(write_handler);

    // Bytes already read by an earlier phase (e.g. preread) come first.
    let b = (*c).buffer;
    if !b.is_null() && (*b).last > (*b).pos {
        let len = (*b).last.offset_from((*b).pos) as usize;
        let data = core::slice::from_raw_parts((*b).pos, len).to_vec();
        (*b).pos = (*b).last;
        if !feed(c, &mut *session, &data) {
            return;
        }
    }
    nginx_sys::ngx_add_timer((*c).read, TICK_MS.min(conf.handshake_timeout));
    read_handler((*c).read);
}

/// The connection timer: the handshake deadline (absolute, from accept to an accepted
/// publish), the idle timeout, and whether the key was taken over. False: finalized.
unsafe fn tick(c: *mut ngx_connection_t, session: &mut Session) -> bool {
    let now = mono_ms();
    // A publish waiting for `rtmp_live_on_publish` is bounded by the callback's timeout.
    let publishing = session.conn.key().is_some() || session.conn.publish_pending();
    let close = |c: *mut ngx_connection_t| {
        (*c).set_timedout(1);
        finalize(c, NGX_STREAM_OK);
        false
    };
    if !publishing && now - session.accepted_ms >= session.handshake_timeout as i64 {
        ngx_log_error!(
            NGX_LOG_INFO,
            (*c).log,
            "rtmp: no publish within rtmp_live_handshake_timeout ({}ms), closing connection",
            session.handshake_timeout
        );
        return close(c);
    }
    if now - session.last_read_ms >= session.timeout as i64 {
        ngx_log_error!(NGX_LOG_INFO, (*c).log, "rtmp: client timed out");
        return close(c);
    }
    let mut zone = session.zone;
    if let Err(e) = session.conn.check_owner(&mut zone) {
        ngx_log_error!(NGX_LOG_NOTICE, (*c).log, "rtmp: closing connection: {}", e);
        return close(c);
    }
    let left = if publishing {
        TICK_MS
    } else {
        let deadline = session.accepted_ms + session.handshake_timeout as i64 - now;
        TICK_MS.min(deadline.max(1) as ngx_msec_t)
    };
    nginx_sys::ngx_add_timer((*c).read, left);
    true
}

unsafe extern "C" fn cleanup(data: *mut c_void) {
    let session = Box::from_raw(data as *mut Session);
    let mut session = session;
    let app = session.conn.app().to_owned();
    let key = session.conn.key().map(str::to_owned);
    super::callback::on_close(&mut session.calls, &app, key.as_deref());
    let _ = catch_unwind(AssertUnwindSafe(|| {
        let mut zone = session.zone;
        if session.end_on_close {
            session.conn.end_at(now(), &mut zone);
        } else {
            session.conn.close_at(now(), &mut zone);
        }
        super::metrics::ingest(ptr::null_mut(), &mut session.conn, None);
    }));
    // Held requests of this worker see the sealed segment or the end at once.
    if let Some(key) = &key {
        super::wait::wake(session.zone, key);
    }
    // Log lines of the final close go to the cycle log: the connection log is gone.
    let log = ngx::log::ngx_cycle_log().as_ptr();
    for (level, msg) in session.conn.take_log() {
        log_line(log, level, &msg);
    }
    super::catalog::submit(session.conn.take_sessions(), log);
    drop(session);
}

fn log_line(log: *mut nginx_sys::ngx_log_t, level: LogLevel, msg: &str) {
    ngx_log_error!(super::log_level(level), log, "rtmp: {}", msg);
}

unsafe fn finalize(c: *mut ngx_connection_t, rc: u32) {
    let s = (*c).data as *mut ngx_stream_session_t;
    ngx_stream_finalize_session(s, rc as ngx_uint_t);
}

/// Feed bytes to the session; false if the connection was finalized.
unsafe fn feed(c: *mut ngx_connection_t, session: &mut Session, data: &[u8]) -> bool {
    let mut zone = session.zone;
    session.conn.set_unix_time(super::auth::unix_s());
    let res = catch_unwind(AssertUnwindSafe(|| {
        session.conn.feed_at(data, now(), &mut zone)
    }));
    super::metrics::ingest(
        c,
        &mut session.conn,
        res.as_ref().ok().and_then(|r| r.as_ref().err()),
    );
    for (level, msg) in session.conn.take_log() {
        log_line((*c).log, level, &msg);
    }
    super::catalog::submit(session.conn.take_sessions(), (*c).log);
    // Held requests of this worker for what was just written are answered right after
    // this event, not at the next tick.
    if let Some(key) = session.conn.key() {
        super::wait::wake(session.zone, key);
    }
    settle(c, session, res)
}

/// The publish callback answered for the session of `c` (see src/nginx/callback.rs).
pub(super) unsafe fn callback_answered(
    c: *mut ngx_connection_t,
    d: crate::auth::callback::Decision,
) {
    let session = &mut *session_of(c);
    super::callback::answered(&mut session.calls);
    answer(c, session, d);
}

/// Hands the callback's decision to the session; false if the connection was finalized.
unsafe fn answer(
    c: *mut ngx_connection_t,
    session: &mut Session,
    d: crate::auth::callback::Decision,
) -> bool {
    let mut zone = session.zone;
    let res = catch_unwind(AssertUnwindSafe(|| {
        session.conn.resolve_publish(d, super::now(), &mut zone)
    }));
    super::metrics::ingest(
        c,
        &mut session.conn,
        res.as_ref().ok().and_then(|r| r.as_ref().err()),
    );
    for (level, msg) in session.conn.take_log() {
        log_line((*c).log, level, &msg);
    }
    settle(c, session, res)
}

/// After the session took bytes or a callback's decision (`res`): close on an error or a
/// panic, start or answer a pending publish callback, send what is queued. False if the
/// connection was finalized.
unsafe fn settle(
    c: *mut ngx_connection_t,
    session: &mut Session,
    res: std::thread::Result<Result<(), IngestError>>,
) -> bool {
    match res {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            ngx_log_error!(NGX_LOG_ERR, (*c).log, "rtmp: closing connection: {}", e);
            flush(c, session);
            finalize(c, NGX_STREAM_OK);
            return false;
        }
        Err(_) => {
            ngx_log_error!(
                NGX_LOG_ERR,
                (*c).log,
                "rtmp: internal error, closing connection"
            );
            finalize(c, NGX_STREAM_INTERNAL_SERVER_ERROR);
            return false;
        }
    }
    let owner = super::callback::Owner::Rtmp(c);
    if let Err(d) = super::callback::after_feed(&mut session.calls, &mut session.conn, owner) {
        return answer(c, session, d);
    }
    if !flush(c, session) {
        finalize(c, NGX_STREAM_OK);
        return false;
    }
    true
}

/// Send queued output; false on a send error.
unsafe fn flush(c: *mut ngx_connection_t, session: &mut Session) -> bool {
    let send = match (*c).send {
        Some(f) => f,
        None => return false,
    };
    loop {
        let out = session.conn.output();
        if out.is_empty() {
            break;
        }
        let n = send(c, out.as_ptr().cast_mut(), out.len());
        if n == NGX_AGAIN as isize {
            break;
        }
        if n <= 0 {
            return false;
        }
        session.conn.consume_output(n as usize);
    }
    if !session.conn.output().is_empty() {
        if session.conn.output().len() > crate::rtmp::MAX_OUTPUT_BUFFER {
            ngx_log_error!(
                NGX_LOG_ERR,
                (*c).log,
                "rtmp: peer does not read, closing connection"
            );
            return false;
        }
        if ngx_handle_write_event((*c).write, 0) != NGX_OK as ngx_int_t {
            return false;
        }
    }
    true
}

unsafe extern "C" fn read_handler(rev: *mut ngx_event_t) {
    let c = (*rev).data as *mut ngx_connection_t;
    let session = &mut *session_of(c);
    if (*c).close() != 0 {
        // nginx closes connections (worker_shutdown_timeout while exiting): a lost
        // connection for the stream, whose grace period starts.
        ngx_log_error!(
            NGX_LOG_NOTICE,
            (*c).log,
            "rtmp: closing connection: worker is exiting"
        );
        return finalize(c, NGX_STREAM_OK);
    }
    if (*rev).timedout() != 0 {
        (*rev).set_timedout(0);
        if !tick(c, session) {
            return;
        }
    }
    let recv = match (*c).recv {
        Some(f) => f,
        None => return finalize(c, NGX_STREAM_INTERNAL_SERVER_ERROR),
    };
    let mut buf = ReadBuf::take();
    loop {
        let want = if session.conn.key().is_some() {
            PUBLISH_READ
        } else {
            PRE_PUBLISH_READ
        };
        let n = recv(c, buf.0.as_mut_ptr(), want);
        if n == NGX_AGAIN as isize {
            break;
        }
        if n == 0 {
            ngx_log_error!(NGX_LOG_INFO, (*c).log, "rtmp: client closed connection");
            return finalize(c, NGX_STREAM_OK);
        }
        if n < 0 {
            return finalize(c, NGX_STREAM_OK);
        }
        session.last_read_ms = mono_ms();
        let (app, key) = (session.conn.app(), session.conn.key());
        if !super::auth::count_ingest(c, &mut session.rate, n as usize, app, key) {
            // A publisher closed for its bit rate ends its stream: no grace period.
            session.end_on_close = true;
            return finalize(c, NGX_STREAM_OK);
        }
        if !feed(c, session, &buf.0[..n as usize]) {
            return;
        }
    }
    if ngx_handle_read_event(rev, 0) != NGX_OK as ngx_int_t {
        finalize(c, NGX_STREAM_INTERNAL_SERVER_ERROR);
    }
}

unsafe extern "C" fn write_handler(wev: *mut ngx_event_t) {
    let c = (*wev).data as *mut ngx_connection_t;
    let session = &mut *session_of(c);
    if (*wev).timedout() != 0 {
        ngx_log_error!(NGX_LOG_INFO, (*c).log, "rtmp: send timed out");
        return finalize(c, NGX_STREAM_OK);
    }
    if !flush(c, session) {
        finalize(c, NGX_STREAM_OK);
    }
}
