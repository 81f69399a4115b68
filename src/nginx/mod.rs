//! nginx glue: the only module with FFI and `unsafe`.
//!
//! - `stream`: the `rtmp_live` stream content handler (RTMP ingest) and its directives.
//! - `http`: the `hls_live` location handler (playlists and media).
//! - `respond`: what every content handler answers with (errors, text, files, the media
//!   playlist and its render cache).
//! - `wait`: held requests (blocking playlist reloads, the preload-hinted part).
//! - `zone`: the shared-memory zone holding every stream's index: its tag, directive,
//!   `init` and lookups.
//! - `sweeper`: a per-worker timer that retires ended streams and their files.
//! - `conf_check`: a configuration check that names a zone used but never defined.
//! - `edge`: the `hls_live_edge` handler (a vid edge: coalesced, woken origin fetches).
//! - `whip`: the `hls_live_whip` handler (WebRTC ingest: signalling, per-worker UDP).
#![allow(clippy::missing_safety_doc)]

/// Defines the exported module `$name` of `$type_` from the calling file's `CTX` and
/// `COMMANDS`, with any of `ngx_module_t`'s hooks (`init_module: Some(f)`, …).
macro_rules! nginx_module {
    ($name:ident, $type_:expr $(, $hook:ident: $value:expr)* $(,)?) => {
        #[used]
        #[no_mangle]
        #[allow(non_upper_case_globals)]
        pub static mut $name: nginx_sys::ngx_module_t = nginx_sys::ngx_module_t {
            $($hook: $value,)*
            ..$crate::nginx::module(
                (&raw const CTX).cast(),
                // SAFETY: the directive table is only read by nginx (through this
                // pointer), never through a Rust reference.
                unsafe { &raw mut COMMANDS[0] },
                $type_,
            )
        };
    };
}

/// `http_location_merge!(Marker, module, LocConf)`: `Marker` is the module for ngx's
/// [`ngx::http::HttpModule`], whose `merge_loc_conf` runs `LocConf`'s
/// [`ngx::http::Merge`] (for modules whose merge needs nothing but the two levels).
macro_rules! http_location_merge {
    ($marker:ident, $module:ident, $conf:ty) => {
        struct $marker;

        impl ngx::http::HttpModule for $marker {
            fn module() -> &'static nginx_sys::ngx_module_t {
                // SAFETY: the module's own static, written only by nginx while it loads.
                unsafe { &*::core::ptr::addr_of!($module) }
            }
        }

        // SAFETY: `$conf` is what this module's `create_loc_conf` allocates.
        unsafe impl ngx::http::HttpModuleLocationConf for $marker {
            type LocationConf = $conf;
        }
    };
}

mod auth;
mod callback;
mod catalog;
mod conf_check;
mod edge;
mod http;
mod metrics;
mod recordings;
mod respond;
mod stream;
mod sweeper;
mod timer;
mod vars;
mod wait;
mod whip;
mod zone;

use core::ffi::c_char;

use nginx_sys::{ngx_msec_t, ngx_uint_t};

pub use edge::ngx_http_vid_edge_module;
pub use http::ngx_http_vid_module;
pub use stream::ngx_stream_vid_module;
pub use whip::ngx_http_vid_whip_module;

// The module table nginx reads from a dynamic module: our two modules, in order.
#[no_mangle]
#[allow(non_upper_case_globals)]
pub static mut ngx_modules: [*const nginx_sys::ngx_module_t; 6] = [
    &raw const ngx_stream_vid_module,
    &raw const ngx_http_vid_module,
    &raw const conf_check::ngx_vid_core_module,
    &raw const ngx_http_vid_edge_module,
    &raw const ngx_http_vid_whip_module,
    core::ptr::null(),
];

#[no_mangle]
#[allow(non_upper_case_globals)]
pub static mut ngx_module_names: [*const c_char; 6] = [
    c"ngx_stream_vid_module".as_ptr(),
    c"ngx_http_vid_module".as_ptr(),
    c"ngx_vid_core_module".as_ptr(),
    c"ngx_http_vid_edge_module".as_ptr(),
    c"ngx_http_vid_whip_module".as_ptr(),
    core::ptr::null(),
];

#[no_mangle]
#[allow(non_upper_case_globals)]
pub static mut ngx_module_order: [*const c_char; 1] = [core::ptr::null()];

pub(crate) use nginx_sys::NGX_CONF_UNSET;
pub(crate) use ngx::core::{NGX_CONF_ERROR, NGX_CONF_OK};
pub(crate) const NGX_CONF_UNSET_UINT: ngx_uint_t = ngx_uint_t::MAX;
pub(crate) const NGX_CONF_UNSET_MSEC: ngx_msec_t = ngx_msec_t::MAX;
pub(crate) const NGX_CONF_UNSET_SIZE: usize = usize::MAX;

/// A module of `type_` with its context and directive table; the rest (nginx's
/// `NGX_MODULE_V1` header, no hooks) as `ngx_module_t::default`.
pub(crate) const fn module(
    ctx: *const core::ffi::c_void,
    commands: *mut nginx_sys::ngx_command_t,
    type_: u32,
) -> nginx_sys::ngx_module_t {
    nginx_sys::ngx_module_t {
        ctx: ctx.cast_mut(),
        commands,
        type_: type_ as ngx_uint_t,
        ..nginx_sys::ngx_module_t::default()
    }
}

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

/// Merge one setting with the enclosing level's: `v` keeps its own value, else takes
/// `prev`'s, else `default` (nginx's `ngx_conf_merge_*_value`).
pub(crate) fn merge<T: PartialEq + Copy>(v: &mut T, prev: T, unset: T, default: T) {
    if *v == unset {
        *v = if prev == unset { default } else { prev };
    }
}

/// The core module's configuration of the http location being parsed.
pub(crate) unsafe fn core_loc_conf(
    cf: *mut nginx_sys::ngx_conf_t,
) -> *mut nginx_sys::ngx_http_core_loc_conf_t {
    // SAFETY (caller): `cf` is parsing a directive of an http location, so its context is
    // an http conf context with the core module's location configuration.
    let ctx = (*cf).ctx as *mut nginx_sys::ngx_http_conf_ctx_t;
    *(*ctx)
        .loc_conf
        .add(nginx_sys::ngx_http_core_module.ctx_index)
        as *mut nginx_sys::ngx_http_core_loc_conf_t
}

/// Make `handler` the content handler of the http location being parsed.
pub(crate) unsafe fn set_content_handler(
    cf: *mut nginx_sys::ngx_conf_t,
    handler: unsafe extern "C" fn(*mut nginx_sys::ngx_http_request_t) -> nginx_sys::ngx_int_t,
) {
    (*core_loc_conf(cf)).handler = Some(handler);
}

/// nginx's log level for a line the media core reports.
pub(crate) fn log_level(level: crate::ingest::LogLevel) -> ngx_uint_t {
    use crate::ingest::LogLevel;
    (match level {
        LogLevel::Error => nginx_sys::NGX_LOG_ERR,
        LogLevel::Warn => nginx_sys::NGX_LOG_WARN,
        LogLevel::Notice => nginx_sys::NGX_LOG_NOTICE,
        LogLevel::Info => nginx_sys::NGX_LOG_INFO,
    }) as ngx_uint_t
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
