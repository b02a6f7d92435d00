//! Reading answers from servers we do not control (portals, the OAuth server) with a size cap,
//! so one that streams forever costs a bounded amount of memory.
use bytes::{Bytes, BytesMut};

/// Largest REST answer we read. A `batch` of 50 list pages of 50 items stays well below it.
pub(crate) const MAX_REST_BODY: usize = 32 * 1024 * 1024;
/// Largest OAuth server answer we read: a token pair is a few hundred bytes.
pub(crate) const MAX_OAUTH_BODY: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    #[error("the answer is larger than {0} bytes")]
    TooLarge(usize),
    #[error(transparent)]
    Transport(#[from] reqwest::Error),
}

/// Reads the whole body, or stops as soon as it passes `limit` bytes.
pub(crate) async fn read_capped(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Bytes, BodyError> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge(limit));
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}
