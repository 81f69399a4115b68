//! AMF0 values: the encoding of RTMP commands and data messages.
//!
//! Decoding is bounded: nesting depth, items per container, total values per
//! decode call and string lengths are all capped (see the consts), and no
//! length read from the wire is used to allocate before it is checked against
//! the bytes actually present.

use std::fmt;

/// Deepest nesting of objects/arrays accepted (the top-level value is depth 1).
pub const MAX_DEPTH: usize = 32;
/// Most properties or elements in one object, ECMA array or strict array.
pub const MAX_CONTAINER_ITEMS: usize = 4096;
/// Most values (of any kind, nested included) decoded by one decode call.
pub const MAX_VALUES: usize = 65_536;
/// Longest long string / XML document accepted, in bytes.
pub const MAX_LONG_STRING_LEN: usize = 1 << 20;

const MARKER_NUMBER: u8 = 0x00;
const MARKER_BOOLEAN: u8 = 0x01;
const MARKER_STRING: u8 = 0x02;
const MARKER_OBJECT: u8 = 0x03;
const MARKER_MOVIECLIP: u8 = 0x04;
const MARKER_NULL: u8 = 0x05;
const MARKER_UNDEFINED: u8 = 0x06;
const MARKER_REFERENCE: u8 = 0x07;
const MARKER_ECMA_ARRAY: u8 = 0x08;
const MARKER_OBJECT_END: u8 = 0x09;
const MARKER_STRICT_ARRAY: u8 = 0x0A;
const MARKER_DATE: u8 = 0x0B;
const MARKER_LONG_STRING: u8 = 0x0C;
const MARKER_UNSUPPORTED: u8 = 0x0D;
const MARKER_RECORDSET: u8 = 0x0E;
const MARKER_XML_DOCUMENT: u8 = 0x0F;
const MARKER_TYPED_OBJECT: u8 = 0x10;
const MARKER_AVMPLUS: u8 = 0x11;

/// One AMF0 value. Strings are decoded leniently (invalid UTF-8 is replaced).
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Number(f64),
    Boolean(bool),
    /// A string; encoded as a long string when longer than 65535 bytes.
    String(String),
    Object(Vec<(String, Value)>),
    Null,
    Undefined,
    /// Reference to an earlier complex value (index); kept as is, not resolved.
    Reference(u16),
    EcmaArray(Vec<(String, Value)>),
    StrictArray(Vec<Value>),
    /// Milliseconds since the epoch (the time-zone field is read and ignored).
    Date(f64),
    Unsupported,
    XmlDocument(String),
    TypedObject {
        class_name: String,
        properties: Vec<(String, Value)>,
    },
}

impl Value {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Number(n) => Some(*n),
            _ => None,
        }
    }

    /// Properties of an object, ECMA array or typed object.
    pub fn properties(&self) -> Option<&[(String, Value)]> {
        match self {
            Value::Object(p) | Value::EcmaArray(p) => Some(p),
            Value::TypedObject { properties, .. } => Some(properties),
            _ => None,
        }
    }

    /// First property named `key` of an object-like value.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.properties()?
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }
}

/// Why an AMF0 buffer could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AmfError {
    /// The buffer ended inside a value.
    Truncated,
    /// A type marker vid does not accept (reserved, AVM+ switch, or unknown).
    UnsupportedMarker(u8),
    TooDeep {
        limit: usize,
    },
    TooManyItems {
        count: u64,
        limit: usize,
    },
    TooManyValues {
        limit: usize,
    },
    StringTooLong {
        len: u64,
        limit: usize,
    },
}

impl fmt::Display for AmfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AmfError::Truncated => write!(f, "AMF0 data truncated"),
            AmfError::UnsupportedMarker(m) => write!(f, "unsupported AMF0 type marker 0x{m:02x}"),
            AmfError::TooDeep { limit } => write!(f, "AMF0 nesting deeper than {limit}"),
            AmfError::TooManyItems { count, limit } => {
                write!(f, "AMF0 container with {count} items exceeds limit {limit}")
            }
            AmfError::TooManyValues { limit } => write!(f, "more than {limit} AMF0 values"),
            AmfError::StringTooLong { len, limit } => {
                write!(f, "AMF0 string length {len} exceeds limit {limit}")
            }
        }
    }
}

impl std::error::Error for AmfError {}

/// Decodes one value from the front of `buf`; returns it and the bytes consumed.
pub fn decode(buf: &[u8]) -> Result<(Value, usize), AmfError> {
    let mut d = Decoder {
        buf,
        pos: 0,
        values: 0,
    };
    let v = d.value(1)?;
    Ok((v, d.pos))
}

/// Decodes consecutive values until `buf` is exhausted.
pub fn decode_all(buf: &[u8]) -> Result<Vec<Value>, AmfError> {
    let mut d = Decoder {
        buf,
        pos: 0,
        values: 0,
    };
    let mut out = Vec::new();
    while d.pos < buf.len() {
        out.push(d.value(1)?);
    }
    Ok(out)
}

struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
    values: usize,
}

impl<'a> Decoder<'a> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], AmfError> {
        if self.remaining() < n {
            return Err(AmfError::Truncated);
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, AmfError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, AmfError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, AmfError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn f64(&mut self) -> Result<f64, AmfError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(f64::from_be_bytes(a))
    }

    fn string_of_len(&mut self, len: u64, limit: usize) -> Result<String, AmfError> {
        if len > limit as u64 {
            return Err(AmfError::StringTooLong { len, limit });
        }
        // `len` fits in usize here; `take` checks it against the bytes present.
        let bytes = self.take(len as usize)?;
        Ok(String::from_utf8_lossy(bytes).into_owned())
    }

    fn short_string(&mut self) -> Result<String, AmfError> {
        let len = self.u16()? as u64;
        self.string_of_len(len, u16::MAX as usize)
    }

    fn long_string(&mut self) -> Result<String, AmfError> {
        let len = self.u32()? as u64;
        self.string_of_len(len, MAX_LONG_STRING_LEN)
    }

    /// Reads `key: value` pairs up to the object-end marker. When
    /// `end_optional`, the end of the buffer also ends the list (some
    /// encoders omit the marker after an ECMA array).
    fn properties(
        &mut self,
        depth: usize,
        end_optional: bool,
    ) -> Result<Vec<(String, Value)>, AmfError> {
        let mut props = Vec::new();
        loop {
            if end_optional && self.remaining() == 0 {
                return Ok(props);
            }
            let key = self.short_string()?;
            if key.is_empty() {
                if self.remaining() == 0 && end_optional {
                    return Ok(props);
                }
                if self.buf.get(self.pos) == Some(&MARKER_OBJECT_END) {
                    self.pos += 1;
                    return Ok(props);
                }
            }
            if props.len() >= MAX_CONTAINER_ITEMS {
                return Err(AmfError::TooManyItems {
                    count: props.len() as u64 + 1,
                    limit: MAX_CONTAINER_ITEMS,
                });
            }
            let v = self.value(depth + 1)?;
            props.push((key, v));
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, AmfError> {
        if depth > MAX_DEPTH {
            return Err(AmfError::TooDeep { limit: MAX_DEPTH });
        }
        self.values += 1;
        if self.values > MAX_VALUES {
            return Err(AmfError::TooManyValues { limit: MAX_VALUES });
        }
        let marker = self.u8()?;
        Ok(match marker {
            MARKER_NUMBER => Value::Number(self.f64()?),
            MARKER_BOOLEAN => Value::Boolean(self.u8()? != 0),
            MARKER_STRING => Value::String(self.short_string()?),
            MARKER_OBJECT => Value::Object(self.properties(depth, false)?),
            MARKER_NULL => Value::Null,
            MARKER_UNDEFINED => Value::Undefined,
            MARKER_REFERENCE => Value::Reference(self.u16()?),
            MARKER_ECMA_ARRAY => {
                // The count is only a hint (and often wrong); the end marker decides.
                let _hint = self.u32()?;
                Value::EcmaArray(self.properties(depth, true)?)
            }
            MARKER_STRICT_ARRAY => {
                let count = self.u32()? as u64;
                if count > MAX_CONTAINER_ITEMS as u64 {
                    return Err(AmfError::TooManyItems {
                        count,
                        limit: MAX_CONTAINER_ITEMS,
                    });
                }
                // Every value takes at least one byte.
                if count > self.remaining() as u64 {
                    return Err(AmfError::Truncated);
                }
                let mut items = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    items.push(self.value(depth + 1)?);
                }
                Value::StrictArray(items)
            }
            MARKER_DATE => {
                let ms = self.f64()?;
                let _tz = self.u16()?;
                Value::Date(ms)
            }
            MARKER_LONG_STRING => Value::String(self.long_string()?),
            MARKER_UNSUPPORTED => Value::Unsupported,
            MARKER_XML_DOCUMENT => Value::XmlDocument(self.long_string()?),
            MARKER_TYPED_OBJECT => {
                let class_name = self.short_string()?;
                let properties = self.properties(depth, false)?;
                Value::TypedObject {
                    class_name,
                    properties,
                }
            }
            MARKER_MOVIECLIP | MARKER_RECORDSET | MARKER_AVMPLUS | MARKER_OBJECT_END => {
                return Err(AmfError::UnsupportedMarker(marker))
            }
            other => return Err(AmfError::UnsupportedMarker(other)),
        })
    }
}

/// Appends the encoding of `value` to `out`.
///
/// Property keys and class names longer than 65535 bytes (which AMF0 cannot
/// express) are cut at the last character boundary that fits.
pub fn encode(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Number(n) => {
            out.push(MARKER_NUMBER);
            out.extend_from_slice(&n.to_be_bytes());
        }
        Value::Boolean(b) => {
            out.push(MARKER_BOOLEAN);
            out.push(*b as u8);
        }
        Value::String(s) => {
            if s.len() <= u16::MAX as usize {
                out.push(MARKER_STRING);
                put_short_string(s, out);
            } else {
                out.push(MARKER_LONG_STRING);
                put_long_string(s, out);
            }
        }
        Value::Object(props) => {
            out.push(MARKER_OBJECT);
            put_properties(props, out);
        }
        Value::Null => out.push(MARKER_NULL),
        Value::Undefined => out.push(MARKER_UNDEFINED),
        Value::Reference(r) => {
            out.push(MARKER_REFERENCE);
            out.extend_from_slice(&r.to_be_bytes());
        }
        Value::EcmaArray(props) => {
            out.push(MARKER_ECMA_ARRAY);
            // Properties with an empty key are not written (see put_properties).
            let n = props.iter().filter(|(k, _)| !k.is_empty()).count();
            out.extend_from_slice(&(n as u32).to_be_bytes());
            put_properties(props, out);
        }
        Value::StrictArray(items) => {
            out.push(MARKER_STRICT_ARRAY);
            out.extend_from_slice(&(items.len() as u32).to_be_bytes());
            for v in items {
                encode(v, out);
            }
        }
        Value::Date(ms) => {
            out.push(MARKER_DATE);
            out.extend_from_slice(&ms.to_be_bytes());
            out.extend_from_slice(&0u16.to_be_bytes());
        }
        Value::Unsupported => out.push(MARKER_UNSUPPORTED),
        Value::XmlDocument(s) => {
            out.push(MARKER_XML_DOCUMENT);
            put_long_string(s, out);
        }
        Value::TypedObject {
            class_name,
            properties,
        } => {
            out.push(MARKER_TYPED_OBJECT);
            put_short_string(class_name, out);
            put_properties(properties, out);
        }
    }
}

/// Encodes a sequence of values back to back.
pub fn encode_all(values: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for v in values {
        encode(v, &mut out);
    }
    out
}

fn truncate_to(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn put_short_string(s: &str, out: &mut Vec<u8>) {
    let s = truncate_to(s, u16::MAX as usize);
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_long_string(s: &str, out: &mut Vec<u8>) {
    let s = truncate_to(s, u32::MAX as usize);
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_properties(props: &[(String, Value)], out: &mut Vec<u8>) {
    for (k, v) in props {
        if k.is_empty() {
            // An empty key would read back as the end marker; AMF0 cannot carry it.
            continue;
        }
        put_short_string(k, out);
        encode(v, out);
    }
    out.extend_from_slice(&[0, 0, MARKER_OBJECT_END]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(v: Value) {
        let mut buf = Vec::new();
        encode(&v, &mut buf);
        let (back, used) = decode(&buf).expect("decode");
        assert_eq!(used, buf.len());
        assert_eq!(back, v);
    }

    fn obj(props: &[(&str, Value)]) -> Vec<(String, Value)> {
        props
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn scalars_round_trip() {
        round_trip(Value::Number(0.0));
        round_trip(Value::Number(-1.5e300));
        round_trip(Value::Number(f64::INFINITY));
        round_trip(Value::Boolean(true));
        round_trip(Value::Boolean(false));
        round_trip(Value::String(String::new()));
        round_trip(Value::String("héllo wörld".into()));
        round_trip(Value::Null);
        round_trip(Value::Undefined);
        round_trip(Value::Reference(7));
        round_trip(Value::Date(1_700_000_000_000.0));
        round_trip(Value::Unsupported);
        round_trip(Value::XmlDocument("<a/>".into()));
    }

    #[test]
    fn long_string_round_trip() {
        let s = "x".repeat(70_000);
        let mut buf = Vec::new();
        encode(&Value::String(s.clone()), &mut buf);
        assert_eq!(buf[0], MARKER_LONG_STRING);
        round_trip(Value::String(s));
    }

    #[test]
    fn containers_round_trip() {
        let inner = Value::Object(obj(&[
            ("a", Value::Number(1.0)),
            ("b", Value::String("two".into())),
        ]));
        round_trip(Value::Object(obj(&[
            ("app", Value::String("live".into())),
            ("nested", inner.clone()),
            ("n", Value::Null),
        ])));
        round_trip(Value::EcmaArray(obj(&[
            ("width", Value::Number(320.0)),
            ("stereo", Value::Boolean(true)),
        ])));
        round_trip(Value::EcmaArray(Vec::new()));
        // Found by fuzzing: the count announced must match the properties written,
        // which leave out empty keys.
        let v = Value::EcmaArray(obj(&[("", Value::Null)]));
        let enc = encode_all(std::slice::from_ref(&v));
        assert_eq!(enc, [8, 0, 0, 0, 0, 0, 0, 9]);
        assert_eq!(encode_all(&decode_all(&enc).unwrap()), enc);
        round_trip(Value::Object(Vec::new()));
        round_trip(Value::StrictArray(vec![
            Value::Number(1.0),
            inner,
            Value::StrictArray(vec![]),
        ]));
        round_trip(Value::TypedObject {
            class_name: "Foo".into(),
            properties: obj(&[("x", Value::Undefined)]),
        });
    }

    #[test]
    fn decode_all_sequence() {
        let vals = vec![
            Value::String("connect".into()),
            Value::Number(1.0),
            Value::Object(obj(&[("app", Value::String("live".into()))])),
        ];
        let buf = encode_all(&vals);
        assert_eq!(decode_all(&buf).unwrap(), vals);
        assert_eq!(vals[2].get("app").and_then(Value::as_str), Some("live"));
    }

    #[test]
    fn known_bytes() {
        // "onMetaData" as written by every encoder.
        let buf = [
            0x02, 0x00, 0x0a, b'o', b'n', b'M', b'e', b't', b'a', b'D', b'a', b't', b'a',
        ];
        assert_eq!(decode(&buf).unwrap().0, Value::String("onMetaData".into()));
        let mut out = Vec::new();
        encode(&Value::Number(1.0), &mut out);
        assert_eq!(out, [0, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn ecma_array_without_end_marker() {
        let mut buf = vec![MARKER_ECMA_ARRAY, 0, 0, 0, 1];
        buf.extend_from_slice(&[0, 1, b'a']);
        encode(&Value::Number(2.0), &mut buf);
        let (v, _) = decode(&buf).unwrap();
        assert_eq!(v, Value::EcmaArray(obj(&[("a", Value::Number(2.0))])));
    }

    #[test]
    fn truncated_inputs_error() {
        let buf = encode_all(&[Value::Object(obj(&[
            ("key", Value::String("value".into())),
            ("n", Value::Number(3.0)),
        ]))]);
        for cut in 0..buf.len() {
            assert!(decode(&buf[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn depth_bound() {
        let mut v = Value::Null;
        for _ in 0..MAX_DEPTH - 1 {
            v = Value::StrictArray(vec![v]);
        }
        round_trip(v.clone());
        let too_deep = Value::StrictArray(vec![v]);
        let buf = encode_all(&[too_deep]);
        assert_eq!(
            decode(&buf).unwrap_err(),
            AmfError::TooDeep { limit: MAX_DEPTH }
        );
    }

    #[test]
    fn strict_array_count_bound() {
        let buf = [MARKER_STRICT_ARRAY, 0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            decode(&buf).unwrap_err(),
            AmfError::TooManyItems { .. }
        ));
        // A plausible count with too few bytes behind it is truncation, not allocation.
        let buf = [MARKER_STRICT_ARRAY, 0, 0, 0x10, 0, 5];
        assert_eq!(decode(&buf).unwrap_err(), AmfError::Truncated);
    }

    #[test]
    fn object_item_bound() {
        let props: Vec<(String, Value)> = (0..=MAX_CONTAINER_ITEMS)
            .map(|i| (format!("k{i}"), Value::Null))
            .collect();
        let buf = encode_all(&[Value::Object(props)]);
        assert!(matches!(
            decode(&buf).unwrap_err(),
            AmfError::TooManyItems { .. }
        ));
    }

    #[test]
    fn total_value_bound() {
        let arrays: Vec<Value> = (0..20)
            .map(|_| Value::StrictArray(vec![Value::Null; 4000]))
            .collect();
        let buf = encode_all(&[Value::StrictArray(arrays)]);
        assert_eq!(
            decode(&buf).unwrap_err(),
            AmfError::TooManyValues { limit: MAX_VALUES }
        );
    }

    #[test]
    fn oversized_strings_error_without_allocation() {
        let buf = [MARKER_LONG_STRING, 0xff, 0xff, 0xff, 0xff, b'a'];
        assert_eq!(
            decode(&buf).unwrap_err(),
            AmfError::StringTooLong {
                len: 0xffff_ffff,
                limit: MAX_LONG_STRING_LEN
            }
        );
        let buf = [MARKER_STRING, 0xff, 0xff, b'a'];
        assert_eq!(decode(&buf).unwrap_err(), AmfError::Truncated);
        let buf = [MARKER_XML_DOCUMENT, 0x00, 0x20, 0x00, 0x00];
        assert!(matches!(
            decode(&buf).unwrap_err(),
            AmfError::StringTooLong { .. }
        ));
    }

    #[test]
    fn unsupported_markers() {
        for m in [
            MARKER_MOVIECLIP,
            MARKER_RECORDSET,
            MARKER_AVMPLUS,
            0x09,
            0x12,
            0xff,
        ] {
            assert_eq!(decode(&[m]).unwrap_err(), AmfError::UnsupportedMarker(m));
        }
    }

    #[test]
    fn garbage_never_panics() {
        let seed = encode_all(&[
            Value::String("@setDataFrame".into()),
            Value::EcmaArray(obj(&[
                ("w", Value::Number(1.0)),
                ("o", Value::Object(obj(&[("s", Value::String("x".into()))]))),
                ("a", Value::StrictArray(vec![Value::Boolean(true)])),
            ])),
        ]);
        let mut rng = 0x1234_5678_9abc_def0u64;
        for _ in 0..20_000 {
            let mut buf = seed.clone();
            for _ in 0..1 + (xorshift(&mut rng) % 4) {
                let i = (xorshift(&mut rng) as usize) % buf.len();
                buf[i] = xorshift(&mut rng) as u8;
            }
            let cut = (xorshift(&mut rng) as usize) % (buf.len() + 1);
            let _ = decode_all(&buf[..cut]);
        }
    }

    fn xorshift(s: &mut u64) -> u64 {
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        *s
    }
}
