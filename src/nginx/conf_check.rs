//! A core module whose only job is a configuration check: core modules' `init_conf` runs
//! once the whole configuration is read and before shared zones are created, the one place
//! where a zone that `hls_live on;` / `hls_live_zone NAME;` (http) or `rtmp_live NAME;`
//! names but no stream-level `hls_live_zone NAME SIZE;` defines can be reported by name
//! (nginx itself would only say "zero size shared memory zone").

use core::ffi::{c_char, c_void};

use nginx_sys::{
    ngx_core_module_t, ngx_cycle_t, ngx_module_t, ngx_uint_t, NGX_CORE_MODULE, NGX_LOG_EMERG,
};

use super::{NGX_CONF_ERROR, NGX_CONF_OK};

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
    let mut ok = true;
    for z in super::zone::vid_zones(cycle) {
        let z = &*z;
        if z.shm.size == 0 {
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
        NGX_CONF_OK
    } else {
        NGX_CONF_ERROR
    }
}
