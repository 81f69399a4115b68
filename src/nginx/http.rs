//! `hls_live on;` — serves a stream tree from a vid zone.
//!
//! URIs end in `{key}/{file}`: `index.m3u8` (media playlist, rendered from the shared
//! index on every request), `master.m3u8` (multivariant playlist), `init{v}.mp4`,
//! `{msn}.m4s`, `{msn}.{part}.m4s` and `{msn}.ts` (sent from disk with sendfile).
//!
//! `hls_live_format ts;` makes `index.m3u8` the MPEG-TS playlist (404 for streams
//! without a TS rendition, e.g. HEVC) and drops the LL-HLS features there.

use core::ffi::{c_char, c_void};
use core::ptr;
use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::os::fd::IntoRawFd;
use std::os::unix::fs::MetadataExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;

use nginx_sys::{
    ngx_array_create, ngx_array_push, ngx_array_t, ngx_buf_t, ngx_chain_t, ngx_command_t,
    ngx_conf_enum_t, ngx_conf_set_enum_slot, ngx_conf_set_flag_slot, ngx_conf_set_str_slot,
    ngx_conf_t, ngx_connection_tcp_nopush_e_NGX_TCP_NOPUSH_DISABLED, ngx_create_temp_buf,
    ngx_file_t, ngx_flag_t, ngx_http_conf_ctx_t, ngx_http_core_loc_conf_t, ngx_http_core_module,
    ngx_http_discard_request_body, ngx_http_module_t, ngx_http_output_filter, ngx_http_request_t,
    ngx_http_send_header, ngx_int_t, ngx_module_t, ngx_pcalloc, ngx_pnalloc, ngx_pool_cleanup_add,
    ngx_pool_cleanup_file, ngx_pool_cleanup_file_t, ngx_shm_zone_t, ngx_str_t, ngx_tcp_nodelay,
    ngx_uint_t, NGX_CONF_1MORE, NGX_CONF_FLAG, NGX_CONF_NOARGS, NGX_CONF_TAKE1, NGX_ERROR,
    NGX_HTTP_BAD_REQUEST, NGX_HTTP_GET, NGX_HTTP_HEAD, NGX_HTTP_INTERNAL_SERVER_ERROR,
    NGX_HTTP_LOC_CONF, NGX_HTTP_LOC_CONF_OFFSET, NGX_HTTP_MAIN_CONF, NGX_HTTP_MODULE,
    NGX_HTTP_NOT_ALLOWED, NGX_HTTP_NOT_FOUND, NGX_HTTP_OK, NGX_HTTP_SRV_CONF, NGX_LOG_ERR,
    NGX_LOG_INFO, NGX_OK,
};
use ngx::ngx_log_error;

use super::stream::zone_add;
use super::wait::{self, Want};
use super::zone::Zone;
use super::{
    command, conf_ok, mono_ms, now_ms, NGX_CONF_ERROR, NGX_CONF_UNSET, NGX_CONF_UNSET_UINT,
};
use crate::playlist::{self, Blocking, Format, MediaRequest, RenditionReport};
use crate::store::index::StreamIndex;
use crate::store::names::{self, MediaFile};

#[repr(C)]
pub struct LocConf {
    enable: ngx_flag_t,
    streams: ngx_flag_t,
    low_latency: ngx_flag_t,
    /// `hls_live_format`: [`FORMAT_FMP4`] or [`FORMAT_TS`].
    format: ngx_uint_t,
    zone_name: ngx_str_t,
    zone: *mut ngx_shm_zone_t,
    /// `hls_live_variants`: key suffixes of an ABR group (ngx_str_t elements), or null.
    variants: *mut ngx_array_t,
    /// `hls_live_token_secret`: ngx_str_t secrets of playback tokens, or null (off).
    token_secrets: *mut ngx_array_t,
    /// `hls_live_token_bind_addr`: tokens are bound to the client address.
    token_bind_addr: ngx_flag_t,
    /// `hls_live_max_held`: held requests per worker before 503.
    max_held: ngx_uint_t,
    /// `hls_live_recordings PATH`: the recordings folder listed (see `super::recordings`).
    recordings: ngx_str_t,
    /// `hls_live_dvr PATH`: DVR playlists from the recordings folder.
    dvr: ngx_str_t,
}

/// The folder of `hls_live_recordings` in the request's location.
pub(super) unsafe fn recordings_path(r: *mut ngx_http_request_t) -> ngx_str_t {
    (*(*(*r).loc_conf.add(ngx_http_vid_module.ctx_index) as *const LocConf)).recordings
}

/// The folder of `hls_live_dvr` in the request's location.
pub(super) unsafe fn dvr_path(r: *mut ngx_http_request_t) -> ngx_str_t {
    (*(*(*r).loc_conf.add(ngx_http_vid_module.ctx_index) as *const LocConf)).dvr
}

const FORMAT_FMP4: ngx_uint_t = 0;
const FORMAT_TS: ngx_uint_t = 1;

/// The values of `hls_live_format`.
static mut FORMATS: [ngx_conf_enum_t; 3] = [
    ngx_conf_enum_t {
        name: ngx::ngx_string!("fmp4"),
        value: FORMAT_FMP4,
    },
    ngx_conf_enum_t {
        name: ngx::ngx_string!("ts"),
        value: FORMAT_TS,
    },
    ngx_conf_enum_t {
        name: ngx_str_t {
            len: 0,
            data: ptr::null_mut(),
        },
        value: 0,
    },
];

static mut COMMANDS: [ngx_command_t; 13] = [
    command(
        ngx::ngx_string!("hls_live_max_held"),
        NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF | NGX_CONF_TAKE1,
        nginx_sys::ngx_conf_set_num_slot,
        NGX_HTTP_LOC_CONF_OFFSET,
        core::mem::offset_of!(LocConf, max_held),
    ),
    command(
        ngx::ngx_string!("hls_live_token_secret"),
        NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF | NGX_CONF_TAKE1,
        super::auth::set_secret,
        NGX_HTTP_LOC_CONF_OFFSET,
        core::mem::offset_of!(LocConf, token_secrets),
    ),
    command(
        ngx::ngx_string!("hls_live_token_bind_addr"),
        NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF | NGX_CONF_FLAG,
        ngx_conf_set_flag_slot,
        NGX_HTTP_LOC_CONF_OFFSET,
        core::mem::offset_of!(LocConf, token_bind_addr),
    ),
    command(
        ngx::ngx_string!("hls_live_metrics"),
        NGX_HTTP_LOC_CONF | NGX_CONF_NOARGS,
        super::metrics::set_hls_live_metrics,
        NGX_HTTP_LOC_CONF_OFFSET,
        0,
    ),
    command(
        ngx::ngx_string!("hls_live_variants"),
        NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF | NGX_CONF_1MORE,
        set_variants,
        NGX_HTTP_LOC_CONF_OFFSET,
        0,
    ),
    command(
        ngx::ngx_string!("hls_live_recordings"),
        NGX_HTTP_LOC_CONF | NGX_CONF_TAKE1,
        super::recordings::set_hls_live_recordings,
        NGX_HTTP_LOC_CONF_OFFSET,
        core::mem::offset_of!(LocConf, recordings),
    ),
    command(
        ngx::ngx_string!("hls_live_dvr"),
        NGX_HTTP_LOC_CONF | NGX_CONF_TAKE1,
        super::recordings::set_hls_live_dvr,
        NGX_HTTP_LOC_CONF_OFFSET,
        core::mem::offset_of!(LocConf, dvr),
    ),
    command(
        ngx::ngx_string!("hls_live_streams"),
        NGX_HTTP_LOC_CONF | NGX_CONF_NOARGS,
        set_hls_live_streams,
        NGX_HTTP_LOC_CONF_OFFSET,
        0,
    ),
    command(
        ngx::ngx_string!("hls_live"),
        NGX_HTTP_LOC_CONF | NGX_CONF_FLAG,
        set_hls_live,
        NGX_HTTP_LOC_CONF_OFFSET,
        core::mem::offset_of!(LocConf, enable),
    ),
    command(
        ngx::ngx_string!("hls_live_low_latency"),
        NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF | NGX_CONF_FLAG,
        ngx_conf_set_flag_slot,
        NGX_HTTP_LOC_CONF_OFFSET,
        core::mem::offset_of!(LocConf, low_latency),
    ),
    ngx_command_t {
        name: ngx::ngx_string!("hls_live_format"),
        type_: (NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF | NGX_CONF_TAKE1)
            as ngx_uint_t,
        set: Some(ngx_conf_set_enum_slot),
        conf: NGX_HTTP_LOC_CONF_OFFSET,
        offset: core::mem::offset_of!(LocConf, format),
        post: (&raw mut FORMATS).cast(),
    },
    command(
        ngx::ngx_string!("hls_live_zone"),
        NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF | NGX_CONF_TAKE1,
        ngx_conf_set_str_slot,
        NGX_HTTP_LOC_CONF_OFFSET,
        core::mem::offset_of!(LocConf, zone_name),
    ),
    ngx_command_t::empty(),
];

static CTX: ngx_http_module_t = ngx_http_module_t {
    preconfiguration: Some(super::vars::preconfiguration),
    postconfiguration: Some(super::vars::postconfiguration),
    create_main_conf: None,
    init_main_conf: None,
    create_srv_conf: None,
    merge_srv_conf: None,
    create_loc_conf: Some(create_loc_conf),
    merge_loc_conf: Some(merge_loc_conf),
};

#[used]
#[no_mangle]
#[allow(non_upper_case_globals)]
pub static mut ngx_http_vid_module: ngx_module_t = ngx_module_t {
    ctx: &CTX as *const _ as *mut _,
    commands: unsafe { &raw mut COMMANDS[0] },
    type_: NGX_HTTP_MODULE as ngx_uint_t,
    ..ngx_module_t::default()
};

unsafe extern "C" fn create_loc_conf(cf: *mut ngx_conf_t) -> *mut c_void {
    let conf = ngx_pcalloc((*cf).pool, core::mem::size_of::<LocConf>()) as *mut LocConf;
    if conf.is_null() {
        return ptr::null_mut();
    }
    (*conf).enable = NGX_CONF_UNSET as ngx_flag_t;
    (*conf).low_latency = NGX_CONF_UNSET as ngx_flag_t;
    (*conf).format = NGX_CONF_UNSET_UINT;
    (*conf).token_bind_addr = NGX_CONF_UNSET as ngx_flag_t;
    (*conf).max_held = NGX_CONF_UNSET_UINT;
    conf.cast()
}

unsafe extern "C" fn merge_loc_conf(
    cf: *mut ngx_conf_t,
    parent: *mut c_void,
    child: *mut c_void,
) -> *mut c_char {
    let prev = &*(parent as *const LocConf);
    let conf = &mut *(child as *mut LocConf);
    if conf.enable == NGX_CONF_UNSET as ngx_flag_t {
        conf.enable = if prev.enable == NGX_CONF_UNSET as ngx_flag_t {
            0
        } else {
            prev.enable
        };
    }
    if conf.low_latency == NGX_CONF_UNSET as ngx_flag_t {
        conf.low_latency = if prev.low_latency == NGX_CONF_UNSET as ngx_flag_t {
            1
        } else {
            prev.low_latency
        };
    }
    if conf.format == NGX_CONF_UNSET_UINT {
        conf.format = if prev.format == NGX_CONF_UNSET_UINT {
            FORMAT_FMP4
        } else {
            prev.format
        };
    }
    if conf.variants.is_null() {
        conf.variants = prev.variants;
    }
    if conf.token_secrets.is_null() {
        conf.token_secrets = prev.token_secrets;
    }
    if conf.max_held == NGX_CONF_UNSET_UINT {
        conf.max_held = if prev.max_held == NGX_CONF_UNSET_UINT {
            10_000
        } else {
            prev.max_held
        };
    }
    if conf.token_bind_addr == NGX_CONF_UNSET as ngx_flag_t {
        conf.token_bind_addr = if prev.token_bind_addr == NGX_CONF_UNSET as ngx_flag_t {
            0
        } else {
            prev.token_bind_addr
        };
    }
    if conf.zone_name.data.is_null() {
        conf.zone_name = if prev.zone_name.data.is_null() {
            ngx::ngx_string!("live")
        } else {
            prev.zone_name
        };
    }
    if conf.enable == 1 || conf.streams == 1 {
        let mut name = conf.zone_name;
        conf.zone = zone_add(cf, &mut name, 0);
        if conf.zone.is_null() {
            return NGX_CONF_ERROR;
        }
    }
    conf_ok()
}

unsafe extern "C" fn set_hls_live(
    cf: *mut ngx_conf_t,
    cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    let rv = ngx_conf_set_flag_slot(cf, cmd, conf);
    if rv != conf_ok() {
        return rv;
    }
    if (*(conf as *mut LocConf)).enable == 1 {
        let ctx = (*cf).ctx as *mut ngx_http_conf_ctx_t;
        let clcf =
            *(*ctx).loc_conf.add(ngx_http_core_module.ctx_index) as *mut ngx_http_core_loc_conf_t;
        (*clcf).handler = Some(handler);
    }
    conf_ok()
}

unsafe extern "C" fn set_variants(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    let conf = &mut *(conf as *mut LocConf);
    if !conf.variants.is_null() {
        return c"is duplicate".as_ptr().cast_mut();
    }
    let args = (*(*cf).args).as_slice::<ngx_str_t>();
    let arr = ngx_array_create((*cf).pool, args.len(), core::mem::size_of::<ngx_str_t>());
    if arr.is_null() {
        return NGX_CONF_ERROR;
    }
    for a in &args[1..] {
        let ok = core::str::from_utf8(a.as_bytes())
            .is_ok_and(|s| !s.is_empty() && s.len() < 32 && names::valid_key(s));
        if !ok {
            ngx::ngx_conf_log_error!(
                nginx_sys::NGX_LOG_EMERG,
                cf,
                "invalid variant suffix \"{}\" (allowed: [A-Za-z0-9_-]{{1,31}})",
                a
            );
            return NGX_CONF_ERROR;
        }
        let slot = ngx_array_push(arr) as *mut ngx_str_t;
        if slot.is_null() {
            return NGX_CONF_ERROR;
        }
        *slot = *a;
    }
    conf.variants = arr;
    conf_ok()
}

/// The ABR group of `key` under `hls_live_variants`: every variant key, in the order
/// the suffixes are configured. A key that ends in a suffix belongs to the group of
/// its base (`demo_720` → `demo`); a base key names its own group.
unsafe fn variant_keys(conf: &LocConf, key: &str) -> Vec<String> {
    let Some(arr) = conf.variants.as_ref() else {
        return Vec::new();
    };
    let suffixes: Vec<&str> = arr
        .as_slice::<ngx_str_t>()
        .iter()
        .filter_map(|s| core::str::from_utf8(s.as_bytes()).ok())
        .collect();
    let base = suffixes
        .iter()
        .filter(|s| key.len() > s.len() && key.ends_with(*s))
        .max_by_key(|s| s.len())
        .map_or(key, |s| &key[..key.len() - s.len()]);
    suffixes
        .iter()
        .map(|s| format!("{base}{s}"))
        .filter(|k| names::valid_key(k))
        .collect()
}

/// The base key of `key`'s ABR group under `hls_live_variants` (`demo` for `demo_720`),
/// when `key` ends in a configured suffix.
unsafe fn variant_base<'a>(conf: &LocConf, key: &'a str) -> Option<&'a str> {
    let arr = conf.variants.as_ref()?;
    arr.as_slice::<ngx_str_t>()
        .iter()
        .filter_map(|s| core::str::from_utf8(s.as_bytes()).ok())
        .filter(|s| key.len() > s.len() && key.ends_with(*s))
        .max_by_key(|s| s.len())
        .map(|s| &key[..key.len() - s.len()])
}

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

unsafe extern "C" fn set_hls_live_streams(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    let conf = &mut *(conf as *mut LocConf);
    if conf.streams == 1 {
        return c"is duplicate".as_ptr().cast_mut();
    }
    conf.streams = 1;
    let ctx = (*cf).ctx as *mut ngx_http_conf_ctx_t;
    let clcf =
        *(*ctx).loc_conf.add(ngx_http_core_module.ctx_index) as *mut ngx_http_core_loc_conf_t;
    (*clcf).handler = Some(streams_handler);
    conf_ok()
}

/// `hls_live_streams;` — the JSON list of the zone's streams.
unsafe extern "C" fn streams_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    serve(r, "hls_live_streams", || {
        let conf = &*(*(*r).loc_conf.add(ngx_http_vid_module.ctx_index) as *const LocConf);
        let list = Zone(conf.zone)
            .with_table(|t| {
                t.iter()
                    .filter_map(playlist::StreamSummary::of)
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        let body = super::metrics::status_body(list);
        send_text(r, playlist::JSON_MIME, body.as_bytes(), 1)
    })
}

thread_local! {
    /// One snapshot buffer per worker: the index is copied here under the zone lock and
    /// rendered after the lock is released.
    static SNAPSHOT: RefCell<Box<StreamIndex>> = RefCell::new(Box::new(StreamIndex::ZERO));
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

unsafe extern "C" fn handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    serve(r, "hls_live", || handle(r))
}

unsafe fn handle(r: *mut ngx_http_request_t) -> ngx_int_t {
    send_at_once(r);
    let conf = &*(*(*r).loc_conf.add(ngx_http_vid_module.ctx_index) as *const LocConf);
    let zone = Zone(conf.zone);
    let uri = (*r).uri.as_bytes();
    let Some((key, file)) = names::split_uri(uri) else {
        return NGX_HTTP_NOT_FOUND as ngx_int_t;
    };
    // Playback tokens first: a refused request reaches nothing else (no hold, no file).
    // A token for an ABR group's base key covers every rendition of the group.
    let base = variant_base(conf, key);
    if let Some(rc) =
        super::auth::check_token(r, conf.token_secrets, conf.token_bind_addr == 1, key, base)
    {
        return rc;
    }
    let Some(media) = MediaFile::parse(file) else {
        return NGX_HTTP_NOT_FOUND as ngx_int_t;
    };
    let format = if conf.format == FORMAT_TS {
        Format::Ts
    } else {
        Format::Fmp4
    };
    // The TS playlist has no LL-HLS features.
    let low_latency = conf.low_latency == 1 && format == Format::Fmp4;
    super::vars::note(r, key, &media, low_latency);
    match media {
        MediaFile::MediaPlaylist => {
            let req = if low_latency {
                match playlist::parse_query(&String::from_utf8_lossy((*r).args.as_bytes())) {
                    Ok(req) => req,
                    Err(e) => {
                        ngx_log_error!(
                            NGX_LOG_INFO,
                            (*(*r).connection).log,
                            "hls_live: bad playlist request: {}",
                            e
                        );
                        return NGX_HTTP_BAD_REQUEST as ngx_int_t;
                    }
                }
            } else {
                // Without LL-HLS nothing is advertised, so _HLS_* parameters are ignored.
                MediaRequest::default()
            };
            // Rendition reports name the other renditions of an ABR group (LL-HLS only).
            let siblings: Vec<String> = if low_latency {
                variant_keys(conf, key)
                    .into_iter()
                    .filter(|k| k != key)
                    .collect()
            } else {
                Vec::new()
            };
            SNAPSHOT.with(|snap| {
                let mut snap = snap.borrow_mut();
                if !zone.snapshot(key, &mut snap) {
                    return error(r, NGX_HTTP_NOT_FOUND, 1);
                }
                let idx: &StreamIndex = &snap;
                if format == Format::Ts && !idx.has_ts() {
                    // No TS rendition (HEVC, TS off) or no segment yet.
                    return error(r, NGX_HTTP_NOT_FOUND, playlist::max_age_error(idx, false));
                }
                match playlist::blocking_state(idx, &req) {
                    Blocking::BadRequest(why) => {
                        ngx_log_error!(
                            NGX_LOG_INFO,
                            (*(*r).connection).log,
                            "hls_live: bad playlist request: {}",
                            why
                        );
                        NGX_HTTP_BAD_REQUEST as ngx_int_t
                    }
                    Blocking::Ready if idx.target_duration_decided() => {
                        let reports = rendition_reports(zone, &siblings);
                        send_media_playlist(r, idx, &req, low_latency, format, &reports)
                    }
                    // Blocking requests wait (also for the first segment); plain ones get 404
                    // until the first segment has decided the target duration.
                    _ if req.msn.is_some() => {
                        let deadline = mono_ms() + hold_limit_ms(idx);
                        wait::hold(r, zone, key, Want::Playlist { req, siblings }, deadline)
                    }
                    _ => error(r, NGX_HTTP_NOT_FOUND, playlist::max_age_error(idx, false)),
                }
            })
        }
        MediaFile::MultivariantPlaylist => {
            // Every rendition of the group that has a playlist to offer; a stream outside
            // any group is its own single variant.
            let usable = |i: &StreamIndex| {
                i.target_duration_decided() && (format == Format::Fmp4 || i.has_ts())
            };
            let collect = |keys: &[String]| {
                let mut found: Vec<(String, Box<StreamIndex>)> = Vec::new();
                for k in keys {
                    if let Some(Some(idx)) =
                        zone.with_stream(k, |i| usable(i).then(|| Box::new(*i)))
                    {
                        found.push((k.clone(), idx));
                    }
                }
                found
            };
            let mut found = collect(&variant_keys(conf, key));
            if found.is_empty() {
                found = collect(&[key.to_owned()]);
            }
            if found.is_empty() {
                return error(r, NGX_HTTP_NOT_FOUND, 1);
            }
            let single = found.len() == 1 && found[0].0 == key;
            let uris: Vec<String> = found
                .iter()
                .map(|(k, _)| {
                    if single {
                        "index.m3u8".to_owned()
                    } else {
                        format!("../{k}/index.m3u8")
                    }
                })
                .collect();
            let variants: Vec<(&StreamIndex, &str)> = found
                .iter()
                .zip(&uris)
                .map(|((_, i), u)| (&**i, u.as_str()))
                .collect();
            let body = playlist::variants_playlist(&variants, format == Format::Ts);
            let max_age = found
                .iter()
                .map(|(_, i)| playlist::max_age(i, false))
                .min()
                .unwrap_or(1);
            send_text(r, PLAYLIST_TYPE, body.as_bytes(), max_age)
        }
        _ => {
            // Media is gated by the index: the file of the segment being built already
            // exists (its parts are appended to it) but is not a segment until listed.
            let found = zone.with_stream(key, |i| {
                let avail = match media {
                    MediaFile::Part { msn, part } => match i.part_range(msn, part) {
                        Some(range) => Avail::Range(range),
                        None if low_latency && i.next_part() == Some((msn, part)) => Avail::Hinted,
                        None => Avail::No,
                    },
                    MediaFile::Segment { msn } if i.segment(msn).is_none() => Avail::No,
                    _ => Avail::Whole,
                };
                (
                    i.dir().to_owned(),
                    i.has_video(),
                    avail,
                    hold_limit_ms(i),
                    playlist::max_age_error(i, false),
                )
            });
            let Some((dir, has_video, avail, limit, td)) = found else {
                return error(r, NGX_HTTP_NOT_FOUND, 1);
            };
            let ct: &'static str = match media {
                MediaFile::TsSegment { .. } => TS_TYPE,
                _ if has_video => "video/mp4",
                _ => "audio/mp4",
            };
            // A part lives in its segment's file.
            let path = match media {
                MediaFile::Part { msn, .. } => {
                    format!("{dir}/{}", MediaFile::Segment { msn }.name())
                }
                _ => format!("{dir}/{file}"),
            };
            let rc = match (avail, media) {
                (Avail::No, _) => NGX_HTTP_NOT_FOUND as ngx_int_t,
                // The preload-hinted part: hold the GET until the whole part exists.
                (Avail::Hinted, MediaFile::Part { msn, part }) => {
                    let want = Want::Part {
                        msn,
                        part,
                        path,
                        content_type: ct,
                    };
                    return wait::hold(r, zone, key, want, mono_ms() + limit);
                }
                (Avail::Range(range), _) => send_file(r, &path, ct, Some(range)),
                _ => send_file(r, &path, ct, None),
            };
            if rc == NGX_HTTP_NOT_FOUND as ngx_int_t {
                return error(r, NGX_HTTP_NOT_FOUND, td);
            }
            rc
        }
    }
}

/// What the index says of a requested media file.
#[derive(Clone, Copy)]
enum Avail {
    /// Not (or no longer, or not yet) a resource of the stream.
    No,
    /// The next part, announced by the preload hint.
    Hinted,
    /// A part: (offset, length) in its segment's file.
    Range((u64, u64)),
    /// A whole file (segment, init section, TS segment).
    Whole,
}

const PLAYLIST_TYPE: &str = "application/vnd.apple.mpegurl";
/// MIME type of MPEG-TS segments (also for audio-only streams, as HLS players expect).
const TS_TYPE: &str = "video/mp2t";

/// How long a request may be held: 3 × target duration (then 503).
fn hold_limit_ms(idx: &StreamIndex) -> i64 {
    3 * 1000 * idx.target_duration().max(1) as i64
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
        let mut text = playlist::media_playlist(idx, req, &opts, now_ms());
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
    send_text(r, PLAYLIST_TYPE, &body, max_age)
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

thread_local! {
    /// The last rendering of each playlist, by (claim time, publish id, index generation,
    /// rendition reports): every
    /// request between two index changes is answered with the same bytes, rendered once.
    static RENDERED: RefCell<HashMap<RenderKey, ((i64, u64, u64, u64), Rc<[u8]>)>> = RefCell::new(HashMap::new());
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
unsafe fn send_at_once(r: *mut ngx_http_request_t) {
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

/// `hls_live_max_held` of the location serving `r`.
pub(super) unsafe fn max_held(r: *mut ngx_http_request_t) -> usize {
    let conf = &*(*(*r).loc_conf.add(ngx_http_vid_module.ctx_index) as *const LocConf);
    conf.max_held
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
    (*r).headers_out.status = NGX_HTTP_OK as ngx_uint_t;
    (*r).headers_out.content_length_n = body.len() as i64;
    set_content_type(r, content_type);
    set_cache_control(r, max_age);
    let rc = ngx_http_send_header(r);
    if rc == NGX_ERROR as ngx_int_t || rc > NGX_OK as ngx_int_t || (*r).header_only() != 0 {
        return rc;
    }
    let b = ngx_create_temp_buf((*r).pool, body.len().max(1));
    if b.is_null() {
        return NGX_ERROR as ngx_int_t;
    }
    ptr::copy_nonoverlapping(body.as_ptr(), (*b).last, body.len());
    (*b).last = (*b).last.add(body.len());
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

/// Send a file, or the byte range `(offset, length)` of it, with sendfile.
pub(super) unsafe fn send_file(
    r: *mut ngx_http_request_t,
    path: &str,
    content_type: &'static str,
    range: Option<(u64, u64)>,
) -> ngx_int_t {
    let log = (*(*r).connection).log;
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return NGX_HTTP_NOT_FOUND as ngx_int_t
        }
        Err(e) => {
            ngx_log_error!(
                NGX_LOG_ERR,
                log,
                "hls_live: open \"{}\" failed: {}",
                path,
                e
            );
            return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
        }
    };
    let meta = match file.metadata() {
        Ok(m) => m,
        Err(_) => return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t,
    };
    let pool = (*r).pool;
    // The pool owns the descriptor from here on.
    let cln = ngx_pool_cleanup_add(pool, core::mem::size_of::<ngx_pool_cleanup_file_t>());
    if cln.is_null() {
        return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
    }
    let name = ngx_pnalloc(pool, path.len() + 1) as *mut u8;
    if name.is_null() {
        return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
    }
    ptr::copy_nonoverlapping(path.as_ptr(), name, path.len());
    *name.add(path.len()) = 0;
    let fd = file.into_raw_fd();
    (*cln).handler = Some(ngx_pool_cleanup_file);
    let clnf = (*cln).data as *mut ngx_pool_cleanup_file_t;
    (*clnf).fd = fd;
    (*clnf).name = name;
    (*clnf).log = log;

    let (start, size) = match range {
        Some((offset, len)) => {
            if offset.saturating_add(len) > meta.len() {
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
            (*r).headers_out.last_modified_time = meta.mtime();
            (0, meta.len() as i64)
        }
    };
    (*r).headers_out.status = NGX_HTTP_OK as ngx_uint_t;
    (*r).headers_out.content_length_n = size;
    set_content_type(r, content_type);
    set_cache_control(r, 86_400);
    (*r).set_allow_ranges(1);
    let rc = ngx_http_send_header(r);
    if rc == NGX_ERROR as ngx_int_t || rc > NGX_OK as ngx_int_t || (*r).header_only() != 0 {
        return rc;
    }
    let b = ngx_pcalloc(pool, core::mem::size_of::<ngx_buf_t>()) as *mut ngx_buf_t;
    let f = ngx_pcalloc(pool, core::mem::size_of::<ngx_file_t>()) as *mut ngx_file_t;
    if b.is_null() || f.is_null() {
        return NGX_ERROR as ngx_int_t;
    }
    (*f).fd = fd;
    (*f).name = ngx_str_t {
        len: path.len(),
        data: name,
    };
    (*f).log = log;
    (*b).file = f;
    (*b).file_pos = start;
    (*b).file_last = start + size;
    (*b).set_in_file(if size > 0 { 1 } else { 0 });
    finish_buf(r, b)
}
