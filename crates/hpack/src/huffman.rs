//! The static Huffman code of HPACK (RFC 7541 §5.2 and Appendix B).
//!
//! [`decode`] reads four bits at a time through a state table: a state is a node
//! of the code tree, and each (state, nibble) pair says which node comes next and
//! which symbol, if any, was completed on the way. The table is computed at
//! compile time from the code table, so a table that is not a complete prefix
//! code fails the build rather than the decoder.
//!
//! [`encode`] and [`encoded_len`] are the other direction; the HPACK encoder in
//! this crate writes strings raw, so they serve tests and any caller that wants
//! smaller output.

use crate::DecodeError;

/// The code for each symbol as `(code, length in bits)`, indexed by symbol:
/// the 256 byte values, then end-of-string (EOS) at 256. Codes are right-aligned
/// in the `u32`. This is RFC 7541 Appendix B.
pub(crate) const CODES: [(u32, u32); 257] = [
    (0x1ff8, 13),     // 0
    (0x7fffd8, 23),   // 1
    (0xfffffe2, 28),  // 2
    (0xfffffe3, 28),  // 3
    (0xfffffe4, 28),  // 4
    (0xfffffe5, 28),  // 5
    (0xfffffe6, 28),  // 6
    (0xfffffe7, 28),  // 7
    (0xfffffe8, 28),  // 8
    (0xffffea, 24),   // 9
    (0x3ffffffc, 30), // 10
    (0xfffffe9, 28),  // 11
    (0xfffffea, 28),  // 12
    (0x3ffffffd, 30), // 13
    (0xfffffeb, 28),  // 14
    (0xfffffec, 28),  // 15
    (0xfffffed, 28),  // 16
    (0xfffffee, 28),  // 17
    (0xfffffef, 28),  // 18
    (0xffffff0, 28),  // 19
    (0xffffff1, 28),  // 20
    (0xffffff2, 28),  // 21
    (0x3ffffffe, 30), // 22
    (0xffffff3, 28),  // 23
    (0xffffff4, 28),  // 24
    (0xffffff5, 28),  // 25
    (0xffffff6, 28),  // 26
    (0xffffff7, 28),  // 27
    (0xffffff8, 28),  // 28
    (0xffffff9, 28),  // 29
    (0xffffffa, 28),  // 30
    (0xffffffb, 28),  // 31
    (0x14, 6),        // 32 ' '
    (0x3f8, 10),      // 33 '!'
    (0x3f9, 10),      // 34 '"'
    (0xffa, 12),      // 35 '#'
    (0x1ff9, 13),     // 36 '$'
    (0x15, 6),        // 37 '%'
    (0xf8, 8),        // 38 '&'
    (0x7fa, 11),      // 39 '\''
    (0x3fa, 10),      // 40 '('
    (0x3fb, 10),      // 41 ')'
    (0xf9, 8),        // 42 '*'
    (0x7fb, 11),      // 43 '+'
    (0xfa, 8),        // 44 ','
    (0x16, 6),        // 45 '-'
    (0x17, 6),        // 46 '.'
    (0x18, 6),        // 47 '/'
    (0x0, 5),         // 48 '0'
    (0x1, 5),         // 49 '1'
    (0x2, 5),         // 50 '2'
    (0x19, 6),        // 51 '3'
    (0x1a, 6),        // 52 '4'
    (0x1b, 6),        // 53 '5'
    (0x1c, 6),        // 54 '6'
    (0x1d, 6),        // 55 '7'
    (0x1e, 6),        // 56 '8'
    (0x1f, 6),        // 57 '9'
    (0x5c, 7),        // 58 ':'
    (0xfb, 8),        // 59 ';'
    (0x7ffc, 15),     // 60 '<'
    (0x20, 6),        // 61 '='
    (0xffb, 12),      // 62 '>'
    (0x3fc, 10),      // 63 '?'
    (0x1ffa, 13),     // 64 '@'
    (0x21, 6),        // 65 'A'
    (0x5d, 7),        // 66 'B'
    (0x5e, 7),        // 67 'C'
    (0x5f, 7),        // 68 'D'
    (0x60, 7),        // 69 'E'
    (0x61, 7),        // 70 'F'
    (0x62, 7),        // 71 'G'
    (0x63, 7),        // 72 'H'
    (0x64, 7),        // 73 'I'
    (0x65, 7),        // 74 'J'
    (0x66, 7),        // 75 'K'
    (0x67, 7),        // 76 'L'
    (0x68, 7),        // 77 'M'
    (0x69, 7),        // 78 'N'
    (0x6a, 7),        // 79 'O'
    (0x6b, 7),        // 80 'P'
    (0x6c, 7),        // 81 'Q'
    (0x6d, 7),        // 82 'R'
    (0x6e, 7),        // 83 'S'
    (0x6f, 7),        // 84 'T'
    (0x70, 7),        // 85 'U'
    (0x71, 7),        // 86 'V'
    (0x72, 7),        // 87 'W'
    (0xfc, 8),        // 88 'X'
    (0x73, 7),        // 89 'Y'
    (0xfd, 8),        // 90 'Z'
    (0x1ffb, 13),     // 91 '['
    (0x7fff0, 19),    // 92 '\'
    (0x1ffc, 13),     // 93 ']'
    (0x3ffc, 14),     // 94 '^'
    (0x22, 6),        // 95 '_'
    (0x7ffd, 15),     // 96 '`'
    (0x3, 5),         // 97 'a'
    (0x23, 6),        // 98 'b'
    (0x4, 5),         // 99 'c'
    (0x24, 6),        // 100 'd'
    (0x5, 5),         // 101 'e'
    (0x25, 6),        // 102 'f'
    (0x26, 6),        // 103 'g'
    (0x27, 6),        // 104 'h'
    (0x6, 5),         // 105 'i'
    (0x74, 7),        // 106 'j'
    (0x75, 7),        // 107 'k'
    (0x28, 6),        // 108 'l'
    (0x29, 6),        // 109 'm'
    (0x2a, 6),        // 110 'n'
    (0x7, 5),         // 111 'o'
    (0x2b, 6),        // 112 'p'
    (0x76, 7),        // 113 'q'
    (0x2c, 6),        // 114 'r'
    (0x8, 5),         // 115 's'
    (0x9, 5),         // 116 't'
    (0x2d, 6),        // 117 'u'
    (0x77, 7),        // 118 'v'
    (0x78, 7),        // 119 'w'
    (0x79, 7),        // 120 'x'
    (0x7a, 7),        // 121 'y'
    (0x7b, 7),        // 122 'z'
    (0x7ffe, 15),     // 123 '{'
    (0x7fc, 11),      // 124 '|'
    (0x3ffd, 14),     // 125 '}'
    (0x1ffd, 13),     // 126 '~'
    (0xffffffc, 28),  // 127
    (0xfffe6, 20),    // 128
    (0x3fffd2, 22),   // 129
    (0xfffe7, 20),    // 130
    (0xfffe8, 20),    // 131
    (0x3fffd3, 22),   // 132
    (0x3fffd4, 22),   // 133
    (0x3fffd5, 22),   // 134
    (0x7fffd9, 23),   // 135
    (0x3fffd6, 22),   // 136
    (0x7fffda, 23),   // 137
    (0x7fffdb, 23),   // 138
    (0x7fffdc, 23),   // 139
    (0x7fffdd, 23),   // 140
    (0x7fffde, 23),   // 141
    (0xffffeb, 24),   // 142
    (0x7fffdf, 23),   // 143
    (0xffffec, 24),   // 144
    (0xffffed, 24),   // 145
    (0x3fffd7, 22),   // 146
    (0x7fffe0, 23),   // 147
    (0xffffee, 24),   // 148
    (0x7fffe1, 23),   // 149
    (0x7fffe2, 23),   // 150
    (0x7fffe3, 23),   // 151
    (0x7fffe4, 23),   // 152
    (0x1fffdc, 21),   // 153
    (0x3fffd8, 22),   // 154
    (0x7fffe5, 23),   // 155
    (0x3fffd9, 22),   // 156
    (0x7fffe6, 23),   // 157
    (0x7fffe7, 23),   // 158
    (0xffffef, 24),   // 159
    (0x3fffda, 22),   // 160
    (0x1fffdd, 21),   // 161
    (0xfffe9, 20),    // 162
    (0x3fffdb, 22),   // 163
    (0x3fffdc, 22),   // 164
    (0x7fffe8, 23),   // 165
    (0x7fffe9, 23),   // 166
    (0x1fffde, 21),   // 167
    (0x7fffea, 23),   // 168
    (0x3fffdd, 22),   // 169
    (0x3fffde, 22),   // 170
    (0xfffff0, 24),   // 171
    (0x1fffdf, 21),   // 172
    (0x3fffdf, 22),   // 173
    (0x7fffeb, 23),   // 174
    (0x7fffec, 23),   // 175
    (0x1fffe0, 21),   // 176
    (0x1fffe1, 21),   // 177
    (0x3fffe0, 22),   // 178
    (0x1fffe2, 21),   // 179
    (0x7fffed, 23),   // 180
    (0x3fffe1, 22),   // 181
    (0x7fffee, 23),   // 182
    (0x7fffef, 23),   // 183
    (0xfffea, 20),    // 184
    (0x3fffe2, 22),   // 185
    (0x3fffe3, 22),   // 186
    (0x3fffe4, 22),   // 187
    (0x7ffff0, 23),   // 188
    (0x3fffe5, 22),   // 189
    (0x3fffe6, 22),   // 190
    (0x7ffff1, 23),   // 191
    (0x3ffffe0, 26),  // 192
    (0x3ffffe1, 26),  // 193
    (0xfffeb, 20),    // 194
    (0x7fff1, 19),    // 195
    (0x3fffe7, 22),   // 196
    (0x7ffff2, 23),   // 197
    (0x3fffe8, 22),   // 198
    (0x1ffffec, 25),  // 199
    (0x3ffffe2, 26),  // 200
    (0x3ffffe3, 26),  // 201
    (0x3ffffe4, 26),  // 202
    (0x7ffffde, 27),  // 203
    (0x7ffffdf, 27),  // 204
    (0x3ffffe5, 26),  // 205
    (0xfffff1, 24),   // 206
    (0x1ffffed, 25),  // 207
    (0x7fff2, 19),    // 208
    (0x1fffe3, 21),   // 209
    (0x3ffffe6, 26),  // 210
    (0x7ffffe0, 27),  // 211
    (0x7ffffe1, 27),  // 212
    (0x3ffffe7, 26),  // 213
    (0x7ffffe2, 27),  // 214
    (0xfffff2, 24),   // 215
    (0x1fffe4, 21),   // 216
    (0x1fffe5, 21),   // 217
    (0x3ffffe8, 26),  // 218
    (0x3ffffe9, 26),  // 219
    (0xffffffd, 28),  // 220
    (0x7ffffe3, 27),  // 221
    (0x7ffffe4, 27),  // 222
    (0x7ffffe5, 27),  // 223
    (0xfffec, 20),    // 224
    (0xfffff3, 24),   // 225
    (0xfffed, 20),    // 226
    (0x1fffe6, 21),   // 227
    (0x3fffe9, 22),   // 228
    (0x1fffe7, 21),   // 229
    (0x1fffe8, 21),   // 230
    (0x7ffff3, 23),   // 231
    (0x3fffea, 22),   // 232
    (0x3fffeb, 22),   // 233
    (0x1ffffee, 25),  // 234
    (0x1ffffef, 25),  // 235
    (0xfffff4, 24),   // 236
    (0xfffff5, 24),   // 237
    (0x3ffffea, 26),  // 238
    (0x7ffff4, 23),   // 239
    (0x3ffffeb, 26),  // 240
    (0x7ffffe6, 27),  // 241
    (0x3ffffec, 26),  // 242
    (0x3ffffed, 26),  // 243
    (0x7ffffe7, 27),  // 244
    (0x7ffffe8, 27),  // 245
    (0x7ffffe9, 27),  // 246
    (0x7ffffea, 27),  // 247
    (0x7ffffeb, 27),  // 248
    (0xffffffe, 28),  // 249
    (0x7ffffec, 27),  // 250
    (0x7ffffed, 27),  // 251
    (0x7ffffee, 27),  // 252
    (0x7ffffef, 27),  // 253
    (0x7fffff0, 27),  // 254
    (0x3ffffee, 26),  // 255
    (0x3fffffff, 30), // 256 EOS
];

/// The end-of-string symbol. It never encodes data; a decoder that meets it in
/// a string must reject the string (RFC 7541 §5.2).
const EOS: u16 = 256;

// The decoder's state table holds one step per (node, nibble) pair, packed in
// a `u32` so that the next lookup's index is one mask and one OR away:
//
//   bit 0       EMIT: a symbol was completed during the nibble (1, so that it
//               can be added to the output position as it is)
//   bit 1       ACCEPT: the string may end here: the decoder is at the root, or
//               the bits since the last symbol are one to seven 1s, which is
//               valid padding (a prefix of EOS no longer than 7 bits)
//   bit 2       FAIL: the nibble completed EOS, so the string is invalid
//   bits 4-11   the node reached, times 16: the index of its row in the table
//   bits 16-23  the symbol completed, if EMIT is set
const EMIT: u32 = 1;
const ACCEPT: u32 = 2;
const FAIL: u32 = 4;
const ROW_MASK: u32 = 0xff0;
const SYM_SHIFT: u32 = 16;

/// Number of internal nodes of the code tree. A complete binary tree with 257
/// leaves has 256 of them, so a node number fits in a byte.
const NODES: usize = 256;

/// The decoder's state table: the step for node `n` and nibble `x` is at
/// `n * 16 + x`.
static DECODE_TABLE: [u32; NODES * 16] = build_decode_table();

/// Builds [`DECODE_TABLE`] from [`CODES`]. It runs at compile time; a panic
/// here (also an out-of-bounds index) is a build error, and means the code
/// table is not a complete prefix code.
const fn build_decode_table() -> [u32; NODES * 16] {
    // A child slot holds an internal node number, `LEAF | symbol`, or `EMPTY`.
    const EMPTY: u16 = u16::MAX;
    const LEAF: u16 = 0x8000;

    // The code tree, with the root at node 0.
    let mut children = [[EMPTY; 2]; NODES];
    let mut nodes = 1;
    let mut sym = 0;
    while sym < CODES.len() {
        let (code, len) = CODES[sym];
        let mut node = 0;
        let mut depth = len;
        while depth > 1 {
            depth -= 1;
            let bit = ((code >> depth) & 1) as usize;
            if children[node][bit] == EMPTY {
                children[node][bit] = nodes as u16;
                nodes += 1;
            }
            let child = children[node][bit];
            if child & LEAF != 0 {
                panic!("a Huffman code is a prefix of another");
            }
            node = child as usize;
        }
        let bit = (code & 1) as usize;
        if children[node][bit] != EMPTY {
            panic!("two Huffman codes are equal, or one is a prefix of another");
        }
        children[node][bit] = LEAF | sym as u16;
        sym += 1;
    }
    if nodes != NODES {
        panic!("the Huffman code is not complete");
    }

    // The nodes where a string may end: the root, and the nodes reached from
    // it by one to seven 1 bits.
    let mut accepting = [false; NODES];
    accepting[0] = true;
    let mut node = 0;
    let mut depth = 0;
    while depth < 7 {
        node = children[node][1] as usize;
        accepting[node] = true;
        depth += 1;
    }

    let mut table = [0; NODES * 16];
    let mut state = 0;
    while state < NODES {
        let mut nibble = 0;
        while nibble < 16 {
            let mut node = state;
            let mut step = 0;
            let mut bit = 4;
            while bit > 0 {
                bit -= 1;
                let child = children[node][(nibble >> bit) & 1];
                if child == EMPTY {
                    panic!("the Huffman code tree has an empty branch");
                }
                if child & LEAF == 0 {
                    node = child as usize;
                    continue;
                }
                let s = child & !LEAF;
                if s == EOS {
                    step |= FAIL;
                } else {
                    // Codes are at least 5 bits long, so four bits can
                    // complete at most one of them.
                    if step & EMIT != 0 {
                        panic!("two symbols completed in one nibble");
                    }
                    step |= EMIT | (s as u32) << SYM_SHIFT;
                }
                node = 0;
            }
            if accepting[node] {
                step |= ACCEPT;
            }
            table[state * 16 + nibble] = step | (node as u32) << 4;
            nibble += 1;
        }
        state += 1;
    }
    table
}

/// Decodes the Huffman-coded string `input` and appends the result to `out`.
///
/// Fails with [`DecodeError::BadHuffman`] when the string contains EOS, ends
/// in padding longer than 7 bits, or ends in padding that is not all 1s
/// (RFC 7541 §5.2). On failure `out` is left as it was.
pub fn decode(input: &[u8], out: &mut Vec<u8>) -> Result<(), DecodeError> {
    let start = out.len();
    // Every code is at least 5 bits long, so `n` bytes hold at most `8n / 5`
    // symbols. The loop writes each step's symbol byte whether or not the
    // step completed one, and only advances past it if it did; the spare byte
    // takes the write after the last symbol. This keeps the loop free of
    // branches on the data.
    let room = input.len().saturating_mul(8) / 5 + 1;
    out.resize(start.saturating_add(room), 0);
    let buf = out.get_mut(start..).unwrap_or_default();

    let mut pos = 0;
    let mut step = ACCEPT; // at the root
    let mut seen = 0;
    for &byte in input {
        let row = (step & ROW_MASK) as usize;
        step = lookup(row | usize::from(byte >> 4));
        if let Some(slot) = buf.get_mut(pos) {
            *slot = (step >> SYM_SHIFT) as u8;
        }
        pos += (step & EMIT) as usize;
        seen |= step;

        let row = (step & ROW_MASK) as usize;
        step = lookup(row | usize::from(byte & 0x0f));
        if let Some(slot) = buf.get_mut(pos) {
            *slot = (step >> SYM_SHIFT) as u8;
        }
        pos += (step & EMIT) as usize;
        seen |= step;
    }

    if seen & FAIL != 0 || step & ACCEPT == 0 {
        out.truncate(start);
        return Err(DecodeError::BadHuffman);
    }
    out.truncate(start + pos);
    Ok(())
}

/// The step at `index`, which is at most `0xff0 | 0xf`: always in the table.
#[inline(always)]
fn lookup(index: usize) -> u32 {
    DECODE_TABLE[index & (NODES * 16 - 1)]
}

/// Appends the Huffman coding of `input` to `out`, padded to a whole byte
/// with 1 bits as RFC 7541 §5.2 requires. It writes exactly
/// [`encoded_len(input)`](encoded_len) bytes.
pub fn encode(input: &[u8], out: &mut Vec<u8>) {
    out.reserve(encoded_len(input));
    // Bits not yet written sit at the bottom of `pending`; `bits` counts them
    // and stays below 8 between symbols, so with codes of at most 30 bits
    // the 64-bit accumulator never loses a pending bit.
    let mut pending: u64 = 0;
    let mut bits: u32 = 0;
    for &byte in input {
        let (code, len) = CODES[usize::from(byte)];
        pending = (pending << len) | u64::from(code);
        bits += len;
        while bits >= 8 {
            bits -= 8;
            out.push((pending >> bits) as u8);
        }
    }
    if bits > 0 {
        out.push(((pending << (8 - bits)) as u8) | (0xff >> bits));
    }
}

/// The number of bytes [`encode`] writes for `input`.
pub fn encoded_len(input: &[u8]) -> usize {
    let bits: u64 = input
        .iter()
        .map(|&byte| u64::from(CODES[usize::from(byte)].1))
        .sum();
    bits.div_ceil(8) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bit-at-a-time decoder written straight from the RFC's rules, to check
    /// the table-driven one against.
    fn reference_decode(input: &[u8]) -> Result<Vec<u8>, DecodeError> {
        let mut out = Vec::new();
        let mut code: u32 = 0;
        let mut len: u32 = 0;
        for &byte in input {
            for shift in (0..8).rev() {
                code = (code << 1) | u32::from((byte >> shift) & 1);
                len += 1;
                if let Some(sym) = CODES.iter().position(|&c| c == (code, len)) {
                    if sym == 256 {
                        return Err(DecodeError::BadHuffman);
                    }
                    out.push(sym as u8);
                    code = 0;
                    len = 0;
                }
            }
        }
        // What is left must be padding: at most 7 bits, all 1s.
        if len > 7 || code != (1 << len) - 1 {
            return Err(DecodeError::BadHuffman);
        }
        Ok(out)
    }

    fn hex(s: &str) -> Vec<u8> {
        let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
        digits
            .chunks(2)
            .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
            .collect()
    }

    fn decode_vec(input: &[u8]) -> Result<Vec<u8>, DecodeError> {
        let mut out = Vec::new();
        decode(input, &mut out).map(|()| out)
    }

    fn encode_vec(input: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode(input, &mut out);
        out
    }

    #[test]
    fn code_lengths_form_a_complete_prefix_code() {
        // Kraft: the sum of 2^-len over all codes is exactly 1.
        let sum: u64 = CODES.iter().map(|&(_, len)| 1u64 << (30 - len)).sum();
        assert_eq!(sum, 1 << 30);
        assert!(CODES
            .iter()
            .all(|&(code, len)| (5..=30).contains(&len) && code >> len == 0));
    }

    #[test]
    fn codes_are_canonical() {
        // The HPACK code is canonical: sorted by (length, symbol), each code is
        // the previous one plus one, shifted left by the growth in length.
        // Recomputing the codes from the lengths alone must give the table.
        let mut order: Vec<usize> = (0..CODES.len()).collect();
        order.sort_by_key(|&sym| (CODES[sym].1, sym));
        let mut next: u32 = 0;
        let mut prev_len = CODES[order[0]].1;
        for sym in order {
            let len = CODES[sym].1;
            next <<= len - prev_len;
            prev_len = len;
            assert_eq!(CODES[sym].0, next, "symbol {sym}");
            next += 1;
        }
        // The last code (EOS) is all ones.
        assert_eq!(next, 1 << 30);
    }

    #[test]
    fn rfc_examples() {
        // Strings from RFC 7541 Appendix C.4 and C.6.
        let cases: &[(&str, &[u8])] = &[
            ("f1e3 c2e5 f23a 6ba0 ab90 f4ff", b"www.example.com"),
            ("a8eb 1064 9cbf", b"no-cache"),
            ("25a8 49e9 5ba9 7d7f", b"custom-key"),
            ("25a8 49e9 5bb8 e8b4 bf", b"custom-value"),
            ("6402", b"302"),
            ("aec3 771a 4b", b"private"),
            (
                "d07a be94 1054 d444 a820 0595 040b 8166 e082 a62d 1bff",
                b"Mon, 21 Oct 2013 20:13:21 GMT",
            ),
            (
                "9d29 ad17 1863 c78f 0b97 c8e9 ae82 ae43 d3",
                b"https://www.example.com",
            ),
            ("640e ff", b"307"),
            ("9bd9 ab", b"gzip"),
            (
                "94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f 9587 3160 65c0 03ed 4ee5 b106 3d50 07",
                b"foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1",
            ),
        ];
        for &(coded, plain) in cases {
            let coded = hex(coded);
            assert_eq!(decode_vec(&coded).unwrap(), plain);
            assert_eq!(encode_vec(plain), coded);
            assert_eq!(encoded_len(plain), coded.len());
        }
    }

    #[test]
    fn every_byte_round_trips() {
        let all: Vec<u8> = (0..=255).collect();
        let coded = encode_vec(&all);
        assert_eq!(coded.len(), encoded_len(&all));
        assert_eq!(decode_vec(&coded).unwrap(), all);
        for byte in 0..=255u8 {
            for n in 1..=9 {
                let s = vec![byte; n];
                assert_eq!(decode_vec(&encode_vec(&s)).unwrap(), s);
            }
        }
    }

    #[test]
    fn agrees_with_reference_on_all_short_inputs() {
        assert_eq!(decode_vec(&[]), Ok(Vec::new()));
        for a in 0..=255u8 {
            assert_eq!(decode_vec(&[a]), reference_decode(&[a]), "{a:02x}");
            for b in 0..=255u8 {
                let input = [a, b];
                assert_eq!(
                    decode_vec(&input),
                    reference_decode(&input),
                    "{a:02x}{b:02x}"
                );
            }
        }
    }

    #[test]
    fn agrees_with_reference_on_random_inputs() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..20_000 {
            let len = (next() % 12) as usize;
            // Bias towards 1 bits, which reach the long codes and EOS.
            let input: Vec<u8> = (0..len)
                .map(|_| {
                    let r = next();
                    if r & 3 == 0 {
                        r as u8
                    } else {
                        (r >> 8) as u8 | 0xf8
                    }
                })
                .collect();
            assert_eq!(decode_vec(&input), reference_decode(&input), "{input:02x?}");
        }
        // Valid strings too: random text, encoded, decodes back.
        for _ in 0..2_000 {
            let len = (next() % 40) as usize;
            let text: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let coded = encode_vec(&text);
            assert_eq!(reference_decode(&coded).unwrap(), text);
            assert_eq!(decode_vec(&coded).unwrap(), text);
        }
    }

    #[test]
    fn rejects_bad_padding_and_eos() {
        // "a" is 00011; padded with 111 it is 0x1f.
        assert_eq!(decode_vec(&[0x1f]).unwrap(), b"a");
        // Padding of 0s.
        assert_eq!(decode_vec(&[0x18]), Err(DecodeError::BadHuffman));
        // Padding of 1s mixed with a 0.
        assert_eq!(decode_vec(&[0x1d]), Err(DecodeError::BadHuffman));
        // Padding longer than 7 bits: 3 bits, then a whole byte of 1s.
        assert_eq!(decode_vec(&[0x1f, 0xff]), Err(DecodeError::BadHuffman));
        assert_eq!(decode_vec(&[0xff]), Err(DecodeError::BadHuffman));
        // EOS (thirty 1s) then two bits of padding.
        assert_eq!(decode_vec(&[0xff; 4]), Err(DecodeError::BadHuffman));
        // EOS in the middle of a string: "a" (5 bits), EOS (30), "a" (5): 40
        // bits, so five whole bytes with no padding.
        let bits: u64 = (0b00011 << 35) | (0x3fff_ffff << 5) | 0b00011;
        let bytes = bits.to_be_bytes();
        assert_eq!(decode_vec(&bytes[3..]), Err(DecodeError::BadHuffman));
    }

    #[test]
    fn failure_leaves_output_alone() {
        let mut out = b"kept".to_vec();
        assert_eq!(decode(&[0xff; 4], &mut out), Err(DecodeError::BadHuffman));
        assert_eq!(out, b"kept");
        decode(&[0x1f], &mut out).unwrap();
        assert_eq!(out, b"kepta");
    }
}
