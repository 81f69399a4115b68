//! nginx glue: the only module with FFI and `unsafe`.
//!
//! - `stream`: the `rtmp_live` stream content handler (RTMP ingest) and its directives.
//! - `http`: the `hls_live` location handler (playlists and media).
//! - `zone`: the shared-memory zone holding every stream's index.
//! - `sweeper`: a per-worker timer that retires ended streams and their files.
//! - `conf_check`: a configuration check that names a zone used but never defined.
//! - `edge`: the `hls_live_edge` handler (a vid edge: coalesced, woken origin fetches).
#![allow(clippy::missing_safety_doc)]

mod auth;
mod callback;
mod catalog;
mod conf_check;
mod edge;
mod http;
mod metrics;
mod recordings;
mod stream;
mod sweeper;
mod vars;
mod wait;
mod zone;

use core::ffi::c_char;

use nginx_sys::{ngx_msec_t, ngx_uint_t};

pub use edge::ngx_http_vid_edge_module;
pub use http::ngx_http_vid_module;
pub use stream::ngx_stream_vid_module;

// The module table nginx reads from a dynamic module: our two modules, in order.
#[no_mangle]
#[allow(non_upper_case_globals)]
pub static mut ngx_modules: [*const nginx_sys::ngx_module_t; 5] = [
    &raw const ngx_stream_vid_module,
    &raw const ngx_http_vid_module,
    &raw const conf_check::ngx_vid_core_module,
    &raw const ngx_http_vid_edge_module,
    core::ptr::null(),
];

#[no_mangle]
#[allow(non_upper_case_globals)]
pub static mut ngx_module_names: [*const c_char; 5] = [
    c"ngx_stream_vid_module".as_ptr(),
    c"ngx_http_vid_module".as_ptr(),
    c"ngx_vid_core_module".as_ptr(),
    c"ngx_http_vid_edge_module".as_ptr(),
    core::ptr::null(),
];

#[no_mangle]
#[allow(non_upper_case_globals)]
pub static mut ngx_module_order: [*const c_char; 1] = [core::ptr::null()];

pub(crate) const NGX_CONF_ERROR: *mut c_char = usize::MAX as *mut c_char;
pub(crate) const NGX_CONF_UNSET: isize = -1;
pub(crate) const NGX_CONF_UNSET_UINT: ngx_uint_t = ngx_uint_t::MAX;
pub(crate) const NGX_CONF_UNSET_MSEC: ngx_msec_t = ngx_msec_t::MAX;
pub(crate) const NGX_CONF_UNSET_SIZE: usize = usize::MAX;

type SetHandler = unsafe extern "C" fn(
    *mut nginx_sys::ngx_conf_t,
    *mut nginx_sys::ngx_command_t,
    *mut core::ffi::c_void,
) -> *mut c_char;

/// One entry of a directive table (no `post` handler).
pub(crate) const fn command(
    name: nginx_sys::ngx_str_t,
    type_: u32,
    set: SetHandler,
    conf: usize,
    offset: usize,
) -> nginx_sys::ngx_command_t {
    nginx_sys::ngx_command_t {
        name,
        type_: type_ as ngx_uint_t,
        set: Some(set),
        conf,
        offset,
        post: core::ptr::null_mut(),
    }
}

pub(crate) fn conf_ok() -> *mut c_char {
    core::ptr::null_mut()
}

/// nginx's cached monotonic clock (CLOCK_MONOTONIC, in ms; one clock for every worker of a
/// machine): every duration, deadline and liveness check uses it, so a step of the wall
/// clock never ends a live stream.
pub(crate) fn mono_ms() -> i64 {
    // SAFETY: a plain read of nginx's cached time, updated by the event loop of this thread.
    unsafe { nginx_sys::ngx_current_msec as i64 }
}

/// Both clocks of now, as the media core takes them.
pub(crate) fn now() -> crate::store::Now {
    crate::store::Now {
        wall_ms: now_ms(),
        mono_ms: mono_ms(),
    }
}

/// Wall clock in milliseconds since the Unix epoch, from nginx's cached time: only for
/// PROGRAM-DATE-TIME, names and times shown to people.
pub(crate) fn now_ms() -> i64 {
    let tp = nginx_sys::ngx_timeofday();
    tp.sec as i64 * 1000 + tp.msec as i64
}
