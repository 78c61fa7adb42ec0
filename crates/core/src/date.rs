//! The HTTP `Date` value (RFC 9110 §5.6.7), formatted at most once a second
//! per thread: every response carries one, and formatting costs far more
//! than copying 29 bytes.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

thread_local! {
    /// The second last formatted, and its text.
    static CACHE: RefCell<(u64, [u8; 29])> = const { RefCell::new((u64::MAX, [0; 29])) };
}

/// Appends the current time as an HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`).
pub fn push_http_date(out: &mut Vec<u8>) {
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    CACHE.with(|cell| {
        let mut cache = cell.borrow_mut();
        if cache.0 != secs {
            let text = httpdate::fmt_http_date(now);
            if text.len() != 29 {
                // Years past 9999 only: written, not kept.
                out.extend_from_slice(text.as_bytes());
                return;
            }
            cache.1.copy_from_slice(text.as_bytes());
            cache.0 = secs;
        }
        out.extend_from_slice(&cache.1);
    });
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_date_parses_and_is_appended() {
        let mut d = b"date: ".to_vec();
        super::push_http_date(&mut d);
        let text = std::str::from_utf8(&d[6..]).unwrap();
        assert_eq!(text.len(), 29);
        let when = httpdate::parse_http_date(text).unwrap();
        let off = std::time::SystemTime::now()
            .duration_since(when)
            .unwrap_or_default();
        assert!(off.as_secs() < 5, "{text}");
    }
}
