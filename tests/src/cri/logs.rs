//! The CRI container log format (what containerd writes to a container's `log_path`).

/// One line of a CRI container log: `TIMESTAMP STREAM TAG MESSAGE`, e.g.
/// `2024-01-02T03:04:05.123456789Z stdout F hello` (TAG `F` = full line, `P` = partial).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CriLogLine {
    pub timestamp: String,
    pub stream: String,
    pub tag: String,
    pub message: String,
}

/// Parses a CRI log file; Err names the first line that is not in CRI log format.
pub fn parse_cri_log(text: &str) -> Result<Vec<CriLogLine>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let bad = || format!("line {} is not a CRI log line: {line:?}", n + 1);
        let mut parts = line.splitn(4, ' ');
        let timestamp = parts.next().ok_or_else(bad)?;
        let stream = parts.next().ok_or_else(bad)?;
        let tag = parts.next().ok_or_else(bad)?;
        let message = parts.next().unwrap_or("");
        if !is_rfc3339_nano(timestamp)
            || !matches!(stream, "stdout" | "stderr")
            || !matches!(tag, "F" | "P")
        {
            return Err(bad());
        }
        out.push(CriLogLine {
            timestamp: timestamp.into(),
            stream: stream.into(),
            tag: tag.into(),
            message: message.into(),
        });
    }
    Ok(out)
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`, as Go's time.RFC3339Nano prints it.
fn is_rfc3339_nano(s: &str) -> bool {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    if b.len() < 20
        || !digits(0..4)
        || b[4] != b'-'
        || !digits(5..7)
        || b[7] != b'-'
        || !digits(8..10)
        || b[10] != b'T'
        || !digits(11..13)
        || b[13] != b':'
        || !digits(14..16)
        || b[16] != b':'
        || !digits(17..19)
    {
        return false;
    }
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return false;
        }
        rest = &frac[n..];
    }
    rest == "Z"
        || (rest.len() == 6
            && (rest.starts_with('+') || rest.starts_with('-'))
            && rest.as_bytes()[3] == b':')
}
