//! Header block encoding, tuned for speed over size.

use crate::integer;
use crate::table::{static_exact_index, static_name_index};

/// The dynamic table size both sides assume until SETTINGS say otherwise
/// (RFC 9113 §6.5.2, SETTINGS_HEADER_TABLE_SIZE's initial value).
const DEFAULT_TABLE_SIZE: usize = 4096;

/// First byte of a literal field without indexing (RFC 7541 §6.2.2).
const WITHOUT_INDEXING: u8 = 0x00;
/// First byte of a literal field never indexed (RFC 7541 §6.2.3).
const NEVER_INDEXED: u8 = 0x10;
/// First byte of an indexed field (RFC 7541 §6.1).
const INDEXED: u8 = 0x80;
/// First byte of a dynamic table size update (RFC 7541 §6.3).
const SIZE_UPDATE: u8 = 0x20;
/// The static table index of `:status`.
const STATUS_NAME: usize = 8;

/// An HPACK encoder: one per connection, for every header block we send, in
/// order.
///
/// It never adds entries to the dynamic table, so the peer's decoder keeps no
/// state for us and each field costs a table lookup and a copy. Names in the
/// static table are sent by index, a name and value that match a static entry
/// exactly as that one index, and everything else as literals "without
/// indexing" (or "never indexed" for sensitive fields), with raw rather than
/// Huffman-coded strings.
///
/// Each header block is written by [`begin`](Encoder::begin), then
/// [`status`](Encoder::status) and [`field`](Encoder::field) as needed.
#[derive(Debug, Clone)]
pub struct Encoder {
    /// The dynamic table maximum size the peer's decoder holds us to: the size
    /// we last signalled, or the initial 4096.
    current: usize,
    /// The lowest SETTINGS_HEADER_TABLE_SIZE the peer has set since the last
    /// block, if it went below `current`.
    lowest: Option<usize>,
    /// The peer's latest SETTINGS_HEADER_TABLE_SIZE.
    latest: usize,
}

impl Default for Encoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Encoder {
    /// An encoder for a new connection.
    pub fn new() -> Self {
        Self {
            current: DEFAULT_TABLE_SIZE,
            lowest: None,
            latest: DEFAULT_TABLE_SIZE,
        }
    }

    /// Records a SETTINGS_HEADER_TABLE_SIZE received from the peer.
    ///
    /// Our table is always empty, but the peer's decoder still tracks its
    /// maximum size, which it may not let exceed its setting. So when the
    /// setting drops below the size last signalled (or the initial 4096), the
    /// next block must start with a dynamic table size update (RFC 7541 §4.2,
    /// RFC 9113 §4.3.1): [`begin`](Encoder::begin) writes one for the lowest
    /// setting seen since the previous block and, if the setting has since
    /// changed again, a second for the latest. A setting at or above the size
    /// last signalled needs nothing: we keep the smaller size, which is
    /// allowed and costs nothing as we store no entries.
    pub fn set_peer_max_table_size(&mut self, size: usize) {
        self.latest = size;
        if size < self.current {
            self.lowest = Some(self.lowest.map_or(size, |lowest| lowest.min(size)));
        }
    }

    /// Starts a header block: writes any dynamic table size updates owed
    /// since the last block (see
    /// [`set_peer_max_table_size`](Encoder::set_peer_max_table_size)).
    pub fn begin(&mut self, out: &mut Vec<u8>) {
        if let Some(lowest) = self.lowest.take() {
            integer::encode(out, SIZE_UPDATE, 5, lowest);
            if self.latest != lowest {
                integer::encode(out, SIZE_UPDATE, 5, self.latest);
            }
            self.current = self.latest;
        }
    }

    /// Writes `:status`. The codes in the static table (200, 204, 206, 304,
    /// 400, 404 and 500) take one byte; others are a literal with the static
    /// name `:status`.
    #[inline]
    pub fn status(&mut self, code: u16, out: &mut Vec<u8>) {
        let index = match code {
            200 => 8,
            204 => 9,
            206 => 10,
            304 => 11,
            400 => 12,
            404 => 13,
            500 => 14,
            _ => 0,
        };
        if index != 0 {
            out.push(INDEXED | index);
            return;
        }
        integer::encode(out, WITHOUT_INDEXING, 4, STATUS_NAME);
        if (100..=999).contains(&code) {
            // Every valid status: three digits.
            let digits = [
                b'0' + (code / 100) as u8,
                b'0' + (code / 10 % 10) as u8,
                b'0' + (code % 10) as u8,
            ];
            write_string(out, &digits);
        } else {
            write_string(out, code.to_string().as_bytes());
        }
    }

    /// Writes one field. `name` must be lowercase, as HTTP/2 requires (and as
    /// `http::HeaderName` gives it); it is not checked.
    ///
    /// A name in the static table is sent by index; if the value matches the
    /// static entry too, the whole field is one indexed byte. Sensitive fields
    /// use the "never indexed" form, which tells intermediaries not to
    /// compress them either, and are never sent fully indexed.
    #[inline]
    pub fn field(&mut self, name: &[u8], value: &[u8], sensitive: bool, out: &mut Vec<u8>) {
        let first = if sensitive {
            NEVER_INDEXED
        } else {
            WITHOUT_INDEXING
        };
        let short = value.len() < 0x7f;
        match static_name_index(name) {
            Some(index) => {
                if !sensitive {
                    if let Some(exact) = static_exact_index(index, value) {
                        out.push(INDEXED | exact);
                        return;
                    }
                }
                // The usual case, a static name and a value shorter than 127
                // bytes, is written with one fixed-size copy. Indices 15 and
                // up take a second byte after the 4-bit prefix.
                match (short, index < 0x0f) {
                    (true, true) => out.extend_from_slice(&[first | index, value.len() as u8]),
                    (true, false) => {
                        out.extend_from_slice(&[first | 0x0f, index - 0x0f, value.len() as u8])
                    }
                    (false, _) => {
                        integer::encode(out, first, 4, usize::from(index));
                        integer::encode(out, 0x00, 7, value.len());
                    }
                }
            }
            None => {
                if name.len() < 0x7f {
                    out.extend_from_slice(&[first, name.len() as u8]);
                } else {
                    out.push(first);
                    integer::encode(out, 0x00, 7, name.len());
                }
                out.extend_from_slice(name);
                if short {
                    out.push(value.len() as u8);
                } else {
                    integer::encode(out, 0x00, 7, value.len());
                }
            }
        }
        out.extend_from_slice(value);
    }
}

/// Writes a raw (not Huffman-coded) string literal (RFC 7541 §5.2).
#[inline]
fn write_string(out: &mut Vec<u8>, s: &[u8]) {
    integer::encode(out, 0x00, 7, s.len());
    out.extend_from_slice(s);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Decoder;

    fn hex(s: &str) -> Vec<u8> {
        let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
        digits
            .chunks(2)
            .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
            .collect()
    }

    fn begin(e: &mut Encoder) -> Vec<u8> {
        let mut out = Vec::new();
        e.begin(&mut out);
        out
    }

    #[test]
    fn matches_rfc_examples() {
        let mut e = Encoder::new();
        let mut out = Vec::new();
        // C.2.2: literal without indexing, indexed name.
        e.field(b":path", b"/sample/path", false, &mut out);
        assert_eq!(out, hex("040c 2f73 616d 706c 652f 7061 7468"));
        // C.2.3: never indexed, literal name.
        out.clear();
        e.field(b"password", b"secret", true, &mut out);
        assert_eq!(out, hex("1008 7061 7373 776f 7264 0673 6563 7265 74"));
        // C.2.4: indexed field.
        out.clear();
        e.field(b":method", b"GET", false, &mut out);
        assert_eq!(out, [0x82]);
    }

    #[test]
    fn representations() {
        let mut e = Encoder::new();
        let mut out = Vec::new();
        // Static name with index above 14 needs a second integer byte.
        e.field(b"content-type", b"text/html", false, &mut out);
        assert_eq!(out[..2], [0x0f, 31 - 15]);
        assert_eq!(out[2], 9);
        assert_eq!(&out[3..], b"text/html");
        // Static name, sensitive.
        out.clear();
        e.field(b"authorization", b"x", true, &mut out);
        assert_eq!(out, [0x1f, 23 - 15, 1, b'x']);
        // Exact static match, but sensitive: not fully indexed.
        out.clear();
        e.field(b"accept-encoding", b"gzip, deflate", true, &mut out);
        assert_eq!(out[..2], [0x1f, 16 - 15]);
        // Exact static match with an empty value.
        out.clear();
        e.field(b"age", b"", false, &mut out);
        assert_eq!(out, [0x80 | 21]);
        // Literal name.
        out.clear();
        e.field(b"x-a", b"b", false, &mut out);
        assert_eq!(out, [0x00, 3, b'x', b'-', b'a', 1, b'b']);
    }

    #[test]
    fn status_codes() {
        let mut e = Encoder::new();
        for (code, index) in [
            (200, 8),
            (204, 9),
            (206, 10),
            (304, 11),
            (400, 12),
            (404, 13),
            (500, 14),
        ] {
            let mut out = Vec::new();
            e.status(code, &mut out);
            assert_eq!(out, [0x80 | index]);
        }
        let mut out = Vec::new();
        e.status(302, &mut out);
        assert_eq!(out, [0x08, 3, b'3', b'0', b'2']);
        for code in [
            100, 101, 103, 201, 301, 418, 503, 599, 999, 0, 7, 42, 1000, 65535,
        ] {
            let mut out = Vec::new();
            e.status(code, &mut out);
            let mut got = Vec::new();
            Decoder::new(4096)
                .decode(&out, usize::MAX, |n, v, s| {
                    got.push((n.to_vec(), v.to_vec(), s))
                })
                .unwrap();
            assert_eq!(
                got,
                [(b":status".to_vec(), code.to_string().into_bytes(), false)]
            );
        }
    }

    #[test]
    fn no_update_without_a_lowering() {
        let mut e = Encoder::new();
        assert_eq!(begin(&mut e), []);
        e.set_peer_max_table_size(4096);
        assert_eq!(begin(&mut e), []);
        e.set_peer_max_table_size(65_536);
        assert_eq!(begin(&mut e), []);
    }

    #[test]
    fn one_lowering_one_update() {
        let mut e = Encoder::new();
        e.set_peer_max_table_size(1000);
        // 1000 = 31 + 969; 969 = 0x49 + 7 * 128.
        assert_eq!(begin(&mut e), [0x3f, 0xc9, 0x07]);
        // Owed once only.
        assert_eq!(begin(&mut e), []);
        // Raising it again needs nothing; lowering below 1000 does.
        e.set_peer_max_table_size(4096);
        assert_eq!(begin(&mut e), []);
        e.set_peer_max_table_size(2000);
        assert_eq!(begin(&mut e), []);
        e.set_peer_max_table_size(0);
        assert_eq!(begin(&mut e), [0x20]);
    }

    #[test]
    fn lowest_then_final() {
        let mut e = Encoder::new();
        e.set_peer_max_table_size(0);
        e.set_peer_max_table_size(100);
        // 0, then 100 = 31 + 69.
        assert_eq!(begin(&mut e), [0x20, 0x3f, 69]);
        assert_eq!(begin(&mut e), []);

        // Lowered twice, ending at the lowest: one update.
        let mut e = Encoder::new();
        e.set_peer_max_table_size(100);
        e.set_peer_max_table_size(10);
        assert_eq!(begin(&mut e), [0x20 | 10]);

        // Lowered, then raised past the old size: the lowest, then the final.
        let mut e = Encoder::new();
        e.set_peer_max_table_size(10);
        e.set_peer_max_table_size(8192);
        let mut expected = vec![0x20 | 10];
        integer::encode(&mut expected, 0x20, 5, 8192);
        assert_eq!(begin(&mut e), expected);
        // 8192 is now the size signalled, so 5000 is a lowering.
        e.set_peer_max_table_size(5000);
        let mut expected = Vec::new();
        integer::encode(&mut expected, 0x20, 5, 5000);
        assert_eq!(begin(&mut e), expected);
    }

    #[test]
    fn updates_are_accepted_by_a_decoder_with_the_peer_limit() {
        let mut e = Encoder::new();
        e.set_peer_max_table_size(0);
        e.set_peer_max_table_size(100);
        let mut block = Vec::new();
        e.begin(&mut block);
        e.status(200, &mut block);
        let mut d = Decoder::new(100);
        let mut n = 0;
        d.decode(&block, usize::MAX, |_, _, _| n += 1).unwrap();
        assert_eq!(n, 1);
        assert_eq!(d.dynamic_table_max_size(), 100);
    }
}
