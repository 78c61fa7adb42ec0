//! Header block decoding (RFC 7541 §3 and §6).

use std::fmt;

use crate::dynamic::{DynamicTable, ENTRY_OVERHEAD};
use crate::table::{static_entry, STATIC_TABLE};
use crate::{huffman, integer};

/// Why a header block could not be decoded.
///
/// Every variant but [`ListTooLarge`](DecodeError::ListTooLarge) means the
/// block was malformed, and the decoder's dynamic table may no longer match the
/// peer's: in HTTP/2 that is a connection error of type COMPRESSION_ERROR
/// (RFC 9113 §4.3), and the decoder must not be used again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// The block ends in the middle of an integer: an index, a string length
    /// or a table size.
    Truncated,
    /// An integer is larger than `u32::MAX` or uses more than five
    /// continuation bytes.
    IntegerOverflow,
    /// An index is 0, or beyond the end of the static and dynamic tables.
    BadIndex,
    /// A Huffman-coded string contains EOS or has invalid padding.
    BadHuffman,
    /// A dynamic table size update asks for more than the
    /// SETTINGS_HEADER_TABLE_SIZE we advertise.
    TableSizeUpdateTooLarge,
    /// A dynamic table size update comes after a field in the block.
    TableSizeUpdateNotAtStart,
    /// A string literal's length runs past the end of the block.
    StringTooLong,
    /// The decoded header list is larger than the `max_list_size` given to
    /// [`Decoder::decode`]. The block itself was valid and the dynamic table is
    /// in step with the peer's, so the connection can go on; only the message
    /// is refused.
    ListTooLarge,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Truncated => "header block ends inside a representation",
            Self::IntegerOverflow => "integer in header block is too large",
            Self::BadIndex => "header block refers to a table index that does not exist",
            Self::BadHuffman => "invalid Huffman-coded string in header block",
            Self::TableSizeUpdateTooLarge => "dynamic table size update above the advertised limit",
            Self::TableSizeUpdateNotAtStart => "dynamic table size update after a header field",
            Self::StringTooLong => "string literal runs past the end of the header block",
            Self::ListTooLarge => "header list is larger than the limit",
        })
    }
}

impl std::error::Error for DecodeError {}

/// Scratch buffers above this capacity are released after a block instead of
/// being kept for the next one, so that one large block does not pin memory
/// for the life of the connection.
const SCRATCH_KEEP: usize = 16 * 1024;

/// An HPACK decoder: one per connection, fed every header block the peer
/// sends, in order.
#[derive(Debug)]
pub struct Decoder {
    table: DynamicTable,
    /// The SETTINGS_HEADER_TABLE_SIZE we advertise: the most a dynamic table
    /// size update may ask for.
    max_table_size: usize,
    /// The current field's name when it must be held here: Huffman-decoded,
    /// or copied out of the dynamic table before an insertion that may evict
    /// its entry.
    name_buf: Vec<u8>,
    /// The current field's value when Huffman-decoded.
    value_buf: Vec<u8>,
}

impl Decoder {
    /// A decoder whose peer may use a dynamic table of up to `max_table_size`
    /// bytes: the SETTINGS_HEADER_TABLE_SIZE we advertise (4096 if we do not
    /// send the setting). The table starts at that size, as RFC 7541 §4.2
    /// has it, until the peer sends a dynamic table size update.
    pub fn new(max_table_size: usize) -> Self {
        Self {
            table: DynamicTable::new(max_table_size),
            max_table_size,
            name_buf: Vec::new(),
            value_buf: Vec::new(),
        }
    }

    /// Decodes one complete header block (a HEADERS payload and its
    /// CONTINUATION payloads, joined), calling `field(name, value, sensitive)`
    /// for each field in order. `sensitive` is true for fields sent as "never
    /// indexed" (RFC 7541 §6.2.3), which a proxy must forward in the same form.
    ///
    /// `name` and `value` are valid only during the call: they may point into
    /// `block`, into the decoder's scratch buffers, or into its dynamic table.
    /// Once those buffers and the table's storage have grown to their working
    /// sizes, decoding allocates nothing.
    ///
    /// `max_list_size` bounds the decoded header list's size as RFC 9113
    /// §6.5.2 counts it: the sum over fields of name length + value length +
    /// 32. Once the running total exceeds it, `field` is no longer called but
    /// decoding goes on to the end of the block, so that the dynamic table
    /// stays in step with the peer's; then the result is
    /// [`DecodeError::ListTooLarge`]. A malformed block is reported as such
    /// even if the list was also too large.
    ///
    /// Any other error leaves the dynamic table in an unknown state; see
    /// [`DecodeError`].
    pub fn decode(
        &mut self,
        block: &[u8],
        max_list_size: usize,
        mut field: impl FnMut(&[u8], &[u8], bool),
    ) -> Result<(), DecodeError> {
        let Self {
            table,
            max_table_size,
            name_buf,
            value_buf,
        } = self;
        let mut rest = block;
        let mut list_size: usize = 0;
        let mut fields_seen = false;
        let mut emit = |name: &[u8], value: &[u8], sensitive: bool| {
            list_size = list_size.saturating_add(name.len() + value.len() + ENTRY_OVERHEAD);
            if list_size <= max_list_size {
                field(name, value, sensitive);
            }
        };

        while let Some(&first) = rest.first() {
            if first & 0x80 != 0 {
                // Indexed field (§6.1).
                let index = integer::decode(&mut rest, 7)?;
                let (name, value) = lookup(table, index)?;
                emit(name, value, false);
            } else if first & 0x40 != 0 {
                // Literal with incremental indexing (§6.2.1).
                let index = integer::decode(&mut rest, 6)?;
                let name: &[u8] = if index == 0 {
                    read_string(&mut rest, name_buf)?
                } else if let Some((name, _)) = static_entry(index) {
                    name
                } else {
                    // The insertion below may evict this very entry (§4.4),
                    // so the name is copied out first.
                    let (name, _) = lookup(table, index)?;
                    name_buf.clear();
                    name_buf.extend_from_slice(name);
                    name_buf.as_slice()
                };
                let value = read_string(&mut rest, value_buf)?;
                emit(name, value, false);
                table.insert(name, value);
            } else if first & 0x20 != 0 {
                // Dynamic table size update (§6.3): only before the first
                // field (§4.2).
                if fields_seen {
                    return Err(DecodeError::TableSizeUpdateNotAtStart);
                }
                let size = integer::decode(&mut rest, 5)?;
                if size > *max_table_size {
                    return Err(DecodeError::TableSizeUpdateTooLarge);
                }
                table.set_max_size(size);
                continue;
            } else {
                // Literal without indexing (§6.2.2) or never indexed (§6.2.3).
                let sensitive = first & 0x10 != 0;
                let index = integer::decode(&mut rest, 4)?;
                let name = if index == 0 {
                    read_string(&mut rest, name_buf)?
                } else {
                    lookup(table, index)?.0
                };
                let value = read_string(&mut rest, value_buf)?;
                emit(name, value, sensitive);
            }
            fields_seen = true;
        }

        for buf in [name_buf, value_buf] {
            if buf.capacity() > SCRATCH_KEEP {
                *buf = Vec::new();
            }
        }
        if list_size > max_list_size {
            return Err(DecodeError::ListTooLarge);
        }
        Ok(())
    }

    /// The dynamic table's current size: the sum of its entries' sizes
    /// (name + value + 32 each).
    pub fn dynamic_table_size(&self) -> usize {
        self.table.size()
    }

    /// The dynamic table's current maximum size, as last set by the peer (or
    /// the initial `max_table_size`).
    pub fn dynamic_table_max_size(&self) -> usize {
        self.table.max_size()
    }

    /// The number of entries in the dynamic table.
    pub fn dynamic_table_len(&self) -> usize {
        self.table.len()
    }

    /// Dynamic table entry `i` as `(name, value)`, counting from 0 for the
    /// newest (HPACK index 62).
    pub fn dynamic_entry(&self, i: usize) -> Option<(&[u8], &[u8])> {
        self.table.get(i)
    }
}

/// The entry at HPACK `index`: 1 to 61 in the static table, then the dynamic
/// table from its newest entry.
#[inline]
fn lookup(table: &DynamicTable, index: usize) -> Result<(&[u8], &[u8]), DecodeError> {
    if let Some(entry) = static_entry(index) {
        return Ok(entry);
    }
    if index == 0 {
        return Err(DecodeError::BadIndex);
    }
    table
        .get(index - STATIC_TABLE.len() - 1)
        .ok_or(DecodeError::BadIndex)
}

/// Reads a string literal (§5.2) from the front of `input`. A raw string is
/// returned in place; a Huffman-coded one is decoded into `buf`.
#[inline]
fn read_string<'s, 'b: 's, 'v: 's>(
    input: &mut &'b [u8],
    buf: &'v mut Vec<u8>,
) -> Result<&'s [u8], DecodeError> {
    let coded = input.first().is_some_and(|&b| b & 0x80 != 0);
    let len = integer::decode(input, 7)?;
    let (text, rest) = input
        .split_at_checked(len)
        .ok_or(DecodeError::StringTooLong)?;
    *input = rest;
    if coded {
        buf.clear();
        huffman::decode(text, buf)?;
        Ok(buf.as_slice())
    } else {
        Ok(text)
    }
}
