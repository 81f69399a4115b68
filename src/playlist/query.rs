//! The LL-HLS delivery directives in a playlist request's query string.

/// `_HLS_skip`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Skip {
    #[default]
    No,
    Yes,
    /// `v2`: skip date ranges too. We do not advertise CAN-SKIP-DATERANGES, so this is
    /// answered like `YES`.
    V2,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MediaRequest {
    pub msn: Option<u64>,
    pub part: Option<u32>,
    pub skip: Skip,
}

impl MediaRequest {
    /// A blocking playlist reload (`_HLS_msn` given).
    pub fn is_blocking(&self) -> bool {
        self.msn.is_some()
    }
}

/// Longest query string looked at. nginx bounds the request line first
/// (`large_client_header_buffers`, 8k by default): CDN tokens and cache-busters of any
/// size nginx accepts are fine; this is only a second bound.
pub const MAX_QUERY_LEN: usize = 64 * 1024;

fn number<T: std::str::FromStr>(name: &str, v: &str) -> Result<T, String> {
    if v.is_empty() || v.len() > 20 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{name}: not a decimal integer"));
    }
    v.parse().map_err(|_| format!("{name}: out of range"))
}

/// Parses `_HLS_msn`, `_HLS_part` and `_HLS_skip`; other parameters are ignored.
/// Bad numbers, repeated parameters, an unknown `_HLS_skip` value or `_HLS_part`
/// without `_HLS_msn` are errors (400).
pub fn parse_query(query: &str) -> Result<MediaRequest, String> {
    if query.len() > MAX_QUERY_LEN {
        return Err("query string too long".into());
    }
    let query = query.strip_prefix('?').unwrap_or(query);
    let mut req = MediaRequest::default();
    let mut skip_seen = false;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "_HLS_msn" => {
                if req.msn.is_some() {
                    return Err("_HLS_msn repeated".into());
                }
                req.msn = Some(number(k, v)?);
            }
            "_HLS_part" => {
                if req.part.is_some() {
                    return Err("_HLS_part repeated".into());
                }
                req.part = Some(number(k, v)?);
            }
            "_HLS_skip" => {
                if skip_seen {
                    return Err("_HLS_skip repeated".into());
                }
                skip_seen = true;
                req.skip = match v {
                    "YES" => Skip::Yes,
                    "v2" => Skip::V2,
                    _ => return Err("_HLS_skip: expected YES or v2".into()),
                };
            }
            _ => {}
        }
    }
    if req.part.is_some() && req.msn.is_none() {
        return Err("_HLS_part without _HLS_msn".into());
    }
    Ok(req)
}
