//! The decoder's dynamic table (RFC 7541 §2.3.2 and §4).
//!
//! Names and values live back to back in one byte buffer, oldest first; a
//! small ring of [`Entry`] records says where each entry starts. Evicting an
//! entry only drops its record. The bytes of evicted entries stay at the front
//! of the buffer until an insertion would take the buffer past twice the
//! table's maximum size; the live bytes (less than the maximum size) are then
//! moved to the front. So each inserted byte is moved at most about once, and
//! once the buffer and the ring have grown to their working sizes, insertion
//! allocates nothing.

use std::collections::VecDeque;

/// What an entry costs beyond its name and value (RFC 7541 §4.1).
pub(crate) const ENTRY_OVERHEAD: usize = 32;

/// Where an entry's name and value are in [`DynamicTable::bytes`].
#[derive(Debug, Clone, Copy)]
struct Entry {
    start: usize,
    name_len: usize,
    value_len: usize,
}

impl Entry {
    fn size(&self) -> usize {
        self.name_len + self.value_len + ENTRY_OVERHEAD
    }
}

/// A dynamic table: entries numbered from 0 (the newest), each with a name
/// and a value, whose total size is held at or below a maximum.
#[derive(Debug)]
pub(crate) struct DynamicTable {
    /// The entries, newest first.
    entries: VecDeque<Entry>,
    /// Names and values, oldest first, with those of evicted entries possibly
    /// still at the front.
    bytes: Vec<u8>,
    /// The table's size as RFC 7541 §4.1 counts it.
    size: usize,
    /// The current maximum size, as last set by a dynamic table size update.
    max_size: usize,
}

impl DynamicTable {
    /// An empty table with the given maximum size.
    pub(crate) fn new(max_size: usize) -> Self {
        Self {
            entries: VecDeque::new(),
            bytes: Vec::new(),
            size: 0,
            max_size,
        }
    }

    /// The table's size (sum of entry sizes).
    pub(crate) fn size(&self) -> usize {
        self.size
    }

    /// The number of entries.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The current maximum size.
    pub(crate) fn max_size(&self) -> usize {
        self.max_size
    }

    /// Entry `i` (0 is the newest) as `(name, value)`.
    #[inline]
    pub(crate) fn get(&self, i: usize) -> Option<(&[u8], &[u8])> {
        let e = self.entries.get(i)?;
        let mid = e.start + e.name_len;
        let name = self.bytes.get(e.start..mid)?;
        let value = self.bytes.get(mid..mid + e.value_len)?;
        Some((name, value))
    }

    /// Changes the maximum size, evicting the oldest entries until the table
    /// fits (RFC 7541 §4.3).
    pub(crate) fn set_max_size(&mut self, max_size: usize) {
        self.max_size = max_size;
        self.evict_to(max_size);
    }

    /// Adds an entry, first evicting the oldest entries to make room for it
    /// (RFC 7541 §4.4). An entry larger than the maximum size leaves the table
    /// empty.
    ///
    /// `name` and `value` must not point into the table itself: a name taken
    /// from an entry that this insertion evicts is copied out by the caller
    /// first.
    pub(crate) fn insert(&mut self, name: &[u8], value: &[u8]) {
        let size = name
            .len()
            .saturating_add(value.len())
            .saturating_add(ENTRY_OVERHEAD);
        if size > self.max_size {
            self.evict_to(0);
            return;
        }
        // Cannot underflow: `size <= max_size`.
        self.evict_to(self.max_size - size);

        let added = name.len() + value.len();
        if self.bytes.len() + added > self.max_size.saturating_mul(2) {
            self.compact();
        }
        let start = self.bytes.len();
        self.bytes.extend_from_slice(name);
        self.bytes.extend_from_slice(value);
        self.entries.push_front(Entry {
            start,
            name_len: name.len(),
            value_len: value.len(),
        });
        self.size += size;
    }

    /// Evicts the oldest entries until the size is at most `limit`.
    fn evict_to(&mut self, limit: usize) {
        while self.size > limit {
            let Some(oldest) = self.entries.pop_back() else {
                break;
            };
            self.size -= oldest.size();
        }
        if self.entries.is_empty() {
            // Nothing live: the buffer can start again from the beginning.
            self.size = 0;
            self.bytes.clear();
        }
    }

    /// Drops the bytes of evicted entries from the front of the buffer.
    fn compact(&mut self) {
        let Some(oldest) = self.entries.back() else {
            self.bytes.clear();
            return;
        };
        let dead = oldest.start.min(self.bytes.len());
        self.bytes.drain(..dead);
        for e in &mut self.entries {
            e.start -= dead;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(t: &DynamicTable) -> Vec<(Vec<u8>, Vec<u8>)> {
        (0..t.len())
            .map(|i| {
                let (n, v) = t.get(i).unwrap();
                (n.to_vec(), v.to_vec())
            })
            .collect()
    }

    fn pair(n: &str, v: &str) -> (Vec<u8>, Vec<u8>) {
        (n.as_bytes().to_vec(), v.as_bytes().to_vec())
    }

    #[test]
    fn newest_first_and_evicts_oldest() {
        // Each entry here is 1 + 1 + 32 = 34; three fit in 102.
        let mut t = DynamicTable::new(102);
        t.insert(b"a", b"1");
        t.insert(b"b", b"2");
        t.insert(b"c", b"3");
        assert_eq!(t.size(), 102);
        assert_eq!(
            entries(&t),
            [pair("c", "3"), pair("b", "2"), pair("a", "1")]
        );
        t.insert(b"d", b"4");
        assert_eq!(
            entries(&t),
            [pair("d", "4"), pair("c", "3"), pair("b", "2")]
        );
        assert_eq!(t.size(), 102);
        assert_eq!(t.get(3), None);
    }

    #[test]
    fn oversized_entry_empties_the_table() {
        let mut t = DynamicTable::new(100);
        t.insert(b"a", b"1");
        t.insert(b"name", &[b'x'; 100]);
        assert_eq!(t.len(), 0);
        assert_eq!(t.size(), 0);
        // An entry of exactly the maximum size fits.
        t.insert(b"n", &[b'v'; 67]);
        assert_eq!(t.len(), 1);
        assert_eq!(t.size(), 100);
    }

    #[test]
    fn lowering_the_maximum_evicts() {
        let mut t = DynamicTable::new(200);
        t.insert(b"a", b"1");
        t.insert(b"b", b"2");
        t.set_max_size(34);
        assert_eq!(entries(&t), [pair("b", "2")]);
        t.set_max_size(0);
        assert_eq!(t.len(), 0);
        assert_eq!(t.size(), 0);
        t.insert(b"a", b"1");
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn buffer_stays_bounded_and_contents_survive_compaction() {
        let mut t = DynamicTable::new(300);
        for i in 0..10_000usize {
            let name = format!("name-{}", i % 7);
            let value = "v".repeat(i % 50);
            t.insert(name.as_bytes(), value.as_bytes());
            assert!(t.bytes.len() <= 600, "buffer grew to {}", t.bytes.len());
            assert!(t.size() <= 300);
            let (n, v) = t.get(0).unwrap();
            assert_eq!((n, v), (name.as_bytes(), value.as_bytes()));
            let total: usize = (0..t.len())
                .map(|j| {
                    let (n, v) = t.get(j).unwrap();
                    n.len() + v.len() + ENTRY_OVERHEAD
                })
                .sum();
            assert_eq!(total, t.size());
        }
    }
}
