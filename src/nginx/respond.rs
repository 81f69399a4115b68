//! Responses of vid's content handlers: the start they share ([`serve`]), errors with a
//! cache lifetime, text bodies, files sent with sendfile, and the media playlist with its
//! per-worker render cache.
//!
//! Used by the `hls_live` handler (`super::http`), held requests when they are released
//! (`super::wait`), and the other handlers (metrics, recordings, edge).

use core::ptr;
use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::os::fd::FromRawFd;
use std::os::unix::fs::MetadataExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;

use nginx_sys::{
    ngx_buf_t, ngx_chain_t, ngx_connection_tcp_nopush_e_NGX_TCP_NOPUSH_DISABLED,
    ngx_create_temp_buf, ngx_file_t, ngx_http_core_loc_conf_t, ngx_http_core_module,
    ngx_http_discard_request_body, ngx_http_output_filter, ngx_http_request_t,
    ngx_http_send_header, ngx_http_set_disable_symlinks, ngx_int_t, ngx_open_cached_file,
    ngx_open_file_info_t, ngx_pcalloc, ngx_pnalloc, ngx_str_t, ngx_tcp_nodelay, ngx_uint_t,
    NGX_ERROR, NGX_HTTP_GET, NGX_HTTP_HEAD, NGX_HTTP_INTERNAL_SERVER_ERROR, NGX_HTTP_NOT_ALLOWED,
    NGX_HTTP_NOT_FOUND, NGX_HTTP_OK, NGX_LOG_ERR, NGX_OK,
};
use ngx::ngx_log_error;

const ENOENT: i32 = 2;
const ENOTDIR: i32 = 20;
use super::zone::Zone;
use crate::playlist::{self, Format, MediaRequest, RenditionReport};
use crate::store::index::StreamIndex;

/// Where the other renditions of `key`'s group stand.
pub(super) fn rendition_reports(zone: Zone, siblings: &[String]) -> Vec<RenditionReport> {
    siblings
        .iter()
        .filter_map(|k| {
            zone.with_stream(k, |i| RenditionReport::of(i, format!("../{k}/index.m3u8")))
                .flatten()
        })
        .collect()
}

/// The start every vid content handler shares: GET and HEAD only (405 otherwise), the
/// request body discarded, then `f`. A panic in `f` is logged (`what: internal error`)
/// and answered with 500; the worker goes on.
pub(super) unsafe fn serve(
    r: *mut ngx_http_request_t,
    what: &str,
    f: impl FnOnce() -> ngx_int_t,
) -> ngx_int_t {
    if (*r).method & (NGX_HTTP_GET | NGX_HTTP_HEAD) as ngx_uint_t == 0 {
        return NGX_HTTP_NOT_ALLOWED as ngx_int_t;
    }
    let rc = ngx_http_discard_request_body(r);
    if rc != NGX_OK as ngx_int_t {
        return rc;
    }
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(rc) => rc,
        Err(_) => {
            ngx_log_error!(
                NGX_LOG_ERR,
                (*(*r).connection).log,
                "{}: internal error",
                what
            );
            NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t
        }
    }
}

/// Render and send the media playlist of `idx` for `req`.
pub(super) unsafe fn send_media_playlist(
    r: *mut ngx_http_request_t,
    idx: &StreamIndex,
    req: &MediaRequest,
    low_latency: bool,
    format: Format,
    reports: &[RenditionReport],
) -> ngx_int_t {
    let blocking = req.msn.is_some() && idx.state() == crate::store::StreamState::Live;
    let max_age = playlist::max_age(idx, blocking);
    let key = RenderKey::new(idx.key(), low_latency, format, req.skip);
    let live = idx.state() == crate::store::StreamState::Live;
    let body = RENDERED.with(|c| {
        let mut c = c.borrow_mut();
        let mut h = std::collections::hash_map::DefaultHasher::new();
        if live {
            reports.hash(&mut h);
        }
        let version = (
            idx.claimed_ms(),
            idx.publish_id(),
            idx.generation(),
            h.finish(),
        );
        if let Some((v, body)) = c.get(&key) {
            if *v == version {
                super::metrics::render_cache(true);
                return body.clone();
            }
        }
        super::metrics::render_cache(false);
        let opts = playlist::RenderOptions {
            low_latency,
            format,
        };
        let mut text = playlist::media_playlist(idx, req, &opts);
        if live {
            text.push_str(&playlist::rendition_reports(reports));
        }
        let body: Rc<[u8]> = text.into_bytes().into();
        if c.len() >= MAX_RENDERED {
            c.clear();
        }
        c.insert(key, (version, body.clone()));
        body
    });
    send_text(r, playlist::PLAYLIST_MIME, &body, max_age)
}

/// What a rendered media playlist depends on besides the index.
#[derive(Clone, PartialEq, Eq, Hash)]
struct RenderKey {
    key: String,
    low_latency: bool,
    ts: bool,
    skip: bool,
}

impl RenderKey {
    fn new(key: &str, low_latency: bool, format: Format, skip: playlist::Skip) -> Self {
        RenderKey {
            key: key.to_owned(),
            low_latency,
            ts: format == Format::Ts,
            skip: skip != playlist::Skip::No,
        }
    }
}

/// Rendered playlists kept per worker (one per stream and variant of the request).
const MAX_RENDERED: usize = 4096;

/// What a rendering was made from: claim time, publish id, index generation, rendition
/// reports.
type RenderedFrom = (i64, u64, u64, u64);
/// A playlist's last rendering, by its key.
type Renderings = HashMap<RenderKey, (RenderedFrom, Rc<[u8]>)>;

thread_local! {
    /// The last rendering of each playlist, by what it was made from: every request
    /// between two index changes is answered with the same bytes, rendered once.
    static RENDERED: RefCell<Renderings> = RefCell::new(HashMap::new());
}

/// Every byte of an LL-HLS response leaves as soon as it is written.
///
/// With `sendfile on; tcp_nopush on;` nginx corks the socket around header + file and, on
/// Linux, uncorks it afterwards without setting TCP_NODELAY, so the last short TCP segment
/// of each body waits for the client's delayed ACK (~40 ms) once a keep-alive connection
/// has left quick-ACK mode. A player fetching a part every PART-TARGET on one connection
/// would pay that on most parts. vid's locations therefore never cork, and set
/// TCP_NODELAY up front (unless `tcp_nodelay off`), as nginx itself does for keep-alive
/// connections that never corked.
pub(super) unsafe fn send_at_once(r: *mut ngx_http_request_t) {
    let c = (*r).connection;
    // SAFETY: `r` is a live request, so its connection and core location conf are valid.
    let clcf =
        *(*r).loc_conf.add(ngx_http_core_module.ctx_index) as *const ngx_http_core_loc_conf_t;
    (*c).set_tcp_nopush(ngx_connection_tcp_nopush_e_NGX_TCP_NOPUSH_DISABLED);
    if (*clcf).tcp_nodelay != 0 {
        // ngx_tcp_nodelay is a no-op for sockets that have it or cannot (unix sockets);
        // a failure only means the old behaviour.
        let _ = ngx_tcp_nodelay(c);
    }
}

/// An error status whose response may be cached for `max_age` seconds.
pub(super) unsafe fn error(r: *mut ngx_http_request_t, status: u32, max_age: u32) -> ngx_int_t {
    set_cache_control(r, max_age);
    status as ngx_int_t
}

unsafe fn set_cache_control(r: *mut ngx_http_request_t, max_age: u32) {
    let req = ngx::http::Request::from_ngx_http_request(r);
    let _ = req.add_header_out("Cache-Control", &format!("max-age={max_age}"));
}

pub(super) unsafe fn send_text(
    r: *mut ngx_http_request_t,
    content_type: &'static str,
    body: &[u8],
    max_age: u32,
) -> ngx_int_t {
    send_text_status(r, NGX_HTTP_OK, content_type, body, max_age)
}

/// [`send_text`] with another status than 200 (e.g. 201 with a body).
pub(super) unsafe fn send_text_status(
    r: *mut ngx_http_request_t,
    status: u32,
    content_type: &'static str,
    body: &[u8],
    max_age: u32,
) -> ngx_int_t {
    // The body's buffer first, as nginx's own handlers do: a failed allocation is a 500,
    // not a response cut short after its header.
    let b = ngx_create_temp_buf((*r).pool, body.len().max(1));
    if b.is_null() {
        return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
    }
    ptr::copy_nonoverlapping(body.as_ptr(), (*b).last, body.len());
    (*b).last = (*b).last.add(body.len());
    (*r).headers_out.status = status as ngx_uint_t;
    (*r).headers_out.content_length_n = body.len() as i64;
    set_content_type(r, content_type);
    set_cache_control(r, max_age);
    let rc = ngx_http_send_header(r);
    if rc == NGX_ERROR as ngx_int_t || rc > NGX_OK as ngx_int_t || (*r).header_only() != 0 {
        return rc;
    }
    finish_buf(r, b)
}

unsafe fn finish_buf(r: *mut ngx_http_request_t, b: *mut ngx_buf_t) -> ngx_int_t {
    (*b).set_last_buf(if r == (*r).main { 1 } else { 0 });
    (*b).set_last_in_chain(1);
    let mut out = ngx_chain_t {
        buf: b,
        next: ptr::null_mut(),
    };
    ngx_http_output_filter(r, &mut out)
}

unsafe fn set_content_type(r: *mut ngx_http_request_t, ct: &'static str) {
    (*r).headers_out.content_type = ngx_str_t {
        len: ct.len(),
        data: ct.as_ptr().cast_mut(),
    };
    (*r).headers_out.content_type_len = ct.len();
    (*r).headers_out.content_type_lowcase = ptr::null_mut();
}

/// Send a file, or the byte range `(offset, length)` of it, with sendfile. The file is
/// opened through nginx's open file cache, so `open_file_cache` in the location applies
/// (descriptors kept open between requests); without it the request's pool opens and
/// closes the file.
pub(super) unsafe fn send_file(
    r: *mut ngx_http_request_t,
    path: &str,
    content_type: &'static str,
    range: Option<(u64, u64)>,
) -> ngx_int_t {
    let log = (*(*r).connection).log;
    let pool = (*r).pool;
    // The buffers first, as nginx's static handler does.
    let b = ngx_pcalloc(pool, core::mem::size_of::<ngx_buf_t>()) as *mut ngx_buf_t;
    let f = ngx_pcalloc(pool, core::mem::size_of::<ngx_file_t>()) as *mut ngx_file_t;
    let name = ngx_pnalloc(pool, path.len() + 1) as *mut u8;
    if b.is_null() || f.is_null() || name.is_null() {
        return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
    }
    ptr::copy_nonoverlapping(path.as_ptr(), name, path.len());
    *name.add(path.len()) = 0;
    let mut npath = ngx_str_t {
        len: path.len(),
        data: name,
    };
    let clcf = *(*r).loc_conf.add(ngx_http_core_module.ctx_index) as *mut ngx_http_core_loc_conf_t;
    let mut of: ngx_open_file_info_t = core::mem::zeroed();
    of.read_ahead = (*clcf).read_ahead;
    of.directio = (*clcf).directio;
    of.valid = (*clcf).open_file_cache_valid;
    of.min_uses = (*clcf).open_file_cache_min_uses;
    of.set_errors((*clcf).open_file_cache_errors as _);
    of.set_events((*clcf).open_file_cache_events as _);
    if ngx_http_set_disable_symlinks(r, clcf, &mut npath, &mut of) != NGX_OK as ngx_int_t {
        return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
    }
    if ngx_open_cached_file((*clcf).open_file_cache, &mut npath, &mut of, pool)
        != NGX_OK as ngx_int_t
    {
        if of.err == ENOENT || of.err == ENOTDIR {
            return NGX_HTTP_NOT_FOUND as ngx_int_t;
        }
        ngx_log_error!(
            NGX_LOG_ERR,
            log,
            "hls_live: open \"{}\" failed: {}",
            path,
            std::io::Error::from_raw_os_error(of.err)
        );
        return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
    }
    // Without open_file_cache, `of` was just filled by fstat. With it, the size comes
    // from the descriptor, not from the cache: a segment's file grows part by part, and a
    // cached entry may have been taken while it was being built.
    let (file_len, mtime) = if (*clcf).open_file_cache.is_null() {
        (of.size as u64, of.mtime)
    } else {
        // SAFETY: `of.fd` is open (the cache closes it); ManuallyDrop keeps this borrowed
        // File from closing it.
        let file = core::mem::ManuallyDrop::new(std::fs::File::from_raw_fd(of.fd));
        match file.metadata() {
            Ok(m) => (m.len(), m.mtime()),
            Err(_) => return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t,
        }
    };
    let fd = of.fd;

    let (start, size) = match range {
        Some((offset, len)) => {
            if offset.saturating_add(len) > file_len {
                ngx_log_error!(
                    NGX_LOG_ERR,
                    log,
                    "hls_live: \"{}\" is shorter than its index says",
                    path
                );
                return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
            }
            (offset as i64, len as i64)
        }
        None => {
            // Only whole files have a stable modification time.
            (*r).headers_out.last_modified_time = mtime;
            (0, file_len as i64)
        }
    };
    (*r).headers_out.status = NGX_HTTP_OK as ngx_uint_t;
    (*r).headers_out.content_length_n = size;
    set_content_type(r, content_type);
    set_cache_control(r, 86_400);
    (*r).set_allow_ranges(1);
    (*f).fd = fd;
    (*f).name = npath;
    (*f).log = log;
    (*f).set_directio(of.is_directio());
    let rc = ngx_http_send_header(r);
    if rc == NGX_ERROR as ngx_int_t || rc > NGX_OK as ngx_int_t || (*r).header_only() != 0 {
        return rc;
    }
    (*b).file = f;
    (*b).file_pos = start;
    (*b).file_last = start + size;
    (*b).set_in_file(if size > 0 { 1 } else { 0 });
    finish_buf(r, b)
}
