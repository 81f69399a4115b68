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

use nginx_sys::{
    ngx_array_create, ngx_array_push, ngx_array_t, ngx_command_t, ngx_conf_enum_t,
    ngx_conf_set_enum_slot, ngx_conf_set_flag_slot, ngx_conf_set_str_slot, ngx_conf_t, ngx_flag_t,
    ngx_http_module_t, ngx_http_request_t, ngx_int_t, ngx_pcalloc, ngx_shm_zone_t, ngx_str_t,
    ngx_uint_t, NGX_CONF_1MORE, NGX_CONF_FLAG, NGX_CONF_NOARGS, NGX_CONF_TAKE1,
    NGX_HTTP_BAD_REQUEST, NGX_HTTP_LOC_CONF, NGX_HTTP_LOC_CONF_OFFSET, NGX_HTTP_MAIN_CONF,
    NGX_HTTP_MODULE, NGX_HTTP_NOT_FOUND, NGX_HTTP_SRV_CONF, NGX_LOG_INFO,
};
use ngx::ngx_log_error;

use super::respond::{
    error, rendition_reports, send_at_once, send_file, send_media_playlist, send_text, serve,
};
use super::wait::{self, Want};
use super::zone::{self, Zone};
use super::{
    command, merge, mono_ms, set_content_handler, NGX_CONF_ERROR, NGX_CONF_OK, NGX_CONF_UNSET,
    NGX_CONF_UNSET_UINT,
};
use crate::playlist::serving::{self, Avail};
use crate::playlist::{self, Blocking, Format, MediaRequest};
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

impl LocConf {
    /// The zone this location serves from.
    fn zone(&self) -> Zone {
        // SAFETY: `zone` is null or the shared zone `merge_loc_conf` added; shared zones
        // live as long as the configuration that holds this location.
        unsafe { Zone::new(self.zone) }
    }
}

/// This module's configuration of the location serving `r`.
unsafe fn loc_conf<'a>(r: *mut ngx_http_request_t) -> &'a LocConf {
    // SAFETY (caller): `r` is a live request of a location with this module's conf.
    &*(*(*r).loc_conf.add(ngx_http_vid_module.ctx_index) as *const LocConf)
}

/// The folder of `hls_live_recordings` in the request's location.
pub(super) unsafe fn recordings_path(r: *mut ngx_http_request_t) -> ngx_str_t {
    loc_conf(r).recordings
}

/// The folder of `hls_live_dvr` in the request's location.
pub(super) unsafe fn dvr_path(r: *mut ngx_http_request_t) -> ngx_str_t {
    loc_conf(r).dvr
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

nginx_module!(ngx_http_vid_module, NGX_HTTP_MODULE);

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

impl ngx::http::Merge for LocConf {
    fn merge(&mut self, prev: &Self) -> Result<(), ngx::http::MergeConfigError> {
        let unset_flag = NGX_CONF_UNSET as ngx_flag_t;
        merge(&mut self.enable, prev.enable, unset_flag, 0);
        merge(&mut self.low_latency, prev.low_latency, unset_flag, 1);
        merge(
            &mut self.format,
            prev.format,
            NGX_CONF_UNSET_UINT,
            FORMAT_FMP4,
        );
        if self.variants.is_null() {
            self.variants = prev.variants;
        }
        if self.token_secrets.is_null() {
            self.token_secrets = prev.token_secrets;
        }
        merge(
            &mut self.max_held,
            prev.max_held,
            NGX_CONF_UNSET_UINT,
            10_000,
        );
        merge(
            &mut self.token_bind_addr,
            prev.token_bind_addr,
            unset_flag,
            0,
        );
        if self.zone_name.data.is_null() {
            self.zone_name = if prev.zone_name.data.is_null() {
                ngx::ngx_string!("live")
            } else {
                prev.zone_name
            };
        }
        Ok(())
    }
}

/// The settings inherited ([`ngx::http::Merge`]), then the zone of a location that
/// serves streams (nginx adds shared zones while the configuration is read).
unsafe extern "C" fn merge_loc_conf(
    cf: *mut ngx_conf_t,
    parent: *mut c_void,
    child: *mut c_void,
) -> *mut c_char {
    let prev = &*(parent as *const LocConf);
    let conf = &mut *(child as *mut LocConf);
    if ngx::http::Merge::merge(conf, prev).is_err() {
        return NGX_CONF_ERROR;
    }
    if conf.enable == 1 || conf.streams == 1 {
        let mut name = conf.zone_name;
        conf.zone = zone::add(cf, &mut name, 0);
        if conf.zone.is_null() {
            return NGX_CONF_ERROR;
        }
    }
    NGX_CONF_OK
}

unsafe extern "C" fn set_hls_live(
    cf: *mut ngx_conf_t,
    cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    let rv = ngx_conf_set_flag_slot(cf, cmd, conf);
    if rv != NGX_CONF_OK {
        return rv;
    }
    if (*(conf as *mut LocConf)).enable == 1 {
        set_content_handler(cf, handler);
    }
    NGX_CONF_OK
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
    NGX_CONF_OK
}

/// The suffixes of `hls_live_variants` in this location (none when not configured).
unsafe fn variant_suffixes(conf: &LocConf) -> Vec<&str> {
    let Some(arr) = conf.variants.as_ref() else {
        return Vec::new();
    };
    arr.as_slice::<ngx_str_t>()
        .iter()
        .filter_map(|s| core::str::from_utf8(s.as_bytes()).ok())
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
    set_content_handler(cf, streams_handler);
    NGX_CONF_OK
}

/// `hls_live_streams;` — the JSON list of the zone's streams.
unsafe extern "C" fn streams_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    serve(r, "hls_live_streams", || {
        let list = loc_conf(r)
            .zone()
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

unsafe extern "C" fn handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    serve(r, "hls_live", || handle(r))
}

/// A request of a stream's tree, once its key, file and token have passed.
struct Request<'a> {
    r: *mut ngx_http_request_t,
    conf: &'a LocConf,
    zone: Zone,
    key: &'a str,
    format: Format,
    /// LL-HLS features (never for the TS playlist).
    low_latency: bool,
}

unsafe fn handle(r: *mut ngx_http_request_t) -> ngx_int_t {
    send_at_once(r);
    let conf = loc_conf(r);
    let uri = (*r).uri.as_bytes();
    let Some((key, file)) = names::split_uri(uri) else {
        return NGX_HTTP_NOT_FOUND as ngx_int_t;
    };
    // Playback tokens first: a refused request reaches nothing else (no hold, no file).
    // A token for an ABR group's base key covers every rendition of the group.
    let base = serving::variant_base(&variant_suffixes(conf), key);
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
    let req = Request {
        r,
        conf,
        zone: conf.zone(),
        key,
        format,
        low_latency: conf.low_latency == 1 && format == Format::Fmp4,
    };
    super::vars::note(r, key, &media, req.low_latency);
    match media {
        MediaFile::MediaPlaylist => media_playlist(&req),
        MediaFile::MultivariantPlaylist => multivariant_playlist(&req),
        _ => media_file(&req, media),
    }
}

/// `index.m3u8`: rendered from a snapshot of the index, or held until a blocking
/// request's part exists.
unsafe fn media_playlist(q: &Request) -> ngx_int_t {
    let (r, key) = (q.r, q.key);
    let req = if q.low_latency {
        match playlist::parse_query(&String::from_utf8_lossy((*r).args.as_bytes())) {
            Ok(req) => req,
            Err(e) => return bad_playlist_request(r, &e),
        }
    } else {
        // Without LL-HLS nothing is advertised, so _HLS_* parameters are ignored.
        MediaRequest::default()
    };
    // Rendition reports name the other renditions of an ABR group (LL-HLS only).
    let siblings: Vec<String> = if q.low_latency {
        serving::variant_keys(&variant_suffixes(q.conf), key)
            .into_iter()
            .filter(|k| k != key)
            .collect()
    } else {
        Vec::new()
    };
    SNAPSHOT.with(|snap| {
        let mut snap = snap.borrow_mut();
        if !q.zone.snapshot(key, &mut snap) {
            return error(r, NGX_HTTP_NOT_FOUND, 1);
        }
        let idx: &StreamIndex = &snap;
        if q.format == Format::Ts && !idx.has_ts() {
            // No TS rendition (HEVC, TS off) or no segment yet.
            return error(r, NGX_HTTP_NOT_FOUND, playlist::max_age_error(idx, false));
        }
        match playlist::blocking_state(idx, &req) {
            Blocking::BadRequest(why) => bad_playlist_request(r, &why),
            Blocking::Ready if idx.target_duration_decided() => {
                let reports = rendition_reports(q.zone, &siblings);
                send_media_playlist(r, idx, &req, q.low_latency, q.format, &reports)
            }
            // Blocking requests wait (also for the first segment); plain ones get 404
            // until the first segment has decided the target duration.
            _ if req.msn.is_some() => {
                let deadline = mono_ms() + serving::hold_limit_ms(idx);
                let want = Want::Playlist { req, siblings };
                wait::hold(r, q.zone, key, want, deadline, q.conf.max_held)
            }
            _ => error(r, NGX_HTTP_NOT_FOUND, playlist::max_age_error(idx, false)),
        }
    })
}

unsafe fn bad_playlist_request(
    r: *mut ngx_http_request_t,
    why: &dyn core::fmt::Display,
) -> ngx_int_t {
    ngx_log_error!(
        NGX_LOG_INFO,
        (*(*r).connection).log,
        "hls_live: bad playlist request: {}",
        why
    );
    NGX_HTTP_BAD_REQUEST as ngx_int_t
}

/// `master.m3u8`: every rendition of the key's ABR group that has a playlist to offer.
unsafe fn multivariant_playlist(q: &Request) -> ngx_int_t {
    let group = serving::variant_keys(&variant_suffixes(q.conf), q.key);
    let picked = serving::pick_variants(&group, q.key, |k| {
        q.zone
            .with_stream(k, |i| serving::offers(i, q.format).then(|| Box::new(*i)))
            .flatten()
    });
    if picked.is_empty() {
        return error(q.r, NGX_HTTP_NOT_FOUND, 1);
    }
    let picked: Vec<(String, &StreamIndex)> =
        picked.iter().map(|(k, i)| (k.clone(), &**i)).collect();
    let (body, max_age) = serving::group_playlist(&picked, q.key, q.format);
    send_text(q.r, playlist::PLAYLIST_MIME, body.as_bytes(), max_age)
}

/// Init sections, segments and parts: sent from disk once the index lists them; the
/// preload-hinted part is held until it exists.
unsafe fn media_file(q: &Request, media: MediaFile) -> ngx_int_t {
    let found = q.zone.with_stream(q.key, |i| {
        (
            i.dir().to_owned(),
            i.has_video(),
            serving::media_avail(i, media, q.low_latency),
            serving::hold_limit_ms(i),
            playlist::max_age_error(i, false),
        )
    });
    let Some((dir, has_video, avail, limit, td)) = found else {
        return error(q.r, NGX_HTTP_NOT_FOUND, 1);
    };
    let ct = serving::media_content_type(media, has_video);
    let path = serving::media_path(&dir, media);
    let rc = match (avail, media) {
        (Avail::No, _) => NGX_HTTP_NOT_FOUND as ngx_int_t,
        (Avail::Hinted, MediaFile::Part { msn, part }) => {
            let want = Want::Part {
                msn,
                part,
                path,
                content_type: ct,
            };
            let deadline = mono_ms() + limit;
            return wait::hold(q.r, q.zone, q.key, want, deadline, q.conf.max_held);
        }
        (Avail::Range(range), _) => send_file(q.r, &path, ct, Some(range)),
        _ => send_file(q.r, &path, ct, None),
    };
    if rc == NGX_HTTP_NOT_FOUND as ngx_int_t {
        return error(q.r, NGX_HTTP_NOT_FOUND, td);
    }
    rc
}
