//! `hls_live_recordings PATH;` — the JSON list of recordings (filter by key and time,
//! paging), read from the recordings folder by `crate::record::listing`.
//!
//! The list is answered from the folder, not from the SQL catalog: a query to a database
//! would block the event loop (or need a round trip through a thread), while the folder
//! holds the same facts (names carry key and start time, `info.json` the rest) and a
//! request reads directory entries plus one small file per listed recording, the
//! work of a directory index. It is also right for a recording whose row is still
//! spooled while the database is down.

use core::ffi::{c_char, c_void};
use std::path::PathBuf;

use nginx_sys::{
    ngx_command_t, ngx_conf_full_name, ngx_conf_t, ngx_http_request_t, ngx_int_t, ngx_str_t,
    NGX_HTTP_BAD_REQUEST, NGX_HTTP_NOT_FOUND, NGX_LOG_INFO, NGX_OK,
};
use ngx::ngx_log_error;

use super::{NGX_CONF_ERROR, NGX_CONF_OK};
use crate::record::listing;

pub unsafe extern "C" fn set_hls_live_recordings(
    cf: *mut ngx_conf_t,
    cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    set_path_and_handler(cf, cmd, conf, handler)
}

/// `hls_live_dvr PATH;` — `…/KEY/index.m3u8` is the DVR playlist of KEY's newest
/// recording (`crate::record::playlist::render_dvr`, delta updates with `_HLS_skip`);
/// its media are served from the recording's own URLs.
pub unsafe extern "C" fn set_hls_live_dvr(
    cf: *mut ngx_conf_t,
    cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    set_path_and_handler(cf, cmd, conf, dvr_handler)
}

unsafe fn set_path_and_handler(
    cf: *mut ngx_conf_t,
    cmd: *mut ngx_command_t,
    conf: *mut c_void,
    h: unsafe extern "C" fn(*mut ngx_http_request_t) -> ngx_int_t,
) -> *mut c_char {
    let field = (conf as *mut u8).add((*cmd).offset) as *mut ngx_str_t;
    if !(*field).data.is_null() {
        return c"is duplicate".as_ptr().cast_mut();
    }
    let args = (*(*cf).args).as_slice_mut::<ngx_str_t>();
    *field = args[1];
    if ngx_conf_full_name((*cf).cycle, field, 0) != NGX_OK as ngx_int_t {
        return NGX_CONF_ERROR;
    }
    super::set_content_handler(cf, h);
    NGX_CONF_OK
}

unsafe extern "C" fn dvr_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    super::respond::serve(r, "hls_live_dvr", || {
        let Some((key, file)) = crate::store::names::split_uri((*r).uri.as_bytes()) else {
            return NGX_HTTP_NOT_FOUND as ngx_int_t;
        };
        if file != "index.m3u8" {
            return NGX_HTTP_NOT_FOUND as ngx_int_t;
        }
        let args = String::from_utf8_lossy((*r).args.as_bytes()).into_owned();
        let skip = args
            .split('&')
            .any(|a| a == "_HLS_skip=YES" || a == "_HLS_skip=v2");
        let root = PathBuf::from(
            String::from_utf8_lossy(super::http::dvr_path(r).as_bytes()).into_owned(),
        );
        match listing::dvr_playlist(&root, key, skip) {
            Some(body) => {
                super::respond::send_text(r, crate::playlist::PLAYLIST_MIME, body.as_bytes(), 1)
            }
            None => NGX_HTTP_NOT_FOUND as ngx_int_t,
        }
    })
}

unsafe extern "C" fn handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    super::respond::serve(r, "hls_live_recordings", || {
        let args = String::from_utf8_lossy((*r).args.as_bytes()).into_owned();
        let q = match listing::parse_query(&args) {
            Ok(q) => q,
            Err(e) => {
                ngx_log_error!(
                    NGX_LOG_INFO,
                    (*(*r).connection).log,
                    "hls_live_recordings: bad query: {}",
                    e
                );
                return NGX_HTTP_BAD_REQUEST as ngx_int_t;
            }
        };
        let root = PathBuf::from(
            String::from_utf8_lossy(super::http::recordings_path(r).as_bytes()).into_owned(),
        );
        let body = listing::list(&root, &q);
        super::respond::send_text(r, crate::playlist::JSON_MIME, body.as_bytes(), 1)
    })
}
