//! PostgreSQL results through `COPY (query) TO STDOUT (FORMAT binary)`, decoded straight into
//! the column builders: no per-row driver objects, no text parsing. The query inside is the
//! guarded one, and the COPY runs in the same read-only transaction as any other query.
//! Format: an 11-byte signature, flags and an extension area; then per tuple a 16-bit field
//! count and per field a 32-bit length (-1 = NULL) and the value in the type's binary send
//! format; a field count of -1 ends the stream.

use super::ConnectorError;
use super::decode::Dec;
use super::frame::{Data, FrameBuilder};

const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";
/// Days between 1970-01-01 and PostgreSQL's epoch 2000-01-01.
const PG_EPOCH_DAYS: i32 = 10_957;
/// Microseconds between 1970-01-01 and 2000-01-01.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

fn bad(what: &str) -> ConnectorError {
    ConnectorError::Decode(format!("binary COPY: {what}"))
}

/// Incremental decoder: feed it the stream's chunks in order.
#[derive(Debug)]
pub(crate) struct CopyDecoder {
    plans: Vec<Dec>,
    buf: Vec<u8>,
    header_done: bool,
    finished: bool,
}

impl CopyDecoder {
    pub(crate) fn new(plans: Vec<Dec>) -> Self {
        CopyDecoder {
            plans,
            buf: Vec::new(),
            header_done: false,
            finished: false,
        }
    }

    /// Decodes every complete tuple in `chunk` (plus what was left over) into `b`.
    pub(crate) fn feed(
        &mut self,
        chunk: &[u8],
        b: &mut FrameBuilder,
    ) -> Result<(), ConnectorError> {
        self.buf.extend_from_slice(chunk);
        let mut pos = 0;
        if !self.header_done {
            if self.buf.len() < 19 {
                return Ok(());
            }
            if &self.buf[..11] != SIGNATURE {
                return Err(bad("bad signature"));
            }
            let ext = be_u32(&self.buf[15..19]) as usize;
            if self.buf.len() < 19 + ext {
                return Ok(());
            }
            pos = 19 + ext;
            self.header_done = true;
        }
        while !self.finished {
            match self.tuple(pos, b)? {
                Some(next) => pos = next,
                None => break,
            }
        }
        self.buf.drain(..pos);
        Ok(())
    }

    /// Whether the trailer was seen.
    pub(crate) fn finished(&self) -> bool {
        self.finished
    }

    /// Decodes the tuple at `pos` if it is complete; returns where the next one starts.
    fn tuple(&mut self, pos: usize, b: &mut FrameBuilder) -> Result<Option<usize>, ConnectorError> {
        let buf = &self.buf;
        if buf.len() < pos + 2 {
            return Ok(None);
        }
        let fields = i16::from_be_bytes([buf[pos], buf[pos + 1]]);
        if fields == -1 {
            self.finished = true;
            return Ok(Some(pos + 2));
        }
        if fields as usize != self.plans.len() {
            return Err(bad("field count does not match the described columns"));
        }
        // First make sure the whole tuple is here, then decode it in one pass.
        let mut end = pos + 2;
        for _ in 0..fields {
            if buf.len() < end + 4 {
                return Ok(None);
            }
            let len = be_i32(&buf[end..end + 4]);
            end += 4 + usize::try_from(len).unwrap_or(0);
            if buf.len() < end {
                return Ok(None);
            }
        }
        let mut at = pos + 2;
        let mut bytes = 0;
        for (dec, data) in self.plans.iter().zip(b.data.iter_mut()) {
            let len = be_i32(&buf[at..at + 4]);
            at += 4;
            let value = if len < 0 {
                None
            } else {
                let v = &buf[at..at + len as usize];
                at += len as usize;
                Some(v)
            };
            bytes += push(*dec, data, value)?;
        }
        b.row_done(bytes)?;
        Ok(Some(end))
    }
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn be_i32(b: &[u8]) -> i32 {
    i32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn fixed<const N: usize>(v: &[u8]) -> Result<[u8; N], ConnectorError> {
    v.try_into().map_err(|_| bad("value of unexpected width"))
}

fn utf8(v: &[u8]) -> Result<String, ConnectorError> {
    String::from_utf8(v.to_vec()).map_err(|_| bad("text is not UTF-8"))
}

/// One field into its builder; returns the bytes it accounts for.
fn push(dec: Dec, data: &mut Data, v: Option<&[u8]>) -> Result<usize, ConnectorError> {
    match (dec, data) {
        (Dec::Bool, Data::Bool(out)) => out.push(v.map(|v| v.first() == Some(&1))),
        (Dec::I16, Data::I16(out)) => {
            out.push(v.map(fixed::<2>).transpose()?.map(i16::from_be_bytes))
        }
        (Dec::I32, Data::I32(out)) => {
            out.push(v.map(fixed::<4>).transpose()?.map(i32::from_be_bytes))
        }
        (Dec::I64, Data::I64(out)) => {
            out.push(v.map(fixed::<8>).transpose()?.map(i64::from_be_bytes))
        }
        (Dec::F32, Data::F32(out)) => {
            out.push(v.map(fixed::<4>).transpose()?.map(f32::from_be_bytes))
        }
        (Dec::F64, Data::F64(out)) => {
            out.push(v.map(fixed::<8>).transpose()?.map(f64::from_be_bytes))
        }
        (Dec::Str, Data::Str(out)) => {
            let s = v.map(utf8).transpose()?;
            let n = s.as_ref().map_or(0, String::len);
            out.push(s);
            return Ok(n);
        }
        (Dec::Json | Dec::JsonB, Data::Str(out)) => {
            // jsonb's send format is a version byte (1) and then the text.
            let text = match (dec, v) {
                (Dec::JsonB, Some([1, rest @ ..])) => Some(rest),
                (Dec::JsonB, Some(_)) => return Err(bad("unknown jsonb version")),
                (_, v) => v,
            };
            let s = text.map(utf8).transpose()?;
            let n = s.as_ref().map_or(0, String::len);
            out.push(s);
            return Ok(n);
        }
        (Dec::Uuid, Data::Str(out)) => out.push(
            v.map(fixed::<16>)
                .transpose()?
                .map(|b| uuid::Uuid::from_bytes(b).to_string()),
        ),
        (Dec::Bin, Data::Bin(out)) => {
            let n = v.map_or(0, <[u8]>::len);
            out.push(v.map(<[u8]>::to_vec));
            return Ok(n);
        }
        (Dec::Date, Data::Date(out)) => out.push(
            v.map(fixed::<4>)
                .transpose()?
                .map(|b| i32::from_be_bytes(b).saturating_add(PG_EPOCH_DAYS)),
        ),
        (Dec::Time, Data::Time(out)) => out.push(
            v.map(fixed::<8>)
                .transpose()?
                .map(|b| i64::from_be_bytes(b).saturating_mul(1000)),
        ),
        (Dec::Timestamp | Dec::TimestampTz, Data::Timestamp(out, _)) => out.push(
            v.map(fixed::<8>)
                .transpose()?
                .map(|b| i64::from_be_bytes(b).saturating_add(PG_EPOCH_MICROS)),
        ),
        (Dec::Decimal, Data::Decimal(out)) => {
            out.push(v.map(numeric).transpose()?);
            return Ok(16);
        }
        (Dec::Array(elem), Data::List(out, _)) => {
            let n = v.map_or(0, <[u8]>::len);
            out.push(v.map(|v| array(elem, v)).transpose()?);
            return Ok(n);
        }
        _ => return Err(bad("column type not supported over COPY")),
    }
    Ok(8)
}

/// A one-dimensional array in PostgreSQL's send format: ndim, has-null flag, element type,
/// per dimension length and lower bound, then each element as length (-1 = NULL) and value.
fn array(elem: super::decode::Elem, v: &[u8]) -> Result<polars::prelude::Series, ConnectorError> {
    use super::decode::Elem;
    use polars::prelude::{NamedFrom, PlSmallStr, Series};
    if v.len() < 12 {
        return Err(bad("short array"));
    }
    let ndim = be_i32(&v[0..4]);
    let (len, mut at) = match ndim {
        0 => (0usize, 12usize),
        1 if v.len() >= 20 => (usize::try_from(be_i32(&v[12..16])).unwrap_or(0), 20usize),
        _ => return Err(bad("multi-dimensional arrays are not supported")),
    };
    let mut items: Vec<Option<&[u8]>> = Vec::with_capacity(len.min(1 << 20));
    for _ in 0..len {
        if v.len() < at + 4 {
            return Err(bad("truncated array"));
        }
        let n = be_i32(&v[at..at + 4]);
        at += 4;
        if n < 0 {
            items.push(None);
            continue;
        }
        let end = at + n as usize;
        if v.len() < end {
            return Err(bad("truncated array"));
        }
        items.push(Some(&v[at..end]));
        at = end;
    }
    let name = PlSmallStr::EMPTY;
    macro_rules! num {
        ($t:ty, $n:literal) => {{
            let vals: Result<Vec<Option<$t>>, ConnectorError> = items
                .iter()
                .map(|i| {
                    i.map(|b| fixed::<$n>(b).map(<$t>::from_be_bytes))
                        .transpose()
                })
                .collect();
            Series::new(name, vals?)
        }};
    }
    Ok(match elem {
        Elem::Bool => Series::new(
            name,
            items
                .iter()
                .map(|i| i.map(|b| b.first() == Some(&1)))
                .collect::<Vec<_>>(),
        ),
        Elem::I16 => num!(i16, 2),
        Elem::I32 => num!(i32, 4),
        Elem::I64 => num!(i64, 8),
        Elem::F32 => num!(f32, 4),
        Elem::F64 => num!(f64, 8),
        Elem::Str => {
            let vals: Result<Vec<Option<String>>, ConnectorError> =
                items.iter().map(|i| i.map(utf8).transpose()).collect();
            Series::new(name, vals?)
        }
    })
}

/// PostgreSQL's `numeric` send format: ndigits, weight, sign, dscale, then base-10000 digits.
fn numeric(v: &[u8]) -> Result<rust_decimal::Decimal, ConnectorError> {
    if v.len() < 8 {
        return Err(bad("short numeric"));
    }
    let word = |i: usize| i16::from_be_bytes([v[i], v[i + 1]]);
    let (ndigits, weight, sign, dscale) = (word(0), word(2), word(4) as u16, word(6));
    if sign == 0xC000 || sign == 0xD000 || sign == 0xF000 {
        return Err(bad("NaN or infinite numeric cannot be a Decimal"));
    }
    if v.len() < 8 + 2 * ndigits.max(0) as usize || !(0..=28).contains(&dscale) {
        return Err(bad("numeric out of range"));
    }
    let scale = dscale as u32;
    let mut mantissa: i128 = 0;
    for i in 0..ndigits.max(0) as usize {
        let digit = i128::from(word(8 + 2 * i));
        // This digit's power of ten relative to the value's last kept decimal place.
        let exp = 4 * (i32::from(weight) - i as i32) + dscale as i32;
        if exp >= 0 {
            let p = 10_i128
                .checked_pow(exp as u32)
                .ok_or_else(|| bad("numeric too large"))?;
            mantissa = digit
                .checked_mul(p)
                .and_then(|d| mantissa.checked_add(d))
                .ok_or_else(|| bad("numeric too large"))?;
        } else {
            // Digits below dscale are zero by construction; keep what is representable.
            mantissa += digit / 10_i128.pow((-exp) as u32);
        }
    }
    if sign == 0x4000 {
        mantissa = -mantissa;
    }
    rust_decimal::Decimal::try_from_i128_with_scale(mantissa, scale)
        .map_err(|_| bad("numeric does not fit 96 bits"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(ndigits: i16, weight: i16, sign: u16, dscale: i16, digits: &[i16]) -> Vec<u8> {
        let mut v = Vec::new();
        for w in [ndigits, weight, sign as i16, dscale].iter().chain(digits) {
            v.extend_from_slice(&w.to_be_bytes());
        }
        v
    }

    #[test]
    fn numeric_send_format() {
        // 1234.567 = digits [1234, 5670], weight 0, dscale 3.
        let d = numeric(&num(2, 0, 0, 3, &[1234, 5670])).expect("ok");
        assert_eq!(d.to_string(), "1234.567");
        // -0.05 = digits [500], weight -1, dscale 2.
        let d = numeric(&num(1, -1, 0x4000, 2, &[500])).expect("ok");
        assert_eq!(d.to_string(), "-0.05");
        // 120000 = digits [12], weight 1, dscale 0.
        let d = numeric(&num(1, 1, 0, 0, &[12])).expect("ok");
        assert_eq!(d.to_string(), "120000");
        assert!(numeric(&num(0, 0, 0xC000, 0, &[])).is_err());
    }
}
