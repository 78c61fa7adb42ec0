//! Header blocks written by `Encoder` must decode to the fields that went in,
//! in order and with their sensitivity; and the dynamic table size updates
//! at the start of each block must follow the peer's settings (RFC 7541 §4.2).
//!
//! Input: a run of operations, each starting with one byte `op`:
//! - `op & 7 == 0`: end the block;
//! - `1`: two bytes (big-endian) as a SETTINGS_HEADER_TABLE_SIZE from the peer;
//! - `2`: two bytes as a `:status` code;
//! - `3`, `4`: a field whose name is picked from `NAMES` by the next byte;
//! - `5`, `6`, `7`: a field whose name is the next byte's count (below 48) of
//!   bytes, lowercased.
//!
//! A field's value is picked from `VALUES` by the next byte if `op & 0x20`,
//! or else is that byte's count of bytes (times 16 if `op & 0x80`). It is
//! sensitive if `op & 0x40`. The block in progress ends at the end of input.
#![no_main]
use ledge_hpack::{Decoder, Encoder};
use libfuzzer_sys::fuzz_target;

/// Every name of the static table, and a few that are nearly one of them.
const NAMES: &[&[u8]] = &[
    b":authority",
    b":method",
    b":path",
    b":scheme",
    b":status",
    b"accept-charset",
    b"accept-encoding",
    b"accept-language",
    b"accept-ranges",
    b"accept",
    b"access-control-allow-origin",
    b"age",
    b"allow",
    b"authorization",
    b"cache-control",
    b"content-disposition",
    b"content-encoding",
    b"content-language",
    b"content-length",
    b"content-location",
    b"content-range",
    b"content-type",
    b"cookie",
    b"date",
    b"etag",
    b"expect",
    b"expires",
    b"from",
    b"host",
    b"if-match",
    b"if-modified-since",
    b"if-none-match",
    b"if-range",
    b"if-unmodified-since",
    b"last-modified",
    b"link",
    b"location",
    b"max-forwards",
    b"proxy-authenticate",
    b"proxy-authorization",
    b"range",
    b"referer",
    b"refresh",
    b"retry-after",
    b"server",
    b"set-cookie",
    b"strict-transport-security",
    b"transfer-encoding",
    b"user-agent",
    b"vary",
    b"via",
    b"www-authenticate",
    b"",
    b":",
    b":pat",
    b":paths",
    b":statu",
    b"ag",
    b"agf",
    b"content-typf",
    b"set-cookie2",
    b"x-request-id",
];

/// The values of the static table, and a few others.
const VALUES: &[&[u8]] = &[
    b"",
    b"GET",
    b"POST",
    b"/",
    b"/index.html",
    b"http",
    b"https",
    b"200",
    b"204",
    b"206",
    b"304",
    b"400",
    b"404",
    b"500",
    b"gzip, deflate",
    b"gzip",
    b"get",
    b"/index.htm",
];

/// The dynamic table maximum size both sides assume until a setting says
/// otherwise.
const INITIAL_TABLE_SIZE: usize = 4096;

struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn u16(&mut self) -> u16 {
        let hi = self.byte().unwrap_or(0);
        let lo = self.byte().unwrap_or(0);
        u16::from_be_bytes([hi, lo])
    }

    /// Up to `n` bytes.
    fn take(&mut self, n: usize) -> &'a [u8] {
        let (taken, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        taken
    }
}

type Field = (Vec<u8>, Vec<u8>, bool);

/// What goes into one block, and the settings the peer sent before it.
#[derive(Default)]
struct Block {
    settings: Vec<usize>,
    fields: Vec<Field>,
    /// `:status` codes, by their place in `fields`.
    statuses: Vec<(usize, u16)>,
}

/// Reads the dynamic table size updates at the start of `block`: each is
/// `001` and a 5-bit prefix integer (RFC 7541 §5.1, §6.3).
fn leading_updates(mut block: &[u8]) -> Vec<usize> {
    let mut updates = Vec::new();
    while let Some((&first, rest)) = block.split_first() {
        if first & 0xe0 != 0x20 {
            break;
        }
        block = rest;
        let mut value = usize::from(first & 0x1f);
        if value == 0x1f {
            let mut shift = 0;
            loop {
                let (&b, rest) = block.split_first().expect("an update ends in the block");
                block = rest;
                value += usize::from(b & 0x7f) << shift;
                shift += 7;
                if b & 0x80 == 0 {
                    break;
                }
                assert!(shift < 35, "an update longer than five continuation bytes");
            }
        }
        updates.push(value);
    }
    updates
}

struct Check {
    encoder: Encoder,
    decoder: Decoder,
    /// The table size the encoder last signalled (or the initial one).
    signalled: usize,
    /// The peer's setting in force.
    setting: usize,
}

impl Check {
    fn block(&mut self, block: Block) {
        for &s in &block.settings {
            self.encoder.set_peer_max_table_size(s);
            self.setting = s;
        }

        let mut out = Vec::new();
        self.encoder.begin(&mut out);
        let mut statuses = block.statuses.iter().peekable();
        for (i, (name, value, sensitive)) in block.fields.iter().enumerate() {
            match statuses.next_if(|&&(at, _)| at == i) {
                Some(&(_, code)) => self.encoder.status(code, &mut out),
                None => self.encoder.field(name, value, *sensitive, &mut out),
            }
        }

        // Size updates: one at or below the lowest setting since the last
        // block if that went below what was signalled, and none that leaves
        // the table above the setting in force.
        let updates = leading_updates(&out);
        if let Some(&lowest) = block.settings.iter().min() {
            if lowest < self.signalled {
                let least = updates.iter().min().copied();
                assert!(
                    least.is_some_and(|u| u <= lowest),
                    "setting {lowest} below {} needs an update, got {updates:?}",
                    self.signalled
                );
            }
        }
        if let Some(&last) = updates.last() {
            assert!(
                last <= self.setting,
                "update {last} above the setting {}",
                self.setting
            );
            self.signalled = last;
        }

        let mut got = Vec::new();
        let result = self
            .decoder
            .decode(&out, usize::MAX, |name, value, sensitive| {
                got.push((name.to_vec(), value.to_vec(), sensitive));
            });
        assert_eq!(result, Ok(()), "an encoded block decodes: {out:02x?}");
        assert!(
            got == block.fields,
            "fields {:?} came back as {got:?}",
            block.fields
        );
        if !updates.is_empty() {
            assert_eq!(self.decoder.dynamic_table_max_size(), self.signalled);
        }
        assert_eq!(
            self.decoder.dynamic_table_len(),
            0,
            "the encoder never indexes"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let mut check = Check {
        encoder: Encoder::new(),
        // Above any setting a u16 can give, so the decoder itself refuses no
        // update; the checks above hold the encoder to the settings.
        decoder: Decoder::new(usize::from(u16::MAX)),
        signalled: INITIAL_TABLE_SIZE,
        setting: INITIAL_TABLE_SIZE,
    };
    let mut block = Block::default();
    let mut pending = false;

    while let Some(op) = input.byte() {
        pending = true;
        let name: Vec<u8> = match op & 7 {
            0 => {
                check.block(std::mem::take(&mut block));
                pending = false;
                continue;
            }
            1 => {
                block.settings.push(usize::from(input.u16()));
                continue;
            }
            2 => {
                let code = input.u16();
                block.statuses.push((block.fields.len(), code));
                block
                    .fields
                    .push((b":status".to_vec(), code.to_string().into_bytes(), false));
                continue;
            }
            3 | 4 => {
                let i = usize::from(input.byte().unwrap_or(0));
                NAMES[i % NAMES.len()].to_vec()
            }
            _ => {
                let len = usize::from(input.byte().unwrap_or(0) % 48);
                input.take(len).to_ascii_lowercase()
            }
        };
        let pick = input.byte().unwrap_or(0);
        let value = if op & 0x20 != 0 {
            VALUES[usize::from(pick) % VALUES.len()].to_vec()
        } else {
            let scale = if op & 0x80 != 0 { 16 } else { 1 };
            input.take(usize::from(pick) * scale).to_vec()
        };
        block.fields.push((name, value, op & 0x40 != 0));
    }
    if pending {
        check.block(block);
    }
});
