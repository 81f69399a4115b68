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
    ngx_int_t, ngx_module_t, ngx_msec_t, ngx_parse_size, ngx_pcalloc, ngx_pool_cleanup_add,
    ngx_shared_memory_add, ngx_shm_zone_t, ngx_str_t, ngx_stream_conf_ctx_t,
    ngx_stream_core_module, ngx_stream_core_srv_conf_t, ngx_stream_finalize_session,
    ngx_stream_module_t, ngx_stream_session_t, ngx_uint_t, NGX_AGAIN, NGX_CONF_FLAG,
    NGX_CONF_TAKE1, NGX_CONF_TAKE2, NGX_ERROR, NGX_LOG_EMERG, NGX_LOG_ERR, NGX_LOG_INFO,
    NGX_LOG_NOTICE, NGX_LOG_WARN, NGX_OK, NGX_STREAM_INTERNAL_SERVER_ERROR, NGX_STREAM_MAIN_CONF,
    NGX_STREAM_MODULE, NGX_STREAM_OK, NGX_STREAM_SRV_CONF, NGX_STREAM_SRV_CONF_OFFSET,
};
use ngx::{ngx_conf_log_error, ngx_log_error};

use super::zone::{self, Zone};
use super::{
    command, conf_ok, now_ms, NGX_CONF_ERROR, NGX_CONF_UNSET, NGX_CONF_UNSET_MSEC,
    NGX_CONF_UNSET_SIZE, NGX_CONF_UNSET_UINT,
};
use crate::ingest::{Connection, IngestConfig, LogLevel};

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
}

static mut COMMANDS: [ngx_command_t; 10] = [
    command(
        ngx::ngx_string!("hls_live_zone"),
        NGX_STREAM_MAIN_CONF | NGX_CONF_TAKE2,
        set_zone,
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
    ngx_command_t::empty(),
];

static CTX: ngx_stream_module_t = ngx_stream_module_t {
    preconfiguration: None,
    postconfiguration: None,
    create_main_conf: None,
    init_main_conf: None,
    create_srv_conf: Some(create_srv_conf),
    merge_srv_conf: Some(merge_srv_conf),
};

#[used]
#[no_mangle]
#[allow(non_upper_case_globals)]
pub static mut ngx_stream_vid_module: ngx_module_t = ngx_module_t {
    ctx: &CTX as *const _ as *mut _,
    commands: unsafe { &raw mut COMMANDS[0] },
    type_: NGX_STREAM_MODULE as ngx_uint_t,
    init_process: Some(super::sweeper::init_process),
    ..ngx_module_t::default()
};

/// The tag that marks vid's shared zones, shared by the stream and http sides.
pub fn zone_tag() -> *mut c_void {
    (&raw mut ngx_stream_vid_module).cast()
}

/// Look up (or forward-declare, with size 0) the vid zone `name`.
pub unsafe fn zone_add(
    cf: *mut ngx_conf_t,
    name: &mut ngx_str_t,
    size: usize,
) -> *mut ngx_shm_zone_t {
    let z = ngx_shared_memory_add(cf, name, size, zone_tag());
    if !z.is_null() {
        (*z).init = Some(zone::init);
    }
    z
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
    conf.cast()
}

unsafe extern "C" fn merge_srv_conf(
    cf: *mut ngx_conf_t,
    parent: *mut c_void,
    child: *mut c_void,
) -> *mut c_char {
    let prev = &*(parent as *const SrvConf);
    let conf = &mut *(child as *mut SrvConf);
    if conf.zone.is_null() {
        conf.zone = prev.zone;
    }
    if conf.path.data.is_null() {
        conf.path = if prev.path.data.is_null() {
            ngx::ngx_string!("/var/lib/vid")
        } else {
            prev.path
        };
    }
    if ngx_conf_full_name((*cf).cycle, &mut conf.path, 0) != NGX_OK as ngx_int_t {
        return NGX_CONF_ERROR;
    }
    merge(&mut conf.segment, prev.segment, NGX_CONF_UNSET_MSEC, 2000);
    merge(&mut conf.part, prev.part, NGX_CONF_UNSET_MSEC, 200);
    merge(&mut conf.window, prev.window, NGX_CONF_UNSET_UINT, 12);
    merge(&mut conf.timeout, prev.timeout, NGX_CONF_UNSET_MSEC, 30_000);
    merge(
        &mut conf.max_message,
        prev.max_message,
        NGX_CONF_UNSET_SIZE,
        8 * 1024 * 1024,
    );
    merge(&mut conf.ts, prev.ts, NGX_CONF_UNSET as ngx_flag_t, 0);

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
    if conf.max_message < 64 * 1024 || conf.max_message > 64 * 1024 * 1024 {
        ngx_conf_log_error!(
            NGX_LOG_EMERG,
            cf,
            "\"rtmp_live_max_message\" must be between 64k and 64m"
        );
        return NGX_CONF_ERROR;
    }
    conf_ok()
}

fn merge<T: PartialEq + Copy>(v: &mut T, prev: T, unset: T, default: T) {
    if *v == unset {
        *v = if prev == unset { default } else { prev };
    }
}

unsafe extern "C" fn set_zone(
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
    let z = zone_add(cf, &mut name, size as usize);
    if z.is_null() {
        return NGX_CONF_ERROR;
    }
    conf_ok()
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
    conf.zone = zone_add(cf, &mut name, 0);
    if conf.zone.is_null() {
        return NGX_CONF_ERROR;
    }
    let ctx = (*cf).ctx as *mut ngx_stream_conf_ctx_t;
    let cscf =
        *(*ctx).srv_conf.add(ngx_stream_core_module.ctx_index) as *mut ngx_stream_core_srv_conf_t;
    (*cscf).handler = Some(handler);
    conf_ok()
}

/// Per-connection state, owned by the connection's pool (freed by a pool cleanup).
struct Session {
    conn: Connection,
    zone: Zone,
    timeout: ngx_msec_t,
    buf: Vec<u8>,
}

unsafe fn session_of(c: *mut ngx_connection_t) -> *mut Session {
    let s = (*c).data as *mut ngx_stream_session_t;
    *(*s).ctx.add(ngx_stream_vid_module.ctx_index) as *mut Session
}

unsafe extern "C" fn handler(s: *mut ngx_stream_session_t) {
    let c = (*s).connection;
    let conf = &*(*(*s).srv_conf.add(ngx_stream_vid_module.ctx_index) as *const SrvConf);
    let path = String::from_utf8_lossy(conf.path.as_bytes()).into_owned();
    let cfg = IngestConfig {
        root: path.into(),
        segment_target_ms: conf.segment as u32,
        part_target_ms: conf.part as u32,
        window: conf.window as u32,
        max_message_size: conf.max_message,
        owner: std::process::id(),
        ts: conf.ts == 1,
    };
    let cln = ngx_pool_cleanup_add((*c).pool, 0);
    if cln.is_null() {
        ngx_stream_finalize_session(s, NGX_STREAM_INTERNAL_SERVER_ERROR as ngx_uint_t);
        return;
    }
    let session = Box::into_raw(Box::new(Session {
        conn: Connection::new(cfg),
        zone: Zone(conf.zone),
        timeout: conf.timeout,
        buf: vec![0u8; 64 * 1024],
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
    read_handler((*c).read);
}

unsafe extern "C" fn cleanup(data: *mut c_void) {
    let session = Box::from_raw(data as *mut Session);
    let mut session = session;
    let _ = catch_unwind(AssertUnwindSafe(|| {
        let mut zone = session.zone;
        session.conn.close(now_ms(), &mut zone);
        super::metrics::ingest(ptr::null_mut(), &mut session.conn, None);
    }));
    // Log lines of the final close go to the cycle log: the connection log is gone.
    let log = ngx::log::ngx_cycle_log().as_ptr();
    for (level, msg) in session.conn.take_log() {
        log_line(log, level, &msg);
    }
    drop(session);
}

fn log_line(log: *mut nginx_sys::ngx_log_t, level: LogLevel, msg: &str) {
    let lvl = match level {
        LogLevel::Error => NGX_LOG_ERR,
        LogLevel::Warn => NGX_LOG_WARN,
        LogLevel::Notice => NGX_LOG_NOTICE,
        LogLevel::Info => NGX_LOG_INFO,
    };
    ngx_log_error!(lvl, log, "rtmp: {}", msg);
}

unsafe fn finalize(c: *mut ngx_connection_t, rc: u32) {
    let s = (*c).data as *mut ngx_stream_session_t;
    ngx_stream_finalize_session(s, rc as ngx_uint_t);
}

/// Feed bytes to the session; false if the connection was finalized.
unsafe fn feed(c: *mut ngx_connection_t, session: &mut Session, data: &[u8]) -> bool {
    let mut zone = session.zone;
    let res = catch_unwind(AssertUnwindSafe(|| {
        session.conn.feed(data, now_ms(), &mut zone)
    }));
    super::metrics::ingest(
        c,
        &mut session.conn,
        res.as_ref().ok().and_then(|r| r.as_ref().err()),
    );
    for (level, msg) in session.conn.take_log() {
        log_line((*c).log, level, &msg);
    }
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
        if session.conn.output().len() > 4 * 1024 * 1024 {
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
    if (*rev).timedout() != 0 {
        ngx_log_error!(NGX_LOG_INFO, (*c).log, "rtmp: client timed out");
        (*c).set_timedout(1);
        finalize(c, NGX_STREAM_OK);
        return;
    }
    let recv = match (*c).recv {
        Some(f) => f,
        None => return finalize(c, NGX_STREAM_INTERNAL_SERVER_ERROR),
    };
    loop {
        let n = recv(c, session.buf.as_mut_ptr(), session.buf.len());
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
        let buf = core::mem::take(&mut session.buf);
        let alive = feed(c, session, &buf[..n as usize]);
        if !alive {
            return;
        }
        session.buf = buf;
    }
    if ngx_handle_read_event(rev, 0) != NGX_OK as ngx_int_t {
        return finalize(c, NGX_STREAM_INTERNAL_SERVER_ERROR);
    }
    nginx_sys::ngx_add_timer(rev, session.timeout);
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
