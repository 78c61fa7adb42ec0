//! A stored response and its on-disk metadata encoding.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use crate::generations::Stamp;
use crate::policy::{self, ResponseSource, RuleVary, VariantSpec};

/// Where a stored body is.
#[derive(Debug, Clone)]
pub(crate) enum StoredBody {
    /// In the memory tier.
    Memory(Bytes),
    /// In the disk tier's file for the entry's key, with its CRC-32C.
    Disk {
        /// Length in bytes.
        len: u64,
        /// Checksum of the body.
        crc: u32,
    },
}

/// One stored response.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// The full key (primary key, spec and variant inputs).
    pub key: String,
    /// The URL part of the key.
    pub primary: String,
    pub site: String,
    /// Deploy it was produced under, voided by another deploy unless
    /// `keep_across_deploys`.
    pub deploy: Option<String>,
    pub source: ResponseSource,
    pub rule: RuleVary,
    pub status: StatusCode,
    /// Origin headers as stored (edge-only ones included).
    pub origin_headers: HeaderMap,
    /// What clients get (edge-only ones removed).
    pub out_headers: HeaderMap,
    pub body: StoredBody,
    pub stored_at_ms: u64,
    pub fresh_until_ms: u64,
    pub initial_age_s: u64,
    pub swr_ms: u64,
    pub sie_ms: u64,
    pub must_revalidate: bool,
    pub tags: Vec<String>,
    pub keep_across_deploys: bool,
    pub stamp: Stamp,
}

impl Entry {
    /// Bytes the entry holds in memory (weights for eviction).
    pub fn weight(&self) -> u64 {
        let headers: usize = self
            .origin_headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 32)
            .sum();
        let body = match &self.body {
            StoredBody::Memory(b) => b.len(),
            StoredBody::Disk { .. } => 0,
        };
        (self.key.len() + self.primary.len() + 2 * headers + body + 256) as u64
    }

    /// Body length.
    pub fn body_len(&self) -> u64 {
        match &self.body {
            StoredBody::Memory(b) => b.len() as u64,
            StoredBody::Disk { len, .. } => *len,
        }
    }

    /// The variant spec this entry was stored under.
    pub fn spec(&self) -> VariantSpec {
        VariantSpec::from_response(&self.origin_headers, &self.rule)
    }

    /// Has `ETag` or `Last-Modified`.
    pub fn has_validator(&self) -> bool {
        self.origin_headers.contains_key(http::header::ETAG)
            || self
                .origin_headers
                .contains_key(http::header::LAST_MODIFIED)
    }

    /// Encodes everything but the body.
    pub fn encode_meta(&self) -> Vec<u8> {
        let mut w = Vec::with_capacity(512);
        put_str(&mut w, &self.key);
        put_str(&mut w, &self.primary);
        put_str(&mut w, &self.site);
        match &self.deploy {
            Some(d) => {
                w.push(1);
                put_str(&mut w, d);
            }
            None => w.push(0),
        }
        w.push(self.source.code());
        w.push(u8::from(self.rule.country) | (u8::from(self.rule.language) << 1));
        put_u32(&mut w, self.rule.cookies.len() as u32);
        for c in &self.rule.cookies {
            put_str(&mut w, c);
        }
        w.extend_from_slice(&self.status.as_u16().to_le_bytes());
        put_u32(&mut w, self.origin_headers.len() as u32);
        for (k, v) in &self.origin_headers {
            put_bytes(&mut w, k.as_str().as_bytes());
            put_bytes(&mut w, v.as_bytes());
        }
        for n in [
            self.stored_at_ms,
            self.fresh_until_ms,
            self.initial_age_s,
            self.swr_ms,
            self.sie_ms,
        ] {
            w.extend_from_slice(&n.to_le_bytes());
        }
        w.push(u8::from(self.must_revalidate) | (u8::from(self.keep_across_deploys) << 1));
        put_u32(&mut w, self.tags.len() as u32);
        for t in &self.tags {
            put_str(&mut w, t);
        }
        w.extend_from_slice(&self.stamp.all.to_le_bytes());
        w.extend_from_slice(&self.stamp.site.to_le_bytes());
        put_u32(&mut w, self.stamp.tags.len() as u32);
        for g in &self.stamp.tags {
            w.extend_from_slice(&g.to_le_bytes());
        }
        w
    }

    /// Decodes metadata written by [`Entry::encode_meta`]; `None` when it is
    /// malformed.
    pub fn decode_meta(data: &[u8], body_len: u64, crc: u32) -> Option<Entry> {
        let mut r = Reader { data, pos: 0 };
        let key = r.string()?;
        let primary = r.string()?;
        let site = r.string()?;
        let deploy = match r.u8()? {
            0 => None,
            _ => Some(r.string()?),
        };
        let source = ResponseSource::from_code(r.u8()?);
        let flags = r.u8()?;
        let n = r.u32()? as usize;
        let mut cookies = Vec::with_capacity(n.min(64));
        for _ in 0..n {
            cookies.push(r.string()?);
        }
        let rule = RuleVary {
            country: flags & 1 != 0,
            language: flags & 2 != 0,
            cookies,
        };
        let status = StatusCode::from_u16(u16::from_le_bytes(r.array::<2>()?)).ok()?;
        let n = r.u32()? as usize;
        let mut origin_headers = HeaderMap::with_capacity(n.min(256));
        for _ in 0..n {
            let k = HeaderName::from_bytes(r.bytes()?).ok()?;
            let v = HeaderValue::from_bytes(r.bytes()?).ok()?;
            origin_headers.append(k, v);
        }
        let stored_at_ms = r.u64()?;
        let fresh_until_ms = r.u64()?;
        let initial_age_s = r.u64()?;
        let swr_ms = r.u64()?;
        let sie_ms = r.u64()?;
        let flags = r.u8()?;
        let n = r.u32()? as usize;
        let mut tags = Vec::with_capacity(n.min(policy::MAX_TAGS * 2));
        for _ in 0..n {
            tags.push(r.string()?);
        }
        let all = r.u64()?;
        let site_gen = r.u64()?;
        let n = r.u32()? as usize;
        let mut tag_gens = Vec::with_capacity(n.min(policy::MAX_TAGS * 2));
        for _ in 0..n {
            tag_gens.push(r.u64()?);
        }
        if r.pos != data.len() {
            return None;
        }
        let mut out_headers = origin_headers.clone();
        policy::downstream_headers(&mut out_headers);
        Some(Entry {
            key,
            primary,
            site,
            deploy,
            source,
            rule,
            status,
            origin_headers,
            out_headers,
            body: StoredBody::Disk { len: body_len, crc },
            stored_at_ms,
            fresh_until_ms,
            initial_age_s,
            swr_ms,
            sie_ms,
            must_revalidate: flags & 1 != 0,
            tags,
            keep_across_deploys: flags & 2 != 0,
            stamp: Stamp {
                all,
                site: site_gen,
                tags: tag_gens,
            },
        })
    }
}

fn put_u32(w: &mut Vec<u8>, n: u32) {
    w.extend_from_slice(&n.to_le_bytes());
}

fn put_bytes(w: &mut Vec<u8>, b: &[u8]) {
    put_u32(w, b.len() as u32);
    w.extend_from_slice(b);
}

fn put_str(w: &mut Vec<u8>, s: &str) {
    put_bytes(w, s.as_bytes());
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.data.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }
    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.array::<4>()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.array::<8>()?))
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn string(&mut self) -> Option<String> {
        std::str::from_utf8(self.bytes()?).ok().map(str::to_owned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Entry {
        let mut h = HeaderMap::new();
        h.append("cache-control", HeaderValue::from_static("max-age=60"));
        h.append("set-cookie", HeaderValue::from_static("a=1"));
        h.append("set-cookie", HeaderValue::from_static("b=2"));
        h.append(
            "x-bin",
            HeaderValue::from_bytes(&[0x80, 0xff, b'a']).unwrap(),
        );
        let mut out = h.clone();
        policy::downstream_headers(&mut out);
        Entry {
            key: "s\0h\0/p\0q*\0".into(),
            primary: "s\0h\0/p".into(),
            site: "s".into(),
            deploy: Some("d1".into()),
            source: ResponseSource::EdgeFunction { manual: true },
            rule: RuleVary {
                country: true,
                language: false,
                cookies: vec!["ab".into()],
            },
            status: StatusCode::NOT_FOUND,
            origin_headers: h,
            out_headers: out,
            body: StoredBody::Disk { len: 10, crc: 7 },
            stored_at_ms: 1,
            fresh_until_ms: 2,
            initial_age_s: 3,
            swr_ms: 4,
            sie_ms: 5,
            must_revalidate: true,
            tags: vec!["t1".into(), "t2".into()],
            keep_across_deploys: true,
            stamp: Stamp {
                all: 9,
                site: 8,
                tags: vec![7, 6],
            },
        }
    }

    #[test]
    fn metadata_round_trips() {
        let e = sample();
        let d = Entry::decode_meta(&e.encode_meta(), 10, 7).unwrap();
        assert_eq!(d.key, e.key);
        assert_eq!(d.primary, e.primary);
        assert_eq!(d.deploy, e.deploy);
        assert_eq!(d.source, e.source);
        assert_eq!(d.rule, e.rule);
        assert_eq!(d.status, e.status);
        assert_eq!(d.origin_headers, e.origin_headers);
        assert_eq!(d.out_headers, e.out_headers);
        assert_eq!(
            (
                d.stored_at_ms,
                d.fresh_until_ms,
                d.initial_age_s,
                d.swr_ms,
                d.sie_ms
            ),
            (1, 2, 3, 4, 5)
        );
        assert!(d.must_revalidate && d.keep_across_deploys);
        assert_eq!(d.tags, e.tags);
        assert_eq!(d.stamp, e.stamp);
        assert!(matches!(d.body, StoredBody::Disk { len: 10, crc: 7 }));
    }

    #[test]
    fn truncated_or_padded_metadata_is_refused_without_panic() {
        let m = sample().encode_meta();
        for n in 0..m.len() {
            assert!(Entry::decode_meta(&m[..n], 0, 0).is_none(), "prefix {n}");
        }
        let mut padded = m.clone();
        padded.push(0);
        assert!(Entry::decode_meta(&padded, 0, 0).is_none());
        // Absurd lengths do not allocate or panic.
        let mut huge = m;
        huge[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(Entry::decode_meta(&huge, 0, 0).is_none());
    }
}
