//! Passing an API's remaining quota up to the host.
//!
//! Many APIs say in every response how many calls they allow per window and
//! how many are left. Report it, and the host adopts the API's pace when it
//! is slower than the declared one and holds calls while the window is used
//! up, rather than running into a 429. Daily allowances are not windows to
//! pace by: leave them out.

use std::time::Duration;

/// `remaining` of `limit` calls are left in a rolling `window`.
pub fn report(remaining: u32, limit: u32, window: Duration) {
    let window_ms = u32::try_from(window.as_millis()).unwrap_or(u32::MAX);
    crate::bindings::source::sluice::plugin::host::report_quota(remaining, limit, window_ms);
}
