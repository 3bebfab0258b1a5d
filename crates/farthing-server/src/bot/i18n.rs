//! The bot's languages (SPEC T3): English, French, German, Persian (right-to-left) and Russian,
//! chosen from the Telegram user's `language_code`; anything else falls back to English.
//!
//! Texts live next to the code that sends them, one array per text in [`Lang::ALL`] order,
//! read with [`Lang::pick`]: adding a text never touches a shared table, and a missing
//! translation is a compile error (the array has five entries or it does not build).

/// A language the bot speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Lang {
    /// English (the fallback).
    En,
    /// French.
    Fr,
    /// German.
    De,
    /// Persian, written right to left.
    Fa,
    /// Russian.
    Ru,
}

impl Lang {
    /// Every language, in the order of the text arrays.
    pub const ALL: [Lang; 5] = [Lang::En, Lang::Fr, Lang::De, Lang::Fa, Lang::Ru];

    /// The language of a Telegram `language_code` (an IETF tag such as `de`, `fa-IR`,
    /// `pt-br`); English when absent or not one of ours.
    pub fn from_code(code: Option<&str>) -> Lang {
        let primary = code
            .unwrap_or("en")
            .split(['-', '_'])
            .next()
            .unwrap_or("en")
            .to_ascii_lowercase();
        match primary.as_str() {
            "fr" => Lang::Fr,
            "de" => Lang::De,
            "fa" => Lang::Fa,
            "ru" => Lang::Ru,
            _ => Lang::En,
        }
    }

    /// The two-letter code.
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Fr => "fr",
            Lang::De => "de",
            Lang::Fa => "fa",
            Lang::Ru => "ru",
        }
    }

    /// Whether the language is written right to left.
    pub fn is_rtl(self) -> bool {
        self == Lang::Fa
    }

    /// This language's entry of `texts` (in [`Lang::ALL`] order).
    pub fn pick<T: Copy>(self, texts: [T; 5]) -> T {
        match self {
            Lang::En => texts[0],
            Lang::Fr => texts[1],
            Lang::De => texts[2],
            Lang::Fa => texts[3],
            Lang::Ru => texts[4],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_codes_map_to_our_languages_or_english() {
        assert_eq!(Lang::from_code(Some("fa")), Lang::Fa);
        assert_eq!(Lang::from_code(Some("fa-IR")), Lang::Fa);
        assert_eq!(Lang::from_code(Some("DE")), Lang::De);
        assert_eq!(Lang::from_code(Some("ru_RU")), Lang::Ru);
        assert_eq!(Lang::from_code(Some("pt-br")), Lang::En);
        assert_eq!(Lang::from_code(None), Lang::En);
        assert!(Lang::Fa.is_rtl() && !Lang::Ru.is_rtl());
        let texts = ["Pay", "Payer", "Bezahlen", "پرداخت", "Оплатить"];
        for (lang, text) in Lang::ALL.iter().zip(texts) {
            assert_eq!(lang.pick(texts), text);
        }
    }
}
