//! Encoder output decodes to what went in; and the decoder agrees with a
//! simple model encoder that uses every representation HPACK has.

mod common;

use std::collections::VecDeque;

use common::{decode, table, Field, Rng};
use ledge_hpack::{huffman, Decoder, Encoder};

/// Field names: static ones (with and without static values), and others.
const NAMES: &[&str] = &[
    ":status",
    ":method",
    ":path",
    "content-type",
    "content-length",
    "accept-encoding",
    "date",
    "server",
    "set-cookie",
    "cache-control",
    "authorization",
    "www-authenticate",
    "access-control-allow-origin",
    "strict-transport-security",
    "x-request-id",
    "x-a",
    "custom-key",
    "alt-svc",
    "a-rather-long-header-name-that-is-not-in-any-table-at-all",
];

fn value(rng: &mut Rng) -> Vec<u8> {
    match rng.below(8) {
        0 => Vec::new(),
        1 => b"GET".to_vec(),
        2 => b"gzip, deflate".to_vec(),
        3 => b"200".to_vec(),
        // Long enough to need a multi-byte length.
        4 => (0..127 + rng.below(400))
            .map(|i| b'a' + (i % 26) as u8)
            .collect(),
        // Any bytes at all.
        5 => (0..rng.below(40)).map(|_| rng.next() as u8).collect(),
        _ => (0..rng.below(30))
            .map(|_| b' ' + rng.below(95) as u8)
            .collect(),
    }
}

fn random_fields(rng: &mut Rng, n: usize) -> Vec<Field> {
    (0..n)
        .map(|_| {
            let name = NAMES[rng.below(NAMES.len() as u64) as usize]
                .as_bytes()
                .to_vec();
            (name, value(rng), rng.below(5) == 0)
        })
        .collect()
}

#[test]
fn encoder_round_trip() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let mut e = Encoder::new();
    let mut d = Decoder::new(4096);
    for _ in 0..500 {
        let n = 1 + rng.below(30) as usize;
        let fields = random_fields(&mut rng, n);
        let mut block = Vec::new();
        e.begin(&mut block);
        for (n, v, s) in &fields {
            e.field(n, v, *s, &mut block);
        }
        let got = decode(&mut d, &block).unwrap();
        assert_eq!(got.len(), fields.len());
        for (g, (n, v, s)) in got.iter().zip(&fields) {
            assert_eq!((&g.0, &g.1), (n, v));
            // Sensitive fields come back sensitive; others come back plain.
            assert_eq!(g.2, *s);
        }
        // The encoder never adds to the peer's table.
        assert_eq!(d.dynamic_table_len(), 0);
    }
}

#[test]
fn encoder_status_and_fields_together() {
    let mut e = Encoder::new();
    let mut block = Vec::new();
    e.begin(&mut block);
    e.status(200, &mut block);
    e.status(418, &mut block);
    e.field(b"content-length", b"0", false, &mut block);
    e.field(b"x-empty", b"", false, &mut block);
    e.field(b"cookie", b"secret=1", true, &mut block);
    let long = vec![b'q'; 5000];
    e.field(b"x-long", &long, false, &mut block);
    let got = decode(&mut Decoder::new(4096), &block).unwrap();
    let expected: Vec<Field> = vec![
        (b":status".to_vec(), b"200".to_vec(), false),
        (b":status".to_vec(), b"418".to_vec(), false),
        (b"content-length".to_vec(), b"0".to_vec(), false),
        (b"x-empty".to_vec(), b"".to_vec(), false),
        (b"cookie".to_vec(), b"secret=1".to_vec(), true),
        (b"x-long".to_vec(), long, false),
    ];
    assert_eq!(got, expected);
}

/// A deliberately plain HPACK encoder that picks representations at random
/// and keeps its own copy of the dynamic table, to check the decoder against.
struct ModelEncoder {
    entries: VecDeque<(Vec<u8>, Vec<u8>)>,
    max_size: usize,
    /// The most a size update may ask for (the decoder's setting).
    limit: usize,
}

const STATIC: &[(&str, &str)] = &[
    (":authority", ""),
    (":method", "GET"),
    (":method", "POST"),
    (":path", "/"),
    (":path", "/index.html"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "200"),
    (":status", "204"),
    (":status", "206"),
    (":status", "304"),
    (":status", "400"),
    (":status", "404"),
    (":status", "500"),
    ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"),
    ("accept-language", ""),
    ("accept-ranges", ""),
    ("accept", ""),
    ("access-control-allow-origin", ""),
    ("age", ""),
    ("allow", ""),
    ("authorization", ""),
    ("cache-control", ""),
    ("content-disposition", ""),
    ("content-encoding", ""),
    ("content-language", ""),
    ("content-length", ""),
    ("content-location", ""),
    ("content-range", ""),
    ("content-type", ""),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("expect", ""),
    ("expires", ""),
    ("from", ""),
    ("host", ""),
    ("if-match", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("if-range", ""),
    ("if-unmodified-since", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("max-forwards", ""),
    ("proxy-authenticate", ""),
    ("proxy-authorization", ""),
    ("range", ""),
    ("referer", ""),
    ("refresh", ""),
    ("retry-after", ""),
    ("server", ""),
    ("set-cookie", ""),
    ("strict-transport-security", ""),
    ("transfer-encoding", ""),
    ("user-agent", ""),
    ("vary", ""),
    ("via", ""),
    ("www-authenticate", ""),
];

fn int(out: &mut Vec<u8>, flags: u8, bits: u32, value: usize) {
    let max = (1 << bits) - 1;
    if value < max {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | max as u8);
    let mut rest = value - max;
    while rest >= 128 {
        out.push(0x80 | (rest % 128) as u8);
        rest /= 128;
    }
    out.push(rest as u8);
}

impl ModelEncoder {
    fn size(&self) -> usize {
        self.entries
            .iter()
            .map(|(n, v)| n.len() + v.len() + 32)
            .sum()
    }

    fn evict(&mut self, to: usize) {
        while self.size() > to {
            self.entries.pop_back();
        }
    }

    fn string(&self, rng: &mut Rng, s: &[u8], out: &mut Vec<u8>) {
        if rng.below(2) == 0 {
            int(out, 0x80, 7, huffman::encoded_len(s));
            huffman::encode(s, out);
        } else {
            int(out, 0x00, 7, s.len());
            out.extend_from_slice(s);
        }
    }

    /// An index (1-based, static then dynamic) for the name, and one for the
    /// whole field, chosen at random among the matches.
    fn find(&self, rng: &mut Rng, name: &[u8], value: &[u8]) -> (Option<usize>, Option<usize>) {
        let all = STATIC
            .iter()
            .map(|&(n, v)| (n.as_bytes(), v.as_bytes()))
            .chain(self.entries.iter().map(|(n, v)| (&n[..], &v[..])));
        let (mut names, mut exact) = (Vec::new(), Vec::new());
        for (i, (n, v)) in all.enumerate() {
            if n == name {
                names.push(i + 1);
                if v == value {
                    exact.push(i + 1);
                }
            }
        }
        let pick = |rng: &mut Rng, v: &Vec<usize>| {
            (!v.is_empty()).then(|| v[rng.below(v.len() as u64) as usize])
        };
        (pick(rng, &names), pick(rng, &exact))
    }

    fn begin(&mut self, rng: &mut Rng, out: &mut Vec<u8>) {
        for _ in 0..rng.below(3) {
            let size = rng.below(self.limit as u64 + 1) as usize;
            int(out, 0x20, 5, size);
            self.max_size = size;
            self.evict(size);
        }
    }

    fn field(
        &mut self,
        rng: &mut Rng,
        name: &[u8],
        value: &[u8],
        sensitive: bool,
        out: &mut Vec<u8>,
    ) {
        let (name_index, exact) = self.find(rng, name, value);
        if let (Some(index), false, true) = (exact, sensitive, rng.below(2) == 0) {
            int(out, 0x80, 7, index);
            return;
        }
        let (flags, bits, insert) = match (sensitive, rng.below(3)) {
            (true, _) => (0x10, 4, false),
            (false, 0) => (0x40, 6, true),
            (false, 1) => (0x00, 4, false),
            _ => (0x40, 6, true),
        };
        match name_index.filter(|_| rng.below(4) != 0) {
            Some(index) => int(out, flags, bits, index),
            None => {
                out.push(flags);
                self.string(rng, name, out);
            }
        }
        self.string(rng, value, out);
        if insert {
            let size = name.len() + value.len() + 32;
            if size > self.max_size {
                self.entries.clear();
            } else {
                self.evict(self.max_size - size);
                self.entries.push_front((name.to_vec(), value.to_vec()));
            }
        }
    }
}

#[test]
fn decoder_agrees_with_model_encoder() {
    let mut rng = Rng(0xdead_beef_cafe_f00d);
    for &limit in &[0, 64, 256, 1000, 4096] {
        let mut model = ModelEncoder {
            entries: VecDeque::new(),
            max_size: limit,
            limit,
        };
        let mut d = Decoder::new(limit);
        let mut most_entries = 0;
        for _ in 0..300 {
            // Reuse names and values often, so that the dynamic table is hit.
            let n = 1 + rng.below(20) as usize;
            let mut fields = random_fields(&mut rng, n);
            for i in 1..fields.len() {
                if rng.below(3) == 0 {
                    let j = rng.below(i as u64) as usize;
                    fields[i] = fields[j].clone();
                }
            }
            let mut block = Vec::new();
            model.begin(&mut rng, &mut block);
            for (n, v, s) in &fields {
                model.field(&mut rng, n, v, *s, &mut block);
            }
            let got = decode(&mut d, &block).unwrap();
            assert_eq!(got, fields);
            let expected: Vec<(String, String)> = model
                .entries
                .iter()
                .map(|(n, v)| {
                    (
                        String::from_utf8_lossy(n).into_owned(),
                        String::from_utf8_lossy(v).into_owned(),
                    )
                })
                .collect();
            assert_eq!(table(&d), expected);
            assert_eq!(d.dynamic_table_size(), model.size());
            assert_eq!(d.dynamic_table_max_size(), model.max_size);
            most_entries = most_entries.max(d.dynamic_table_len());
        }
        // The table was really used (entries are at least 33 bytes).
        if limit >= 256 {
            assert!(
                most_entries >= 3,
                "limit {limit}: at most {most_entries} entries"
            );
        }
    }
}
