//! `hls_live_whip ZONE;` — WHIP ingest (RFC 9725): a WebRTC publisher goes live in zone
//! ZONE's streams, with the ingest settings (path, segment, part, window, secrets,
//! recording, grace) of the `rtmp_live ZONE` stream server.
//!
//! Signalling is this http location: `POST {location}KEY` with `application/sdp` answers
//! `201 Created`, the SDP answer and `Location: {location}KEY/SESSION`; `DELETE` on that
//! URL ends the stream. Media is UDP: every worker opens one socket,
//! `hls_live_whip_udp ADDRESS:PORT` + the worker's number, and the answers it gives
//! carry that socket as their one ICE candidate, so a session's datagrams reach the
//! worker that holds it. A DELETE that lands on another worker is handed to the owner
//! as a datagram on its socket, carrying the session's secret id.
//!
//! Per worker: the sessions ([`crate::whip::Peer`] + the ingest [`Connection`]) live in a
//! thread-local table, driven by the socket's read events and one timer armed at the
//! earliest deadline any session asked for.

use core::ffi::{c_char, c_void};
use core::{mem, ptr};
use std::cell::RefCell;
use std::mem::ManuallyDrop;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{FromRawFd, IntoRawFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use nginx_sys::{
    ngx_chain_t, ngx_close_connection, ngx_command_t, ngx_conf_set_num_slot, ngx_conf_set_str_slot,
    ngx_conf_t, ngx_connection_t, ngx_cycle_t, ngx_event_t, ngx_get_connection,
    ngx_handle_read_event, ngx_http_cleanup_add, ngx_http_cleanup_t, ngx_http_conf_ctx_t,
    ngx_http_finalize_request, ngx_http_module_t, ngx_http_read_client_request_body,
    ngx_http_request_t, ngx_http_run_posted_requests, ngx_http_test_reading, ngx_int_t,
    ngx_shm_zone_t, ngx_str_t, ngx_uint_t, NGX_CONF_TAKE1, NGX_DONE, NGX_HTTP_DELETE,
    NGX_HTTP_INTERNAL_SERVER_ERROR, NGX_HTTP_LOC_CONF, NGX_HTTP_LOC_CONF_OFFSET,
    NGX_HTTP_MAIN_CONF, NGX_HTTP_MAIN_CONF_OFFSET, NGX_HTTP_MODULE, NGX_HTTP_NOT_ALLOWED,
    NGX_HTTP_OPTIONS, NGX_HTTP_POST, NGX_HTTP_SPECIAL_RESPONSE, NGX_LOG_EMERG, NGX_LOG_ERR,
    NGX_LOG_INFO, NGX_LOG_NOTICE, NGX_LOG_WARN, NGX_OK,
};
use ngx::{ngx_conf_log_error, ngx_log_error};

use super::callback::{self, Calls, Owner};
use super::timer::WorkerEvent;
use super::zone::{self, Zone};
use super::{command, NGX_CONF_ERROR, NGX_CONF_OK, NGX_CONF_UNSET_UINT};
use crate::auth::callback::Decision;
use crate::ingest::{Connection, Direct, IngestError, LogLevel};
use crate::whip::{Closed, Peer, PeerConfig, MAX_DATAGRAM, MAX_OFFER};

/// Sessions per worker unless `hls_live_whip_max_sessions` says otherwise.
const DEFAULT_MAX_SESSIONS: ngx_uint_t = 64;
/// ICE + DTLS must be done this long after the answer.
const HANDSHAKE_TIMEOUT_MS: u64 = 10_000;
/// How often a session checks that its key was not taken over.
const OWNER_CHECK_MS: u128 = 1000;
/// A DELETE for a session of another worker, sent to that worker's socket.
const DELETE_MAGIC: &[u8] = b"vid-whip-delete:";

#[repr(C)]
pub struct MainConf {
    /// `hls_live_whip_udp ADDRESS:PORT`.
    udp: ngx_str_t,
    /// `hls_live_whip_candidate ADDRESS`: the address put in answers (default: the bound one).
    candidate: ngx_str_t,
    max_sessions: ngx_uint_t,
    used: ngx_uint_t,
}

#[repr(C)]
pub struct LocConf {
    zone: *mut ngx_shm_zone_t,
}

static mut COMMANDS: [ngx_command_t; 5] = [
    command(
        ngx::ngx_string!("hls_live_whip"),
        NGX_HTTP_LOC_CONF | NGX_CONF_TAKE1,
        set_whip,
        NGX_HTTP_LOC_CONF_OFFSET,
        0,
    ),
    command(
        ngx::ngx_string!("hls_live_whip_udp"),
        NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1,
        ngx_conf_set_str_slot,
        NGX_HTTP_MAIN_CONF_OFFSET,
        mem::offset_of!(MainConf, udp),
    ),
    command(
        ngx::ngx_string!("hls_live_whip_candidate"),
        NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1,
        ngx_conf_set_str_slot,
        NGX_HTTP_MAIN_CONF_OFFSET,
        mem::offset_of!(MainConf, candidate),
    ),
    command(
        ngx::ngx_string!("hls_live_whip_max_sessions"),
        NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1,
        ngx_conf_set_num_slot,
        NGX_HTTP_MAIN_CONF_OFFSET,
        mem::offset_of!(MainConf, max_sessions),
    ),
    ngx_command_t::empty(),
];

static CTX: ngx_http_module_t = ngx_http_module_t {
    preconfiguration: None,
    postconfiguration: None,
    create_main_conf: Some(create_main_conf),
    init_main_conf: Some(init_main_conf),
    create_srv_conf: None,
    merge_srv_conf: None,
    create_loc_conf: Some(create_loc_conf),
    merge_loc_conf: Some(<WhipModule as ngx::http::HttpModule>::merge_loc_conf),
};

nginx_module!(
    ngx_http_vid_whip_module,
    NGX_HTTP_MODULE,
    init_process: Some(init_process),
    exit_process: Some(exit_process),
);

unsafe extern "C" fn create_main_conf(cf: *mut ngx_conf_t) -> *mut c_void {
    let conf = nginx_sys::ngx_pcalloc((*cf).pool, mem::size_of::<MainConf>()) as *mut MainConf;
    if !conf.is_null() {
        (*conf).max_sessions = NGX_CONF_UNSET_UINT;
    }
    conf.cast()
}

/// The bound and the advertised address of worker 0 (worker N: port + N).
fn addresses(mc: &MainConf) -> Result<(SocketAddr, SocketAddr), String> {
    let udp = String::from_utf8_lossy(mc.udp.as_bytes()).into_owned();
    let bind: SocketAddr = udp
        .parse()
        .map_err(|_| format!("\"hls_live_whip_udp\" wants ADDRESS:PORT, not \"{udp}\""))?;
    let mut advertised = bind;
    if !mc.candidate.data.is_null() && mc.candidate.len > 0 {
        let cand = String::from_utf8_lossy(mc.candidate.as_bytes()).into_owned();
        let ip: std::net::IpAddr = cand.parse().map_err(|_| {
            format!("\"hls_live_whip_candidate\" wants an IP address, not \"{cand}\"")
        })?;
        advertised.set_ip(ip);
    }
    if advertised.ip().is_unspecified() {
        return Err(
            "\"hls_live_whip_udp\" binds a wildcard address: set \"hls_live_whip_candidate\" \
             to the address publishers reach"
                .into(),
        );
    }
    Ok((bind, advertised))
}

unsafe extern "C" fn init_main_conf(cf: *mut ngx_conf_t, conf: *mut c_void) -> *mut c_char {
    let mc = &mut *(conf as *mut MainConf);
    if mc.max_sessions == NGX_CONF_UNSET_UINT {
        mc.max_sessions = DEFAULT_MAX_SESSIONS;
    }
    if mc.max_sessions == 0 || mc.max_sessions > 4096 {
        ngx_conf_log_error!(
            NGX_LOG_EMERG,
            cf,
            "\"hls_live_whip_max_sessions\" must be between 1 and 4096"
        );
        return NGX_CONF_ERROR;
    }
    if mc.udp.data.is_null() {
        mc.udp = ngx::ngx_string!("127.0.0.1:8189");
    }
    if let Err(e) = addresses(mc) {
        ngx_conf_log_error!(NGX_LOG_EMERG, cf, "{}", e);
        return NGX_CONF_ERROR;
    }
    NGX_CONF_OK
}

unsafe extern "C" fn create_loc_conf(cf: *mut ngx_conf_t) -> *mut c_void {
    nginx_sys::ngx_pcalloc((*cf).pool, mem::size_of::<LocConf>())
}

http_location_merge!(WhipModule, ngx_http_vid_whip_module, LocConf);

impl ngx::http::Merge for LocConf {
    fn merge(&mut self, prev: &Self) -> Result<(), ngx::http::MergeConfigError> {
        if self.zone.is_null() {
            self.zone = prev.zone;
        }
        Ok(())
    }
}

unsafe extern "C" fn set_whip(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    let conf = &mut *(conf as *mut LocConf);
    if !conf.zone.is_null() {
        return c"is duplicate".as_ptr().cast_mut();
    }
    let mut name = (*(*cf).args).as_slice::<ngx_str_t>()[1];
    conf.zone = zone::add(cf, &mut name, 0);
    if conf.zone.is_null() {
        return NGX_CONF_ERROR;
    }
    let ctx = (*cf).ctx as *mut ngx_http_conf_ctx_t;
    let mc = *(*ctx).main_conf.add(ngx_http_vid_whip_module.ctx_index) as *mut MainConf;
    (*mc).used = 1;
    super::set_content_handler(cf, handler);
    NGX_CONF_OK
}

// --- the worker's socket and sessions -------------------------------------------------

struct Session {
    /// Secret id, in the session URL: `w{worker}-{32 hex digits}`.
    id: String,
    key: String,
    peer: Peer,
    conn: Connection,
    zone: Zone,
    /// Publish callbacks (`rtmp_live_on_publish_done` when the session ends).
    calls: Calls,
    /// The publisher's address once ICE picked it.
    remote: Option<SocketAddr>,
    last_owner_check: Instant,
    /// DELETE: the stream ends at once (no grace).
    deleted: bool,
}

struct Worker {
    c: *mut ngx_connection_t,
    sock: ManuallyDrop<UdpSocket>,
    advertised: SocketAddr,
    /// Bound address of worker 0 (other workers' sockets: port + their number).
    base: SocketAddr,
    max_sessions: usize,
    sessions: Vec<Session>,
    /// Datagrams that matched no session, and when that was last logged.
    strays: u64,
    strays_logged: Option<Instant>,
    /// Strays not yet added to the shared counters (added once per read event).
    strays_unflushed: u64,
}

thread_local! {
    static WORKER: RefCell<Option<Worker>> = const { RefCell::new(None) };
    static TIMER: WorkerEvent = WorkerEvent::new();
}

unsafe fn main_conf(cycle: *mut ngx_cycle_t) -> Option<&'static MainConf> {
    let ctx = *(*cycle).conf_ctx.add(nginx_sys::ngx_http_module.index) as *mut ngx_http_conf_ctx_t;
    if ctx.is_null() {
        return None;
    }
    let mc = *(*ctx).main_conf.add(ngx_http_vid_whip_module.ctx_index) as *const MainConf;
    mc.as_ref()
}

fn bind_reusable(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let domain = socket2::Domain::for_address(addr);
    let s = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    // A reload starts the new workers before the old ones let go of their sockets.
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.set_nonblocking(true)?;
    s.set_recv_buffer_size(1 << 20).ok();
    s.bind(&addr.into())?;
    Ok(s.into())
}

unsafe extern "C" fn init_process(cycle: *mut ngx_cycle_t) -> ngx_int_t {
    let Some(mc) = main_conf(cycle) else {
        return NGX_OK as ngx_int_t;
    };
    if mc.used == 0 {
        return NGX_OK as ngx_int_t;
    }
    let log = (*cycle).log;
    let Ok((base, advertised)) = addresses(mc) else {
        return NGX_OK as ngx_int_t; // checked at configuration time
    };
    let n = nginx_sys::ngx_worker as u16;
    let mut bind = base;
    bind.set_port(base.port().wrapping_add(n));
    let mut adv = advertised;
    adv.set_port(bind.port());
    let sock = match bind_reusable(bind) {
        Ok(s) => s,
        Err(e) => {
            ngx_log_error!(
                NGX_LOG_ERR,
                log,
                "whip: cannot bind UDP {}: {} (WHIP publishes to this worker are refused)",
                bind,
                e
            );
            return NGX_OK as ngx_int_t;
        }
    };
    let fd = sock.into_raw_fd();
    let c = ngx_get_connection(fd, log);
    if c.is_null() {
        close_fd(fd);
        return NGX_OK as ngx_int_t;
    }
    // Idle: a worker that shuts down gracefully closes it (and its sessions) at once.
    (*c).set_idle(1);
    (*(*c).read).handler = Some(read_handler);
    (*(*c).read).log = log;
    (*(*c).write).log = log;
    if ngx_handle_read_event((*c).read, 0) != NGX_OK as ngx_int_t {
        ngx_close_connection(c);
        return NGX_OK as ngx_int_t;
    }
    WORKER.with_borrow_mut(|w| {
        *w = Some(Worker {
            c,
            sock: ManuallyDrop::new(UdpSocket::from_raw_fd(fd)),
            advertised: adv,
            base,
            max_sessions: mc.max_sessions,
            sessions: Vec::new(),
            strays: 0,
            strays_logged: None,
            strays_unflushed: 0,
        })
    });
    super::metrics::with_table(|t| t.whip_worker_started(worker()));
    ngx_log_error!(
        NGX_LOG_INFO,
        log,
        "whip: worker {} takes media on UDP {}",
        n,
        bind
    );
    NGX_OK as ngx_int_t
}

/// This worker's number (0 … worker_processes − 1).
fn worker() -> usize {
    // SAFETY: a plain read of nginx's worker number, set before init_process.
    unsafe { nginx_sys::ngx_worker }
}

fn close_fd(fd: i32) {
    // SAFETY: `fd` was just taken out of a socket nobody else owns.
    drop(unsafe { UdpSocket::from_raw_fd(fd) });
}

unsafe extern "C" fn exit_process(_cycle: *mut ngx_cycle_t) {
    close_all("worker is exiting");
}

/// Ends every session (the streams start their grace period) and closes the socket.
unsafe fn close_all(why: &str) {
    let Some(mut w) = WORKER.with_borrow_mut(|w| w.take()) else {
        return;
    };
    TIMER.with(|t| t.disarm());
    for mut s in w.sessions.drain(..) {
        s.peer.close(Closed::Disconnected);
        end_session(s, why, Closed::Disconnected.index());
    }
    ngx_close_connection(w.c);
}

unsafe extern "C" fn read_handler(rev: *mut ngx_event_t) {
    let c = (*rev).data as *mut ngx_connection_t;
    if (*c).close() != 0 {
        return close_all("worker is exiting");
    }
    let mut buf = [0u8; MAX_DATAGRAM + 1];
    loop {
        let got = WORKER.with_borrow(|w| w.as_ref().map(|w| w.sock.recv_from(&mut buf)));
        let (n, from) = match got {
            Some(Ok(x)) => x,
            Some(Err(e)) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Some(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            // ICMP port unreachable for something we sent, and such: nothing to do.
            Some(Err(_)) => continue,
            None => return,
        };
        if n > MAX_DATAGRAM {
            stray(from);
            continue;
        }
        let _ = catch_unwind(AssertUnwindSafe(|| datagram(&buf[..n], from)));
    }
    let strays = WORKER.with_borrow_mut(|w| {
        w.as_mut()
            .map_or(0, |w| std::mem::take(&mut w.strays_unflushed))
    });
    if strays > 0 {
        super::metrics::with_table(|t| t.origin.whip.strays += strays);
    }
    if ngx_handle_read_event(rev, 0) != NGX_OK as ngx_int_t {
        ngx_log_error!(NGX_LOG_ERR, (*c).log, "whip: cannot watch the UDP socket");
    }
    arm_timer();
}

/// A datagram that belongs to no session: counted, logged at most once a minute.
fn stray(from: SocketAddr) {
    WORKER.with_borrow_mut(|w| {
        let Some(w) = w.as_mut() else { return };
        w.strays += 1;
        w.strays_unflushed += 1;
        let now = Instant::now();
        if w.strays_logged
            .is_none_or(|t| now.duration_since(t).as_secs() >= 60)
        {
            w.strays_logged = Some(now);
            let log = ngx::log::ngx_cycle_log().as_ptr();
            ngx_log_error!(
                NGX_LOG_INFO,
                log,
                "whip: dropped a datagram from {} that belongs to no session ({} so far)",
                from,
                w.strays
            );
        }
    });
}

unsafe fn datagram(data: &[u8], from: SocketAddr) {
    if let Some(id) = data.strip_prefix(DELETE_MAGIC) {
        let id = String::from_utf8_lossy(id).into_owned();
        // Only from one of our own sockets (another worker of this server).
        let ours = WORKER.with_borrow(|w| {
            w.as_ref()
                .is_some_and(|w| from.ip().is_loopback() || from.ip() == w.base.ip())
        });
        if ours {
            delete_local(&id);
        }
        return;
    }
    let now = Instant::now();
    let found = WORKER.with_borrow_mut(|w| {
        let w = w.as_mut()?;
        let i = w
            .sessions
            .iter()
            .position(|s| s.remote == Some(from))
            .or_else(|| {
                w.sessions
                    .iter()
                    .position(|s| s.peer.accepts(now, from, data))
            })?;
        let s = &mut w.sessions[i];
        s.remote = Some(from);
        s.peer.receive(now, from, data);
        Some(i)
    });
    match found {
        Some(i) => settle(i),
        None => stray(from),
    }
}

/// After a session took input: send its datagrams, hand its media to the segmenter, log,
/// and end it if it is over.
unsafe fn settle(i: usize) {
    let ended = WORKER.with_borrow_mut(|w| {
        let w = w.as_mut()?;
        let sock = &w.sock;
        let s = w.sessions.get_mut(i)?;
        for (dst, d) in s.peer.take_transmits() {
            // UDP: a full socket buffer drops the datagram, as the network would.
            let _ = sock.send_to(&d, dst);
        }
        let log = ngx::log::ngx_cycle_log().as_ptr();
        if let Some(warn) = s.peer.take_warning() {
            ngx_log_error!(NGX_LOG_WARN, log, "whip: \"{}\": {}", s.key, warn);
        }
        let media = s.peer.take_media();
        let mut err: Option<IngestError> = None;
        if !media.is_empty() {
            let mut zone = s.zone;
            match catch_unwind(AssertUnwindSafe(|| {
                s.conn.feed_media(media, super::now(), &mut zone)
            })) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => err = Some(e),
                Err(_) => err = Some(IngestError::Refused("internal error".into())),
            }
            super::metrics::ingest(ptr::null_mut(), &mut s.conn, err.as_ref());
            super::wait::wake(s.zone, &s.key);
        }
        if s.last_owner_check.elapsed().as_millis() >= OWNER_CHECK_MS {
            s.last_owner_check = Instant::now();
            let mut zone = s.zone;
            if let Err(e) = s.conn.check_owner(&mut zone) {
                err.get_or_insert(e);
            }
        }
        for (level, msg) in s.conn.take_log() {
            log_line(log, level, &msg);
        }
        super::catalog::submit(s.conn.take_sessions(), log);
        if let Some(e) = err {
            ngx_log_error!(
                NGX_LOG_ERR,
                log,
                "whip: \"{}\": closing session: {}",
                s.key,
                e
            );
            s.peer.close(Closed::Failed(e.to_string()));
        }
        let closed = s.peer.closed().cloned()?;
        Some((w.sessions.swap_remove(i), closed))
    });
    if let Some((mut s, why)) = ended {
        // A publisher that never connected sent nothing, one that closed its connection
        // is done: the stream ends at once.
        s.deleted |= matches!(why, Closed::HandshakeTimeout | Closed::Ended);
        remember_ended(&s.id);
        end_session(s, &why.to_string(), why.index());
    }
}

/// A session is over: its stream starts the grace period (or ends, after a DELETE).
unsafe fn end_session(mut s: Session, why: &str, reason: usize) {
    let log = ngx::log::ngx_cycle_log().as_ptr();
    super::metrics::with_table(|t| t.whip_closed(worker(), reason));
    let st = s.peer.stats();
    ngx_log_error!(
        NGX_LOG_NOTICE,
        log,
        "whip: session of \"{}\" closed: {} ({} video and {} audio frames, {} keyframe \
         requests, {} gaps, {} frames and {} datagrams dropped)",
        s.key,
        why,
        st.video_frames,
        st.audio_frames,
        st.keyframe_requests,
        st.video_gaps,
        st.dropped_frames,
        st.garbage
    );
    let mut zone = s.zone;
    let _ = catch_unwind(AssertUnwindSafe(|| {
        if s.deleted {
            s.conn.end_at(super::now(), &mut zone);
        } else {
            s.conn.close_at(super::now(), &mut zone);
        }
        super::metrics::ingest(ptr::null_mut(), &mut s.conn, None);
    }));
    super::wait::wake(s.zone, &s.key);
    for (level, msg) in s.conn.take_log() {
        log_line(log, level, &msg);
    }
    super::catalog::submit(s.conn.take_sessions(), log);
    callback::on_close(&mut s.calls, "whip", None);
}

fn log_line(log: *mut nginx_sys::ngx_log_t, level: LogLevel, msg: &str) {
    ngx_log_error!(super::log_level(level), log, "whip: {}", msg);
}

/// The timer: every session whose deadline passed gets its timeout; then re-armed.
unsafe extern "C" fn timer_handler(_ev: *mut ngx_event_t) {
    let now = Instant::now();
    let due: Vec<usize> = WORKER.with_borrow_mut(|w| {
        let Some(w) = w.as_mut() else {
            return Vec::new();
        };
        let mut due = Vec::new();
        for (i, s) in w.sessions.iter_mut().enumerate() {
            if s.peer.next_timeout() <= now
                || s.last_owner_check.elapsed().as_millis() >= OWNER_CHECK_MS
            {
                s.peer.timeout(now);
                due.push(i);
            }
        }
        due
    });
    // Highest first: `settle` may swap_remove a session.
    for i in due.into_iter().rev() {
        let _ = catch_unwind(AssertUnwindSafe(|| settle(i)));
    }
    arm_timer();
}

/// Arms the timer at the earliest deadline of any session (none: disarmed).
fn arm_timer() {
    let next = WORKER.with_borrow(|w| {
        let w = w.as_ref()?;
        w.sessions.iter().map(|s| s.peer.next_timeout()).min()
    });
    TIMER.with(|t| match next {
        Some(at) => {
            let ms = at.saturating_duration_since(Instant::now()).as_millis();
            let ms = ms.clamp(1, OWNER_CHECK_MS) as nginx_sys::ngx_msec_t;
            t.arm_by(timer_handler, ms, true);
        }
        None => t.disarm(),
    });
}

// --- signalling -----------------------------------------------------------------------

unsafe fn loc_conf(r: *mut ngx_http_request_t) -> &'static LocConf {
    &*(*(*r).loc_conf.add(ngx_http_vid_whip_module.ctx_index) as *const LocConf)
}

/// The part of the URI after the location's prefix: `KEY` or `KEY/SESSION`.
unsafe fn tail(r: *mut ngx_http_request_t) -> String {
    let clcf = *(*r).loc_conf.add(nginx_sys::ngx_http_core_module.ctx_index)
        as *const nginx_sys::ngx_http_core_loc_conf_t;
    crate::whip::signalling_path((*r).uri.as_bytes(), (*clcf).name.as_bytes())
}

/// An offer refused: counted, then answered.
unsafe fn refuse(r: *mut ngx_http_request_t, status: u32, body: &str) -> ngx_int_t {
    super::metrics::with_table(|t| t.origin.whip.refused += 1);
    respond(r, status, body)
}

unsafe fn respond(r: *mut ngx_http_request_t, status: u32, body: &str) -> ngx_int_t {
    super::respond::send_text_status(r, status, "text/plain", format!("{body}\n").as_bytes(), 0)
}

unsafe extern "C" fn handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    let m = (*r).method;
    if m & NGX_HTTP_POST as ngx_uint_t != 0 {
        let rc = ngx_http_read_client_request_body(r, Some(post_body));
        if rc >= NGX_HTTP_SPECIAL_RESPONSE as ngx_int_t {
            return rc;
        }
        return NGX_DONE as ngx_int_t;
    }
    let rc = nginx_sys::ngx_http_discard_request_body(r);
    if rc != NGX_OK as ngx_int_t {
        return rc;
    }
    if m & NGX_HTTP_DELETE as ngx_uint_t != 0 {
        return delete(r);
    }
    if m & NGX_HTTP_OPTIONS as ngx_uint_t != 0 {
        let req = ngx::http::Request::from_ngx_http_request(r);
        let _ = req.add_header_out("Accept-Post", "application/sdp");
        (*r).headers_out.status = 204;
        (*r).set_header_only(1);
        (*r).headers_out.content_length_n = 0;
        return nginx_sys::ngx_http_send_header(r);
    }
    NGX_HTTP_NOT_ALLOWED as ngx_int_t
}

unsafe extern "C" fn post_body(r: *mut ngx_http_request_t) {
    let rc = match catch_unwind(AssertUnwindSafe(|| offer(r))) {
        Ok(rc) => rc,
        Err(_) => {
            ngx_log_error!(NGX_LOG_ERR, (*(*r).connection).log, "whip: internal error");
            NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t
        }
    };
    if rc != NGX_DONE as ngx_int_t {
        ngx_http_finalize_request(r, rc);
    }
}

/// The request body, from memory or nginx's temporary file; None if larger than `max`.
unsafe fn body(r: *mut ngx_http_request_t, max: usize) -> Option<Vec<u8>> {
    let rb = (*r).request_body;
    if rb.is_null() {
        return Some(Vec::new());
    }
    let mut out = Vec::new();
    let mut cl: *mut ngx_chain_t = (*rb).bufs;
    while !cl.is_null() {
        let b = (*cl).buf;
        if (*b).in_file() != 0 && !(*b).file.is_null() {
            use std::os::unix::fs::FileExt;
            let len = ((*b).file_last - (*b).file_pos) as usize;
            if out.len() + len > max {
                return None;
            }
            let f = ManuallyDrop::new(std::fs::File::from_raw_fd((*(*b).file).fd));
            let mut chunk = vec![0u8; len];
            f.read_exact_at(&mut chunk, (*b).file_pos as u64).ok()?;
            out.extend_from_slice(&chunk);
        } else if !(*b).pos.is_null() {
            let len = (*b).last.offset_from((*b).pos) as usize;
            if out.len() + len > max {
                return None;
            }
            out.extend_from_slice(core::slice::from_raw_parts((*b).pos, len));
        }
        cl = (*cl).next;
    }
    Some(out)
}

/// A request header's value.
unsafe fn header_in(r: *mut ngx_http_request_t, name: &str) -> Option<String> {
    let req = ngx::http::Request::from_ngx_http_request(r);
    req.headers_in_iterator()
        .find(|(k, _)| k.as_bytes().eq_ignore_ascii_case(name.as_bytes()))
        .map(|(_, v)| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

unsafe fn offer(r: *mut ngx_http_request_t) -> ngx_int_t {
    let log = (*(*r).connection).log;
    let conf = loc_conf(r);
    let key = tail(r);
    if key.is_empty() || key.contains('/') {
        return refuse(r, 404, "POST the offer to the stream's URL: {location}KEY");
    }
    let ct = header_in(r, "Content-Type").unwrap_or_default();
    if !ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .eq_ignore_ascii_case("application/sdp")
    {
        ngx_log_error!(
            NGX_LOG_NOTICE,
            log,
            "whip: \"{}\": offer is not application/sdp",
            key
        );
        return refuse(r, 415, "the offer must be Content-Type: application/sdp");
    }
    let Some(sdp) = body(r, MAX_OFFER) else {
        return refuse(r, 413, "offer larger than 64 KiB");
    };
    let sdp = String::from_utf8_lossy(&sdp).into_owned();
    let Some(ingest) = super::stream::ingest_config_for(conf.zone) else {
        ngx_log_error!(
            NGX_LOG_ERR,
            log,
            "whip: no stream server has \"rtmp_live\" for this location's zone: its ingest \
             settings are needed"
        );
        return refuse(r, 500, "WHIP is not configured on this server");
    };
    let held = HELD.with_borrow(|h| h.offers.len());
    let ready = WORKER.with_borrow(|w| {
        w.as_ref()
            .map(|w| (w.sessions.len() + held < w.max_sessions, w.advertised))
    });
    let Some((room, advertised)) = ready else {
        ngx_log_error!(
            NGX_LOG_ERR,
            log,
            "whip: \"{}\": this worker has no UDP socket",
            key
        );
        return refuse(r, 503, "WebRTC media is not available on this server");
    };
    if !room {
        ngx_log_error!(
            NGX_LOG_WARN,
            log,
            "whip: \"{}\": refused, hls_live_whip_max_sessions reached",
            key
        );
        return refuse(r, 503, "too many WebRTC sessions");
    }
    let now = Instant::now();
    let (peer, answer) = match Peer::accept(
        &sdp,
        advertised,
        now,
        PeerConfig {
            segment_target_ms: ingest.cfg.segment_target_ms,
            handshake_timeout_ms: HANDSHAKE_TIMEOUT_MS,
            idle_timeout_ms: ingest.timeout as u64,
        },
    ) {
        Ok(x) => x,
        Err(e) => {
            ngx_log_error!(NGX_LOG_NOTICE, log, "whip: \"{}\": {}", key, e);
            return refuse(r, e.status() as u32, &e.to_string());
        }
    };
    // The publish credential: `Authorization: Bearer exp=…&sig=…` (or the signed key
    // `KEY?exp=…&sig=…`), else the URL's query.
    let bearer = header_in(r, "Authorization").and_then(|v| {
        let (scheme, token) = v.trim().split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim().to_owned())
    });
    let query = match bearer {
        Some(t) => Some(t.split_once('?').map_or(t.clone(), |(_, q)| q.to_owned())),
        None => {
            let a = (*r).args.as_bytes();
            (!a.is_empty()).then(|| String::from_utf8_lossy(a).into_owned())
        }
    };
    let mut o = Offer {
        key,
        peer,
        conn: Connection::new(ingest.cfg),
        zone: Zone::new(conf.zone),
        calls: Calls::new(ingest.calls, (*r).connection),
        answer,
        advertised,
    };
    o.conn.set_unix_time(super::auth::unix_s());
    let mut zone = o.zone;
    match o
        .conn
        .publish_direct("whip", &o.key, query.as_deref(), super::now(), &mut zone)
    {
        Ok(Direct::Live) => go_live(r, o),
        Ok(Direct::Held) => hold(r, o),
        Err((refusal, e)) => refused(r, o, refusal, e),
    }
}

/// An accepted offer whose publish is live or waits for the publish callback.
struct Offer {
    key: String,
    peer: Peer,
    conn: Connection,
    zone: Zone,
    calls: Calls,
    /// The SDP answer, sent once the publish is live.
    answer: String,
    advertised: SocketAddr,
}

/// Offers of this worker waiting for the publish callback's answer (the POST is held).
#[derive(Default)]
struct HeldOffers {
    next_id: usize,
    offers: Vec<HeldOffer>,
}

struct HeldOffer {
    id: usize,
    r: *mut ngx_http_request_t,
    cleanup: *mut ngx_http_cleanup_t,
    offer: Offer,
}

thread_local! {
    static HELD: RefCell<HeldOffers> = RefCell::new(HeldOffers::default());
}

/// The publish waits for `rtmp_live_on_publish`: the POST is answered when it answers
/// ([`callback_answered`]), within `rtmp_live_callback_timeout`.
unsafe fn hold(r: *mut ngx_http_request_t, mut o: Offer) -> ngx_int_t {
    let cln = ngx_http_cleanup_add(r, 0);
    if cln.is_null() {
        return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
    }
    let id = HELD.with_borrow_mut(|h| {
        h.next_id = h.next_id.wrapping_add(1);
        h.next_id
    });
    if let Err(d) = callback::after_feed(&mut o.calls, &mut o.conn, Owner::Whip(id)) {
        return decided(r, o, d);
    }
    ngx_log_error!(
        NGX_LOG_INFO,
        (*(*r).connection).log,
        "whip: \"{}\": waiting for the publish callback",
        o.key
    );
    (*cln).handler = Some(forget_offer);
    (*cln).data = id as *mut c_void;
    HELD.with_borrow_mut(|h| {
        h.offers.push(HeldOffer {
            id,
            r,
            cleanup: cln,
            offer: o,
        })
    });
    // Notice a publisher that gives up while it waits.
    (*r).read_event_handler = Some(ngx_http_test_reading);
    NGX_DONE as ngx_int_t
}

/// The publish callback answered for held offer `id` (see src/nginx/callback.rs).
pub(super) unsafe fn callback_answered(id: usize, d: Decision) {
    let Some(h) = HELD.with_borrow_mut(|h| {
        let i = h.offers.iter().position(|o| o.id == id)?;
        Some(h.offers.swap_remove(i))
    }) else {
        return;
    };
    (*h.cleanup).handler = None;
    let r = h.r;
    let c = (*r).connection;
    let mut o = h.offer;
    callback::answered(&mut o.calls);
    let rc = match catch_unwind(AssertUnwindSafe(|| decided(r, o, d))) {
        Ok(rc) => rc,
        Err(_) => {
            ngx_log_error!(NGX_LOG_ERR, (*c).log, "whip: internal error");
            NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t
        }
    };
    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}

/// A held offer's request ended before the callback answered (the publisher left, or
/// the worker is shutting down): the call is cancelled, nothing was published.
unsafe extern "C" fn forget_offer(data: *mut c_void) {
    let id = data as usize;
    let Some(h) = HELD.with_borrow_mut(|h| {
        let i = h.offers.iter().position(|o| o.id == id)?;
        Some(h.offers.swap_remove(i))
    }) else {
        return;
    };
    let mut o = h.offer;
    callback::on_close(&mut o.calls, "whip", None);
    o.peer.close(Closed::Failed("the publisher left".into()));
    ngx_log_error!(
        NGX_LOG_NOTICE,
        ngx::log::ngx_cycle_log().as_ptr(),
        "whip: \"{}\": the publisher left before the publish callback answered",
        o.key
    );
}

/// The publish callback's answer for a held offer: live, or refused.
unsafe fn decided(r: *mut ngx_http_request_t, mut o: Offer, d: Decision) -> ngx_int_t {
    let mut zone = o.zone;
    match o.conn.resolve_direct(d, super::now(), &mut zone) {
        Ok(()) => {
            o.peer.answer_sent(Instant::now());
            go_live(r, o)
        }
        Err((refusal, e)) => refused(r, o, refusal, e),
    }
}

unsafe fn refused(
    r: *mut ngx_http_request_t,
    mut o: Offer,
    refusal: crate::ingest::Refusal,
    e: IngestError,
) -> ngx_int_t {
    let log = (*(*r).connection).log;
    ngx_log_error!(NGX_LOG_ERR, log, "whip: {}", e);
    super::metrics::ingest(ptr::null_mut(), &mut o.conn, Some(&e));
    callback::on_close(&mut o.calls, "whip", None);
    o.peer.close(Closed::Failed("refused".into()));
    refuse(r, refusal.status() as u32, &e.to_string())
}

/// The publish is live: the session starts, the answer goes out.
unsafe fn go_live(r: *mut ngx_http_request_t, mut o: Offer) -> ngx_int_t {
    let log = (*(*r).connection).log;
    let (video, audio) = o.peer.tracks();
    o.conn.expect_tracks(video, audio);
    for (level, msg) in o.conn.take_log() {
        log_line(log, level, &msg);
    }
    super::metrics::ingest(ptr::null_mut(), &mut o.conn, None);
    super::catalog::submit(o.conn.take_sessions(), log);
    // Remembers the live key for `rtmp_live_on_publish_done` (nothing is held now).
    let _ = callback::after_feed(&mut o.calls, &mut o.conn, Owner::Nobody);
    // Renamed by the callback: the session is the new key's.
    let key = o.conn.key().unwrap_or(&o.key).to_owned();
    let id = format!("w{}-{}", { nginx_sys::ngx_worker }, random_hex());
    let location = format!(
        "{}/{}",
        String::from_utf8_lossy((*r).uri.as_bytes()).trim_end_matches('/'),
        id
    );
    let session = Session {
        id,
        key: key.clone(),
        peer: o.peer,
        conn: o.conn,
        zone: o.zone,
        calls: o.calls,
        remote: None,
        last_owner_check: Instant::now(),
        deleted: false,
    };
    let refused = WORKER.with_borrow_mut(|w| match w.as_mut() {
        Some(w) => {
            w.sessions.push(session);
            None
        }
        None => Some(session),
    });
    if let Some(mut s) = refused {
        // The worker closed its socket (it is exiting) while the callback was asked.
        s.deleted = true;
        s.peer.close(Closed::Disconnected);
        end_session(s, "worker is exiting", Closed::Disconnected.index());
        return respond(r, 503, "WebRTC media is not available on this server");
    }
    super::metrics::with_table(|t| t.whip_answered(worker()));
    // The answer's own datagrams (none for ICE-lite) and the first deadline.
    arm_timer();
    let req = ngx::http::Request::from_ngx_http_request(r);
    if req.add_header_out("Location", &location).is_none() {
        return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
    }
    ngx_log_error!(
        NGX_LOG_NOTICE,
        log,
        "whip: \"{}\": session {} answered, media on UDP {}",
        key,
        location,
        o.advertised
    );
    super::respond::send_text_status(r, 201, "application/sdp", o.answer.as_bytes(), 0)
}

/// 128 random bits, hex: the session's secret id.
fn random_hex() -> String {
    let mut b = [0u8; 16];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .is_err()
    {
        for chunk in b.chunks_mut(4) {
            chunk.copy_from_slice(&(nginx_sys::ngx_random() as u32).to_ne_bytes());
        }
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Ids of this worker's sessions that ended lately: a DELETE that comes after the
/// publisher closed its connection is still answered 200.
const RECENTLY_ENDED: usize = 64;

thread_local! {
    static ENDED: RefCell<std::collections::VecDeque<String>> = const { RefCell::new(std::collections::VecDeque::new()) };
}

fn remember_ended(id: &str) {
    ENDED.with_borrow_mut(|e| {
        if e.len() == RECENTLY_ENDED {
            e.pop_front();
        }
        e.push_back(id.to_owned());
    });
}

/// Ends this worker's session `id` at once; false if it has none (or had none lately).
unsafe fn delete_local(id: &str) -> bool {
    let s = WORKER.with_borrow_mut(|w| {
        let w = w.as_mut()?;
        let i = w.sessions.iter().position(|s| s.id == id)?;
        Some(w.sessions.swap_remove(i))
    });
    match s {
        Some(mut s) => {
            s.deleted = true;
            s.peer.close(Closed::Ended);
            remember_ended(&s.id);
            end_session(s, "ended by the publisher (DELETE)", Closed::Ended.index());
            arm_timer();
            true
        }
        None => ENDED.with_borrow(|e| e.iter().any(|x| x == id)),
    }
}

unsafe fn delete(r: *mut ngx_http_request_t) -> ngx_int_t {
    let t = tail(r);
    let Some((_key, id)) = t.split_once('/') else {
        return respond(r, 404, "no such session");
    };
    if delete_local(id) {
        return respond(r, 200, "session ended");
    }
    // Another worker's session: its id names the worker, whose socket takes the request.
    let worker = crate::whip::session_worker(id);
    let me = nginx_sys::ngx_worker as u16;
    let sent = match worker {
        Some(n) if n != me => WORKER.with_borrow(|w| {
            let w = w.as_ref()?;
            let mut to = w.base;
            to.set_port(w.base.port().wrapping_add(n));
            if to.ip().is_unspecified() {
                to.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            let mut msg = DELETE_MAGIC.to_vec();
            msg.extend_from_slice(id.as_bytes());
            w.sock.send_to(&msg, to).ok()
        }),
        _ => None,
    };
    if sent.is_some() {
        respond(r, 200, "session ended")
    } else {
        respond(r, 404, "no such session")
    }
}
