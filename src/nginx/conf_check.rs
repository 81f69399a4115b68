//! A core module whose only job is a configuration check: core modules' `init_conf` runs
//! once the whole configuration is read and before shared zones are created, the one place
//! where a zone that `hls_live on;` / `hls_live_zone NAME;` (http) or `rtmp_live NAME;`
//! names but no stream-level `hls_live_zone NAME SIZE;` defines can be reported by name
//! (nginx itself would only say "zero size shared memory zone").

use core::ffi::{c_char, c_void};

use nginx_sys::{
    ngx_core_module_t, ngx_cycle_t, ngx_list_part_t, ngx_module_t, ngx_shm_zone_t, ngx_uint_t,
    NGX_CORE_MODULE, NGX_LOG_EMERG,
};

use super::stream::zone_tag;
use super::{conf_ok, NGX_CONF_ERROR};

static mut CTX: ngx_core_module_t = ngx_core_module_t {
    name: ngx::ngx_string!("vid"),
    create_conf: None,
    init_conf: Some(init_conf),
};

#[used]
#[no_mangle]
#[allow(non_upper_case_globals)]
pub static mut ngx_vid_core_module: ngx_module_t = ngx_module_t {
    ctx: &raw mut CTX as *mut _,
    type_: NGX_CORE_MODULE as ngx_uint_t,
    ..ngx_module_t::default()
};

unsafe extern "C" fn init_conf(cycle: *mut ngx_cycle_t, _conf: *mut c_void) -> *mut c_char {
    let mut part: *const ngx_list_part_t = &(*cycle).shared_memory.part;
    let mut zones: *const ngx_shm_zone_t = (*part).elts.cast();
    let mut i = 0;
    let mut ok = true;
    loop {
        if i >= (*part).nelts {
            if (*part).next.is_null() {
                break;
            }
            part = (*part).next;
            zones = (*part).elts.cast();
            i = 0;
            continue;
        }
        let z = &*zones.add(i);
        i += 1;
        if z.tag == zone_tag() && z.shm.size == 0 {
            let name = String::from_utf8_lossy(z.shm.name.as_bytes());
            ngx::ngx_log_error!(
                NGX_LOG_EMERG,
                (*cycle).log,
                "\"hls_live_zone\" \"{}\" is used (by \"hls_live\", \"hls_live_streams\" or \"rtmp_live\") but not defined: add \"hls_live_zone {} SIZE;\" to the stream{{}} block",
                name,
                name
            );
            ok = false;
        }
    }
    if ok {
        conf_ok()
    } else {
        NGX_CONF_ERROR
    }
}
