//! Sizes as the platform's settings (`image_size_limit = "2GiB"`) and `berth-pack`'s
//! `--image-size-limit` spell them: a positive number of bytes, optionally with a binary unit,
//! so one value means the same to both.

use std::fmt;

/// Why a size does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SizeError {
    UnknownUnit,
    NotPositive,
}

impl fmt::Display for SizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SizeError::UnknownUnit => write!(f, "unknown unit; use B, KiB, MiB or GiB"),
            SizeError::NotPositive => write!(f, "must be a positive size such as 500MiB"),
        }
    }
}

impl std::error::Error for SizeError {}

/// `1024`, `500MiB`, `2 GiB` (`K`/`KB`/`KiB` and so on, any case, all binary) in bytes.
pub fn parse_size(text: &str) -> Result<u64, SizeError> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (digits, unit) = trimmed.split_at(split);
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(SizeError::UnknownUnit),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .filter(|n| *n > 0)
        .ok_or(SizeError::NotPositive)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_units() {
        let cases = [
            ("1024", Ok(1024)),
            ("1KiB", Ok(1024)),
            ("1k", Ok(1024)),
            ("500MiB", Ok(500 << 20)),
            ("500mb", Ok(500 << 20)),
            ("2 GiB", Ok(2 << 30)),
            ("2GiB", Ok(crate::DEFAULT_IMAGE_SIZE_LIMIT)),
            (" 3g ", Ok(3 << 30)),
            ("0", Err(SizeError::NotPositive)),
            ("", Err(SizeError::NotPositive)),
            ("GiB", Err(SizeError::NotPositive)),
            ("-5", Err(SizeError::UnknownUnit)),
            ("1.5GiB", Err(SizeError::UnknownUnit)),
            ("5XB", Err(SizeError::UnknownUnit)),
            ("2TB", Err(SizeError::UnknownUnit)),
            ("99999999999999999999", Err(SizeError::NotPositive)),
            ("17179869184GiB", Err(SizeError::NotPositive)),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_size(text), expected, "{text:?}");
        }
    }
}
