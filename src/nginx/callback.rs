//! The publish callback's transport: one plain nginx peer connection per call
//! (`ngx_event_connect_peer`), driven by the worker's event loop with a timer, in the
//! manner of nginx-rtmp's netcall. Nothing here waits: the RTMP session stays in its
//! "publish pending" state (`crate::auth::gate`) until [`finish`] hands the answer in.
//!
//! Directives (stream, stream server):
//! - `rtmp_live_on_publish URL;` — `http://HOST[:PORT]/PATH`, resolved at start.
//! - `rtmp_live_on_publish_done URL;` — notified when a publish ends.
//! - `rtmp_live_callback_timeout TIME;` — default 5s; past it the publish is refused.
//!
//! The request and the answer's meaning are pure code: `crate::auth::callback`.

use core::ffi::{c_char, c_void};
use core::ptr;
use std::panic::{catch_unwind, AssertUnwindSafe};

use nginx_sys::{
    ngx_close_connection, ngx_command_t, ngx_conf_t, ngx_connection_t, ngx_event_connect_peer,
    ngx_event_get_peer, ngx_event_t, ngx_handle_read_event, ngx_handle_write_event, ngx_int_t,
    ngx_log_t, ngx_msec_t, ngx_parse_url, ngx_pcalloc, ngx_peer_connection_t, ngx_str_t, ngx_url_t,
    NGX_AGAIN, NGX_LOG_EMERG, NGX_LOG_ERR, NGX_LOG_INFO, NGX_OK,
};
use ngx::{ngx_conf_log_error, ngx_log_error};

use super::{NGX_CONF_ERROR, NGX_CONF_OK};
use crate::auth::callback::{self, Call as CallKind, Decision, Fields, ResponseReader};

/// Set handler of `rtmp_live_on_publish` / `rtmp_live_on_publish_done`: parses
/// `http://HOST[:PORT][/PATH]` into an `ngx_url_t` (resolved now, at configuration
/// time) stored as a pointer at `cmd.offset`.
pub(crate) unsafe extern "C" fn set_url(
    cf: *mut ngx_conf_t,
    cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    let field = (conf as *mut u8).add((*cmd).offset) as *mut *mut ngx_url_t;
    if !(*field).is_null() {
        return c"is duplicate".as_ptr().cast_mut();
    }
    let args = (*(*cf).args).as_slice::<ngx_str_t>();
    let value = args[1];
    let text = value.as_bytes();
    let Some(rest) = text.strip_prefix(b"http://") else {
        ngx_conf_log_error!(
            NGX_LOG_EMERG,
            cf,
            "\"{}\" needs an http:// URL, not \"{}\"",
            (*cmd).name,
            value
        );
        return NGX_CONF_ERROR;
    };
    let u = ngx_pcalloc((*cf).pool, core::mem::size_of::<ngx_url_t>()) as *mut ngx_url_t;
    if u.is_null() {
        return NGX_CONF_ERROR;
    }
    (*u).url = ngx_str_t {
        len: rest.len(),
        data: value.data.add(7),
    };
    (*u).default_port = 80;
    (*u).set_uri_part(1);
    if ngx_parse_url((*cf).pool, u) != NGX_OK as ngx_int_t || (*u).naddrs == 0 {
        let err = if (*u).err.is_null() {
            "host not found".to_string()
        } else {
            core::ffi::CStr::from_ptr((*u).err)
                .to_string_lossy()
                .into_owned()
        };
        ngx_conf_log_error!(
            NGX_LOG_EMERG,
            cf,
            "\"{}\": {} in \"{}\"",
            (*cmd).name,
            err,
            value
        );
        return NGX_CONF_ERROR;
    }
    *field = u;
    NGX_CONF_OK
}

/// A `rtmp_live` server's callback settings (RTMP and WHIP publishes use them).
#[derive(Clone, Copy)]
pub(crate) struct Settings {
    pub on_publish: *mut ngx_url_t,
    pub on_done: *mut ngx_url_t,
    pub timeout: ngx_msec_t,
}

/// Who waits for a publish callback's answer.
#[derive(Clone, Copy)]
pub(crate) enum Owner {
    /// A notification: nobody.
    Nobody,
    /// The RTMP connection of a held publish.
    Rtmp(*mut ngx_connection_t),
    /// A WHIP offer held by this worker, by its number (see `super::whip`).
    Whip(usize),
}

/// The callback settings of a session (from its server's configuration).
pub(crate) struct Calls {
    settings: Settings,
    /// The client's address, as sent to the callback.
    addr: String,
    /// The call in flight for a held publish, if any.
    call: *mut Call,
    /// The app and key being published (for `publish_done`).
    live: Option<(String, String)>,
}

impl Calls {
    /// `c`: the publisher's connection (its address is sent to the callback).
    pub(crate) unsafe fn new(settings: Settings, c: *mut ngx_connection_t) -> Self {
        Calls {
            settings,
            addr: String::from_utf8_lossy((*c).addr_text.as_bytes()).into_owned(),
            call: ptr::null_mut(),
            live: None,
        }
    }

    pub(crate) fn enabled(&self) -> bool {
        !self.settings.on_publish.is_null()
    }
}

/// One HTTP exchange on its own connection.
pub(crate) struct Call {
    pc: ngx_peer_connection_t,
    out: Vec<u8>,
    sent: usize,
    reader: ResponseReader,
    /// Who waits for the answer.
    owner: Owner,
    buf: Vec<u8>,
}

unsafe fn cycle_log() -> *mut ngx_log_t {
    ngx::log::ngx_cycle_log().as_ptr()
}

/// Starts a call; `Err` when it could not even be started (e.g. connection refused
/// at once), in which case nothing is left behind.
unsafe fn start(
    u: *mut ngx_url_t,
    timeout: ngx_msec_t,
    kind: CallKind,
    fields: &Fields,
    owner: Owner,
) -> Result<*mut Call, String> {
    let host = String::from_utf8_lossy((*u).host.as_bytes()).into_owned();
    let host = if (*u).port != 80 {
        format!("{host}:{}", (*u).port)
    } else {
        host
    };
    let path = String::from_utf8_lossy((*u).uri.as_bytes()).into_owned();
    let addr = &mut *(*u).addrs;
    let call = Box::into_raw(Box::new(Call {
        pc: core::mem::zeroed(),
        out: callback::request(&host, &path, kind, fields),
        sent: 0,
        reader: ResponseReader::default(),
        owner,
        buf: vec![0u8; 4096],
    }));
    let pc = &mut (*call).pc;
    pc.sockaddr = addr.sockaddr;
    pc.socklen = addr.socklen;
    pc.name = &mut addr.name;
    pc.get = Some(ngx_event_get_peer);
    pc.log = cycle_log();
    pc.set_log_error(nginx_sys::ngx_connection_log_error_e_NGX_ERROR_ERR);
    pc.tries = 1;
    let rc = ngx_event_connect_peer(pc);
    if rc != NGX_OK as ngx_int_t && rc != NGX_AGAIN as ngx_int_t {
        // ngx_event_connect_peer closed the connection it may have made.
        drop(Box::from_raw(call));
        return Err(format!("cannot connect to {}", addr.name));
    }
    let c = (*call).pc.connection;
    (*c).data = call.cast();
    (*c).log = cycle_log();
    (*(*c).read).log = (*c).log;
    (*(*c).write).log = (*c).log;
    (*(*c).read).handler = Some(read_handler);
    (*(*c).write).handler = Some(write_handler);
    // Not cancelable: a worker shutting down (reload) finishes its calls first (each
    // within the timeout), so a publish_done sent at the end is delivered.
    nginx_sys::ngx_add_timer((*c).read, timeout);
    if rc == NGX_OK as ngx_int_t {
        // Connected at once: the request is sent from a posted event, right after the
        // current one, never from inside this call (a send error there would answer the
        // owner before the caller has recorded the call).
        nginx_sys::ngx_post_event((*c).write, &raw mut nginx_sys::ngx_posted_events);
    }
    Ok(call)
}

/// Closes a call's connection and frees it (no answer is delivered).
unsafe fn cancel(call: *mut Call) {
    let c = (*call).pc.connection;
    if !c.is_null() {
        ngx_close_connection(c);
    }
    drop(Box::from_raw(call));
}

unsafe fn finish(call: *mut Call, res: Result<callback::Response, String>) {
    let owner = (*call).owner;
    cancel(call);
    let decision = || match &res {
        Ok(r) => callback::decide(&Ok(r.clone())),
        Err(e) => Decision::Unreachable(format!("publish callback: {e}")),
    };
    match owner {
        Owner::Nobody => {} // a notification: the answer does not matter
        Owner::Rtmp(c) => super::stream::callback_answered(c, decision()),
        Owner::Whip(id) => super::whip::callback_answered(id, decision()),
    }
}

unsafe extern "C" fn write_handler(wev: *mut ngx_event_t) {
    let c = (*wev).data as *mut ngx_connection_t;
    let call = (*c).data as *mut Call;
    let Some(send) = (*c).send else {
        return finish(call, Err("no send".into()));
    };
    loop {
        let st = &mut *call;
        if st.sent >= st.out.len() {
            break;
        }
        let rest = &st.out[st.sent..];
        let n = send(c, rest.as_ptr().cast_mut(), rest.len());
        if n == NGX_AGAIN as isize {
            if ngx_handle_write_event(wev, 0) != NGX_OK as ngx_int_t {
                return finish(call, Err("event error".into()));
            }
            return;
        }
        if n <= 0 {
            return finish(call, Err("connection failed".into()));
        }
        st.sent += n as usize;
    }
}

unsafe extern "C" fn read_handler(rev: *mut ngx_event_t) {
    let c = (*rev).data as *mut ngx_connection_t;
    let call = (*c).data as *mut Call;
    if (*rev).timedout() != 0 {
        return finish(call, Err("timed out".into()));
    }
    if (*c).close() != 0 {
        // worker_shutdown_timeout: nginx closes what is left.
        return finish(call, Err("worker shutting down".into()));
    }
    let Some(recv) = (*c).recv else {
        return finish(call, Err("no recv".into()));
    };
    loop {
        let st = &mut *call;
        let n = recv(c, st.buf.as_mut_ptr(), st.buf.len());
        if n == NGX_AGAIN as isize {
            break;
        }
        if n == 0 {
            let r = st.reader.eof().map_err(|e| e.to_string());
            return finish(call, r);
        }
        if n < 0 {
            return finish(call, Err("connection failed".into()));
        }
        let data = st.buf[..n as usize].to_vec();
        if let Some(r) = st.reader.feed(&data) {
            return finish(call, r.map_err(|e| e.to_string()));
        }
    }
    if ngx_handle_read_event(rev, 0) != NGX_OK as ngx_int_t {
        finish(call, Err("event error".into()));
    }
}

/// After the session consumed input: send the callback request of a newly held
/// publish, and the `publish_done` notification of a publish that ended. `Err(d)`:
/// the call could not be started, `d` must be handed to the session now.
pub(crate) unsafe fn after_feed(
    calls: &mut Calls,
    conn: &mut crate::ingest::Connection,
    owner: Owner,
) -> Result<(), Decision> {
    track_end(calls, conn.app(), conn.key());
    if !calls.enabled() || !calls.call.is_null() {
        return Ok(());
    }
    let Some(ask) = conn.callback_request() else {
        return Ok(());
    };
    let fields = Fields {
        app: &ask.app,
        name: &ask.name,
        addr: &calls.addr,
        query: ask.query.as_deref(),
    };
    match start(
        calls.settings.on_publish,
        calls.settings.timeout,
        CallKind::Publish,
        &fields,
        owner,
    ) {
        Ok(call) => {
            calls.call = call;
            Ok(())
        }
        Err(e) => Err(Decision::Unreachable(format!("publish callback: {e}"))),
    }
}

/// The answer arrived: forget the call (it is freed by now).
pub(crate) fn answered(calls: &mut Calls) {
    calls.call = ptr::null_mut();
}

/// Remembers which stream is live, and notifies when it is no longer.
unsafe fn track_end(calls: &mut Calls, app: &str, live_key: Option<&str>) {
    if calls.live.as_ref().map(|(_, k)| k.as_str()) == live_key {
        return;
    }
    if let Some((app, key)) = calls.live.take() {
        notify_done(calls, &app, &key);
    }
    calls.live = live_key.map(|k| (app.to_owned(), k.to_owned()));
}

unsafe fn notify_done(calls: &Calls, app: &str, key: &str) {
    if calls.settings.on_done.is_null() {
        return;
    }
    let fields = Fields {
        app,
        name: key,
        addr: &calls.addr,
        query: None,
    };
    if let Err(e) = start(
        calls.settings.on_done,
        calls.settings.timeout,
        CallKind::PublishDone,
        &fields,
        Owner::Nobody,
    ) {
        ngx_log_error!(
            NGX_LOG_ERR,
            cycle_log(),
            "rtmp: publish_done callback: {}",
            e
        );
    } else {
        ngx_log_error!(
            NGX_LOG_INFO,
            cycle_log(),
            "rtmp: publish_done callback sent for \"{}\"",
            key
        );
    }
}

/// The session is closing: cancel a call in flight, notify the end of a live stream.
pub(crate) unsafe fn on_close(calls: &mut Calls, app: &str, live_key: Option<&str>) {
    if !calls.call.is_null() {
        cancel(calls.call);
        calls.call = ptr::null_mut();
    }
    let _ = catch_unwind(AssertUnwindSafe(|| {
        track_end(calls, app, live_key);
        track_end(calls, app, None);
    }));
}
