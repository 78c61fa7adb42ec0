//! The static table (RFC 7541 §2.3.1 and Appendix A).

/// The static table's entries as `(name, value)`; HPACK index `i` is
/// `STATIC_TABLE[i - 1]`.
pub(crate) const STATIC_TABLE: [(&[u8], &[u8]); 61] = [
    (b":authority", b""),
    (b":method", b"GET"),
    (b":method", b"POST"),
    (b":path", b"/"),
    (b":path", b"/index.html"),
    (b":scheme", b"http"),
    (b":scheme", b"https"),
    (b":status", b"200"),
    (b":status", b"204"),
    (b":status", b"206"),
    (b":status", b"304"),
    (b":status", b"400"),
    (b":status", b"404"),
    (b":status", b"500"),
    (b"accept-charset", b""),
    (b"accept-encoding", b"gzip, deflate"),
    (b"accept-language", b""),
    (b"accept-ranges", b""),
    (b"accept", b""),
    (b"access-control-allow-origin", b""),
    (b"age", b""),
    (b"allow", b""),
    (b"authorization", b""),
    (b"cache-control", b""),
    (b"content-disposition", b""),
    (b"content-encoding", b""),
    (b"content-language", b""),
    (b"content-length", b""),
    (b"content-location", b""),
    (b"content-range", b""),
    (b"content-type", b""),
    (b"cookie", b""),
    (b"date", b""),
    (b"etag", b""),
    (b"expect", b""),
    (b"expires", b""),
    (b"from", b""),
    (b"host", b""),
    (b"if-match", b""),
    (b"if-modified-since", b""),
    (b"if-none-match", b""),
    (b"if-range", b""),
    (b"if-unmodified-since", b""),
    (b"last-modified", b""),
    (b"link", b""),
    (b"location", b""),
    (b"max-forwards", b""),
    (b"proxy-authenticate", b""),
    (b"proxy-authorization", b""),
    (b"range", b""),
    (b"referer", b""),
    (b"refresh", b""),
    (b"retry-after", b""),
    (b"server", b""),
    (b"set-cookie", b""),
    (b"strict-transport-security", b""),
    (b"transfer-encoding", b""),
    (b"user-agent", b""),
    (b"vary", b""),
    (b"via", b""),
    (b"www-authenticate", b""),
];

/// The static table entry at HPACK index `index` (1 to 61).
#[inline]
pub(crate) fn static_entry(index: usize) -> Option<(&'static [u8], &'static [u8])> {
    STATIC_TABLE.get(index.wrapping_sub(1)).copied()
}

/// The static table index of `name`, if the static table has it; for the names
/// with several entries (`:method`, `:path`, `:scheme`, `:status`) the lowest.
/// `name` must be lowercase, as HTTP/2 field names are.
///
/// The length and the first and last bytes pick the one candidate, which is
/// then compared in full. Each comparison is against a literal of known
/// length, which the compiler turns into a few word compares: no scan and no
/// call to `memcmp`.
pub fn static_name_index(name: &[u8]) -> Option<u8> {
    let (&first, &last) = (name.first()?, name.last()?);
    let index = match (name.len(), first, last) {
        (3, b'a', _) if name == b"age" => 21,
        (3, b'v', _) if name == b"via" => 60,
        (4, b'd', _) if name == b"date" => 33,
        (4, b'e', _) if name == b"etag" => 34,
        (4, b'f', _) if name == b"from" => 37,
        (4, b'h', _) if name == b"host" => 38,
        (4, b'l', _) if name == b"link" => 45,
        (4, b'v', _) if name == b"vary" => 59,
        (5, b':', _) if name == b":path" => 4,
        (5, b'a', _) if name == b"allow" => 22,
        (5, b'r', _) if name == b"range" => 50,
        (6, b'a', _) if name == b"accept" => 19,
        (6, b'c', _) if name == b"cookie" => 32,
        (6, b'e', _) if name == b"expect" => 35,
        (6, b's', _) if name == b"server" => 54,
        (7, b':', b'd') if name == b":method" => 2,
        (7, b':', b'e') if name == b":scheme" => 6,
        (7, b':', b's') if name == b":status" => 8,
        (7, b'e', _) if name == b"expires" => 36,
        (7, b'r', b'r') if name == b"referer" => 51,
        (7, b'r', b'h') if name == b"refresh" => 52,
        (8, b'i', b'h') if name == b"if-match" => 39,
        (8, b'i', b'e') if name == b"if-range" => 42,
        (8, b'l', _) if name == b"location" => 46,
        (10, b':', _) if name == b":authority" => 1,
        (10, b's', _) if name == b"set-cookie" => 55,
        (10, b'u', _) if name == b"user-agent" => 58,
        (11, b'r', _) if name == b"retry-after" => 53,
        (12, b'c', _) if name == b"content-type" => 31,
        (12, b'm', _) if name == b"max-forwards" => 47,
        (13, b'a', b's') if name == b"accept-ranges" => 18,
        (13, b'a', b'n') if name == b"authorization" => 23,
        (13, b'c', b'l') if name == b"cache-control" => 24,
        (13, b'c', b'e') if name == b"content-range" => 30,
        (13, b'i', _) if name == b"if-none-match" => 41,
        (13, b'l', _) if name == b"last-modified" => 44,
        (14, b'a', _) if name == b"accept-charset" => 15,
        (14, b'c', _) if name == b"content-length" => 28,
        (15, b'a', b'g') if name == b"accept-encoding" => 16,
        (15, b'a', b'e') if name == b"accept-language" => 17,
        (16, b'c', b'g') if name == b"content-encoding" => 26,
        (16, b'c', b'e') if name == b"content-language" => 27,
        (16, b'c', b'n') if name == b"content-location" => 29,
        (16, b'w', _) if name == b"www-authenticate" => 61,
        (17, b'i', _) if name == b"if-modified-since" => 40,
        (17, b't', _) if name == b"transfer-encoding" => 57,
        (18, b'p', _) if name == b"proxy-authenticate" => 48,
        (19, b'c', _) if name == b"content-disposition" => 25,
        (19, b'i', _) if name == b"if-unmodified-since" => 43,
        (19, b'p', _) if name == b"proxy-authorization" => 49,
        (25, b's', _) if name == b"strict-transport-security" => 56,
        (27, b'a', _) if name == b"access-control-allow-origin" => 20,
        _ => return None,
    };
    Some(index)
}

/// The fully indexed form for `(name, value)`, given `name`'s static index
/// from [`static_name_index`]: the index of the static entry with that name
/// and value, if there is one.
#[inline]
pub(crate) fn static_exact_index(name_index: u8, value: &[u8]) -> Option<u8> {
    // Only the pseudo-headers and accept-encoding have static values; the
    // pseudo-headers' entries sit together. Every other entry's value is empty.
    let last = match name_index {
        2 => 3,   // :method GET, POST
        4 => 5,   // :path /, /index.html
        6 => 7,   // :scheme http, https
        8 => 14,  // :status 200 ... 500
        16 => 16, // accept-encoding: gzip, deflate
        _ => return value.is_empty().then_some(name_index),
    };
    (name_index..=last).find(|&index| {
        static_entry(usize::from(index)).is_some_and(|(_, candidate)| candidate == value)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_static_name_is_found_at_its_lowest_index() {
        for (i, &(name, _)) in STATIC_TABLE.iter().enumerate() {
            let lowest = STATIC_TABLE.iter().position(|&(n, _)| n == name).unwrap() + 1;
            assert_eq!(
                static_name_index(name),
                Some(lowest as u8),
                "{}",
                String::from_utf8_lossy(name)
            );
            assert!(lowest <= i + 1);
        }
    }

    #[test]
    fn other_names_are_not_found() {
        for name in [
            &b""[..],
            b"a",
            b"ag",
            b"agf",
            b"Age",
            b"dat",
            b"datex",
            b"x-date",
            b":pathx",
            b":methoe",
            b"content-typf",
            b"content-lengtH",
            b"x-forwarded-for",
            b"accept-encodinG",
            b"cache-controls",
            b"www-authenticatf",
            b"strict-transport-securitx",
            b"access-control-allow-origim",
            b"authorizatiom",
        ] {
            assert_eq!(
                static_name_index(name),
                None,
                "{}",
                String::from_utf8_lossy(name)
            );
        }
    }

    #[test]
    fn exact_matches() {
        assert_eq!(static_exact_index(2, b"GET"), Some(2));
        assert_eq!(static_exact_index(2, b"POST"), Some(3));
        assert_eq!(static_exact_index(2, b"PUT"), None);
        assert_eq!(static_exact_index(8, b"200"), Some(8));
        assert_eq!(static_exact_index(8, b"500"), Some(14));
        assert_eq!(static_exact_index(8, b"302"), None);
        assert_eq!(static_exact_index(16, b"gzip, deflate"), Some(16));
        assert_eq!(static_exact_index(16, b"gzip"), None);
        assert_eq!(static_exact_index(33, b""), Some(33));
        assert_eq!(static_exact_index(33, b"Mon"), None);
        assert_eq!(static_exact_index(1, b""), Some(1));
        // The fast path for names without static values agrees with the table.
        for index in 1..=61u8 {
            let (_, value) = static_entry(usize::from(index)).unwrap();
            if !value.is_empty() {
                assert!(matches!(index, 2..=14 | 16), "{index}");
            }
        }
        assert_eq!(static_entry(0), None);
        assert_eq!(static_entry(62), None);
        assert_eq!(static_entry(61), Some((&b"www-authenticate"[..], &b""[..])));
    }
}
