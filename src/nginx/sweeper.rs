//! A per-worker housekeeping timer: once a second, every vid zone is swept — a stream
//! whose publisher's worker died starts its grace period, a stream whose grace period is
//! over ends, ended streams past their retention are freed and their folders removed. Any worker may do it; the zone lock makes it safe.

use nginx_sys::{ngx_cycle, ngx_cycle_t, ngx_event_t, ngx_int_t, NGX_LOG_ERR, NGX_OK};
use ngx::ngx_log_error;

use super::mono_ms;
use super::timer::WorkerEvent;
use super::zone::{self, Zone};

const INTERVAL_MS: usize = 1000;
/// A live stream whose index has not been written for this long lost its publisher
/// (its worker died); ingest closes idle publishers well before that.
const STALE_MS: i64 = 90_000;

// SAFETY: an all-zero ngx_event_t is an event's initial state (as from ngx_pcalloc).
thread_local! {
    static TIMER: WorkerEvent = WorkerEvent::new();
}

pub unsafe extern "C" fn init_process(_cycle: *mut ngx_cycle_t) -> ngx_int_t {
    // Cancelable: a worker that shuts down does not wait for housekeeping.
    TIMER.with(|t| t.arm(tick, INTERVAL_MS as _, true));
    NGX_OK as ngx_int_t
}

unsafe extern "C" fn tick(ev: *mut ngx_event_t) {
    if std::panic::catch_unwind(|| sweep(ev)).is_err() {
        ngx_log_error!(
            nginx_sys::NGX_LOG_ALERT,
            (*ev).log,
            "hls_live: internal error in housekeeping"
        );
    }
    if nginx_sys::ngx_exiting == 0 && nginx_sys::ngx_quit == 0 {
        TIMER.with(|t| t.arm(tick, INTERVAL_MS as _, true));
    }
}

/// Whether process `pid` exists (a slot's owner): `kill(pid, 0)` fails with ESRCH only
/// for a process that is gone. All workers share one pid namespace.
fn process_exists(pid: u32) -> bool {
    if pid == 0 || pid > i32::MAX as u32 {
        return true;
    }
    // SAFETY: signal 0 sends nothing; it only checks that the process exists.
    let rc = unsafe { nginx_sys::kill(pid as i32, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() != Some(ESRCH)
}

const ESRCH: i32 = 3;

unsafe fn sweep(ev: *mut ngx_event_t) {
    let now = mono_ms();
    for z in zone::vid_zones(ngx_cycle) {
        if (*z).data.is_null() {
            continue;
        }
        // SAFETY: a vid zone of the running cycle, whose zones outlive this call.
        let zone = Zone::new(z);
        // Workers tick out of step; whichever comes first does the zone's sweep.
        let dirs = zone.sweep(now, INTERVAL_MS as i64 - 50, STALE_MS, &mut process_exists);
        for dir in dirs {
            if let Err(e) = crate::store::files::remove_stream_dir(std::path::Path::new(&dir)) {
                ngx_log_error!(
                    NGX_LOG_ERR,
                    (*ev).log,
                    "hls_live: removing \"{}\" failed: {}",
                    dir,
                    e
                );
            }
        }
    }
}
