//! CPU and memory quantities of `resources`/`requestedResources`: text to millicores and bytes.
//!
//! CPU: decimal CPUs (`"0.5"` = 500 millicores) or millicores (`"500m"`). Memory: an integer with
//! an optional unit: `K M G T P E` (powers of 1000), `Ki Mi Gi Ti Pi Ei` (powers of 1024), `B` or
//! nothing (bytes), optionally separated by whitespace. Fractions of memory are rejected, as the
//! Cumulocity SDK does.

/// Why a quantity could not be read; the `Display` text completes "`resources.cpu` ...".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error("must be decimal CPUs or millicores, for example \"0.5\" or \"500m\", got {0:?}")]
    CpuSyntax(String),
    #[error(
        "must be a whole number with an optional unit (K, M, G, T, P, E, Ki, Mi, Gi, Ti, Pi, Ei or B), for example \"512M\" or \"1Gi\", got {0:?}"
    )]
    MemorySyntax(String),
    #[error("must be a whole number of bytes, got {text:?}: fractions are not allowed{hint}")]
    MemoryFraction { text: String, hint: String },
    #[error("is too large: {0:?}")]
    Overflow(String),
}

/// Parses a CPU quantity to millicores, rounding fractions of a millicore up.
pub fn parse_cpu(text: &str) -> Result<u64, QuantityError> {
    let syntax = || QuantityError::CpuSyntax(text.to_owned());
    let (number, is_millicores) = match text.strip_suffix('m') {
        Some(number) => (number, true),
        None => (text, false),
    };
    let (whole, fraction) = split_decimal(number).ok_or_else(syntax)?;
    let whole: u64 = whole
        .parse()
        .map_err(|_| QuantityError::Overflow(text.to_owned()))?;
    let overflow = || QuantityError::Overflow(text.to_owned());
    if is_millicores {
        let round_up = u64::from(fraction.bytes().any(|b| b != b'0'));
        return whole.checked_add(round_up).ok_or_else(overflow);
    }
    // Decimal CPUs: the first three fraction digits are millicores, any further digit rounds up.
    let mut millis_text: String = fraction.chars().take(3).collect();
    while millis_text.len() < 3 {
        millis_text.push('0');
    }
    let millis: u64 = millis_text.parse().map_err(|_| syntax())?;
    let round_up = u64::from(fraction.bytes().skip(3).any(|b| b != b'0'));
    whole
        .checked_mul(1000)
        .and_then(|m| m.checked_add(millis))
        .and_then(|m| m.checked_add(round_up))
        .ok_or_else(overflow)
}

/// Parses a memory quantity to bytes.
pub fn parse_memory(text: &str) -> Result<u64, QuantityError> {
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, rest) = text.split_at(digits_end);
    if digits.is_empty() {
        return Err(QuantityError::MemorySyntax(text.to_owned()));
    }
    if let Some(after_point) = rest.strip_prefix('.') {
        return Err(fraction_error(text, digits, after_point));
    }
    let unit = rest.trim_start();
    let multiplier =
        unit_multiplier(unit).ok_or_else(|| QuantityError::MemorySyntax(text.to_owned()))?;
    let amount: u64 = digits
        .parse()
        .map_err(|_| QuantityError::Overflow(text.to_owned()))?;
    amount
        .checked_mul(multiplier)
        .ok_or_else(|| QuantityError::Overflow(text.to_owned()))
}

/// Bytes per unit, `None` for an unknown unit.
fn unit_multiplier(unit: &str) -> Option<u64> {
    const UNITS: [char; 6] = ['K', 'M', 'G', 'T', 'P', 'E'];
    if unit.is_empty() || unit == "B" {
        return Some(1);
    }
    let mut chars = unit.chars();
    let letter = chars.next()?;
    let power = u32::try_from(UNITS.iter().position(|&u| u == letter)? + 1).ok()?;
    match chars.as_str() {
        "" => Some(1000u64.pow(power)),
        "i" => Some(1024u64.pow(power)),
        _ => None,
    }
}

/// `"1.5G"`: suggests the same amount in the next smaller unit when that is a whole number.
fn fraction_error(text: &str, digits: &str, after_point: &str) -> QuantityError {
    let fraction_end = after_point
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(after_point.len());
    let (fraction, unit) = after_point.split_at(fraction_end);
    let unit = unit.trim_start();
    let smaller = match unit {
        "K" => Some(("", 1000)),
        "M" => Some(("K", 1000)),
        "G" => Some(("M", 1000)),
        "T" => Some(("G", 1000)),
        "P" => Some(("T", 1000)),
        "E" => Some(("P", 1000)),
        "Ki" => Some(("", 1024)),
        "Mi" => Some(("Ki", 1024)),
        "Gi" => Some(("Mi", 1024)),
        "Ti" => Some(("Gi", 1024)),
        "Pi" => Some(("Ti", 1024)),
        "Ei" => Some(("Pi", 1024)),
        _ => None,
    };
    let hint = smaller
        .and_then(|(smaller_unit, factor)| {
            let scale = 10u64.checked_pow(u32::try_from(fraction.len()).ok()?)?;
            let numerator: u64 = format!("{digits}{fraction}").parse().ok()?;
            let scaled = numerator.checked_mul(factor)?;
            (scaled % scale == 0)
                .then(|| format!(", write \"{}{smaller_unit}\" instead", scaled / scale))
        })
        .unwrap_or_default();
    QuantityError::MemoryFraction {
        text: text.to_owned(),
        hint,
    }
}

/// Splits `"12.5"` into `("12", "5")`; `None` unless it is digits with an optional `.digits`.
fn split_decimal(number: &str) -> Option<(&str, &str)> {
    let (whole, fraction) = match number.split_once('.') {
        Some((whole, fraction)) if !fraction.is_empty() => (whole, fraction),
        Some(_) => return None,
        None => (number, ""),
    };
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    (!whole.is_empty() && all_digits(whole) && all_digits(fraction)).then_some((whole, fraction))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_quantities() {
        let cases = [
            ("0.5", Ok(500)),
            ("1", Ok(1000)),
            ("500m", Ok(500)),
            ("1000m", Ok(1000)),
            ("0.25", Ok(250)),
            ("0.0001", Ok(1)),
            ("1.5m", Ok(2)),
            ("2.0", Ok(2000)),
            ("16", Ok(16000)),
            ("", Err(QuantityError::CpuSyntax(String::new()))),
            ("0.5 m", Err(QuantityError::CpuSyntax("0.5 m".into()))),
            (".5", Err(QuantityError::CpuSyntax(".5".into()))),
            ("1.", Err(QuantityError::CpuSyntax("1.".into()))),
            ("m", Err(QuantityError::CpuSyntax("m".into()))),
            ("1c", Err(QuantityError::CpuSyntax("1c".into()))),
            (
                "99999999999999999999",
                Err(QuantityError::Overflow("99999999999999999999".into())),
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_cpu(text), expected, "cpu {text:?}");
        }
    }

    #[test]
    fn memory_quantities() {
        let cases = [
            ("512M", Ok(512_000_000)),
            ("1Gi", Ok(1 << 30)),
            ("128Mi", Ok(128 << 20)),
            ("1K", Ok(1000)),
            ("1Ki", Ok(1024)),
            ("2T", Ok(2_000_000_000_000)),
            ("1Pi", Ok(1 << 50)),
            ("1E", Ok(1_000_000_000_000_000_000)),
            ("1048576", Ok(1_048_576)),
            ("100B", Ok(100)),
            ("512 M", Ok(512_000_000)),
            ("3G", Ok(3_000_000_000)),
            ("16Ei", Err(QuantityError::Overflow("16Ei".into()))),
            ("1Bi", Err(QuantityError::MemorySyntax("1Bi".into()))),
            ("512m", Err(QuantityError::MemorySyntax("512m".into()))),
            ("512MB", Err(QuantityError::MemorySyntax("512MB".into()))),
            ("G", Err(QuantityError::MemorySyntax("G".into()))),
            ("", Err(QuantityError::MemorySyntax(String::new()))),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_memory(text), expected, "memory {text:?}");
        }
    }

    #[test]
    fn memory_fractions_suggest_a_smaller_unit() {
        let message = |text: &str| parse_memory(text).unwrap_err().to_string();
        assert!(
            message("1.5G").ends_with("write \"1500M\" instead"),
            "{}",
            message("1.5G")
        );
        assert!(
            message("0.5Gi").ends_with("write \"512Mi\" instead"),
            "{}",
            message("0.5Gi")
        );
        assert!(
            message("1.5").ends_with("fractions are not allowed"),
            "{}",
            message("1.5")
        );
    }
}
