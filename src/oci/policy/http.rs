//! Signatures from an `http://` lookaside (ureq, without a TLS stack: a signature is
//! verified by its own cryptography, so the transport adds no trust; `https://` is refused
//! with a message rather than fetched without checking certificates).

use std::time::Duration;

use anyhow::{Context, Result, bail};

/// Whole-request timeout: a stalled lookaside server fails the pull instead of hanging it.
const TIMEOUT: Duration = Duration::from_secs(60);

/// GETs `url`: `None` on 404 (no more signatures), the body (at most `max` bytes) on 200.
pub fn get(url: &str, max: u64) -> Result<Option<Vec<u8>>> {
    if url.starts_with("https://") {
        bail!(
            "signature URL {url}: https:// lookasides are not supported by cfsctl (it carries \
             no TLS client); serve the lookaside over http:// or copy it to a file:// \
             directory: signatures are verified by their OpenPGP signature, not by the \
             transport"
        );
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(TIMEOUT))
        .build()
        .into();
    let mut response = agent
        .get(url)
        .call()
        .with_context(|| format!("fetching signature {url}"))?;
    match response.status().as_u16() {
        200 => {}
        404 => return Ok(None),
        code => bail!("fetching signature {url}: HTTP status {code}"),
    }
    let body = response
        .body_mut()
        .with_config()
        .limit(max)
        .read_to_vec()
        .with_context(|| format!("reading signature {url} (at most {max} bytes)"))?;
    Ok(Some(body))
}
