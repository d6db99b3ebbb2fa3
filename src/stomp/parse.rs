//! Incremental STOMP frame parser: turns the start of a byte buffer into one
//! frame, one run of heart-beat EOLs, or "need more bytes".
//!
//! Must not: do I/O, keep state between calls, judge frame semantics
//! (required headers, which command is allowed when), or panic on any input.
//!
//! Invariants: every limit in `ParseLimits` is enforced as soon as the bytes
//! seen prove it is exceeded, so the caller never has to buffer more than
//! `max_frame_size + 1` bytes of one frame before getting an error. A complete
//! frame is never reported as `Incomplete`. Reparsing after `Incomplete`
//! starts over, with work linear in the buffer length.

use bytes::Bytes;

use super::frame::{Command, Frame, HeaderCoding, Version};

#[derive(Debug, Clone)]
pub struct ParseLimits {
    /// Whole frame: command line through the NUL, body included.
    pub max_frame_size: usize,
    pub max_headers: usize,
    /// One header line, name + colon + value, raw bytes without the EOL.
    pub max_header_length: usize,
    /// The command line without its EOL.
    pub max_command_length: usize,
}

impl Default for ParseLimits {
    /// ActiveMQ's defaults, except that the frame size is bounded.
    fn default() -> ParseLimits {
        ParseLimits {
            max_frame_size: 10 * 1024 * 1024,
            max_headers: 1000,
            max_header_length: 10 * 1024,
            max_command_length: 1024,
        }
    }
}

#[derive(Debug, PartialEq)]
pub enum Parsed {
    /// A whole frame; `consumed` bytes of the buffer belong to it (including the NUL, not the EOLs after it).
    Frame { frame: Frame, consumed: usize },
    /// One or more EOLs (LF or CRLF) where a frame could start: a heart-beat. `consumed` bytes.
    HeartBeat { consumed: usize },
    /// The buffer holds the start of a frame but not all of it: read more bytes and call again.
    Incomplete,
}

/// Every variant is fatal for the connection; the Display text is meant for
/// the `message` header of the ERROR frame sent before closing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("unknown command '{0}'")]
    UnknownCommand(String),
    #[error("command line longer than {limit} bytes")]
    CommandTooLong { limit: usize },
    #[error("more than {limit} headers")]
    TooManyHeaders { limit: usize },
    #[error("header line longer than {limit} bytes")]
    HeaderTooLong { limit: usize },
    #[error("frame larger than {limit} bytes")]
    FrameTooLarge { limit: usize },
    #[error("header line '{0}' has no colon")]
    MalformedHeader(String),
    #[error("undefined escape sequence '{sequence}' in header '{header}'")]
    InvalidEscape { sequence: String, header: String },
    #[error("invalid content-length '{0}': it must be a decimal integer and may not be negative")]
    InvalidContentLength(String),
    #[error("content-length bytes were read and there was no trailing NUL")]
    MissingNul,
    #[error("header is not valid UTF-8")]
    InvalidUtf8,
}

/// Parses at most one frame (or one run of heart-beat EOLs) from the start of `buf`.
/// `version` is the negotiated version (V1_0 before CONNECT): it decides header unescaping.
pub fn parse(buf: &[u8], version: Version, limits: &ParseLimits) -> Result<Parsed, ParseError> {
    match leading_eols(buf) {
        0 => parse_frame(buf, version, limits),
        consumed => Ok(Parsed::HeartBeat { consumed }),
    }
}

enum Line<'a> {
    /// `content` excludes the EOL; `next` is the offset just past the LF.
    Complete {
        content: &'a [u8],
        next: usize,
    },
    Incomplete,
}

struct LineTooLong;

/// The one EOL reader (LF or CRLF, in every version) behind command lines,
/// header lines and heart-beats. Looks at no more than `max_len + 2` bytes, so
/// an over-long line is reported before its EOL arrives.
fn read_line(buf: &[u8], start: usize, max_len: usize) -> Result<Line<'_>, LineTooLong> {
    let rest = buf.get(start..).unwrap_or_default();
    let window = rest.get(..max_len.saturating_add(2)).unwrap_or(rest);
    match window.iter().position(|&byte| byte == b'\n') {
        Some(lf) => {
            let line = &window[..lf];
            let content = line.strip_suffix(b"\r").unwrap_or(line);
            if content.len() > max_len {
                return Err(LineTooLong);
            }
            Ok(Line::Complete {
                content,
                next: start + lf + 1,
            })
        }
        None => {
            // A trailing CR may be the first half of a CRLF still in flight.
            let pending = rest.strip_suffix(b"\r").unwrap_or(rest);
            if pending.len() > max_len {
                Err(LineTooLong)
            } else {
                Ok(Line::Incomplete)
            }
        }
    }
}

/// Length of the run of EOLs at the start of `buf`. A lone CR at the end is
/// left out: it is either half of the next EOL or the start of garbage.
fn leading_eols(buf: &[u8]) -> usize {
    let mut end = 0;
    // An EOL is exactly a line with no content.
    while let Ok(Line::Complete { next, .. }) = read_line(buf, end, 0) {
        end = next;
    }
    end
}

/// `buf` starts with a frame (not an EOL). Offsets are relative to the frame start.
fn parse_frame(buf: &[u8], version: Version, limits: &ParseLimits) -> Result<Parsed, ParseError> {
    let (command_line, mut offset) = match read_line(buf, 0, limits.max_command_length) {
        Ok(Line::Complete { content, next }) => (content, next),
        Ok(Line::Incomplete) => return incomplete(buf, limits),
        Err(LineTooLong) => {
            return Err(ParseError::CommandTooLong {
                limit: limits.max_command_length,
            })
        }
    };
    let command = Command::parse(command_line)
        .ok_or_else(|| ParseError::UnknownCommand(lossy(command_line)))?;
    let coding = HeaderCoding::for_frame(command, version);

    let mut headers = Vec::new();
    loop {
        let line = match read_line(buf, offset, limits.max_header_length) {
            Ok(Line::Complete { content, next }) => {
                offset = next;
                content
            }
            Ok(Line::Incomplete) => return incomplete(buf, limits),
            Err(LineTooLong) => {
                return Err(ParseError::HeaderTooLong {
                    limit: limits.max_header_length,
                })
            }
        };
        if line.is_empty() {
            break;
        }
        if headers.len() >= limits.max_headers {
            return Err(ParseError::TooManyHeaders {
                limit: limits.max_headers,
            });
        }
        headers.push(decode_header(line, coding)?);
    }

    let body_start = offset;
    let content_length = headers
        .iter()
        .find(|(name, _)| name == "content-length")
        .map(|(_, value)| parse_content_length(value, limits))
        .transpose()?;
    let (body, consumed) = match content_length {
        Some(length) => {
            let frame_len = body_start.saturating_add(length).saturating_add(1);
            if frame_len > limits.max_frame_size {
                return Err(frame_too_large(limits));
            }
            let Some(body_and_nul) = buf.get(body_start..frame_len) else {
                return incomplete(buf, limits);
            };
            match body_and_nul.split_last() {
                Some((0, body)) => (body, frame_len),
                _ => return Err(ParseError::MissingNul),
            }
        }
        None => {
            // A NUL at or past max_frame_size would end an oversized frame: don't look for it.
            let searchable_end = buf.len().min(limits.max_frame_size);
            let searchable = buf.get(body_start..searchable_end).unwrap_or_default();
            match searchable.iter().position(|&byte| byte == 0) {
                Some(nul) => (&searchable[..nul], body_start + nul + 1),
                None => return incomplete(buf, limits),
            }
        }
    };
    let frame = Frame {
        command,
        headers,
        body: Bytes::copy_from_slice(body),
    };
    Ok(Parsed::Frame { frame, consumed })
}

/// The frame is unfinished; past the size limit, waiting for the rest is pointless.
fn incomplete(buf: &[u8], limits: &ParseLimits) -> Result<Parsed, ParseError> {
    if buf.len() > limits.max_frame_size {
        Err(frame_too_large(limits))
    } else {
        Ok(Parsed::Incomplete)
    }
}

fn frame_too_large(limits: &ParseLimits) -> ParseError {
    ParseError::FrameTooLarge {
        limit: limits.max_frame_size,
    }
}

fn parse_content_length(value: &str, limits: &ParseLimits) -> Result<usize, ParseError> {
    // usize::from_str alone would also accept "+5".
    if value.is_empty() || !value.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(ParseError::InvalidContentLength(value.to_owned()));
    }
    // Only overflow is left, and such a length is certainly too large.
    value.parse().map_err(|_| frame_too_large(limits))
}

/// Splits on the first colon, then applies the frame's coding to name and value.
fn decode_header(line: &[u8], coding: HeaderCoding) -> Result<(String, String), ParseError> {
    let colon = line
        .iter()
        .position(|&byte| byte == b':')
        .ok_or_else(|| ParseError::MalformedHeader(lossy(line)))?;
    let name = &line[..colon];
    let value = &line[colon + 1..];
    let value = if coding.trims_values() {
        value.trim_ascii()
    } else {
        value
    };
    Ok((
        decode_text(name, coding, line)?,
        decode_text(value, coding, line)?,
    ))
}

/// Unescaping only touches ASCII, so validating UTF-8 afterwards is equivalent
/// to validating the raw bytes, and costs one pass instead of two.
fn decode_text(raw: &[u8], coding: HeaderCoding, line: &[u8]) -> Result<String, ParseError> {
    let bytes = if coding.uses_escapes() && raw.contains(&b'\\') {
        unescape(raw, coding, line)?
    } else {
        raw.to_vec()
    };
    String::from_utf8(bytes).map_err(|_| ParseError::InvalidUtf8)
}

fn unescape(raw: &[u8], coding: HeaderCoding, line: &[u8]) -> Result<Vec<u8>, ParseError> {
    let mut unescaped = Vec::with_capacity(raw.len());
    let mut bytes = raw.iter();
    while let Some(&byte) = bytes.next() {
        if byte != b'\\' {
            unescaped.push(byte);
            continue;
        }
        let code = bytes.next().copied();
        match code.and_then(|code| coding.unescaped(code)) {
            Some(original) => unescaped.push(original),
            None => {
                let sequence = match code {
                    Some(code) => lossy(&[b'\\', code]),
                    None => "\\".to_owned(),
                };
                return Err(ParseError::InvalidEscape {
                    sequence,
                    header: lossy(line),
                });
            }
        }
    }
    Ok(unescaped)
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::ParseError;

    #[test]
    fn error_messages_read_well() {
        let cases = [
            (
                ParseError::FrameTooLarge { limit: 10485760 },
                "frame larger than 10485760 bytes",
            ),
            (
                ParseError::MissingNul,
                "content-length bytes were read and there was no trailing NUL",
            ),
            (
                ParseError::InvalidEscape {
                    sequence: r"\t".into(),
                    header: r"tab:\t".into(),
                },
                r"undefined escape sequence '\t' in header 'tab:\t'",
            ),
            (
                ParseError::MalformedHeader("nocolon".into()),
                "header line 'nocolon' has no colon",
            ),
        ];
        for (error, text) in cases {
            assert_eq!(error.to_string(), text);
        }
    }
}
