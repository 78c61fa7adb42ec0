//! The response body type of the edge: whole buffers (the common case, no
//! allocation beyond the `Bytes` handle) or a boxed stream for large files.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;

/// A response body.
pub enum Body {
    /// Nothing.
    Empty,
    /// One buffer, sent whole.
    Full(Option<Bytes>),
    /// A stream (large files, proxied responses).
    Stream(UnsyncBoxBody<Bytes, std::io::Error>),
    /// Another body whose end finishes the request's access record.
    Logged(Box<crate::log::Logged>),
    /// One buffer whose bytes are also in a local file: sent like `Full`,
    /// or with `sendfile` where the connection allows it.
    File(Box<FileBody>),
}

/// The bytes of `file` from `offset`, also held in memory.
pub struct FileBody {
    /// The bytes (taken when sent as data).
    pub bytes: Option<Bytes>,
    /// The file they were read from.
    pub file: std::sync::Arc<std::fs::File>,
    /// Where they start in the file.
    pub offset: u64,
}

impl Body {
    /// A body of `bytes`.
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        let b = bytes.into();
        if b.is_empty() {
            Self::Empty
        } else {
            Self::Full(Some(b))
        }
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            Body::Empty => Poll::Ready(None),
            Body::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Body::Stream(s) => Pin::new(s).poll_frame(cx),
            Body::Logged(l) => Pin::new(&mut **l).poll_frame(cx),
            Body::File(f) => Poll::Ready(f.bytes.take().map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Empty => true,
            Body::Full(b) => b.is_none(),
            Body::Stream(s) => s.is_end_stream(),
            Body::Logged(l) => l.is_end_stream(),
            Body::File(f) => f.bytes.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Empty => SizeHint::with_exact(0),
            Body::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Body::Full(None) => SizeHint::with_exact(0),
            Body::Stream(s) => s.size_hint(),
            Body::Logged(l) => l.size_hint(),
            Body::File(f) => SizeHint::with_exact(f.bytes.as_ref().map_or(0, |b| b.len() as u64)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    /// Where `sendfile` is not used (TLS, h2, hyper), a file body is its
    /// bytes, once, with an exact length.
    #[tokio::test]
    async fn file_bodies_yield_their_bytes_elsewhere() {
        let file = std::fs::File::open(std::env::current_exe().unwrap()).unwrap();
        let body = Body::File(Box::new(FileBody {
            bytes: Some(Bytes::from_static(b"0123456789")),
            file: std::sync::Arc::new(file),
            offset: 5,
        }));
        assert_eq!(http_body::Body::size_hint(&body).exact(), Some(10));
        assert!(!http_body::Body::is_end_stream(&body));
        let mut body = body;
        let frame = body.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), "0123456789");
        assert!(http_body::Body::is_end_stream(&body));
        assert!(body.frame().await.is_none());
    }
}
