//! `multipart/form-data` parsing (RFC 7578) for `Request.formData()` and
//! `Response.formData()`. Written for the shapes browsers and HTTP clients
//! send; anything malformed is `None` (a `TypeError` in JS), never a panic.

/// One part: its field name, file name (file parts only), content type and bytes.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Part {
    pub(crate) name: String,
    pub(crate) filename: Option<String>,
    pub(crate) content_type: Option<String>,
    pub(crate) body: Vec<u8>,
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() || from > hay.len() {
        return None;
    }
    hay[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

/// Splits `name="value"; other=x` style parameters after the first `;`.
fn params(value: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = match value.find(';') {
        Some(i) => &value[i + 1..],
        None => return out,
    };
    loop {
        rest = rest.trim_start_matches([' ', '\t', ';']);
        if rest.is_empty() {
            return out;
        }
        let Some(eq) = rest.find('=') else {
            return out;
        };
        let key = rest[..eq].trim().to_ascii_lowercase();
        rest = rest[eq + 1..].trim_start();
        let val;
        if let Some(quoted) = rest.strip_prefix('"') {
            let mut v = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            v.push(n);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    _ => v.push(c),
                }
            }
            val = v;
            rest = &quoted[end.min(quoted.len())..];
        } else {
            let stop = rest.find(';').unwrap_or(rest.len());
            val = rest[..stop].trim().to_string();
            rest = &rest[stop..];
        }
        out.push((key, val));
    }
}

/// Browsers escape `"`, CR and LF in names as `%22`, `%0D`, `%0A`.
fn unescape_name(s: &str) -> String {
    s.replace("%22", "\"")
        .replace("%0D", "\r")
        .replace("%0A", "\n")
}

/// The `boundary` parameter of a `multipart/form-data` content type.
pub(crate) fn boundary(content_type: &str) -> Option<String> {
    params(content_type)
        .into_iter()
        .find(|(k, _)| k == "boundary")
        .map(|(_, v)| v)
        .filter(|b| !b.is_empty() && b.len() <= 200)
}

pub(crate) fn parse(body: &[u8], boundary: &str) -> Option<Vec<Part>> {
    let delim = format!("--{boundary}").into_bytes();
    let next_delim = format!("\r\n--{boundary}").into_bytes();
    // The first delimiter: at the start, or after a preamble ending in CRLF.
    let mut pos = if body.starts_with(&delim) {
        delim.len()
    } else {
        find(body, &next_delim, 0)? + next_delim.len()
    };
    let mut parts = Vec::new();
    loop {
        let rest = body.get(pos..)?;
        if rest.starts_with(b"--") {
            return Some(parts);
        }
        // Transport padding, then CRLF.
        let line_end = find(body, b"\r\n", pos)?;
        if !body[pos..line_end]
            .iter()
            .all(|b| *b == b' ' || *b == b'\t')
        {
            return None;
        }
        let headers_start = line_end + 2;
        let (headers_end, body_start) =
            if body.get(headers_start..headers_start + 2) == Some(b"\r\n") {
                (headers_start, headers_start + 2)
            } else {
                let e = find(body, b"\r\n\r\n", headers_start)?;
                (e, e + 4)
            };
        let headers = String::from_utf8_lossy(&body[headers_start..headers_end]);
        let mut name = None;
        let mut filename = None;
        let mut content_type = None;
        for line in headers.split("\r\n") {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            let k = k.trim().to_ascii_lowercase();
            let v = v.trim();
            if k == "content-disposition" {
                let kind = v.split(';').next().unwrap_or("").trim();
                if !kind.eq_ignore_ascii_case("form-data") {
                    return None;
                }
                for (pk, pv) in params(v) {
                    match pk.as_str() {
                        "name" => name = Some(unescape_name(&pv)),
                        "filename" => filename = Some(unescape_name(&pv)),
                        _ => {}
                    }
                }
            } else if k == "content-type" {
                content_type = Some(v.to_string());
            }
        }
        let end = find(body, &next_delim, body_start.min(body.len()))?;
        parts.push(Part {
            name: name?,
            filename,
            content_type,
            body: body.get(body_start..end)?.to_vec(),
        });
        pos = end + next_delim.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fields_and_files() {
        let body = b"preamble\r\n--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--XyZ\r\nContent-Disposition: form-data; name=\"f\"; filename=\"x \\\"q\\\".txt\"\r\nContent-Type: text/plain\r\n\r\nline1\r\nline2\r\n--XyZ\r\nContent-Disposition: form-data; name=\"%22n%22\"\r\n\r\n\r\n--XyZ--\r\nepilogue";
        let parts = parse(body, "XyZ").expect("parses");
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0].name, "a");
        assert_eq!(parts[0].body, b"1");
        assert_eq!(parts[1].filename.as_deref(), Some("x \"q\".txt"));
        assert_eq!(parts[1].content_type.as_deref(), Some("text/plain"));
        assert_eq!(parts[1].body, b"line1\r\nline2");
        assert_eq!(parts[2].name, "\"n\"");
        assert_eq!(parts[2].body, b"");
    }

    #[test]
    fn rejects_malformed() {
        assert_eq!(parse(b"", "b"), None);
        assert_eq!(
            parse(
                b"--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nno end",
                "b"
            ),
            None
        );
        assert_eq!(
            parse(
                b"--b\r\nContent-Disposition: attachment; name=\"a\"\r\n\r\nx\r\n--b--",
                "b"
            ),
            None
        );
        assert_eq!(
            parse(b"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n--b--", "b"),
            None,
            "no name"
        );
        assert_eq!(parse(b"--b--\r\n", "b"), Some(vec![]));
    }

    #[test]
    fn boundary_param() {
        assert_eq!(
            boundary("multipart/form-data; boundary=abc").as_deref(),
            Some("abc")
        );
        assert_eq!(
            boundary("multipart/form-data;boundary=\"a b\"; x=1").as_deref(),
            Some("a b")
        );
        assert_eq!(boundary("multipart/form-data"), None);
        assert_eq!(boundary("multipart/form-data; boundary="), None);
    }
}
