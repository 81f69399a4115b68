//! Glue for access control (`src/auth`): the secret directives of both sides and the
//! playback-token check of `hls_live` locations.
//!
//! - `rtmp_live_secret SECRET;` (stream): publish keys must be signed.
//! - `hls_live_token_secret SECRET;` (http location): requests need a playback token;
//!   `hls_live_token_bind_addr on;` binds tokens to the client address.
//!
//! Each secret directive may appear twice (rotation: both are accepted).
//!
//! Limits: `rtmp_live_max_bitrate RATE;` (stream) closes a publisher whose sustained
//! ingest bit rate is above RATE.

use core::ffi::{c_char, c_void};

use nginx_sys::{
    ngx_array_create, ngx_array_push, ngx_array_t, ngx_command_t, ngx_conf_t, ngx_http_request_t,
    ngx_int_t, ngx_str_t, NGX_HTTP_FORBIDDEN, NGX_LOG_EMERG, NGX_LOG_INFO,
};
use ngx::{ngx_conf_log_error, ngx_log_error};

use super::{NGX_CONF_ERROR, NGX_CONF_OK};
use crate::auth::limits::{self, RateCap};
use crate::auth::token;

/// At most this many secrets per directive: the current one and the one being retired.
const MAX_SECRETS: usize = 2;

/// Wall-clock Unix seconds from nginx's cached time (expiry of signed keys and tokens).
pub(crate) fn unix_s() -> u64 {
    nginx_sys::ngx_timeofday().sec.max(0) as u64
}

/// Set handler of a secret directive: appends to the `*mut ngx_array_t` of `ngx_str_t`
/// at `cmd.offset` in the configuration.
pub(crate) unsafe extern "C" fn set_secret(
    cf: *mut ngx_conf_t,
    cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    let field = (conf as *mut u8).add((*cmd).offset) as *mut *mut ngx_array_t;
    if (*field).is_null() {
        *field = ngx_array_create((*cf).pool, MAX_SECRETS, core::mem::size_of::<ngx_str_t>());
        if (*field).is_null() {
            return NGX_CONF_ERROR;
        }
    }
    let arr = *field;
    let args = (*(*cf).args).as_slice::<ngx_str_t>();
    let secret = args[1];
    if secret.len < 16 {
        ngx_conf_log_error!(
            NGX_LOG_EMERG,
            cf,
            "\"{}\" needs a secret of at least 16 characters",
            (*cmd).name
        );
        return NGX_CONF_ERROR;
    }
    if (*arr).nelts >= MAX_SECRETS {
        ngx_conf_log_error!(
            NGX_LOG_EMERG,
            cf,
            "\"{}\" is set more than {} times (one current secret and one being retired)",
            (*cmd).name,
            MAX_SECRETS
        );
        return NGX_CONF_ERROR;
    }
    let slot = ngx_array_push(arr) as *mut ngx_str_t;
    if slot.is_null() {
        return NGX_CONF_ERROR;
    }
    *slot = secret;
    NGX_CONF_OK
}

/// The secrets of a directive's array (empty when the directive is not set).
pub(crate) unsafe fn secrets(arr: *const ngx_array_t) -> Vec<Vec<u8>> {
    if arr.is_null() {
        return Vec::new();
    }
    (*arr)
        .as_slice::<ngx_str_t>()
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect()
}

/// The playback-token check of an `hls_live` location, run before anything else.
/// `None`: go on. `Some(rc)`: the request is refused (403, not cacheable).
pub(crate) unsafe fn check_token(
    r: *mut ngx_http_request_t,
    arr: *const ngx_array_t,
    bind_addr: bool,
    key: &str,
    group_base: Option<&str>,
) -> Option<ngx_int_t> {
    if arr.is_null() || (*arr).nelts == 0 {
        return None;
    }
    let secrets: Vec<&[u8]> = (*arr)
        .as_slice::<ngx_str_t>()
        .iter()
        .map(|s| s.as_bytes())
        .collect();
    let uri = String::from_utf8_lossy((*r).uri.as_bytes());
    let c = (*r).connection;
    let addr_text = String::from_utf8_lossy((*c).addr_text.as_bytes());
    let addr = bind_addr.then_some(addr_text.as_ref());
    let now = unix_s();
    let mut res = token::verify(&uri, key, addr, &secrets, now);
    if let (Err(token::TokenError::BadSignature), Some(base)) = (res, group_base) {
        res = token::verify(&uri, base, addr, &secrets, now);
    }
    match res {
        Ok(()) => None,
        Err(e) => {
            ngx_log_error!(
                NGX_LOG_INFO,
                (*c).log,
                "hls_live: 403 for \"{}\": {}",
                key,
                e
            );
            // Never cached: an edge must not serve this 403 to a viewer with a valid token.
            let req = ngx::http::Request::from_ngx_http_request(r);
            let _ = req.add_header_out("Cache-Control", "no-store");
            Some(NGX_HTTP_FORBIDDEN as ngx_int_t)
        }
    }
}

/// Set handler of `rtmp_live_max_bitrate RATE;`: bits per second (`k`, `m` suffixes)
/// into the `u64` at `cmd.offset` (`u64::MAX`: unset).
pub(crate) unsafe extern "C" fn set_bitrate(
    cf: *mut ngx_conf_t,
    cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    let field = (conf as *mut u8).add((*cmd).offset) as *mut u64;
    if *field != u64::MAX {
        return c"is duplicate".as_ptr().cast_mut();
    }
    let args = (*(*cf).args).as_slice::<ngx_str_t>();
    let v = core::str::from_utf8(args[1].as_bytes())
        .ok()
        .and_then(limits::parse_bitrate);
    match v {
        Some(v) => {
            *field = v;
            NGX_CONF_OK
        }
        None => {
            ngx_conf_log_error!(
                NGX_LOG_EMERG,
                cf,
                "invalid bit rate \"{}\" in \"{}\" (bits per second, e.g. 8m or 2500k)",
                args[1],
                (*cmd).name
            );
            NGX_CONF_ERROR
        }
    }
}

/// The bit rate cap of a new session (`None`: no cap).
pub(crate) fn rate_cap(bits_per_s: u64) -> Option<RateCap> {
    (bits_per_s > 0 && bits_per_s != u64::MAX).then(|| RateCap::new(bits_per_s, super::mono_ms()))
}

/// Counts `n` bytes read from a publisher; false (with a log line) once it is above
/// `rtmp_live_max_bitrate`: the caller closes the connection, which ends the stream and
/// keeps what was written.
pub(crate) unsafe fn count_ingest(
    c: *mut nginx_sys::ngx_connection_t,
    cap: &mut Option<RateCap>,
    n: usize,
    app: &str,
    key: Option<&str>,
) -> bool {
    let Some(cap) = cap.as_mut() else {
        return true;
    };
    if cap.add(n, super::mono_ms()) {
        return true;
    }
    ngx_log_error!(
        nginx_sys::NGX_LOG_WARN,
        (*c).log,
        "rtmp: publish \"{}/{}\" is above rtmp_live_max_bitrate ({} kbit/s sustained), closing",
        app,
        key.unwrap_or("-"),
        cap.bits_per_s() / 1000
    );
    false
}
