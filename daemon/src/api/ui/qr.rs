//! Join tokens as QR codes (SVG), so a phone or a second machine with a camera can take one
//! from the page without typing it.

use qrcode::QrCode;
use qrcode::render::svg;

/// The longest text drawn: a join token with several addresses fits well within it, and a
/// QR code holds at most 2,953 bytes.
pub const MAX_TEXT: usize = 2048;

/// `text` as an SVG QR code, or why not.
pub fn svg(text: &str) -> Result<String, String> {
    if text.len() > MAX_TEXT {
        return Err(format!("at most {MAX_TEXT} bytes are drawn as a QR code"));
    }
    let code =
        QrCode::new(text.as_bytes()).map_err(|e| format!("cannot draw it as a QR code: {e}"))?;
    Ok(code
        .render::<svg::Color<'_>>()
        .min_dimensions(320, 320)
        .quiet_zone(true)
        .build())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_token_is_drawn_and_an_overlong_text_is_refused() {
        let svg = super::svg(&"chorus1-".repeat(40)).unwrap();
        assert!(
            svg.starts_with("<?xml") && svg.contains("<svg"),
            "{}",
            &svg[..80]
        );
        assert!(super::svg(&"x".repeat(super::MAX_TEXT + 1)).is_err());
    }
}
