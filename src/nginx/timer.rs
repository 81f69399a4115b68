//! Per-worker events: the one idiom for a module's own timer or posted event.
//!
//! A [`WorkerEvent`] lives in a `thread_local!` (one per worker process, never moved:
//! its `ngx_event_t` is boxed) and is armed as a timer ([`WorkerEvent::arm`]) or posted
//! to run right after the current event ([`WorkerEvent::post`]). Its handler is set on
//! first use.

use core::cell::UnsafeCell;

use nginx_sys::{ngx_event_t, ngx_msec_t};

pub struct WorkerEvent(Box<UnsafeCell<ngx_event_t>>);

impl WorkerEvent {
    pub fn new() -> Self {
        // SAFETY: an all-zero ngx_event_t is nginx's own idle event (ngx_pcalloc'd).
        WorkerEvent(Box::new(UnsafeCell::new(unsafe { core::mem::zeroed() })))
    }

    fn ev(&self, handler: unsafe extern "C" fn(*mut ngx_event_t)) -> *mut ngx_event_t {
        let ev = self.0.get();
        // SAFETY: the event belongs to this worker's thread and lives as long as it; nginx
        // touches it only from this thread's event loop.
        unsafe {
            if (*ev).handler.is_none() {
                (*ev).handler = Some(handler);
                (*ev).log = ngx::log::ngx_cycle_log().as_ptr();
            }
        }
        ev
    }

    /// Run `handler` in `ms` unless the timer is already set. `cancelable`: a worker that
    /// shuts down does not wait for it (nginx's `ev->cancelable`).
    pub fn arm(
        &self,
        handler: unsafe extern "C" fn(*mut ngx_event_t),
        ms: ngx_msec_t,
        cancelable: bool,
    ) {
        self.set(handler, ms, cancelable, false)
    }

    /// Run `handler` in `ms` at the latest: a timer already set to fire sooner stays (the
    /// handler re-arms), a later one is moved earlier. Exact, unlike `ngx_add_timer`, which
    /// keeps a timer that is less than `NGX_TIMER_LAZY_DELAY` (300 ms) off.
    pub fn arm_by(
        &self,
        handler: unsafe extern "C" fn(*mut ngx_event_t),
        ms: ngx_msec_t,
        cancelable: bool,
    ) {
        self.set(handler, ms, cancelable, true)
    }

    fn set(
        &self,
        handler: unsafe extern "C" fn(*mut ngx_event_t),
        ms: ngx_msec_t,
        cancelable: bool,
        earlier: bool,
    ) {
        let ev = self.ev(handler);
        // SAFETY: see `ev`; nginx's timer tree holds the stable boxed address.
        unsafe {
            (*ev).set_cancelable(cancelable as _);
            if (*ev).timer_set() != 0 {
                let key = nginx_sys::ngx_current_msec.wrapping_add(ms);
                // Timer keys wrap: compare as nginx does, by the signed difference.
                let sooner = ((*ev).timer.key.wrapping_sub(key) as isize) <= 0;
                if !earlier || sooner {
                    return;
                }
                nginx_sys::ngx_del_timer(ev);
            }
            nginx_sys::ngx_add_timer(ev, ms);
        }
    }

    /// Stop the timer, if set.
    pub fn disarm(&self) {
        let ev = self.0.get();
        // SAFETY: see `ev`.
        unsafe {
            if (*ev).timer_set() != 0 {
                nginx_sys::ngx_del_timer(ev);
            }
        }
    }

    /// Run `handler` right after the current event (once, however often posted).
    pub fn post(&self, handler: unsafe extern "C" fn(*mut ngx_event_t)) {
        let ev = self.ev(handler);
        // SAFETY: see `ev`; nginx clears `posted` when it runs the event.
        unsafe {
            if (*ev).posted() == 0 {
                nginx_sys::ngx_post_event(ev, &raw mut nginx_sys::ngx_posted_events);
            }
        }
    }
}
