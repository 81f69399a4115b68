//! The JSON list of recordings (`hls_live_recordings`), read from the recordings folder.
//!
//! Names carry what filtering and paging need (`{key}/{id}`, the id being the start
//! time), so a request reads directory entries and, for the page it returns only, each
//! recording's small `info.json` — the same bounded file-system work as a directory
//! index, and no SQL on the event loop.

use std::fs;
use std::path::Path;

use super::{id_order, id_start_ms, json_str, list_ids, list_keys, retention::WITHDRAWN, INFO};
use crate::store::names;

pub const MAX_LIMIT: usize = 500;
pub const DEFAULT_LIMIT: usize = 50;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    pub key: Option<String>,
    /// Started at or after (Unix ms).
    pub since_ms: Option<i64>,
    /// Started before (Unix ms).
    pub until_ms: Option<i64>,
    pub limit: usize,
    pub offset: usize,
}

impl Default for Query {
    fn default() -> Self {
        Query {
            key: None,
            since_ms: None,
            until_ms: None,
            limit: DEFAULT_LIMIT,
            offset: 0,
        }
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let h = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(h, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// A time: Unix milliseconds, or `YYYY-MM-DDTHH:MM:SS[.mmm]Z`.
pub fn parse_time(s: &str) -> Option<i64> {
    if !s.is_empty() && s.len() <= 16 && s.bytes().all(|c| c.is_ascii_digit()) {
        return s.parse().ok();
    }
    match s.len() {
        20 => super::playlist::parse_pdt(&format!("{}.000Z", &s[..19])),
        24 => super::playlist::parse_pdt(s),
        _ => None,
    }
}

/// `key=K&since=T&until=T&limit=N&offset=N` (unknown arguments are ignored).
pub fn parse_query(args: &str) -> Result<Query, String> {
    let mut q = Query::default();
    if args.len() > 1024 {
        return Err("query too long".into());
    }
    for pair in args.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(v).ok_or_else(|| format!("bad value for \"{k}\""))?;
        match k {
            "key" => {
                if !names::valid_key(&v) {
                    return Err("bad key".into());
                }
                q.key = Some(v);
            }
            "since" => q.since_ms = Some(parse_time(&v).ok_or("bad since")?),
            "until" => q.until_ms = Some(parse_time(&v).ok_or("bad until")?),
            "limit" => {
                let n: usize = v.parse().map_err(|_| "bad limit")?;
                if n == 0 || n > MAX_LIMIT {
                    return Err(format!("limit must be 1..{MAX_LIMIT}"));
                }
                q.limit = n;
            }
            "offset" => q.offset = v.parse().map_err(|_| "bad offset")?,
            _ => {}
        }
    }
    Ok(q)
}

/// Selects and orders (newest first) `(key, id)` pairs; returns the page and the total.
pub fn select(mut all: Vec<(String, String)>, q: &Query) -> (Vec<(String, String)>, usize) {
    all.retain(|(k, id)| {
        let start = id_start_ms(id).unwrap_or(0);
        q.key.as_ref().is_none_or(|want| want == k)
            && q.since_ms.is_none_or(|s| start >= s)
            && q.until_ms.is_none_or(|u| start < u)
    });
    all.sort_by(|a, b| (id_order(&b.1), &b.0).cmp(&(id_order(&a.1), &a.0)));
    let total = all.len();
    let page = all.into_iter().skip(q.offset).take(q.limit).collect();
    (page, total)
}

/// The JSON answer for `q` over the recordings under `root` (blocking file-system reads,
/// bounded as the module comment says).
pub fn list(root: &Path, q: &Query) -> String {
    let keys = match &q.key {
        Some(k) => vec![k.clone()],
        None => list_keys(root),
    };
    let mut all = Vec::new();
    for k in keys {
        let dir = root.join(&k);
        for id in list_ids(&dir) {
            if dir.join(&id).join(WITHDRAWN).exists() {
                continue;
            }
            all.push((k.clone(), id));
        }
    }
    let (page, total) = select(all, q);
    let mut items = Vec::with_capacity(page.len());
    for (k, id) in &page {
        let info = fs::read_to_string(root.join(k).join(id).join(INFO)).unwrap_or_default();
        let info = info.trim();
        if info.starts_with('{') && info.ends_with('}') {
            let live = super::json_int(info, "ended_ms").is_none();
            items.push(format!(
                "{},\"live\":{live}}}",
                info.strip_suffix('}').unwrap_or(info)
            ));
        } else {
            items.push(format!(
                "{{\"id\":{},\"key\":{},\"live\":true}}",
                json_str(&format!("{k}/{id}")),
                json_str(k)
            ));
        }
    }
    let next = if q.offset + page.len() < total {
        (q.offset + page.len()).to_string()
    } else {
        "null".into()
    };
    format!(
        "{{\"total\":{total},\"offset\":{},\"limit\":{},\"next_offset\":{next},\"recordings\":[{}]}}\n",
        q.offset,
        q.limit,
        items.join(",")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries() {
        assert_eq!(parse_query("").unwrap(), Query::default());
        let q = parse_query(
            "key=cam&since=2025-11-24T16%3A00%3A00Z&until=1764000060000&limit=2&offset=4&x=y",
        )
        .unwrap();
        assert_eq!(q.key.as_deref(), Some("cam"));
        assert_eq!(q.since_ms, Some(1_764_000_000_000));
        assert_eq!(q.until_ms, Some(1_764_000_060_000));
        assert_eq!((q.limit, q.offset), (2, 4));
        assert!(parse_query("key=../x").is_err());
        assert!(parse_query("limit=0").is_err());
        assert!(parse_query("limit=501").is_err());
        assert!(parse_query("since=yesterday").is_err());
        assert!(parse_query("key=%zz").is_err());
    }

    #[test]
    fn selection() {
        let all = vec![
            ("a".to_string(), "20251124T160000Z".to_string()),
            ("b".to_string(), "20251124T160100Z".to_string()),
            ("a".to_string(), "20251124T160200Z".to_string()),
            ("a".to_string(), "20251124T160200Z-2".to_string()),
        ];
        let (page, total) = select(all.clone(), &Query::default());
        assert_eq!(total, 4);
        assert_eq!(page[0].1, "20251124T160200Z-2");
        assert_eq!(page[3].1, "20251124T160000Z");
        let q = Query {
            key: Some("a".into()),
            limit: 1,
            offset: 1,
            ..Query::default()
        };
        let (page, total) = select(all.clone(), &q);
        assert_eq!((total, page[0].1.as_str()), (3, "20251124T160200Z"));
        let q = Query {
            since_ms: Some(1_764_000_060_000),
            until_ms: Some(1_764_000_120_000),
            ..Query::default()
        };
        let (page, _) = select(all, &q);
        assert_eq!(
            page,
            vec![("b".to_string(), "20251124T160100Z".to_string())]
        );
    }
}

/// The DVR playlist of `key`: its newest recording (live or ended) rendered by
/// [`super::playlist::render_dvr`]; `None` if it has none (or it cannot be read).
pub fn dvr_playlist(root: &Path, key: &str, skip: bool) -> Option<String> {
    if !names::valid_key(key) {
        return None;
    }
    let dir = root.join(key);
    let id = list_ids(&dir)
        .into_iter()
        .rev()
        .find(|id| !dir.join(id).join(WITHDRAWN).exists())?;
    let rec = dir.join(&id);
    let text = fs::read_to_string(rec.join(super::PLAYLIST)).ok()?;
    let (segments, ended) = super::playlist::parse(&text)?;
    if segments.is_empty() {
        return None;
    }
    let info = fs::read_to_string(rec.join(INFO)).unwrap_or_default();
    let url = json_string(&info, "url")?;
    let base = &url[..url.rfind('/')? + 1];
    Some(super::playlist::render_dvr(&segments, ended, base, skip))
}

/// A string member of a flat JSON object we wrote, when it needs no unescaping.
fn json_string(text: &str, name: &str) -> Option<String> {
    let at = text.find(&format!("\"{name}\":\""))? + name.len() + 4;
    let rest = &text[at..];
    let end = rest.find('"')?;
    let v = &rest[..end];
    (!v.contains('\\')).then(|| v.to_string())
}
